"""Options every command shares (SPEC section 5)."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from reconciler.desired.selector import Selector, SelectorError, parse_selector


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class PlanFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


RepoOption = Annotated[
    Path,
    typer.Option("--repo", help="The GitOps repository: a work tree or a bare repository."),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Local data: tofu working dirs, traces, logs (default: data/ at the top of the work tree).",
        show_default=False,
    ),
]

#: Exit codes of SPEC section 5.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

AllowedSignersOption = Annotated[
    str | None,
    typer.Option(
        "--allowed-signers",
        envvar="RECONCILE_ALLOWED_SIGNERS",
        metavar="PATH",
        help="Act only on desired commits signed by a key in this file: ssh allowed_signers lines and/or "
        "armored OpenPGP public keys; it must live outside the repository (SPEC section 10).",
    ),
]


def signers_path(value: str | None) -> Path | None:
    """``--allowed-signers``/``RECONCILE_ALLOWED_SIGNERS``; empty is the same as not given."""
    return Path(value) if value else None


@contextmanager
def bulk_load() -> Iterator[None]:
    """No cyclic-GC passes while a command loads and plans a whole fleet (issue 11).

    Loading ten thousand environments allocates millions of objects that all
    stay alive, and each full pass of the cyclic collector walks all of them:
    about half the time of ``plan`` went there. Reference counting still frees
    everything as usual; only reference cycles wait until the block ends (the
    command's own, short, lifetime). Not for the daemon, which lives on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _Exit.fast:
            # The process ends right after: what the load allocated is never scanned by the
            # collector again (a first pass after ``gc.enable`` would walk all of it) ...
            gc.freeze()
            _Exit.skip_teardown = True
        if enabled:
            gc.enable()


class _Exit:
    #: Set by ``main``: this is the ``reconcile`` process, not a caller importing the CLI (tests).
    fast = False
    #: A fleet was loaded: end the process without freeing it object by object.
    skip_teardown = False


def allow_fast_exit() -> None:
    """Called by the ``reconcile`` entry point only: commands may end the process without teardown."""
    _Exit.fast = True


def exit_process(code: object) -> None:
    """... and ends without the interpreter's teardown, which would free the loaded fleet one
    object at a time (about a second at 10,000 environments, for nothing: the process is gone).

    Returns when there is no such fleet; otherwise flushes what is written and ends the process
    with ``code`` (``sys.exit``'s argument: ``None``, an int, or a message for stderr and 1).
    """
    if not _Exit.skip_teardown:
        return
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    try:
        sys.stdout.flush()
    except OSError:  # a closed pipe (``plan | head``): what Python itself reports at exit
        status = 120
    with suppress(OSError):
        sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


SelectorOption = Annotated[
    str | None,
    typer.Option(
        "--selector",
        "-l",
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="Only environments whose metadata.labels match, as kubectl: team=shop,tier!=db.",
        show_default=False,
    ),
]


def parse_selector_option(value: str | None) -> Selector | None:
    """``-l/--selector``; bad syntax is a usage error (exit 2) saying what would be accepted."""
    if value is None:
        return None
    try:
        return parse_selector(value)
    except SelectorError as e:
        raise typer.BadParameter(str(e), param_hint="'-l' / '--selector'") from e


def nothing_selected(selector: Selector, what: str = "environment") -> str:
    """What to say when a selector matches nothing (not an error: the fleet may simply have none)."""
    return f"no {what} matches the selector '{selector}'"


def complete_environment(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of an environment NAME: the files in ``environments/`` of ``--repo``.

    The work tree's files when there is one (what the user sees), else the
    committed ones at HEAD; nothing at all rather than an error while completing.
    """
    import pygit2  # only when completing

    repo = ctx.params.get("repo") or Path(".")
    try:
        found = pygit2.discover_repository(str(repo))
        if found is None:
            return []
        repository = pygit2.Repository(found)
        if repository.workdir is not None:
            stems = [p.stem for p in (Path(repository.workdir) / "environments").glob("*.yaml")]
        else:
            tree = repository.revparse_single("HEAD").peel(pygit2.Tree)
            folder = tree["environments"].peel(pygit2.Tree)
            stems = [entry.name[: -len(".yaml")] for entry in folder if (entry.name or "").endswith(".yaml")]
    except (pygit2.GitError, KeyError, ValueError, OSError):
        return []
    return sorted(s for s in stems if s.startswith(incomplete))
