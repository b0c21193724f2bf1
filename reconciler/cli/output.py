"""How every command writes: colour or not, JSON documents, and errors.

Under ``--format json`` an error is one JSON document on stderr
(``{"formatVersion": 1, "error": {"message", "kind"}}``) instead of an
``error: ...`` line, and the exit code is the same as in text (SPEC 5).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import typer

from reconciler.cli.options import EXIT_USAGE

if TYPE_CHECKING:
    from rich.console import Console

#: ``no_color``: set by ``--no-color`` (``NO_COLOR``, https://no-color.org, does the same);
#: ``json``: set by ``main`` when the command line asks for ``--format json``.
_MODE = {"no_color": False, "json": False}


@cache
def _stderr_console() -> Console:
    from rich.console import Console  # ~15 ms of import that most runs (a plan, a status) never need

    return Console(stderr=True, soft_wrap=True, highlight=False, no_color=_MODE["no_color"] or None)


class _StderrConsole:
    """``err``, built on first use: a rich console like any other to its callers."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_stderr_console(), name)


#: The CLI's stderr: diagnostics, warnings, progress. A ``path:line:col`` line stays one line.
err = cast("Console", _StderrConsole())


def set_no_color() -> None:
    """``--no-color``: no console of this process colours its output from now on."""
    _MODE["no_color"] = True
    if _stderr_console.cache_info().currsize:
        _stderr_console().no_color = True


def no_color() -> bool:
    """Whether colour is off: ``--no-color`` or a non-empty ``NO_COLOR``."""
    return _MODE["no_color"] or os.environ.get("NO_COLOR", "") != ""


def console(*, stderr: bool = False, width: int | None = None, soft_wrap: bool = False) -> Console:
    """A rich console that honours ``--no-color`` and ``NO_COLOR``."""
    from rich.console import Console

    return Console(stderr=stderr, width=width, soft_wrap=soft_wrap, no_color=no_color() or None)


def json_requested(args: Sequence[str] | None = None) -> bool:
    """Whether ``args`` (by default: this process's command line, as ``main`` saw it) ask for JSON."""
    if args is None:
        return _MODE["json"]
    for i, arg in enumerate(args):
        if arg == "--format=json" or (arg == "--format" and i + 1 < len(args) and args[i + 1] == "json"):
            return True
    return False


def write_text(text: str) -> None:
    """``text`` to stdout as it is: ``typer.echo`` would look for colour codes to strip in all of a
    plan's megabyte at 10,000 environments (~7 ms), where a report never has any."""
    sys.stdout.write(text)


def write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def error_kind(code: int) -> str:
    return "usage" if code == EXIT_USAGE else "error"


def report_error(message: str, code: int = 1, kind: str | None = None, *, markup: bool = False) -> None:
    """``error: message`` on stderr, or its JSON document under ``--format json``."""
    if json_requested():
        _write_error(message, kind or error_kind(code))
        return
    if markup:
        err.print(f"[red]error:[/red] {message}", markup=True)
    else:
        err.print("[red]error:[/red] ", end="", markup=True)
        err.print(message, markup=False)


def fail(message: str, code: int = 1, kind: str | None = None, *, markup: bool = False) -> typer.Exit:
    """Report ``message`` as an error and return the ``typer.Exit`` to raise with ``code``."""
    report_error(message, code, kind, markup=markup)
    return typer.Exit(code)


def _write_error(message: str, kind: str) -> None:
    # The views' module reads the planner's and the store's types: ~0.1 s that ``--help``, ``--version``
    # and every Tab completion of a command name would pay for an error they never write.
    from reconciler.views import error_document

    sys.stderr.write(json.dumps(error_document(message, kind), ensure_ascii=False) + "\n")


def run(app: typer.Typer, args: Sequence[str]) -> int:
    """Run ``app`` on ``args``; under ``--format json`` usage errors, too, come out as JSON documents."""
    if not json_requested(args):
        app(args=list(args))
        return 0  # typer exits by itself
    _MODE["json"] = True
    try:
        code: object = app(args=list(args), standalone_mode=False)
    except typer.Abort:
        _write_error("aborted", "interrupted")
        return 1
    except Exception as e:
        # click's ClickException and UsageError (typer vendors click, so they are matched by what
        # they carry rather than imported): a message to show and the exit code to leave with.
        message, exit_code = getattr(e, "format_message", None), getattr(e, "exit_code", None)
        if not callable(message) or not isinstance(exit_code, int):
            raise
        _write_error(str(message()), error_kind(exit_code))
        return exit_code
    return code if isinstance(code, int) else 0
