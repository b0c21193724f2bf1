"""``reconcile apply``'s live progress, like terraform's (issue 15).

Three views of the engine's events (``reconciler.engine.progress``):

- on a terminal, a live block with one line per running environment: its
  state, its step, the time elapsed and the last line the step wrote, with
  each transition printed above it;
- elsewhere (a pipe, a CI log), one line per transition, and a
  ``NAME: still running [30s elapsed]`` line every ``RECONCILE_PROGRESS_INTERVAL``
  seconds (default 10) for each phase still running;
- with ``--format json``, one JSON object per line and event (``transition``,
  ``step_output``, ``result``), each with ``"formatVersion": 1``, flushed as it
  happens.

Every view is fed through an ``ObserverRelay``, so a slow terminal or a pipe
nobody reads never slows a step down.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reconciler.cli.output import console as make_console
from reconciler.domain.states import IN_PROGRESS
from reconciler.domain.values import format_timestamp
from reconciler.engine.progress import (
    EnvironmentFinished,
    ObserverRelay,
    ProgressObserver,
    StepOutput,
    StepStarted,
)
from reconciler.engine.reconcile import TransitionEvent
from reconciler.views import FORMAT_VERSION, failure_view

if TYPE_CHECKING:
    from reconciler.engine.progress import ProgressEvent

logger = logging.getLogger(__name__)

#: Seconds between two ``still running`` lines of one phase (terraform's 10 s); the variable is
#: for tests and for CI logs that want fewer lines.
INTERVAL_ENV = "RECONCILE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0
#: Running environments the live block shows; the others are counted on one line.
LIVE_ROWS = 20
#: In-progress state -> the phase it runs (``releasing`` -> ``release``).
_IN_PROGRESS = {state.name: str(phase) for phase, state in IN_PROGRESS.items()}


def progress_interval(environ: Mapping[str, str] = os.environ) -> float:
    """``RECONCILE_PROGRESS_INTERVAL`` in seconds (default 10); a bad value is warned about and ignored."""
    raw = environ.get(INTERVAL_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 86400:
        logger.warning(
            "ignoring %s=%r: expected seconds between 0.05 and 86400; using %g",
            INTERVAL_ENV,
            raw,
            DEFAULT_INTERVAL,
        )
        return DEFAULT_INTERVAL
    return value


@dataclass
class _Running:
    """A phase in progress, as the views show it."""

    state: str
    started: float
    step: str = ""
    last_line: str = ""
    #: When the next ``still running`` line is due (line view).
    due: float = 0.0


class _Board:
    """Which environments are in an in-progress state, with their step and last output line."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, _Running] = {}
        self.finished = 0

    def update(self, event: ProgressEvent, interval: float) -> None:
        with self.lock:
            if isinstance(event, TransitionEvent):
                if event.to_state in _IN_PROGRESS:
                    now = time.monotonic()
                    self.running[event.environment] = _Running(event.to_state, now, due=now + interval)
                else:
                    self.running.pop(event.environment, None)
            elif isinstance(event, StepStarted):
                current = self.running.get(event.environment)
                if current is not None:
                    label = event.step if event.count == 1 else f"{event.step} ({event.index}/{event.count})"
                    current.step, current.last_line = label, ""
            elif isinstance(event, StepOutput):
                current = self.running.get(event.environment)
                if current is not None and event.line is not None and event.line.strip():
                    current.last_line = event.line.strip()
            else:
                self.running.pop(event.result.name, None)
                self.finished += 1


def _elapsed(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


# -- a pipe or a log file ---------------------------------------------------------------


class LineView:
    """One line per transition; ``NAME: still running [10s elapsed]`` for each long phase."""

    def __init__(self, out: TextIO, interval: float) -> None:
        self.out = out
        self.interval = interval
        self.board = _Board()
        self._wake = threading.Condition()
        self._closed = False
        self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
        self._ticker.start()

    def __call__(self, event: ProgressEvent) -> None:
        self.board.update(event, self.interval)
        if isinstance(event, TransitionEvent):
            self._write(f"{event.environment}: {event.from_state} -> {event.to_state}")
            with self._wake:
                self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._ticker.join()

    def _write(self, line: str) -> None:
        with self.board.lock:  # one line at a time from the relay and the ticker
            self.out.write(line + "\n")
            self.out.flush()

    def _tick(self) -> None:
        while True:
            with self._wake:
                if self._closed:
                    return
                with self.board.lock:
                    dues = [r.due for r in self.board.running.values()]
                wait = min(dues) - time.monotonic() if dues else None
                if wait is None or wait > 0:
                    self._wake.wait(wait)
                    continue
            now = time.monotonic()
            lines = []
            with self.board.lock:
                for name, run in sorted(self.board.running.items()):
                    if run.due <= now:
                        doing = f" ({run.step})" if run.step else ""
                        lines.append(f"{name}: still running [{_elapsed(now - run.started)} elapsed]{doing}")
                        while run.due <= now:
                            run.due += self.interval
            for line in lines:
                self._write(line)


# -- a terminal -------------------------------------------------------------------------


class LiveView:
    """A rich ``Live`` block of the running environments; transitions scroll above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.board = _Board()
        self.live = Live(console=console, refresh_per_second=4, transient=True, get_renderable=self._render)
        self.live.start()

    def __call__(self, event: ProgressEvent) -> None:
        self.board.update(event, DEFAULT_INTERVAL)
        if isinstance(event, TransitionEvent):
            self.live.console.print(
                f"[bold]{escape(event.environment)}[/bold]: {event.from_state} → {event.to_state}",
                highlight=False,
            )

    def close(self) -> None:
        self.live.stop()

    def _render(self) -> RenderableType:
        table = Table.grid(padding=(0, 2))
        for _ in range(4):
            table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, overflow="ellipsis", style="dim")
        now = time.monotonic()
        with self.board.lock:
            running = sorted(self.board.running.items())
            finished = self.board.finished
        for name, run in running[:LIVE_ROWS]:
            table.add_row(
                Text(name, style="bold"),
                Text(_IN_PROGRESS.get(run.state, run.state), style="cyan"),
                Text(run.step or "-"),
                Text(_elapsed(now - run.started)),
                Text(run.last_line),
            )
        more = len(running) - LIVE_ROWS
        footer = f"{len(running)} running, {finished} done" + (
            f" ({more} more not shown)" if more > 0 else ""
        )
        return Group(table, Text(footer, style="dim"))


# -- JSON lines -------------------------------------------------------------------------


class JsonLinesView:
    """One JSON object per line and event, flushed at once (SPEC 5)."""

    def __init__(self, out: TextIO, desired_commit: str | None) -> None:
        self.out = out
        self.desired_commit = desired_commit

    def __call__(self, event: ProgressEvent) -> None:
        data = self._document(event)
        if data is None:
            return
        self.out.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass

    def _document(self, event: ProgressEvent) -> dict[str, Any] | None:
        at = format_timestamp(datetime.now(UTC))
        head: dict[str, Any] = {"formatVersion": FORMAT_VERSION}
        if isinstance(event, TransitionEvent):
            return {
                **head,
                "event": "transition",
                "environment": event.environment,
                "from": event.from_state,
                "to": event.to_state,
                "detail": event.detail,
                "at": at,
            }
        if isinstance(event, StepOutput):
            return {
                **head,
                "event": "step_output",
                "environment": event.environment,
                "phase": event.phase,
                "step": event.step,
                "line": event.line,
                "droppedBefore": event.dropped,
                "at": at,
            }
        if isinstance(event, EnvironmentFinished):
            r = event.result
            return {
                **head,
                "event": "result",
                "environment": r.name,
                "outcome": str(r.outcome),
                "state": r.state,
                "reason": r.reason,
                "desiredCommit": self.desired_commit,
                "transitions": [{"from": a, "to": b} for a, b in r.transitions],
                "failure": failure_view(r.failure) if r.failure else None,
                "at": at,
            }
        return None  # a step starting is shown by the views that draw steps


# -- choosing one -----------------------------------------------------------------------


@contextmanager
def progress_view(
    *, json_lines: bool, desired_commit: str | None, environ: Mapping[str, str] = os.environ
) -> Iterator[ProgressObserver]:
    """The view ``apply`` shows, behind a relay; every event is delivered before it closes."""
    view: LineView | LiveView | JsonLinesView
    console = make_console(stderr=True, soft_wrap=True)  # --no-color and NO_COLOR
    if json_lines:
        view = JsonLinesView(sys.stdout, desired_commit)
    elif console.is_terminal:
        view = LiveView(console)
    else:
        view = LineView(sys.stdout, progress_interval(environ))
    relay = ObserverRelay(view)
    try:
        yield relay
    finally:
        relay.close()
        view.close()
