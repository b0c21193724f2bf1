"""The engine and a suspension that lands while it works (decision 021), on its in-memory seams."""

from __future__ import annotations

from typing import Any

import pygit2
import pytest

from reconciler.desired.loader import load_snapshot
from reconciler.domain import AnyEnvironment
from reconciler.engine.clock import FakeClock
from reconciler.engine.reconcile import Engine, Outcome
from reconciler.engine.suspend import suspend
from reconciler.steps import FakeStepRunner, fails
from reconciler.store import MemoryStore, Observed
from tests.engine.conftest import GitOpsRepo, env_file

pytestmark = pytest.mark.timeout(60)

PHASES: dict[str, Any] = {
    p: [{"name": f"{p} step", "shell": {"run": "true"}}] for p in ("provision", "configure", "release", "run")
}


class SuspendedJustBefore(MemoryStore):
    """A person's `reconcile suspend` lands just before the commit that enters ``state``."""

    def __init__(self, state: str) -> None:
        super().__init__()
        self.state = state
        self.fired = False

    def apply(self, name: str, expected_version: str | None, after: AnyEnvironment, **kw: Any) -> Observed:
        if not self.fired and after.state_name == self.state:
            self.fired = True
            suspend(self, name, reason="hands off", actor="ops@console")
        return super().apply(name, expected_version, after, **kw)


def engine_on(gitops: GitOpsRepo, store: MemoryStore, runner: FakeStepRunner) -> Engine:
    repo = pygit2.Repository(str(gitops.path))
    return Engine(repo=repo, store=store, runner=runner, data_dir=gitops.data, clock=FakeClock())


def test_a_suspend_racing_the_end_of_a_phase_is_kept_and_nothing_further_starts(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    store, runner = SuspendedJustBefore("provisioned"), FakeStepRunner()
    engine = engine_on(gitops, store, runner)

    result = engine.reconcile(load_snapshot(engine.repo, "HEAD"), "web")

    assert store.fired
    assert result.outcome is Outcome.SUSPENDED
    assert "suspended by ops@console" in result.reason and "hands off" in result.reason
    observed = store.read("web")
    assert observed is not None
    assert observed.env.state_name == "provisioned"
    assert observed.env.lock is None
    assert observed.env.suspended is not None and observed.env.suspended.by == "ops@console"
    assert [c.phase for c in runner.calls] == ["provision"]


def test_an_operator_suspended_environment_whose_check_fails_is_reported_not_healed(
    gitops: GitOpsRepo,
) -> None:
    phases = {**PHASES, "check": [{"name": "health", "shell": {"run": "true"}, "reapply": "release"}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    store, runner = MemoryStore(), FakeStepRunner()
    engine = engine_on(gitops, store, runner)
    snap = load_snapshot(engine.repo, "HEAD")
    assert engine.reconcile(snap, "web").outcome is Outcome.CONVERGED
    suspend(store, "web", reason="investigating", actor="ops@console")
    commits = len(store.history())

    runner.script("web", "health", fails(1))
    result = engine.check(snap, "web")

    assert result.outcome is Outcome.SUSPENDED
    assert result.checked
    assert "suspended by ops@console" in result.reason and "not healed" in result.reason
    assert result.transitions == ()
    # Only the finding is recorded (SPEC 3.1): one drift event, no transition.
    history = store.history()
    assert len(history) == commits + 1
    assert history[0].event == "drift" and history[0].from_state == history[0].to_state == "running"
    assert [c.phase for c in runner.calls][-1] == "check"
