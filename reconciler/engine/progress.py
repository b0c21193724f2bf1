"""What a reconcile is doing, as events an observer may show: transitions, steps, output, results.

The engine never prints. It hands events to a ``ProgressObserver``; the CLI
draws them (a live terminal view, one line per transition, or JSON lines).
A step's output lines arrive on the thread that reads the step's pipes, so an
observer that is slow (a terminal, a pipe nobody reads) must not be called
there: ``ObserverRelay`` queues events, bounded, and delivers them in order
on a thread of its own. When its queue is full, output lines are dropped
(and counted) rather than making the step wait; transitions and results are
never dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing import TypeAlias

    from reconciler.engine.reconcile import ReconcileResult, TransitionEvent

logger = logging.getLogger(__name__)

#: Events the relay holds before it drops output lines.
RELAY_CAPACITY = 2048


@dataclass(frozen=True)
class StepStarted:
    """A phase's step is about to run."""

    environment: str
    phase: str
    #: The step's one-line label (``shell ./scripts/release.sh``).
    step: str
    #: 1-based position and the phase's number of steps.
    index: int
    count: int
    at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class StepOutput:
    """One line a running step wrote (redacted, as its phase log keeps it)."""

    environment: str
    phase: str
    step: str
    #: ``None`` only in the event that reports lines dropped at the end of a step's output.
    line: str | None
    #: Lines of this run dropped just before this one because the observer fell behind.
    dropped: int = 0


@dataclass(frozen=True)
class EnvironmentFinished:
    """An environment's part of the run ended (converged, failed, blocked…)."""

    result: ReconcileResult


if TYPE_CHECKING:
    #: Everything an observer hears (``TransitionEvent`` lives beside the engine that commits it).
    ProgressEvent: TypeAlias = TransitionEvent | StepStarted | StepOutput | EnvironmentFinished


class ProgressObserver(Protocol):
    """Receives every event, in the order it happened."""

    def __call__(self, event: ProgressEvent) -> None: ...


_CLOSE = object()


class ObserverRelay:
    """A ``ProgressObserver`` that passes events on to another one from its own thread.

    A call never blocks for an output line: with ``capacity`` events waiting,
    the line is dropped and counted, and the next line that fits says how many
    were (or, when none comes, a ``StepOutput`` without a line just before the
    environment's next event). Other events wait for room, so none is lost and
    the order holds.
    """

    def __init__(self, target: ProgressObserver, capacity: int = RELAY_CAPACITY) -> None:
        self._target = target
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        #: Per environment: how many of its lines were dropped since the last one queued (as ``dropped``).
        self._dropped: dict[str, StepOutput] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._deliver, name="progress", daemon=True)
        self._thread.start()

    def __call__(self, event: ProgressEvent) -> None:
        if not isinstance(event, StepOutput):
            name = event.result.name if isinstance(event, EnvironmentFinished) else event.environment
            with self._lock:
                last = self._dropped.pop(name, None)
            if last is not None:  # say how many lines were dropped before what comes next
                self._queue.put(StepOutput(last.environment, last.phase, last.step, None, last.dropped))
            self._queue.put(event)
            return
        with self._lock:
            before = self._dropped.pop(event.environment, None)
            if before is not None:
                event = StepOutput(event.environment, event.phase, event.step, event.line, before.dropped)
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._dropped[event.environment] = StepOutput(
                    event.environment, event.phase, event.step, None, event.dropped + 1
                )

    def close(self) -> None:
        """Deliver what is queued, then stop the thread."""
        self._queue.put(_CLOSE)
        self._thread.join()

    def _deliver(self) -> None:
        failed = False
        while True:
            event = self._queue.get()
            if event is _CLOSE:
                return
            if failed:
                continue  # keep draining, so that nobody waits for room
            try:
                self._target(event)  # type: ignore[arg-type]  # anything but _CLOSE is an event
            except OSError as e:  # a closed pipe (`apply | head`): the run goes on unwatched
                logger.warning("progress display stopped; the run goes on without it: %s", e)
                failed = True
            except Exception:  # a bug in a view must not stop the reconcile it watches either
                logger.exception("progress display failed; the run goes on without it")
                failed = True
