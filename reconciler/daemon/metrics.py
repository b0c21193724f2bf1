"""The daemon's Prometheus metrics, on ``prometheus_client`` with a registry of its own.

A registry per daemon (never the library's global one): tests and embedders
run several daemons in one process. ``DaemonMetrics`` keeps the small face its
callers use (``metrics.reconciles.inc("converged")``, ``metrics.shard.set(1.0,
"0", "2")``), so the library stays an implementation detail
(docs/decisions/007-daemon-server-stack.md, 018-dashboard-and-api.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as _PromCounter
from prometheus_client import Gauge as _PromGauge
from prometheus_client import Histogram as _PromHistogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from reconciler import __version__
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine.reconcile import Engine
from reconciler.store import CorruptState

LabelValues = tuple[str, ...]

#: Content type of ``generate_latest``'s text (the format 0.0.4 Prometheus scrapes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Registry:
    """One daemon's collectors, and their text exposition."""

    def __init__(self) -> None:
        self.collectors = CollectorRegistry(auto_describe=True)

    def exposition(self) -> str:
        return generate_latest(self.collectors).decode()


class Counter:
    """A counter addressed by positional label values: ``inc("phase", "result")``."""

    def __init__(self, registry: Registry, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self._metric = _PromCounter(name, help_text, list(labels), registry=registry.collectors)
        self._labelled = bool(labels)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        (self._metric.labels(*labels) if self._labelled else self._metric).inc(amount)


class Gauge:
    """A gauge set by hand: ``set(value, *labels)``."""

    def __init__(self, registry: Registry, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self._metric = _PromGauge(name, help_text, list(labels), registry=registry.collectors)
        self._labelled = bool(labels)

    def set(self, value: float, *labels: str) -> None:
        (self._metric.labels(*labels) if self._labelled else self._metric).set(value)


class Histogram:
    def __init__(
        self,
        registry: Registry,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self._metric = _PromHistogram(
            name, help_text, list(labels), registry=registry.collectors, buckets=list(buckets)
        )
        self._labelled = bool(labels)

    def observe(self, value: float, *labels: str) -> None:
        (self._metric.labels(*labels) if self._labelled else self._metric).observe(value)


class _ComputedGauge(Collector):
    """A gauge computed when scraped (the fleet's states, the queue's depth): nothing to keep in step."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str],
        collect: Callable[[], Iterable[tuple[LabelValues, float]]],
    ) -> None:
        self._name = name
        self._help = help_text
        self._labels = list(labels)
        self._collect = collect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._help, labels=self._labels)
        for values, number in sorted(self._collect()):
            family.add_metric(list(values), number)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._help, labels=self._labels)


class _BuildInfo(Collector):
    def collect(self) -> Iterator[InfoMetricFamily]:
        yield InfoMetricFamily(
            "reconcile_build", "The running reconciler's version.", {"version": __version__}
        )


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
        ProcessCollector(registry=r.collectors)
        PlatformCollector(registry=r.collectors)
        r.collectors.register(_BuildInfo())
        self.reconciles = Counter(
            r, "reconcile_reconciles_total", "Reconciles of one environment, by outcome.", ["result"]
        )
        self.transitions = Counter(
            r,
            "reconcile_transitions_total",
            "Phases finished, by phase and result (succeeded, failed, interrupted).",
            ["phase", "result"],
        )
        self.phase_duration = Histogram(
            r, "reconcile_phase_duration_seconds", "Wall time of finished phases.", ["phase", "result"]
        )
        self.checks = Counter(r, "reconcile_checks_total", "Drift and health checks, by result.", ["result"])
        self.triggers = Counter(
            r, "reconcile_triggers_total", "What woke the daemon (watch, fetch, webhook, resync).", ["source"]
        )
        self.woken = Counter(
            r,
            "reconcile_woken_total",
            "Environments queued: by a change of the desired state that concerns them (change), "
            "or by a pass over every environment (pass: the start, a resync, a change of everyone's).",
            ["by"],
        )
        self.notifications = Counter(
            r,
            "reconcile_notifications_total",
            "Notification deliveries (SPEC 9), by sink and result: delivered, retried, failed, dropped.",
            ["sink", "result"],
        )
        self.webhooks = Counter(
            r, "reconcile_webhook_deliveries_total", "Webhook deliveries, by HTTP status.", ["status"]
        )
        r.collectors.register(
            _ComputedGauge(
                "reconcile_environments",
                "Environments by observed state, as of the last scrape.",
                ["state"],
                environments,
            )
        )
        r.collectors.register(
            _ComputedGauge("reconcile_queue_depth", "Environments waiting for a worker.", [], queue_depth)
        )
        self.last_fetch = Gauge(
            r,
            "reconcile_last_fetch_success_timestamp_seconds",
            "Unix time of the last successful fetch of desired state (or ref read without a remote).",
        )
        self.fetch_failures = Counter(
            r, "reconcile_fetch_failures_total", "Fetches from the remote that failed."
        )
        self.tip_unverified = Gauge(
            r,
            "reconcile_desired_tip_unverified",
            "1 while the desired branch's tip is not acted on because signatures are required and it "
            "is unsigned or not signed by an allowed key; else 0.",
        )
        self.tip_unverified.set(0.0)
        self.drift = Gauge(
            r,
            "reconcile_drift_status",
            "Per environment, 1 for what its last look for drift found (in_sync, drifted, failing) "
            "and 0 for the other two; absent until it was looked at.",
            ["environment", "status"],
        )
        self.check_duration = Histogram(
            r,
            "reconcile_check_duration_seconds",
            "Wall time of one look for drift of one environment (its probes and check steps), "
            "by what it found.",
            ["status"],
        )
        self.shard = Gauge(
            r,
            "reconcile_shard_info",
            "Always 1: this daemon's --shard (index 0 of count 1 without --shard: any environment).",
            ["index", "count"],
        )

    def observe_check(self, environment: str, status: str, seconds: float) -> None:
        """One look for drift of ``environment`` found ``status`` in ``seconds``."""
        self.check_duration.observe(seconds, status)
        for each in DRIFT_STATUSES:
            self.drift.set(1.0 if each == status else 0.0, environment, each)


class _FleetLike(Protocol):
    def current(self) -> tuple[DesiredSnapshot, Engine] | None: ...


def serve_metrics(fleet: _FleetLike) -> Registry:
    """``reconcile serve``'s ``/metrics``: the build, the process, the fleet's states (nothing reconciles)."""
    r = Registry()
    ProcessCollector(registry=r.collectors)
    PlatformCollector(registry=r.collectors)
    r.collectors.register(_BuildInfo())

    def environments() -> Iterable[tuple[LabelValues, float]]:
        current = fleet.current()
        if current is None:
            return []
        counts: dict[str, int] = {}
        for item in current[1].store.read_all().values():
            state = "corrupt" if isinstance(item, CorruptState) else item.env.state_name
            counts[state] = counts.get(state, 0) + 1
        return [((state,), float(n)) for state, n in counts.items()]

    r.collectors.register(
        _ComputedGauge(
            "reconcile_environments",
            "Environments by observed state, as of the last scrape.",
            ["state"],
            environments,
        )
    )
    return r
