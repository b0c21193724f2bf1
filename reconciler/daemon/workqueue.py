"""A work queue keyed by environment name, after client-go's ``workqueue``.

Three sets make its promises: ``_dirty`` (wanted again), ``_processing``
(a worker has it) and ``_ready`` (waiting for a worker, in order). A name
is never handed to two workers at once, and any number of ``add`` calls
while it waits or runs collapse into one more turn. ``add_at`` schedules a
name for later (backoff, a planner's ``retry_at``); the earliest time wins
until the name is handed out.

``accept`` (a daemon's ``--shard``) is the one gate every name passes on its
way in: a name it refuses is never queued, whichever trigger offered it.

Two lanes: a name added with ``background=True`` (a resync, a pass over
everything) is handed out only when no other name is ready, and to at most
``background_limit`` workers at once, so the environments a push concerns
never wait behind a pass over the whole fleet (docs/decisions/014). A name
added normally while it waits in the background lane moves to the front lane.
Lane entries are checked when popped, so moving a name costs nothing.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable


class WorkQueue:
    def __init__(
        self, accept: Callable[[str], bool] | None = None, *, background_limit: int | None = None
    ) -> None:
        self._accept = accept
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._background: deque[str] = deque()
        #: Names wanted again only by the background lane.
        self._low: set[str] = set()
        #: Background names a worker holds now, and how many it may hold at once.
        self._low_busy: set[str] = set()
        self._low_limit = background_limit
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._closed = False

    def add(self, name: str, *, background: bool = False) -> None:
        with self._cond:
            self._add_locked(name, background=background)

    def add_all(self, names: Iterable[str], *, background: bool = False) -> None:
        with self._cond:
            for name in names:
                self._add_locked(name, background=background)

    def accepts(self, name: str) -> bool:
        """Whether ``name`` may be queued at all (``accept``, e.g. this daemon's shard)."""
        return self._accept is None or self._accept(name)

    def _add_locked(self, name: str, *, background: bool = False) -> None:
        if self._closed or not self.accepts(name):
            return
        if name in self._dirty:
            if not background and name in self._low:  # wanted now: to the front lane
                self._low.discard(name)
                if name not in self._processing:
                    self._ready.append(name)
                    self._cond.notify()
            return
        self._dirty.add(name)
        self._due.pop(name, None)
        if background:
            self._low.add(name)
        if name not in self._processing:
            (self._background if background else self._ready).append(name)
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
                name = self._pop_locked()
                if name is not None:
                    self._processing.add(name)
                    self._dirty.discard(name)
                    return name
                self._cond.wait(timeout=wait)

    def _pop_locked(self) -> str | None:
        """The next ready name: the front lane first, then the background lane if it has room."""
        while self._ready:
            name = self._ready.popleft()
            if name in self._dirty and name not in self._low and name not in self._processing:
                return name
        room = self._low_limit is None or len(self._low_busy) < self._low_limit
        while room and self._background:
            name = self._background.popleft()
            if name in self._dirty and name in self._low and name not in self._processing:
                self._low.discard(name)
                self._low_busy.add(name)
                return name
        return None

    def done(self, name: str) -> None:
        """A worker finished ``name``; if it was added meanwhile, it is queued again."""
        with self._cond:
            self._processing.discard(name)
            if self._low_busy:
                self._low_busy.discard(name)
                self._cond.notify()  # room in the background lane
            if name in self._dirty and not self._closed:
                (self._background if name in self._low else self._ready).append(name)
                self._cond.notify()

    def shut_down(self) -> None:
        """Hand out nothing more; workers finish what they hold."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def depth(self) -> int:
        """Names waiting for a worker now, in either lane (not the ones scheduled for later)."""
        with self._cond:
            return len(self._dirty) - sum(1 for n in self._processing if n in self._dirty)

    def background(self) -> int:
        """Names waiting in the background lane."""
        with self._cond:
            return len(self._low) - sum(1 for n in self._processing if n in self._low)

    def scheduled(self) -> int:
        with self._cond:
            return len(self._due)

    def busy(self) -> int:
        with self._cond:
            return len(self._processing)
