"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="reconcile",
    help="Reconcile environments declared in git, recording every transition on a state branch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion/--show-completion; registers the completion classes
)
