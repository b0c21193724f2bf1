"""The daemon's pure parts: durations, the keyed work queue, webhook signatures, the metrics text."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from reconciler.daemon.durations import parse_duration
from reconciler.daemon.metrics import Counter, DaemonMetrics, Histogram, Registry
from reconciler.daemon.webhook import signature_for, verify_delivery
from reconciler.daemon.workqueue import WorkQueue
from reconciler.engine.orphans import kill_orphaned_steps, orphaned_groups

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), ("10", 10), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5d", "-1s", "1 2"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 250ms, 30s, 5m, 1h"):
        parse_duration(text)


def test_a_burst_of_adds_while_queued_is_one_turn() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add("web")
    q.add("db")
    assert q.depth() == 2
    assert q.get() == "web"
    assert q.get() == "db"
    assert q.depth() == 0


def test_adds_while_running_are_one_more_turn_after_done_never_two_workers() -> None:
    q = WorkQueue()
    q.add("web")
    assert q.get() == "web"
    q.add("web")
    q.add("web")
    assert q.depth() == 0, "not handed out while a worker holds it"
    q.done("web")
    assert q.depth() == 1
    assert q.get() == "web"
    q.done("web")
    assert q.depth() == 0


def test_many_workers_never_hold_one_name_at_once() -> None:
    q = WorkQueue()
    holding: set[str] = set()
    guard = threading.Lock()
    overlaps: list[str] = []
    turns: list[str] = []

    def worker() -> None:
        while (name := q.get()) is not None:
            with guard:
                if name in holding:
                    overlaps.append(name)
                holding.add(name)
                turns.append(name)
            time.sleep(0.002)
            with guard:
                holding.discard(name)
            q.done(name)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(400):
        q.add(f"env-{i % 4}")
    time.sleep(0.3)
    q.shut_down()
    for t in threads:
        t.join(timeout=5)
    assert overlaps == []
    assert 4 <= len(turns) < 400


def test_add_at_delays_and_an_earlier_time_or_add_wins() -> None:
    q = WorkQueue()
    q.add_at("web", time.monotonic() + 0.2)
    q.add_at("web", time.monotonic() + 5)
    t0 = time.monotonic()
    assert q.get() == "web"
    assert 0.15 <= time.monotonic() - t0 < 2
    q.done("web")
    q.add_at("db", time.monotonic() + 10)
    q.add("db")
    assert q.get() == "db"
    q.done("db")
    assert q.scheduled() == 0


def test_forget_drops_a_scheduled_recheck_and_shut_down_releases_workers() -> None:
    q = WorkQueue()
    q.add_at("web", time.monotonic() + 0.05)
    q.forget("web")
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.2)
    q.shut_down()
    t.join(timeout=2)
    assert got == [None]


def test_webhook_verdicts() -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = signature_for("k", body)
    assert verify_delivery(None, good, "push", body).status == 503
    assert verify_delivery("", good, "push", body).status == 503
    assert verify_delivery("k", None, "push", body).status == 403
    assert verify_delivery("k", signature_for("other", body), "push", body).status == 403
    assert verify_delivery("k", good, "push", body + b" ").status == 403
    accepted = verify_delivery("k", good, "push", body)
    assert (accepted.status, accepted.trigger) == (202, True)
    assert not verify_delivery("k", good, "ping", body).trigger
    assert not verify_delivery("k", good, "issues", body).trigger


def test_metrics_text_format() -> None:
    r = Registry()
    c = Counter(r, "x_total", "Things.", ["kind"])
    h = Histogram(r, "d_seconds", "Durations.", ["phase"], buckets=(1, 10))
    c.inc('a"b\n')
    h.observe(0.5, "run")
    h.observe(5, "run")
    text = r.exposition()
    assert "# TYPE x_total counter" in text
    assert 'x_total{kind="a\\"b\\n"} 1.0' in text
    assert 'd_seconds_bucket{le="1.0",phase="run"} 1.0' in text
    assert 'd_seconds_bucket{le="10.0",phase="run"} 2.0' in text
    assert 'd_seconds_bucket{le="+Inf",phase="run"} 2.0' in text
    assert 'd_seconds_sum{phase="run"} 5.5' in text
    assert 'd_seconds_count{phase="run"} 2.0' in text


def test_each_daemon_has_its_own_registry_with_build_and_process_metrics() -> None:
    """Two daemons in one process: no duplicate-registration error, no counts shared."""
    first = DaemonMetrics(environments=lambda: [(("running",), 3.0)], queue_depth=lambda: [((), 2.0)])
    second = DaemonMetrics(environments=lambda: [], queue_depth=lambda: [((), 0.0)])
    first.reconciles.inc("converged")
    text = first.registry.exposition()
    assert 'reconcile_reconciles_total{result="converged"} 1.0' in text
    assert 'reconcile_environments{state="running"} 3.0' in text
    assert "reconcile_queue_depth 2.0" in text
    assert 'reconcile_build_info{version="' in text
    assert "process_resident_memory_bytes " in text
    assert "reconcile_reconciles_total{" not in second.registry.exposition()


def test_orphan_search_finds_only_the_interrupted_phases_processes(tmp_path: Path) -> None:
    """A service an earlier, completed phase started carries another lock id: it is never killed."""
    data = tmp_path / "data"

    def detached(lock_id: str) -> int:
        env = {
            **os.environ,
            "RECONCILE_ENVIRONMENT": "web",
            "RECONCILE_DATA_DIR": str((data / "web").absolute()),
            "RECONCILE_LOCK_ID": lock_id,
        }
        out = subprocess.run(
            ["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        pid = int(out.stdout.strip())
        # `echo $!` may run before setsid has moved the child into its own session.
        deadline = time.monotonic() + 10
        while os.getpgid(pid) != pid:
            assert time.monotonic() < deadline, "setsid never moved the child into its own session"
            time.sleep(0.01)
        return pid

    service = detached("lock-of-an-earlier-run-phase")
    leftover = detached("lock-of-the-interrupted-phase")
    try:
        groups = orphaned_groups("web", "lock-of-the-interrupted-phase")
        assert os.getpgid(leftover) in groups
        assert os.getpgid(service) not in groups
        assert kill_orphaned_steps("web", "lock-of-the-interrupted-phase", grace=1.0) == 1
        os.kill(service, 0)  # still alive
    finally:
        for pid in (service, leftover):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def test_orphan_search_never_kills_the_group_that_started_a_marked_process() -> None:
    """A marked process still in our own group, or in a group a live unmarked shell leads, is not an
    orphan: killing its group would kill the test runner, make, or the CI job that started it."""
    markers = "RECONCILE_ENVIRONMENT=web RECONCILE_LOCK_ID=lock-of-the-interrupted-phase"

    def background(script: str) -> int:
        argv = ["sh", "-c", f"{script} >/dev/null 2>&1 & echo $!"]
        out = subprocess.run(argv, check=True, capture_output=True, text=True)
        return int(out.stdout.strip())

    # Orphaned (its shell has exited) but never left our process group.
    in_our_group = background(f"{markers} sleep 60")
    # A group led by an unmarked process that is not our child, with a marked process in it.
    leader = background(f'setsid sh -c "{markers} sleep 60 & exec sleep 60"')
    try:
        deadline = time.monotonic() + 10
        while not (_in_group(leader, leader) and _members(leader) >= 2):
            assert time.monotonic() < deadline, "the unmarked leader never started its marked child"
            time.sleep(0.01)
        assert os.getpgid(in_our_group) == os.getpgrp()
        assert orphaned_groups("web", "lock-of-the-interrupted-phase") == set()
        assert kill_orphaned_steps("web", "lock-of-the-interrupted-phase", grace=0.2) == 0
        os.kill(in_our_group, 0)  # still alive, and so are we
        os.killpg(leader, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(in_our_group, 9)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, 9)


def _in_group(pid: int, pgid: int) -> bool:
    try:
        return os.getpgid(pid) == pgid
    except ProcessLookupError:
        return False


def _members(pgid: int) -> int:
    return sum(1 for p in os.listdir("/proc") if p.isdigit() and _in_group(int(p), pgid))


def test_a_daemon_never_loads_the_native_yaml_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its module would stay resident (~5 MiB) for a quarter second saved once at start-up (decision 027)."""
    from reconciler.daemon import footprint
    from reconciler.desired import yamlio

    monkeypatch.setattr(yamlio, "native", True)
    footprint.limit_arenas()
    assert yamlio.native_parser() is None
    assert yamlio.load("a: 1\n") == {"a": 1}, "files still load, by the C path"
