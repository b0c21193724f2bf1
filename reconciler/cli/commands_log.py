"""``reconcile log NAME [--phase P] [--runs] [--follow]``: a phase run's kept (redacted) output (SPEC 5)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.cli.app import app
from reconciler.cli.commands_state import DataDir, Format, Repo, Store, _fail, _print_json, _workspace
from reconciler.cli.events_view import known_names
from reconciler.cli.options import EXIT_USAGE, AllowedSignersOption, OutputFormat, complete_environment
from reconciler.domain import Phase
from reconciler.engine.phase_logs import PhaseRun, phase_runs
from reconciler.engine.phase_logs import follow as follow_runs
from reconciler.views import document, timestamp

PHASES = [str(p) for p in Phase]


@app.command("log")
def log_command(
    name: Annotated[str, typer.Argument(help="The environment.", autocompletion=complete_environment)],
    phase: Annotated[
        str | None, typer.Option("--phase", metavar="PHASE", help=f"Only runs of {', '.join(PHASES)}.")
    ] = None,
    runs: Annotated[bool, typer.Option("--runs", help="List the kept runs, newest first.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines as runs write them (Ctrl-C stops).")
    ] = False,
    repo: Repo = Path("."),
    data_dir: DataDir = Path("data"),
    fmt: Format = OutputFormat.TEXT,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """A phase run's kept (redacted) output: the newest run, or the runs newest first."""
    if phase is not None and phase not in PHASES:
        raise _fail(f"--phase '{phase}' is not a phase: use {', '.join(PHASES)}", EXIT_USAGE)
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        kept = phase_runs(ws.data_dir, name, phase)
        if not kept:
            snapshot = ws.desired()
            if name not in known_names(ws.store_for(snapshot), set(snapshot.names)):
                raise _fail(
                    f"unknown environment '{name}': it is not declared and has no history", kind="not_found"
                )
        if runs:
            if fmt is OutputFormat.JSON:
                _print_json(document(environment=name, runs=[_run_json(r) for r in kept]))
            else:
                for r in kept:
                    print(f"{r.started_at:%Y-%m-%dT%H:%M:%SZ} {r.phase:<9} {r.size:>8} {r.path}")
            return
        if follow:
            _follow(ws.data_dir, name, phase, fmt)
            return
        if not kept:
            what = f"{phase} " if phase else ""
            if fmt is OutputFormat.JSON:
                _print_json(document(environment=name, run=None, output=None))
                return
            print(
                f"{name}: no {what}phase output kept yet (in {ws.data_dir / name / 'logs'})", file=sys.stderr
            )
            return
        newest = kept[0]
        text = newest.path.read_text(encoding="utf-8", errors="replace")
        if fmt is OutputFormat.JSON:
            _print_json(document(environment=name, run=_run_json(newest), output=text))
            return
        print(f"==> {newest.phase} run started {newest.started_at:%Y-%m-%dT%H:%M:%SZ} ({newest.path}) <==")
        sys.stdout.write(text)


def _run_json(run: PhaseRun) -> dict[str, Any]:
    return {
        "phase": run.phase,
        "startedAt": timestamp(run.started_at),
        "bytes": run.size,
        "path": str(run.path),
    }


def _follow(data_dir: Path, name: str, phase: str | None, fmt: OutputFormat) -> None:
    """Text: a ``==>`` header per run, then its lines. JSON: one object per line, as they come."""
    stopping = threading.Event()
    shown: Path | None = None
    # Ctrl-C or SIGTERM stops following, even when SIGINT came in ignored (a job a shell put in
    # the background, where Python installs no KeyboardInterrupt handler of its own).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        for run, line in follow_runs(data_dir, name, phase, stop=stopping.is_set):
            if fmt is OutputFormat.JSON:
                row = document(environment=name, run=_run_json(run), line=line)
                print(json.dumps(row, ensure_ascii=False), flush=True)
                continue
            if run.path != shown:
                print(f"==> {run.phase} run started {run.started_at:%Y-%m-%dT%H:%M:%SZ} ({run.path}) <==")
                shown = run.path
            print(line, flush=True)
    except KeyboardInterrupt:
        stopping.set()
