"""The ``reconcile`` command line (typer). Each command group lives in its own module, imported
only when one of its commands runs (``cli/app.py``, decision 029)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from reconciler import __version__, logfmt
from reconciler.cli.app import app
from reconciler.cli.options import allow_fast_exit, exit_process
from reconciler.cli.output import run, set_no_color


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconcile {__version__}")
        raise typer.Exit()


#: What each command logs when ``--log-level`` is not given: the daemon says what it does.
DEFAULT_LOG_LEVELS = {"daemon": "info"}


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level", help="debug, info, warning, error (default: info for daemon, else warning)."
        ),
    ] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="text or json (to stderr).")] = "text",
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour in any output (the same as NO_COLOR=1).")
    ] = False,
) -> None:
    if no_color:
        set_no_color()
    try:
        level = log_level or DEFAULT_LOG_LEVELS.get(ctx.invoked_subcommand or "", "warning")
        logfmt.configure(level, log_format)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


def main() -> None:
    allow_fast_exit()
    try:
        code = run(app, sys.argv[1:])
    except SystemExit as e:
        exit_process(e.code)
        raise
    exit_process(code)
    sys.exit(code)
