"""SPEC 7: an unexpected error while a phase runs ends it as failed, with a trace, and releases the lock.

The values here are ones the loader refuses (or may one day refuse), so each
test builds the desired state in-process and changes it after loading, as a
bug or an unbounded value would reach the engine; the state store is the
real state branch and the steps are real processes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from reconciler.desired.models import Step
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.domain import Phase
from reconciler.engine.apply import apply_environments
from reconciler.engine.reconcile import Outcome
from reconciler.engine.workspace import open_workspace
from reconciler.steps import LocalStepRunner, StepContext, StepOutcome
from reconciler.store import LostRace, StoreError
from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

pytestmark = pytest.mark.timeout(120)


def _with_shell(snapshot: DesiredSnapshot, name: str, phase: Phase, **update: Any) -> DesiredSnapshot:
    """``snapshot`` with the first step of ``name``'s ``phase`` changed, unvalidated."""
    env = snapshot.environments[name]
    first, *rest = env.steps(phase)
    assert first.shell is not None
    step = first.model_copy(update={"shell": first.shell.model_copy(update=update)})
    changed = dataclasses.replace(env, phases=MappingProxyType({**env.phases, phase: (step, *rest)}))
    return dataclasses.replace(
        snapshot, environments=MappingProxyType({**snapshot.environments, name: changed})
    )


def _with_vars(snapshot: DesiredSnapshot, name: str, **values: Any) -> DesiredSnapshot:
    env = snapshot.environments[name]
    changed = dataclasses.replace(env, vars=MappingProxyType({**env.vars, **values}))
    return dataclasses.replace(
        snapshot, environments=MappingProxyType({**snapshot.environments, name: changed})
    )


TAMPERINGS: dict[str, Callable[[DesiredSnapshot], DesiredSnapshot]] = {
    "an '=' in an env key": lambda s: _with_shell(s, "web", Phase.PROVISION, env={"A=B": "x"}),
    "a NUL byte in an env value": lambda s: _with_shell(s, "web", Phase.PROVISION, env={"A": "x\0y"}),
    "a NUL byte in a var": lambda s: _with_vars(s, "web", token="x\0y"),
}


def _state(gitops: GitOpsRepo, name: str) -> dict[str, Any]:
    """``state.json`` as plain git shows it."""
    result: dict[str, Any] = json.loads(git(gitops.path, "show", f"reconciler/state:{name}/state.json"))
    return result


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_an_unexpected_error_in_a_step_fails_the_phase_and_releases_the_lock(
    gitops: GitOpsRepo, tmp_path: Path, case: str
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "environments/web.yaml": env_file("web", phases=counting_phases(log)),
            "environments/db.yaml": env_file("db", phases=counting_phases(log)),
        }
    )
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = TAMPERINGS[case](ws.desired())

    results = {r.name: r for r in apply_environments(ws.engine(snapshot), snapshot)}

    # web failed, as a value: apply went on, and db (independent) converged beside it.
    assert results["web"].outcome is Outcome.FAILED
    assert results["db"].outcome is Outcome.CONVERGED
    state = _state(gitops, "web")
    assert state["state"] == "provision_failed"
    assert state["lock"] is None
    failure = state["failure"]
    assert failure["errorKind"] == "configuration"
    assert failure["errorSummary"].startswith("unexpected error: ")
    # The phase ran once and was recorded once: created -> provisioning -> provision_failed.
    assert gitops.transitions("web") == [
        "web: none -> created",
        "web: created -> provisioning",
        "web: provisioning -> provision_failed",
    ]
    assert "provision web" not in log.read_text()
    # The trace is where other failures leave theirs, with the traceback to report.
    trace = Path(failure["traceFile"])
    trace = trace if trace.is_absolute() else Path.cwd() / trace
    text = trace.read_text()
    assert failure["traceId"] in text
    assert "Traceback (most recent call last)" in text

    # A second apply does not run it again before its backoff: it waits, it is not locked.
    again = apply_environments(ws.engine(snapshot), snapshot, ["web"])[0]
    assert again.outcome is Outcome.WAITING
    assert again.locked_by is None
    assert "backing off" in again.reason
    assert len(gitops.transitions("web")) == 3


class _Raising(LocalStepRunner):
    """A step kind whose runner has a bug: the step named ``boom`` raises."""

    def run(self, step: Step, ctx: StepContext) -> StepOutcome:
        if step.name == "boom":
            # Its text is anything: a NUL byte and a newline too.
            raise RuntimeError(f"runner bug\0 while running it\nsecond line; token={ctx.vars.get('token')}")
        return super().run(step, ctx)


def test_a_runner_that_raises_fails_the_phase_and_its_trace_keeps_secrets_out(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    phases = counting_phases(tmp_path / "effects.log")
    phases["configure"] = [{"name": "boom", "shell": {"run": "true"}}]
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=phases, vars={"token": {"fromEnv": "WEB_TOKEN"}})}
    )
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = ws.desired()
    engine = ws.engine(snapshot, runner=_Raising(), environ={"WEB_TOKEN": "s3cr3t-value"})

    result = engine.reconcile(snapshot, "web")

    assert result.outcome is Outcome.FAILED
    state = _state(gitops, "web")
    assert (state["state"], state["lock"]) == ("configure_failed", None)
    assert state["failure"]["failedStep"] == "boom"
    summary = state["failure"]["errorSummary"]
    assert summary.startswith("unexpected error: RuntimeError: runner bug")
    assert "\0" not in summary and "\n" not in summary and summary.endswith("second line; token=[REDACTED]")
    # The failure commit is whole: its trailers were not cut off by the NUL (git log --grep finds it).
    assert gitops.transitions("web")[-1] == "web: configuring -> configure_failed"
    trace = Path(gitops.data / "web" / "traces")
    (text,) = [p.read_text() for p in trace.glob("*-configure.log")]
    assert "RuntimeError: runner bug" in text and "second line" in text
    assert "s3cr3t-value" not in text and "[REDACTED]" in text
    assert "s3cr3t-value" not in git(gitops.path, "log", "-p", "reconciler/state")


class _BadOutputs(LocalStepRunner):
    """A runner whose outputs cannot be stored (a bug): recording the success fails."""

    def run(self, step: Step, ctx: StepContext) -> StepOutcome:
        outcome = super().run(step, ctx)
        return dataclasses.replace(outcome, outputs=MappingProxyType({"ip": object()}))


@pytest.mark.parametrize("secret", [None, "s3cr3t-value"], ids=["no-secret", "with-a-secret"])
def test_an_error_while_recording_success_is_recorded_as_the_failure(
    gitops: GitOpsRepo, tmp_path: Path, secret: str | None
) -> None:
    extra: dict[str, Any] = {"vars": {"token": {"fromEnv": "WEB_TOKEN"}}} if secret else {}
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=counting_phases(tmp_path / "e.log"), **extra)}
    )
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = ws.desired()

    engine = ws.engine(snapshot, runner=_BadOutputs(), environ={"WEB_TOKEN": secret} if secret else {})
    result = engine.reconcile(snapshot, "web")

    assert result.outcome is Outcome.FAILED
    state = _state(gitops, "web")
    assert (state["state"], state["lock"]) == ("provision_failed", None)
    assert "recording its success" in state["failure"]["failedStep"]
    assert gitops.transitions("web")[-1] == "web: provisioning -> provision_failed"


def test_a_timeout_too_big_for_a_lock_fails_before_the_lock_is_taken(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    """``timeoutSeconds: 1e20`` makes a lock expiry past year 9999: nothing starts, nothing stays locked."""
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "environments/web.yaml": env_file("web", phases=counting_phases(log)),
            "environments/db.yaml": env_file("db", phases=counting_phases(log)),
        }
    )
    ws = open_workspace(gitops.path, gitops.data)
    loaded = ws.desired()
    web = loaded.environments["web"]
    web = dataclasses.replace(web, spec=web.spec.model_copy(update={"timeout_seconds": 10**20}))
    snapshot = dataclasses.replace(loaded, environments=MappingProxyType({**loaded.environments, "web": web}))

    results = {r.name: r for r in apply_environments(ws.engine(snapshot), snapshot)}

    assert results["web"].outcome is Outcome.FAILED
    assert "unexpected error while starting provision: OverflowError" in results["web"].reason
    assert results["db"].outcome is Outcome.CONVERGED
    assert (_state(gitops, "web")["state"], _state(gitops, "web")["lock"]) == ("created", None)
    assert "provision web" not in log.read_text()


def test_an_unexpected_error_before_any_lock_is_that_environments_failure(gitops: GitOpsRepo) -> None:
    """A backoff the planner cannot turn into a time (NaN; validation refuses it, this bypasses it):
    web fails, db still converges."""
    phases = {"provision": [{"shell": {"run": "exit 3"}}]}
    gitops.commit(
        {
            "environments/web.yaml": env_file("web", phases=phases),
            "environments/db.yaml": env_file("db", phases={}),
        }
    )
    ws = open_workspace(gitops.path, gitops.data)
    loaded = ws.desired()
    web = loaded.environments["web"]
    retry = web.spec.retry.model_copy(update={"backoff_seconds": float("nan")})
    web = dataclasses.replace(web, spec=web.spec.model_copy(update={"retry": retry}))
    snapshot = dataclasses.replace(loaded, environments=MappingProxyType({**loaded.environments, "web": web}))
    engine = ws.engine(snapshot)
    assert engine.reconcile(snapshot, "web").outcome is Outcome.FAILED  # exit 3: an ordinary failure

    results = {r.name: r for r in apply_environments(engine, snapshot)}

    assert results["web"].outcome is Outcome.FAILED
    assert "unexpected error while planning: ValueError" in results["web"].reason
    assert results["db"].outcome is Outcome.CONVERGED
    assert _state(gitops, "web")["lock"] is None


class _RefusesDetailedFailures:
    """The real state store, except that it refuses the first failure record that carries details."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refused = 0

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def apply(self, name: str, version: Any, after: Any, **kwargs: Any) -> Any:
        if after.state_name.endswith("_failed") and kwargs.get("detail") and not self.refused:
            self.refused += 1
            raise RuntimeError("cannot record that")
        return self.inner.apply(name, version, after, **kwargs)


def test_a_failure_record_that_is_refused_is_recorded_again_plainer(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases={"provision": [{"shell": {"run": "exit 4"}}]})}
    )
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = ws.desired()
    engine = ws.engine(snapshot)
    store = _RefusesDetailedFailures(engine.store)
    engine.store = store

    result = engine.reconcile(snapshot, "web")

    assert store.refused == 1
    assert result.outcome is Outcome.FAILED
    state = _state(gitops, "web")
    assert (state["state"], state["lock"]) == ("provision_failed", None)
    assert state["failure"]["errorSummary"] == "shell exited 4"
    assert gitops.transitions("web")[-2:] == [
        "web: created -> provisioning",
        "web: provisioning -> provision_failed",
    ]


class _FlakyOnSuccess:
    """The real state store, except that the first ``refusals`` success records fail as a store error."""

    def __init__(self, inner: Any, refusals: int) -> None:
        self.inner = inner
        self.refusals = refusals

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def apply(self, name: str, version: Any, after: Any, **kwargs: Any) -> Any:
        if after.state_name == "provisioned" and self.refusals > 0:
            self.refusals -= 1
            raise StoreError("the remote did not answer")
        return self.inner.apply(name, version, after, **kwargs)


def test_a_store_error_recording_success_is_retried_never_turned_into_a_failure(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    """A failure recorded for a phase that ran would run it twice: the success is recorded again."""
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(log))})
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = ws.desired()
    engine = ws.engine(snapshot)
    engine.store = _FlakyOnSuccess(engine.store, refusals=2)  # type: ignore[assignment]

    result = engine.reconcile(snapshot, "web")

    assert result.outcome is Outcome.CONVERGED
    assert log.read_text().splitlines() == ["provision web"]
    assert gitops.transitions("web")[-1] == "web: provisioning -> provisioned"


def test_a_store_that_keeps_failing_is_a_store_error_not_a_failure(
    gitops: GitOpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reconciler.engine.reconcile.FINISH_RETRY_SECONDS", 1.0)
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(log))})
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = ws.desired()
    engine = ws.engine(snapshot)
    engine.store = _FlakyOnSuccess(engine.store, refusals=100)  # type: ignore[assignment]

    with pytest.raises(StoreError, match="did not answer"):
        engine.reconcile(snapshot, "web")

    assert _state(gitops, "web")["state"] == "provisioning"  # no failure recorded: it did not fail
    assert log.read_text().splitlines() == ["provision web"]


class _ContendedOnSuccess(_FlakyOnSuccess):
    """The real store, except that the first success records lose the race for the ref to other
    environments' commits (a busy shared remote: "kept moving"), this environment untouched."""

    def apply(self, name: str, version: Any, after: Any, **kwargs: Any) -> Any:
        if after.state_name == "provisioned" and self.refusals > 0:
            self.refusals -= 1
            raise LostRace(f"{name}: refs/heads/reconciler/state on 'origin' kept moving")
        return self.inner.apply(name, version, after, **kwargs)


def test_a_race_lost_to_other_environments_while_recording_success_is_retried(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    """Two sharded daemons on one remote: the success commit lost its push race to the other shard.
    Dropping it left the environment locked by its own live holder until expiry, then re-ran it."""
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(log))})
    ws = open_workspace(gitops.path, gitops.data)
    snapshot = ws.desired()
    engine = ws.engine(snapshot)
    engine.store = _ContendedOnSuccess(engine.store, refusals=3)  # type: ignore[assignment]

    result = engine.reconcile(snapshot, "web")

    assert result.outcome is Outcome.CONVERGED
    assert log.read_text().splitlines() == ["provision web"]
    assert _state(gitops, "web")["lock"] is None
    assert gitops.transitions("web")[-1] == "web: provisioning -> provisioned"
