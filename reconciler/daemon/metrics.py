"""A small Prometheus registry written by hand (text exposition format 0.0.4).

Hand-written rather than ``prometheus_client``: the daemon needs counters,
gauges and one histogram, and a dependency for that is more to audit than
the hundred lines here (docs/decisions/007-daemon-server-stack.md).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

LabelValues = tuple[str, ...]

DEFAULT_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A gauge set by hand, or computed when scraped (``collect``)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        collect: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}
        self._collect = collect

    def set(self, value: float, *labels: str) -> None:
        with self._lock:
            self._values[labels] = value

    def render(self) -> list[str]:
        if self._collect is not None:
            items = sorted(self._collect())
        else:
            with self._lock:
                items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[labels] = self._sums.get(labels, 0.0) + value

    def render(self) -> list[str]:
        lines: list[str] = []
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {count}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {counts[-1]}")
        return lines


M = TypeVar("M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def exposition(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header()
            lines += metric.render()
        return "\n".join(lines) + "\n"


#: ``reconcile_drift_status``'s values of ``status`` (SPEC 3.1).
DRIFT_STATUSES = ("in_sync", "drifted", "failing")


class DaemonMetrics:
    """The names ``/metrics`` serves (documented in docs/operations.md)."""

    def __init__(
        self,
        environments: Callable[[], Iterable[tuple[LabelValues, float]]],
        queue_depth: Callable[[], Iterable[tuple[LabelValues, float]]],
    ) -> None:
        r = self.registry = Registry()
        self.reconciles = r.register(
            Counter("reconcile_reconciles_total", "Reconciles of one environment, by outcome.", ["result"])
        )
        self.transitions = r.register(
            Counter(
                "reconcile_transitions_total",
                "Phases finished, by phase and result (succeeded, failed, interrupted).",
                ["phase", "result"],
            )
        )
        self.phase_duration = r.register(
            Histogram(
                "reconcile_phase_duration_seconds", "Wall time of finished phases.", ["phase", "result"]
            )
        )
        self.checks = r.register(
            Counter("reconcile_checks_total", "Drift and health checks, by result.", ["result"])
        )
        self.triggers = r.register(
            Counter(
                "reconcile_triggers_total",
                "What woke the daemon (watch, fetch, webhook, resync).",
                ["source"],
            )
        )
        self.woken = r.register(
            Counter(
                "reconcile_woken_total",
                "Environments queued: by a change of the desired state that concerns them (change), "
                "or by a pass over every environment (pass: the start, a resync, a change of everyone's).",
                ["by"],
            )
        )
        self.notifications = r.register(
            Counter(
                "reconcile_notifications_total",
                "Notification deliveries (SPEC 9), by sink and result: delivered, retried, failed, dropped.",
                ["sink", "result"],
            )
        )
        self.webhooks = r.register(
            Counter("reconcile_webhook_deliveries_total", "Webhook deliveries, by HTTP status.", ["status"])
        )
        self.environments = r.register(
            Gauge(
                "reconcile_environments",
                "Environments by observed state, as of the last scrape.",
                ["state"],
                collect=environments,
            )
        )
        self.queue_depth = r.register(
            Gauge("reconcile_queue_depth", "Environments waiting for a worker.", collect=queue_depth)
        )
        self.last_fetch = r.register(
            Gauge(
                "reconcile_last_fetch_success_timestamp_seconds",
                "Unix time of the last successful fetch of desired state (or ref read without a remote).",
            )
        )
        self.fetch_failures = r.register(
            Counter("reconcile_fetch_failures_total", "Fetches from the remote that failed.")
        )
        self.tip_unverified = r.register(
            Gauge(
                "reconcile_desired_tip_unverified",
                "1 while the desired branch's tip is not acted on because signatures are required and it "
                "is unsigned or not signed by an allowed key; else 0.",
            )
        )
        self.tip_unverified.set(0.0)
        self.drift = r.register(
            Gauge(
                "reconcile_drift_status",
                "Per environment, 1 for what its last look for drift found (in_sync, drifted, failing) "
                "and 0 for the other two; absent until it was looked at.",
                ["environment", "status"],
            )
        )
        self.check_duration = r.register(
            Histogram(
                "reconcile_check_duration_seconds",
                "Wall time of one look for drift of one environment (its probes and check steps), "
                "by what it found.",
                ["status"],
            )
        )
        self.shard = r.register(
            Gauge(
                "reconcile_shard_info",
                "Always 1: this daemon's --shard (index 0 of count 1 without --shard: any environment).",
                ["index", "count"],
            )
        )

    def observe_check(self, environment: str, status: str, seconds: float) -> None:
        """One look for drift of ``environment`` found ``status`` in ``seconds``."""
        self.check_duration.observe(seconds, status)
        for each in DRIFT_STATUSES:
            self.drift.set(1.0 if each == status else 0.0, environment, each)
