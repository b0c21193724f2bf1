"""A work queue keyed by environment name, after client-go's ``workqueue``.

Three sets make its promises: ``_dirty`` (wanted again), ``_processing``
(a worker has it) and ``_ready`` (waiting for a worker, in order). A name
is never handed to two workers at once, and any number of ``add`` calls
while it waits or runs collapse into one more turn. ``add_at`` schedules a
name for later (backoff, a planner's ``retry_at``); the earliest time wins
until the name is handed out.

``accept`` (a daemon's ``--shard``) is the one gate every name passes on its
way in: a name it refuses is never queued, whichever trigger offered it.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable


class WorkQueue:
    def __init__(self, accept: Callable[[str], bool] | None = None) -> None:
        self._accept = accept
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._closed = False

    def add(self, name: str) -> None:
        with self._cond:
            self._add_locked(name)

    def accepts(self, name: str) -> bool:
        """Whether ``name`` may be queued at all (``accept``, e.g. this daemon's shard)."""
        return self._accept is None or self._accept(name)

    def _add_locked(self, name: str) -> None:
        if self._closed or name in self._dirty or not self.accepts(name):
            return
        self._dirty.add(name)
        self._due.pop(name, None)
        if name not in self._processing:
            self._ready.append(name)
            self._cond.notify()

    def add_at(self, name: str, when: float) -> None:
        """Add ``name`` at monotonic time ``when`` (sooner if an earlier time or an ``add`` comes)."""
        with self._cond:
            if self._closed or not self.accepts(name):
                return
            current = self._due.get(name)
            if current is not None and current <= when:
                return
            self._due[name] = when
            heapq.heappush(self._heap, (when, name))
            self._cond.notify()

    def forget(self, name: str) -> None:
        """Drop a scheduled re-check of ``name`` (it converged)."""
        with self._cond:
            self._due.pop(name, None)

    def _promote_due_locked(self) -> float | None:
        """Move due names to the ready queue; return seconds until the next one, if any."""
        now = time.monotonic()
        while self._heap:
            when, name = self._heap[0]
            if self._due.get(name) != when:
                heapq.heappop(self._heap)  # superseded
                continue
            if when > now:
                return when - now
            heapq.heappop(self._heap)
            del self._due[name]
            self._add_locked(name)
        return None

    def get(self) -> str | None:
        """The next name for a worker, blocking; ``None`` once the queue is shut down."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                wait = self._promote_due_locked()
                if self._ready:
                    name = self._ready.popleft()
                    self._processing.add(name)
                    self._dirty.discard(name)
                    return name
                self._cond.wait(timeout=wait)

    def done(self, name: str) -> None:
        """A worker finished ``name``; if it was added meanwhile, it is queued again."""
        with self._cond:
            self._processing.discard(name)
            if name in self._dirty and not self._closed:
                self._ready.append(name)
                self._cond.notify()

    def shut_down(self) -> None:
        """Hand out nothing more; workers finish what they hold."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def depth(self) -> int:
        """Names waiting for a worker now (not the ones scheduled for later)."""
        with self._cond:
            return len(self._ready)

    def scheduled(self) -> int:
        with self._cond:
            return len(self._due)

    def busy(self) -> int:
        with self._cond:
            return len(self._processing)
