"""Where the web app reads the fleet, and its rows, kept until the state or the desired state moves."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from reconciler.desired.changes import concerned
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine.fleet import event_log, fleet_records, is_time_sensitive, related
from reconciler.engine.reconcile import Engine
from reconciler.store import CorruptState, Observed


class FleetSource(Protocol):
    """The daemon's current desired state and engine, or ``reconcile serve``'s read of the branches."""

    @property
    def data_dir(self) -> Path: ...

    def current(self) -> tuple[DesiredSnapshot, Engine] | None:
        """``None`` while there is no desired state to read yet."""
        ...


class FleetView:
    """Every environment's row, kept between requests and brought up to date from what changed.

    A page of the dashboard and the counts above it are cuts of one list. When
    the state branch moves, only the environments whose ``state.json`` changed
    (the store hands back the very same object for an unchanged one) and those
    related to them by ``dependsOn`` are planned again, with the rows that time
    alone may change (a lock turning stale, a backoff ending). A new desired
    commit re-plans what it concerns, as the daemon wakes it
    (``desired/changes.py``), or everything when in doubt. So 10,000
    environments are planned once, not once per request, push or transition.
    """

    def __init__(self, source: FleetSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._snapshot: DesiredSnapshot | None = None
        self._observed: Mapping[str, Observed | CorruptState] = {}
        self._tip: str | None = None
        self._rows: dict[str, dict[str, Any]] = {}
        self._sorted: list[dict[str, Any]] = []

    def rows(self) -> tuple[list[dict[str, Any]], str | None, DesiredSnapshot | None]:
        """(rows sorted by name, state-branch tip, snapshot); no rows while there is no desired state."""
        current = self.source.current()
        if current is None:
            return [], None, None
        snapshot, engine = current
        log = event_log(engine.store)
        with self._lock:
            tip = log.tip_id() if log is not None else None
            if log is None or self._snapshot is None:
                self._rebuild(engine, snapshot, tip)
            elif snapshot is not self._snapshot:
                self._new_desired(engine, snapshot, tip)
            elif tip != self._tip:
                self._update(engine, snapshot, tip)
            else:
                self._refresh(engine, snapshot, {n for n, r in self._rows.items() if is_time_sensitive(r)})
            return self._sorted, self._tip, snapshot

    def _rebuild(self, engine: Engine, snapshot: DesiredSnapshot, tip: str | None) -> None:
        self._observed = engine.store.read_all()
        records = fleet_records(engine, snapshot, self._observed)
        self._rows = {r["name"]: r for r in records}
        self._sorted = records
        self._snapshot, self._tip = snapshot, tip

    def _new_desired(self, engine: Engine, snapshot: DesiredSnapshot, tip: str | None) -> None:
        """A new desired commit: only the environments it concerns (and their dependents) change plan."""
        assert self._snapshot is not None
        wake = concerned(engine.repo, self._snapshot, snapshot)
        if wake.names is None:
            self._rebuild(engine, snapshot, tip)
            return
        self._snapshot = snapshot
        self._update(engine, snapshot, tip, also=set(wake.names))

    def _update(
        self, engine: Engine, snapshot: DesiredSnapshot, tip: str | None, also: set[str] | None = None
    ) -> None:
        observed = engine.store.read_all()
        previous = self._observed
        changed = {n for n in observed.keys() | previous.keys() if observed.get(n) is not previous.get(n)}
        affected = changed | (also or set())
        for name in changed:
            affected |= related(snapshot, name)
        affected |= {n for n, r in self._rows.items() if is_time_sensitive(r)}
        self._observed, self._tip = observed, tip
        self._refresh(engine, snapshot, affected)

    def _refresh(self, engine: Engine, snapshot: DesiredSnapshot, names: set[str]) -> None:
        if not names:
            return
        fresh = {r["name"]: r for r in fleet_records(engine, snapshot, self._observed, only=names)}
        added = False
        for name in names:
            if name in fresh:
                added = added or name not in self._rows
                self._rows[name] = fresh[name]
            else:
                self._rows.pop(name, None)
                added = True
        if added:
            self._sorted = [self._rows[n] for n in sorted(self._rows)]
        else:
            self._sorted = [self._rows[r["name"]] for r in self._sorted]
