"""Delivery: one queue and one thread per sink, retries with backoff, never in a reconcile's way.

``publish`` only puts on queues (it never waits, never raises), so a slow or
dead receiver delays nothing but its own sink's later deliveries. A delivery
is retried with exponential backoff until it succeeds, the receiver refuses it
for good (4xx), or ``max_attempts`` is reached. Within a sink the order of
notifications is kept (a retried one holds back the ones after it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.notify.model import Notification
from reconciler.notify.sinks import DeliveryError, PermanentDeliveryError, Sink

logger = logging.getLogger(__name__)

#: What ``reconcile_notifications_total`` counts, by sink and result.
RESULTS = ("delivered", "retried", "failed", "dropped")


@dataclass
class DeliveryStats:
    """Counts of deliveries by (sink, result); read by ``/metrics`` and by tests."""

    _counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    on_count: Callable[[str, str], None] | None = None

    def count(self, sink: str, result: str) -> None:
        with self._lock:
            self._counts[(sink, result)] = self._counts.get((sink, result), 0) + 1
        if self.on_count is not None:
            self.on_count(sink, result)

    def get(self, sink: str, result: str) -> int:
        with self._lock:
            return self._counts.get((sink, result), 0)

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class _SinkWorker:
    def __init__(self, notifier: Notifier, sink: Sink) -> None:
        self.sink = sink
        self.queue: queue.Queue[Notification] = queue.Queue(maxsize=notifier.queue_size)
        self._notifier = notifier
        self.busy = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"notify-{sink.name}", daemon=True)

    def _run(self) -> None:
        n = self._notifier
        while not n.stopping.is_set():
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.busy.set()
            try:
                self._deliver(item)
            finally:
                self.busy.clear()
                self.queue.task_done()

    def _deliver(self, item: Notification) -> None:
        n = self._notifier
        name = self.sink.name
        for attempt in range(1, n.max_attempts + 1):
            try:
                self.sink.deliver(item)
            except PermanentDeliveryError as e:
                n.stats.count(name, "failed")
                logger.warning("notification refused", extra={"sink": name, "id": item.id, "error": str(e)})
                return
            except DeliveryError as e:
                if attempt == n.max_attempts or n.stopping.is_set():
                    n.stats.count(name, "failed")
                    logger.warning(
                        "notification not delivered; giving up",
                        extra={"sink": name, "id": item.id, "attempts": attempt, "error": str(e)},
                    )
                    return
                n.stats.count(name, "retried")
                delay = min(n.max_backoff, n.backoff * 2 ** (attempt - 1))
                logger.info(
                    "notification delivery failed; retrying",
                    extra={"sink": name, "id": item.id, "attempt": attempt, "delay": delay, "error": str(e)},
                )
                if n.stopping.wait(delay):
                    n.stats.count(name, "failed")
                    return
                continue
            except Exception as e:  # a sink bug must not kill its thread
                n.stats.count(name, "failed")
                logger.error("notification sink crashed", extra={"sink": name, "error": repr(e)})
                return
            n.stats.count(name, "delivered")
            return


class Notifier:
    """Sends notifications to sinks, each on a thread and queue of its own."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        stats: DeliveryStats | None = None,
        max_attempts: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        queue_size: int = 10_000,
    ) -> None:
        self.stats = stats or DeliveryStats()
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queue_size = queue_size
        self.stopping = threading.Event()
        self._workers = [_SinkWorker(self, sink) for sink in sinks]
        for worker in self._workers:
            worker.thread.start()

    @property
    def sinks(self) -> list[Sink]:
        return [w.sink for w in self._workers]

    def publish(self, notification: Notification) -> None:
        """Queue ``notification`` for every sink that wants it; never blocks."""
        for worker in self._workers:
            try:
                if not worker.sink.wants(notification):
                    continue
                worker.queue.put_nowait(notification)
            except queue.Full:
                self.stats.count(worker.sink.name, "dropped")
                logger.warning("notification queue full; dropped", extra={"sink": worker.sink.name})

    def idle(self) -> bool:
        return all(w.queue.unfinished_tasks == 0 for w in self._workers)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued delivery to end; ``True`` if they all did."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 0.0) -> bool:
        """Drain for up to ``timeout`` seconds, then stop the threads (undelivered ones are logged)."""
        done = self.drain(timeout)
        pending = sum(w.queue.unfinished_tasks for w in self._workers)
        if pending:
            logger.warning("stopping with notifications undelivered", extra={"pending": pending})
        self.stopping.set()
        return done
