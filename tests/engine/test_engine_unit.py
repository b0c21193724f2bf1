"""The engine on its in-memory seams: fake steps, memory store, fake clock. No processes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2
import pytest

from reconciler.desired.loader import load_snapshot
from reconciler.domain import ErrorKind, Phase
from reconciler.domain.dispatch import start_phase
from reconciler.domain.values import Lock, LockHolder
from reconciler.engine.clock import FakeClock
from reconciler.engine.reconcile import Engine, Outcome
from reconciler.steps import FakeResult, FakeStepRunner, fails
from reconciler.store import MemoryStore
from tests.engine.conftest import GitOpsRepo, env_file

if TYPE_CHECKING:
    from reconciler.engine.progress import ProgressEvent

pytestmark = pytest.mark.timeout(60)

PHASES = {
    p: [{"name": f"{p} step", "shell": {"run": "true"}}] for p in ("provision", "configure", "release", "run")
}


def make_engine(gitops: GitOpsRepo, runner: FakeStepRunner, clock: FakeClock) -> tuple[Engine, MemoryStore]:
    store = MemoryStore()
    repo = pygit2.Repository(str(gitops.path))
    return Engine(repo=repo, store=store, runner=runner, data_dir=gitops.data, clock=clock), store


def snapshot(gitops: GitOpsRepo):  # type: ignore[no-untyped-def]
    return load_snapshot(pygit2.Repository(str(gitops.path)), "HEAD")


def test_failures_back_off_exponentially_then_block(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=PHASES, retry={"limit": 2, "backoffSeconds": 10})}
    )
    runner, clock = FakeStepRunner(), FakeClock()
    runner.script("web", "configure step", fails(2), fails(2), fails(2))
    engine, store = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)

    first = engine.reconcile(snap, "web")
    assert first.outcome is Outcome.FAILED
    assert first.failure is not None
    assert first.failure.attempt == 1

    assert engine.reconcile(snap, "web").outcome is Outcome.WAITING  # within 10 s of backoff
    clock.advance(11)
    second = engine.reconcile(snap, "web")
    assert second.failure is not None
    assert second.failure.attempt == 2
    clock.advance(15)
    assert engine.reconcile(snap, "web").outcome is Outcome.WAITING  # the second backoff is 20 s
    clock.advance(10)
    assert engine.reconcile(snap, "web").outcome is Outcome.FAILED
    clock.advance(3600)
    blocked = engine.reconcile(snap, "web")
    assert blocked.outcome is Outcome.BLOCKED
    assert len([c for c in runner.calls if c.phase == "configure"]) == 3

    observed = store.read("web")
    assert observed is not None
    assert observed.env.state_name == "configure_failed"


def test_a_stale_lock_is_recovered_as_interrupted_and_retried_at_once(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    runner, clock = FakeStepRunner(), FakeClock()
    engine, store = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)
    # A reconciler on another host took the lock, then vanished; its lock expired an hour ago.
    from reconciler.domain import Environment

    created = store.apply(
        "web", None, Environment.create("web").into_any(), from_state="none", desired_commit=None
    )
    dead = Lock(
        holder=LockHolder(host="gone-host", pid=4242),
        acquired_at=clock.now().replace(hour=8),
        expires_at=clock.now().replace(hour=9),
    )
    store.apply(
        "web",
        created.version,
        start_phase(created.env, Phase.PROVISION, lock=dead),
        from_state="created",
        desired_commit=None,
    )

    result = engine.reconcile(snap, "web")

    assert result.outcome is Outcome.CONVERGED
    assert result.transitions[0] == ("provisioning", "provision_failed")
    states = [r.to_state for r in reversed(store.history("web"))]
    assert states[:4] == ["created", "provisioning", "provision_failed", "provisioning"]
    failed = next(r for r in store.history("web") if r.to_state == "provision_failed")
    assert "interrupted" in (failed.detail or "")


def test_a_live_lock_makes_others_wait(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    runner, clock = FakeStepRunner(), FakeClock()
    runner.script("web", "provision step", FakeResult(delay=1.0))
    engine, store = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)
    other = Engine(repo=engine.repo, store=store, runner=runner, data_dir=gitops.data, clock=clock)

    worker = threading.Thread(target=engine.reconcile, args=(snap, "web"))
    worker.start()
    try:
        for _ in range(100):
            observed = store.read("web")
            if observed is not None and observed.env.state_name == "provisioning":
                break
            threading.Event().wait(0.01)
        result = other.reconcile(snap, "web")
        assert result.outcome is Outcome.WAITING
        assert "lock" in result.reason or "locked" in result.reason
    finally:
        worker.join()
    assert len([c for c in runner.calls if c.phase == "provision"]) == 1


def test_cancel_records_interrupted_and_it_is_retried_without_counting(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    runner, clock = FakeStepRunner(), FakeClock()
    runner.script("web", "release step", FakeResult(delay=30))
    engine, _store = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)
    threading.Timer(0.3, engine.cancel.set).start()

    result = engine.reconcile(snap, "web")

    assert result.outcome is Outcome.FAILED
    assert result.failure is not None
    assert result.failure.error_kind is ErrorKind.INTERRUPTED
    engine.cancel.clear()
    again = engine.reconcile(snap, "web")  # no backoff for an interruption
    assert again.outcome is Outcome.CONVERGED


def test_a_failing_check_reapplies_from_its_phase_and_a_passing_one_writes_nothing(
    gitops: GitOpsRepo,
) -> None:
    phases = dict(PHASES)
    phases["check"] = [{"name": "health", "shell": {"run": "true"}, "reapply": "release"}]
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    runner, clock = FakeStepRunner(), FakeClock()
    engine, store = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)
    assert engine.reconcile(snap, "web").outcome is Outcome.CONVERGED
    commits = len(store.history())

    passed = engine.check(snap, "web")
    assert passed.outcome is Outcome.CONVERGED
    assert passed.checked
    assert len(store.history()) == commits

    runner.script("web", "health", fails(1))
    result = engine.check(snap, "web")
    assert result.outcome is Outcome.CONVERGED
    assert result.transitions == (
        ("running", "releasing"),
        ("releasing", "released"),
        ("released", "starting"),
        ("starting", "running"),
    )
    # The check, the re-apply, and the check again, which now passes.
    assert [c.phase for c in runner.calls][-4:] == ["check", "release", "run", "check"]


def test_a_check_still_failing_after_the_reapply_is_a_failure(gitops: GitOpsRepo) -> None:
    phases = dict(PHASES)
    phases["check"] = [{"name": "health", "shell": {"run": "true"}}]
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    runner, clock = FakeStepRunner(), FakeClock()
    engine, store = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)
    engine.reconcile(snap, "web")

    runner.script("web", "health", fails(1), fails(1))
    result = engine.check(snap, "web")

    assert result.outcome is Outcome.FAILED
    assert "check still fails after re-applying from run" in result.reason
    assert result.transitions == (("running", "starting"), ("starting", "running"))
    observed = store.read("web")
    assert observed is not None
    assert observed.env.state_name == "running"


def test_an_environment_without_checks_is_not_counted_as_checked(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    engine, _ = make_engine(gitops, FakeStepRunner(), FakeClock())
    snap = snapshot(gitops)
    engine.reconcile(snap, "web")
    result = engine.check(snap, "web")
    assert result.outcome is Outcome.CONVERGED
    assert not result.checked
    assert result.reason == "nothing to check"


def test_corrupt_state_is_reported_and_left_alone(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    runner, clock = FakeStepRunner(), FakeClock()
    engine, store = make_engine(gitops, runner, clock)
    store.put_raw("web", "{not json")

    result = engine.reconcile(snapshot(gitops), "web")

    assert result.outcome is Outcome.CORRUPT
    assert runner.calls == ()


def test_data_dir_is_used_for_checkouts(gitops: GitOpsRepo, tmp_path: Path) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    runner, clock = FakeStepRunner(), FakeClock()
    engine, _ = make_engine(gitops, runner, clock)
    snap = snapshot(gitops)
    engine.reconcile(snap, "web")
    assert (gitops.data / "checkouts" / str(snap.commit) / "environments" / "web.yaml").is_file()


def test_an_observer_hears_transitions_steps_and_output_in_order(gitops: GitOpsRepo) -> None:
    """The engine prints nothing; what a progress view shows comes to its observer, in order."""
    from reconciler.engine.progress import ObserverRelay, StepOutput, StepStarted
    from reconciler.engine.reconcile import TransitionEvent

    phases = {"provision": [{"name": "a", "shell": {"run": "true"}}, {"name": "b", "shell": {"run": "true"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=phases)})
    runner, clock = FakeStepRunner(), FakeClock()
    runner.script("web", "a", FakeResult(output="one\ntwo"))
    runner.script("web", "b", FakeResult(output="three"))
    engine, _ = make_engine(gitops, runner, clock)
    heard: list[ProgressEvent] = []
    relay = ObserverRelay(heard.append)
    engine.observer = relay
    assert engine.reconcile(snapshot(gitops), "web").outcome is Outcome.CONVERGED
    relay.close()

    def said(event: ProgressEvent) -> str:
        if isinstance(event, TransitionEvent):
            return f"{event.from_state} -> {event.to_state}"
        if isinstance(event, StepStarted):
            return f"{event.phase}: {event.step} ({event.index}/{event.count})"
        assert isinstance(event, StepOutput)
        return f"{event.step}: {event.line}"

    assert [said(e) for e in heard] == [
        "none -> created",
        "created -> provisioning",
        "provision: a (1/2)",
        "a: one",
        "a: two",
        "provision: b (2/2)",
        "b: three",
        "provisioning -> provisioned",
    ]


def test_a_stuck_observer_drops_output_lines_and_counts_them_but_never_a_transition() -> None:
    from reconciler.engine.progress import ObserverRelay, StepOutput
    from reconciler.engine.reconcile import TransitionEvent

    release = threading.Event()
    heard: list[ProgressEvent] = []

    def stuck(event: ProgressEvent) -> None:
        release.wait()
        heard.append(event)

    relay = ObserverRelay(stuck, capacity=10)
    for i in range(1000):  # returns although nothing is delivered: the output is never held up
        relay(StepOutput("web", "provision", "boot", str(i)))
    release.set()
    relay(TransitionEvent("web", "provisioning", "provisioned"))
    relay.close()
    lines = [e for e in heard if isinstance(e, StepOutput)]
    assert sum(1 for e in lines if e.line is not None) + sum(e.dropped for e in lines) == 1000
    assert lines[-1].line is None and lines[-1].dropped > 0  # said before the transition that follows
    assert heard[-1] == TransitionEvent("web", "provisioning", "provisioned")
