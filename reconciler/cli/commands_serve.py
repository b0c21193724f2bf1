"""``reconcile serve``: the dashboard and API of SPEC 6.1 from the state branch, reconciling nothing."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.app import app
from reconciler.cli.commands_daemon import _listen
from reconciler.cli.options import (
    EXIT_FAILURE,
    EXIT_USAGE,
    AllowedSignersOption,
    DataDirOption,
    RepoOption,
    signers_path,
)

__all__ = ["app"]


@app.command("serve")
def serve_command(
    repo: RepoOption = Path("."),
    data_dir: DataDirOption = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT for the dashboard, the API, /healthz and /metrics.")
    ] = "127.0.0.1:8080",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Serve the dashboard and the JSON API from the state branch, without reconciling (SPEC 6.1)."""
    import os

    from reconciler.daemon.metrics import serve_metrics
    from reconciler.engine.workspace import WorkspaceError, open_workspace
    from reconciler.web.app import Endpoints, create_app
    from reconciler.web.auth import TokenMissing, required_token
    from reconciler.web.branches import StateBranchFleet
    from reconciler.web.server import WebServer

    address = _listen(listen)
    if address is None:
        typer.echo("error: --listen off: `reconcile serve` only serves; give HOST:PORT", err=True)
        raise typer.Exit(EXIT_USAGE)
    host, port = address
    try:
        token = required_token(host, os.environ)
    except TokenMissing as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from e
    try:
        workspace = open_workspace(repo, data_dir, allowed_signers=signers_path(allowed_signers))
    except WorkspaceError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_FAILURE) from e
    fleet = StateBranchFleet(workspace)
    metrics = serve_metrics(fleet)
    stopping = threading.Event()
    endpoints = Endpoints(healthy=lambda: (True, "ok"), metrics=metrics.exposition, fleet=fleet)
    try:
        server = WebServer(
            create_app(endpoints, token=token, stopping=stopping), host, port, on_stop=stopping
        )
    except OSError as e:
        typer.echo(f"error: {e.strerror or e} (--listen {host}:{port})", err=True)
        raise typer.Exit(EXIT_FAILURE) from e

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"reconcile serve: {workspace.repo_path}; http://{shown}:{server.port}/ (dashboard, /api/v1)",
        err=True,
    )
    while not stopping.wait(1.0):
        pass
    server.stop()
