"""Drift in the engine on its in-memory seams: what is recorded, when, and what is healed."""

from __future__ import annotations

import pygit2
import pytest

from reconciler.desired.loader import load_snapshot
from reconciler.domain import DriftStatus
from reconciler.engine.clock import FakeClock
from reconciler.engine.reconcile import Engine, Outcome
from reconciler.steps import FakeResult, FakeStepRunner, fails
from reconciler.store import MemoryStore
from tests.engine.conftest import GitOpsRepo, env_file

pytestmark = pytest.mark.timeout(60)

PHASES = {
    p: [{"name": f"{p} step", "shell": {"run": "true", "check": "true"}}]
    for p in ("provision", "configure", "release", "run")
}


def setup(gitops: GitOpsRepo, **spec: object) -> tuple[Engine, MemoryStore, FakeStepRunner, FakeClock]:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES, **spec)})
    runner, clock, store = FakeStepRunner(), FakeClock(), MemoryStore()
    engine = Engine(
        repo=pygit2.Repository(str(gitops.path)),
        store=store,
        runner=runner,
        data_dir=gitops.data,
        clock=clock,
    )
    assert engine.reconcile(snap(gitops), "web").outcome is Outcome.CONVERGED
    return engine, store, runner, clock


def snap(gitops: GitOpsRepo):  # type: ignore[no-untyped-def]
    return load_snapshot(pygit2.Repository(str(gitops.path)), "HEAD")


def events(store: MemoryStore) -> list[str]:
    return [r.event for r in reversed(store.history())]


def test_drift_is_recorded_once_with_since_kept_and_healed_from_its_phase(gitops: GitOpsRepo) -> None:
    engine, store, runner, clock = setup(gitops)
    converged = len(events(store))
    assert engine.check(snap(gitops), "web").found is DriftStatus.IN_SYNC
    assert len(events(store)) == converged  # in sync from the start: nothing written

    runner.script("web", "configure step", FakeResult(drifted=True, summary="check exited 1"))
    found = engine.check(snap(gitops), "web", heal=False)
    assert found.outcome is Outcome.DRIFTED
    assert found.drift is not None
    assert (found.drift.status, found.drift.phase, found.drift.step) == (
        "drifted",
        "configure",
        "configure step",
    )
    assert events(store)[converged:] == ["drift"]
    (record,) = [r for r in store.history() if r.event == "drift"]
    assert record.from_state == record.to_state == "running"
    assert record.detail is not None
    assert "Step: configure step" in record.detail

    clock.advance(60)
    runner.script("web", "configure step", FakeResult(drifted=True, summary="check exited 1"))
    again = engine.check(snap(gitops), "web", heal=False)
    assert again.drift is not None
    assert again.drift.since == found.drift.since
    assert events(store)[converged:] == ["drift"]  # the same finding writes nothing

    runner.script("web", "configure step", FakeResult(drifted=True))
    healed = engine.check(snap(gitops), "web")
    assert healed.outcome is Outcome.CONVERGED
    assert healed.found is DriftStatus.DRIFTED
    assert healed.transitions[0] == ("running", "configuring")
    assert healed.transitions[-1] == ("starting", "running")
    assert events(store)[-1] == "in-sync"
    heal_commits = [r for r in store.history() if r.event == "transition"][: len(healed.transitions)]
    assert all(r.detail and "Healing drift: drifted at configure" in r.detail for r in heal_commits)
    assert all(r.actor == "reconciler" for r in heal_commits)


def test_a_look_that_cannot_be_made_is_failing_and_not_healed(gitops: GitOpsRepo) -> None:
    engine, _store, runner, _clock = setup(gitops)
    runner.script("web", "provision step", fails(1, summary="terraform plan exited 1"))
    result = engine.check(snap(gitops), "web")
    assert result.outcome is Outcome.DRIFTED
    assert not result.transitions
    assert result.drift is not None
    assert result.drift.status is DriftStatus.FAILING
    assert result.drift.summary == "could not look for drift: terraform plan exited 1"


def test_a_heal_that_does_not_cure_is_a_failure_without_a_failed_state(gitops: GitOpsRepo) -> None:
    engine, store, runner, _clock = setup(gitops)
    runner.script("web", "release step", FakeResult(drifted=True), FakeResult(), FakeResult(drifted=True))
    result = engine.check(snap(gitops), "web")
    assert result.outcome is Outcome.FAILED
    assert result.failure is None
    assert "still drifted after re-applying from release" in result.reason
    observed = store.read("web")
    assert observed is not None
    assert observed.env.state_name == "running"
    assert observed.env.drift is not None
    assert observed.env.drift.status is DriftStatus.DRIFTED


def test_detect_false_runs_only_the_check_steps(gitops: GitOpsRepo) -> None:
    engine, _store, runner, _clock = setup(gitops, drift={"detect": False})
    before = len(runner.calls)
    result = engine.check(snap(gitops), "web")
    assert result.reason == "nothing to check"
    assert len(runner.calls) == before
