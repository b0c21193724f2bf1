"""Commands of SPEC section 5: daemon. Each command registers itself on ``app``."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from reconciler.cli.app import app
from reconciler.cli.options import (
    EXIT_FAILURE,
    EXIT_USAGE,
    AllowedSignersOption,
    DataDirOption,
    RepoOption,
    signers_path,
)

if TYPE_CHECKING:
    from reconciler.daemon.shard import Shard

__all__ = ["app"]


def _duration(value: str) -> float:
    from reconciler.daemon.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


def _listen(value: str) -> tuple[str, int] | None:
    if value in ("", "off", "none"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise typer.BadParameter(
            f"invalid address '{value}': expected HOST:PORT, e.g. 127.0.0.1:8080, or 'off'"
        )
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - ':8080' means every interface, as usual


def _shard(value: str | None) -> Shard | None:
    from reconciler.daemon.shard import parse_shard

    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


@app.command("daemon")
def daemon_command(
    repo: RepoOption = Path("."),
    data_dir: DataDirOption = None,
    interval: Annotated[
        str, typer.Option("--interval", help="Fetch (or poll) every DURATION, with jitter: 30s, 5m, 10.")
    ] = "30s",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Environments reconciled in parallel.")
    ] = 4,
    grace: Annotated[
        str,
        typer.Option("--grace", help="On SIGTERM, how long running phases may finish before being stopped."),
    ] = "30s",
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="HOST:PORT for the dashboard, the API, /healthz, /metrics and /hooks/github, or 'off'. "
            "Any address but loopback needs RECONCILE_API_TOKEN.",
        ),
    ] = "127.0.0.1:8080",
    resync: Annotated[
        str,
        typer.Option("--resync", help="Every DURATION: run checks (drift, health) and recover stale locks."),
    ] = "5m",
    watch: Annotated[
        bool,
        typer.Option("--watch/--no-watch", help="Watch the repository's refs (off: poll every --interval)."),
    ] = True,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            callback=lambda value: None if _shard(value) is None else value,
            help="Take only the environments whose name hashes to I of N (0-based; docs/scale-out.md). "
            "Default: any environment.",
        ),
    ] = None,
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Reconcile continuously: on every push, fetch, webhook and resync (SPEC section 6)."""
    import os

    from reconciler.daemon import Daemon, DaemonSettings
    from reconciler.engine.workspace import WorkspaceError
    from reconciler.store import StoreError
    from reconciler.web.auth import TokenMissing, required_token

    chosen = _shard(shard)
    settings = DaemonSettings(
        repo=repo,
        data_dir=data_dir,
        interval=_duration(interval),
        workers=workers,
        grace=_duration(grace),
        listen=_listen(listen),
        resync=_duration(resync),
        watch=watch,
        shard=chosen,
        allowed_signers=signers_path(allowed_signers),
    )
    if settings.listen is not None:
        try:
            required_token(settings.listen[0], os.environ)
        except TokenMissing as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USAGE) from e
    try:
        daemon = Daemon(settings)
    except (WorkspaceError, StoreError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_FAILURE) from e

    def started() -> None:
        where = f"http://{settings.listen[0]}:{daemon.port}" if settings.listen and daemon.port else "no HTTP"
        taking = f"shard {chosen}" if chosen is not None else "any environment (no --shard)"
        watching = daemon.workspace.repo_path
        typer.echo(
            f"reconcile daemon: watching {watching}; {taking}; {where} (dashboard, /api/v1, /metrics)",
            err=True,
        )

    try:
        code = daemon.run(on_started=started)
    except OSError as e:
        # Only a socket that cannot be bound is --listen's fault (libgit2 raises OSError too).
        binding = e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES) and e.filename is None
        where = (
            f" (--listen {settings.listen[0]}:{settings.listen[1]})" if settings.listen and binding else ""
        )
        typer.echo(f"error: {e.strerror or e}{where}", err=True)
        raise typer.Exit(EXIT_FAILURE) from e
    raise typer.Exit(code)
