"""Where the web app reads the fleet, and its rows, kept until the state or the desired state moves."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine.fleet import event_log, fleet_records
from reconciler.engine.reconcile import Engine


class FleetSource(Protocol):
    """The daemon's current desired state and engine, or ``reconcile serve``'s read of the branches."""

    @property
    def data_dir(self) -> Path: ...

    def current(self) -> tuple[DesiredSnapshot, Engine] | None:
        """``None`` while there is no desired state to read yet."""
        ...


class FleetView:
    """Every environment's row, computed once per (desired snapshot, state-branch tip).

    A page of the dashboard and the counts above it are cuts of the same list,
    so 10,000 environments are read and planned once per commit, not once per
    request. Without a state branch (the file store) rows are computed every time.
    """

    def __init__(self, source: FleetSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._key: tuple[int, str | None, str | None] | None = None
        self._rows: list[dict[str, Any]] = []

    def rows(self) -> tuple[list[dict[str, Any]], str | None, DesiredSnapshot | None]:
        """(rows, state-branch tip, snapshot); no rows while there is no desired state."""
        current = self.source.current()
        if current is None:
            return [], None, None
        snapshot, engine = current
        log = event_log(engine.store)
        tip = log.tip_id() if log is not None else None
        key = (id(snapshot), snapshot.commit, tip)
        with self._lock:
            if log is None or key != self._key:
                self._rows = fleet_records(engine, snapshot)
                self._key = key
            return self._rows, tip, snapshot
