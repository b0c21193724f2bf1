"""The ``reconcile`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler import __version__, logfmt

app = typer.Typer(
    name="reconcile",
    help="Reconcile environments declared in git, recording every transition on a state branch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
    logfmt.configure(log_level, log_format)


def _register() -> None:
    # Each module adds its commands to ``app`` on import.
    pass


_register()


def main() -> None:
    app()
