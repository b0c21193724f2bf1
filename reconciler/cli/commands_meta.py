"""Commands about ``reconcile`` itself: ``version`` and ``completion`` (SPEC 5, issue 15)."""

from __future__ import annotations

import platform
from enum import StrEnum
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated

import pygit2
import typer
from typer._completion_shared import get_completion_script  # what --show-completion prints

from reconciler import __version__
from reconciler.cli.app import app
from reconciler.cli.options import FormatOption, OutputFormat
from reconciler.cli.output import write_json
from reconciler.views import document

#: The console script's name and the variable its completion scripts set (typer's convention).
PROG_NAME = "reconcile"
COMPLETE_VAR = "_RECONCILE_COMPLETE"


class Shell(StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


#: SPEC 5: every command takes ``--repo``; these two do not read it.
IgnoredRepo = Annotated[
    Path | None, typer.Option("--repo", help="Accepted like every command's; not read.", show_default=False)
]


@app.command()
def version(output: FormatOption = OutputFormat.TEXT, repo: IgnoredRepo = None) -> None:
    """Print the version of reconcile and of what it runs on."""
    if output is OutputFormat.JSON:
        write_json(
            document(
                version=__version__,
                python=platform.python_version(),
                pygit2=installed_version("pygit2"),
                libgit2=pygit2.LIBGIT2_VERSION,
            )
        )
        return
    typer.echo(f"reconcile {__version__}")


@app.command()
def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell to complete in.", show_default=False)],
    repo: IgnoredRepo = None,
) -> None:
    """Print the shell completion script for bash, zsh or fish.

    bash: ``source <(reconcile completion bash)`` (or save it under
    ~/.local/share/bash-completion/completions/reconcile); zsh: save it as
    ``_reconcile`` on your ``fpath``; fish: ``reconcile completion fish >
    ~/.config/fish/completions/reconcile.fish``.
    """
    typer.echo(get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=str(shell)))
