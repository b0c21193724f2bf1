"""``reconcile check [NAME...] [--heal] [-l SELECTOR]``: drift and health now (SPEC 3.1 and 5).

Exit codes: 0 every environment looked at is in sync; 2 drift or a failing
check was found (healed or not); 1 an error: a heal whose phase failed, an
environment that cannot be read, or a named one that cannot be checked now.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from reconciler.cli.app import app
from reconciler.cli.commands_state import (
    DataDir,
    Format,
    Repo,
    Store,
    _fail,
    _interruptible,
    _print_json,
    _workspace,
)
from reconciler.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    AllowedSignersOption,
    OutputFormat,
    SelectorOption,
    nothing_selected,
    parse_selector_option,
)
from reconciler.cli.output import err
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.selector import select
from reconciler.domain import DriftStatus
from reconciler.engine.apply import UnknownEnvironment, targets
from reconciler.engine.reconcile import Engine, Outcome, ReconcileResult, TransitionEvent
from reconciler.store import StoreError
from reconciler.store.message import person
from reconciler.views import document

#: ``check``'s exit code when drift or a failing check was found (SPEC 5).
EXIT_DRIFT = 2
#: Outcomes of ``Engine.check`` that mean the environment could not be looked at now.
_NOT_CHECKED_ERRORS = frozenset({Outcome.CORRUPT, Outcome.INVALID})


@app.command()
def check(
    names: Annotated[list[str] | None, typer.Argument(help="Environments to check (default: all).")] = None,
    heal: Annotated[
        bool,
        typer.Option(
            "--heal",
            help="Re-apply from the earliest drifted phase (or a failing check's reapply) where "
            "spec.drift.heal allows it and the environment is not suspended.",
        ),
    ] = False,
    selector: SelectorOption = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Environments looked at in parallel.")] = 4,
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    fmt: Format = OutputFormat.TEXT,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Drift and health now: exit 0 all in sync, 2 drift or failing checks found, 1 error."""
    chosen_by = parse_selector_option(selector)
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        engine = ws.engine(snapshot)
        engine.actor = person()
        if fmt is OutputFormat.TEXT and heal:
            engine.on_transition = _print_transition
        try:
            chosen = targets(engine, snapshot, names)
        except UnknownEnvironment as e:
            raise _fail(escape(str(e)), kind="not_found") from e
        labels = {n: env.labels for n, env in snapshot.environments.items()}
        chosen = select(chosen, labels, chosen_by)
        chosen = [n for n in chosen if n in snapshot.environments or n in snapshot.broken]
        if names and not chosen:
            raise _fail(
                "none of the named environments is declared now: there is nothing to check", kind="not_found"
            )
        if chosen_by is not None and not chosen:
            err.print(nothing_selected(chosen_by), markup=False)
        try:
            with _interruptible(engine):
                results = _check_all(engine, snapshot, chosen, heal=heal, workers=workers)
        except StoreError as e:
            raise _fail(escape(str(e))) from e
        named = set(names or ())
        code = exit_code(results, named)
        if fmt is OutputFormat.JSON:
            _print_json(
                document(
                    desiredCommit=snapshot.commit,
                    inSync=code == EXIT_OK,
                    environments=[_json_row(r) for r in results],
                )
            )
        else:
            for r in results:
                print(_text_row(r))
        raise typer.Exit(code)


def _print_transition(event: TransitionEvent) -> None:
    print(f"{event.environment}: {event.from_state} -> {event.to_state}", flush=True)


def _check_all(
    engine: Engine, snapshot: DesiredSnapshot, names: list[str], *, heal: bool, workers: int
) -> list[ReconcileResult]:
    """``Engine.check`` of each, ``workers`` at a time; the results in the order of ``names``."""

    def one(name: str) -> ReconcileResult:
        return engine.check(snapshot, name, heal=heal)

    if workers <= 1 or len(names) <= 1:
        return [one(n) for n in names]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="check") as pool:
        return list(pool.map(one, names))


def exit_code(results: list[ReconcileResult], named: set[str]) -> int:
    """SPEC 5: 1 for an error, else 2 when anything was found, else 0."""
    error = any(
        r.outcome in _NOT_CHECKED_ERRORS
        or r.failure is not None
        or (r.name in named and not r.checked and r.outcome is not Outcome.CONVERGED)
        for r in results
    )
    if error:
        return EXIT_FAILURE
    found = any(r.found is not None and r.found is not DriftStatus.IN_SYNC for r in results)
    return EXIT_DRIFT if found else EXIT_OK


def _text_row(r: ReconcileResult) -> str:
    if not r.checked:
        if r.outcome is Outcome.CONVERGED:
            return f"{r.name}: nothing to check ({r.reason})"
        return f"{r.name}: not checked: {r.outcome} ({r.state or 'not created'}): {r.reason}"
    record = r.drift
    if r.found is DriftStatus.IN_SYNC:
        return f"{r.name}: in sync"
    line = f"{r.name}: {r.found}: {r.reason}"
    if record is not None and record.status is not DriftStatus.IN_SYNC:
        line += f" (since {record.since:%Y-%m-%d %H:%M:%S}Z)"
    return line


def _json_row(r: ReconcileResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "outcome": str(r.outcome),
        "state": r.state,
        "checked": r.checked,
        "found": None if r.found is None else str(r.found),
        "drift": None if r.drift is None else json.loads(r.drift.model_dump_json(by_alias=True)),
        "healed": bool(r.transitions) and r.outcome is Outcome.CONVERGED,
        "transitions": [{"from": a, "to": b} for a, b in r.transitions],
        "failure": r.failure.model_dump(mode="json", by_alias=True) if r.failure else None,
        "reason": r.reason,
    }
