"""The ``reconcile`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler import __version__, logfmt
from reconciler.cli.app import app
from reconciler.cli.options import allow_fast_exit, exit_process


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
) -> None:
    try:
        level = log_level or DEFAULT_LOG_LEVELS.get(ctx.invoked_subcommand or "", "warning")
        logfmt.configure(level, log_format)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


def _register() -> None:
    # Each module adds its commands to ``app`` on import.
    from reconciler.cli import (  # noqa: F401
        commands_daemon,
        commands_desired,
        commands_log,
        commands_plan,
        commands_state,
    )


_register()


def main() -> None:
    allow_fast_exit()
    try:
        app()
    except SystemExit as e:
        exit_process(e.code)
        raise
