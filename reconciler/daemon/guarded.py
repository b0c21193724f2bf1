"""The daemon's view of the state store: draining, orphan reaping and phase metrics in one seam.

Every transition the engine commits passes through ``apply`` here, so this is
where the daemon (a) refuses to *start* anything once it is stopping, while
still letting running phases record how they ended (the engine then stops
after the current phase); (b) kills a dead reconciler's orphaned step
processes before its stale lock is ended, so a retry never overlaps them; and
(c) counts finished phases with their durations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from reconciler.domain import AnyEnvironment, ErrorKind, FailureContext
from reconciler.domain.states import IN_PROGRESS
from reconciler.store import CorruptState, LostRace, Observed, StateStore, TransitionRecord
from reconciler.store.message import TRANSITION
from reconciler.store.recovery import force_unlock

IN_PROGRESS_STATES = frozenset(state.name for state in IN_PROGRESS.values())
_PHASE_OF = {state.name: str(phase) for phase, state in IN_PROGRESS.items()}

PhaseObserver = Callable[[str, str, float], None]


class Stopping(LostRace):
    """The daemon is stopping: no new phase or environment is started."""


class GuardedStore:
    def __init__(self, inner: StateStore, data_dir: Path, on_phase: PhaseObserver | None = None) -> None:
        self.inner = inner
        self.data_dir = data_dir
        self.draining = threading.Event()
        self._on_phase = on_phase
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def read(self, name: str) -> Observed | None:
        return self.inner.read(name)

    def read_all(self) -> dict[str, Observed | CorruptState]:
        return self.inner.read_all()

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        return self.inner.history(name, limit)

    def failure_before(self, name: str) -> FailureContext | None:
        remembers = getattr(self.inner, "failure_before", None)
        return remembers(name) if remembers is not None else None

    def unlock(self, name: str, lock_id: UUID) -> Observed:
        return force_unlock(self, name, lock_id)

    def apply(
        self,
        name: str,
        expected_version: str | None,
        after: AnyEnvironment,
        *,
        from_state: str,
        desired_commit: str | None,
        detail: str | None = None,
        actor: str | None = None,
        event: str = TRANSITION,
    ) -> Observed:
        leaving = from_state in IN_PROGRESS_STATES
        if self.draining.is_set() and not leaving:
            raise Stopping(f"{name}: the daemon is stopping; nothing new starts")
        failure = after.error_details
        result = self.inner.apply(
            name,
            expected_version,
            after,
            from_state=from_state,
            desired_commit=desired_commit,
            detail=detail,
            actor=actor,
            event=event,
        )
        now = time.monotonic()
        if after.is_in_progress:
            with self._lock:
                self._started[name] = now
        elif leaving:
            with self._lock:
                started = self._started.pop(name, None)
            if failure is not None:
                outcome = "interrupted" if failure.error_kind is ErrorKind.INTERRUPTED else "failed"
                duration = failure.execution_duration_seconds or 0.0
            else:
                outcome = "succeeded"
                duration = 0.0
            if started is not None:
                duration = now - started
            if self._on_phase is not None:
                self._on_phase(_PHASE_OF[from_state], outcome, duration)
        return result
