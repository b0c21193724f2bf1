"""The ``reconcile`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler import __version__, logfmt
from reconciler.cli.app import app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconcile {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "warning",
    log_format: Annotated[str, typer.Option("--log-format", help="text or json (to stderr).")] = "text",
) -> None:
    try:
        logfmt.configure(log_level, log_format)
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
    app()
