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
from reconciler.domain import AnyEnvironment
from reconciler.engine.reconcile import Engine
from reconciler.engine.status import next_step
from reconciler.store import CorruptState, CorruptStateError, Observed, StateStore
from reconciler.store.events import Event, EventLog, EventQuery
from reconciler.store.git import GitStore
from reconciler.store.remote import RemoteStore
from reconciler.views import environment_view

#: The most of a trace file a response carries: its end, where the error is.
TRACE_BYTES = 64 * 1024
_TRACE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\.log$")


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


def environment_record(
    engine: Engine,
    snapshot: DesiredSnapshot,
    name: str,
    item: Observed | CorruptState | None,
    last: Event | None,
    now: datetime,
) -> dict[str, Any]:
    """One environment's row: ``status --format json``'s (``reconciler.views.environment_view``), plus
    ``drift`` and ``problems`` (an invalid file's, an unreadable ``state.json``'s) as plain strings."""
    desired = snapshot.environments.get(name)
    broken = snapshot.broken.get(name, ())
    plan = None if isinstance(item, CorruptState) else engine.plan(snapshot, name, item)
    record = environment_view(
        name,
        item,
        plan,
        labels=desired.labels if desired is not None else None,
        declared=desired is not None or name in snapshot.broken,
        last=None if last is None else last.to_record(),
        now=now,
    )
    if record["desired"] is None and desired is not None:
        record["desired"] = str(desired.desired_state)
    record.setdefault("drift", _optional(item.env, "drift") if isinstance(item, Observed) else None)
    problems = [str(p) for p in broken]
    if isinstance(item, CorruptState):
        problems.append(f"corrupt state.json: {item.error}")
    record["problems"] = problems
    return record


def _optional(env: AnyEnvironment, key: str) -> Any:
    """``state.json``'s optional keys (SPEC 4.2: ``drift``) when this build records them."""
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
