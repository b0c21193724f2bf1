"""The fleet as plain JSON values (SPEC 5's conventions): what the API, the dashboard and
``status --format json`` can share.

Every value is plain: states by name, times in RFC 3339, numbers as numbers,
never a display string. Outputs come from ``state.json``, where a value built
from a ``fromEnv`` secret is already ``[REDACTED]`` (SPEC 4.2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.domain import AnyEnvironment, format_timestamp
from reconciler.domain.values import Lock
from reconciler.engine.reconcile import Engine
from reconciler.engine.status import next_step
from reconciler.planner import Verdict
from reconciler.store import CorruptState, CorruptStateError, Observed, StateStore
from reconciler.store.events import Event, EventLog, EventQuery
from reconciler.store.git import GitStore
from reconciler.store.lock import stale_reason
from reconciler.store.remote import RemoteStore

FORMAT_VERSION = 1
#: The most of a trace file a response carries: its end, where the error is.
TRACE_BYTES = 64 * 1024
_TRACE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\.log$")


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def event_log(store: StateStore) -> EventLog | None:
    """The state branch's event log, when ``store`` keeps state on one (through any wrapper)."""
    if isinstance(store, RemoteStore):
        return store.local.events
    if isinstance(store, GitStore):
        return store.events
    inner = getattr(store, "inner", None)  # the daemon's guarded store
    return event_log(inner) if isinstance(inner, GitStore | RemoteStore) else None


def last_transitions(store: StateStore, names: Iterable[str]) -> dict[str, Event]:
    log = event_log(store)
    if log is not None:
        return log.last_transitions(names)
    wanted = set(names)
    found: dict[str, Event] = {}
    for record in store.history(None, None):
        if record.name in wanted and record.event == "transition":
            found.setdefault(record.name, Event.from_record(record))
    return found


def history(store: StateStore, name: str, limit: int) -> list[Event]:
    """``name``'s events, newest first (as ``reconcile history NAME --limit N``)."""
    log = event_log(store)
    if log is not None:
        return log.events(EventQuery(names=(name,), limit=limit))
    return [Event.from_record(r) for r in store.history(name, limit)]


def lock_json(lock: Lock | None, now: datetime) -> dict[str, Any] | None:
    if lock is None:
        return None
    why = stale_reason(lock, now)
    return {**lock.model_dump(mode="json", by_alias=True), "stale": why is not None, "staleReason": why}


def _transition(event: Event | None) -> dict[str, Any] | None:
    return None if event is None else event.to_json()


def environment_record(
    engine: Engine,
    snapshot: DesiredSnapshot,
    name: str,
    item: Observed | CorruptState | None,
    last: Event | None,
    now: datetime,
) -> dict[str, Any]:
    """One environment's row: observed against desired, lock, last transition, failure, drift."""
    desired = snapshot.environments.get(name)
    broken = snapshot.broken.get(name, ())
    record: dict[str, Any] = {
        "name": name,
        "labels": dict(desired.labels) if desired is not None else {},
        "declared": desired is not None or name in snapshot.broken,
        "desired": str(desired.desired_state) if desired is not None else None,
        "observed": None,
        "converged": False,
        "verdict": None,
        "reason": None,
        "desiredCommit": None,
        "lock": None,
        "failure": None,
        "drift": None,
        "suspended": None,
        "updatedAt": None,
        "lastTransition": _transition(last),
        "problems": [str(p) for p in broken],
    }
    if isinstance(item, CorruptState):
        record["verdict"] = "corrupt"
        record["problems"].append(f"corrupt state.json: {item.error}")
        return record
    plan = engine.plan(snapshot, name, item)
    record["verdict"] = str(plan.verdict)
    record["converged"] = plan.verdict is Verdict.CONVERGED
    record["reason"] = plan.reason
    if item is not None:
        env = item.env
        failure = env.error_details
        record.update(
            observed=env.state_name,
            desiredCommit=env.desired_commit,
            lock=lock_json(env.lock, now),
            failure=None if failure is None else failure.model_dump(mode="json", by_alias=True),
            drift=_optional(env, "drift"),
            suspended=_optional(env, "suspended"),
            updatedAt=format_timestamp(env.updated_at),
        )
    return record


def _optional(env: AnyEnvironment, key: str) -> Any:
    """``state.json``'s optional ``drift`` and ``suspended`` (SPEC 4.2), when this build records them."""
    value = getattr(env, key, None)
    if value is None or isinstance(value, str | int | float | bool | dict | list):
        return value
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", by_alias=True) if callable(dump) else None


def document(env: AnyEnvironment) -> dict[str, Any]:
    """``state.json`` as a dict (with whatever optional keys the document has: drift, suspended)."""
    data: dict[str, Any] = env.to_document().model_dump(mode="json", by_alias=True)
    return data


def is_time_sensitive(record: Mapping[str, Any]) -> bool:
    """Whether a row may change with no commit: a lock turns stale, a backoff ends."""
    return record["lock"] is not None or record["verdict"] == "waiting"


def related(snapshot: DesiredSnapshot, name: str) -> frozenset[str]:
    """Those whose plan may change when ``name``'s state does: its dependents and its dependencies."""
    env = snapshot.environments.get(name)
    dependencies = env.spec.depends_on if env is not None else ()
    return snapshot.dependents.get(name, frozenset()).union(dependencies)


def fleet_records(
    engine: Engine,
    snapshot: DesiredSnapshot,
    observed_all: Mapping[str, Observed | CorruptState] | None = None,
    only: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Every environment, declared or observed, sorted by name (or only those named in ``only``)."""
    if observed_all is None:
        observed_all = engine.store.read_all()
    known = set(snapshot.environments) | set(snapshot.broken) | set(observed_all)
    names = sorted(known if only is None else known.intersection(only))
    last = last_transitions(engine.store, names)
    now = engine.clock.now()
    return [environment_record(engine, snapshot, n, observed_all.get(n), last.get(n), now) for n in names]


def read_trace(data_dir: Path, name: str, trace_file: str | None) -> dict[str, Any] | None:
    """The end of a failure's trace file, read only from ``<data>/<name>/traces/`` whatever the
    state branch says its path is (a hostile ``traceFile`` cannot point elsewhere)."""
    if not trace_file:
        return None
    base = Path(trace_file).name
    found: dict[str, Any] = {"file": trace_file, "content": None, "truncated": False, "error": None}
    if not _TRACE_NAME.match(base):
        found["error"] = "not a trace file name"
        return found
    path = data_dir / name / "traces" / base
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - TRACE_BYTES))
            data = f.read(TRACE_BYTES)
    except OSError as e:
        found["error"] = f"cannot read {path}: {e.strerror or e}"
        return found
    found["content"] = data.decode("utf-8", errors="replace")
    found["truncated"] = size > TRACE_BYTES
    return found


def environment_detail(
    engine: Engine,
    snapshot: DesiredSnapshot,
    name: str,
    data_dir: Path,
) -> dict[str, Any] | None:
    """Everything about one environment; ``None`` when it is neither declared, observed nor in the history."""
    item, corrupt = _read(engine.store, name)
    declared = name in snapshot.environments or name in snapshot.broken
    if item is None and corrupt is None and not declared and not history(engine.store, name, 1):
        return None
    last = last_transitions(engine.store, [name]).get(name)
    now = engine.clock.now()
    record = environment_record(engine, snapshot, name, corrupt or item, last, now)
    desired = snapshot.environments.get(name)
    record["spec"] = (
        None
        if desired is None
        else {
            "desiredState": str(desired.desired_state),
            "blueprint": desired.spec.blueprint,
            "dependsOn": list(desired.spec.depends_on),
            "suspend": desired.spec.suspend,
            "protected": desired.spec.protected,
            "path": desired.path,
            "commit": snapshot.commit,
        }
    )
    record["phases"] = []
    record["outputs"] = {}
    record["state"] = None
    record["nextStep"] = None
    if item is not None:
        doc = document(item.env)
        record["state"] = doc
        record["phases"] = [{"phase": phase, **entry} for phase, entry in _items(doc.get("phases"))]
        record["outputs"] = doc.get("outputs") or {}
        record["nextStep"] = next_step(item.env, declared, now)
        failure = record["failure"]
        if failure is not None:
            record["failure"] = {**failure, "trace": read_trace(data_dir, name, failure.get("traceFile"))}
    return record


def _items(phases: Any) -> list[tuple[str, Mapping[str, Any]]]:
    return list(phases.items()) if isinstance(phases, dict) else []


def _read(store: StateStore, name: str) -> tuple[Observed | None, CorruptState | None]:
    try:
        return store.read(name), None
    except CorruptStateError as e:
        return None, CorruptState(name, f"{name}/state.json", str(e))
