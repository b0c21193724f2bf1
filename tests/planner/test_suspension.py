"""The one suspension predicate (decision 021): its file's ``spec.suspend`` or an operator's override."""

from __future__ import annotations

from reconciler.domain import Configured, Running, SuspensionRecord
from reconciler.planner import PlanContext, SuspensionSource, Verdict, plan_environment, suspension

from .builders import NOW, desired, hashes, observed

RECORD = SuspensionRecord(by="alice@ws1", at=NOW, reason="disk full")


def test_the_predicate_covers_both_and_the_operator_wins() -> None:
    env = observed(Running)
    overridden = env.environment.with_suspension(RECORD).into_any()

    assert suspension(desired("running"), env) is None
    assert suspension(None, None) is None
    by_file = suspension(desired("running", suspend=True), env)
    assert by_file is not None and by_file.source is SuspensionSource.FILE
    by_operator = suspension(desired("running", suspend=True), overridden)
    assert by_operator is not None
    assert (by_operator.source, by_operator.by, by_operator.reason) == (
        SuspensionSource.OPERATOR,
        "alice@ws1",
        "disk full",
    )
    assert by_operator.also_in_file
    assert suspension(None, overridden) is not None  # its file is gone: still suspended (never pruned)


def test_an_operator_suspension_holds_back_what_the_file_asks() -> None:
    env = observed(Running).environment.with_suspension(RECORD).into_any()
    changed = desired("running", phase_hashes=hashes(release="new"))

    plan = plan_environment("web", env, changed, PlanContext(now=NOW))

    assert plan.verdict is Verdict.SUSPENDED
    assert plan.reason.startswith(
        "suspended by alice@ws1 at 2026-11-28T10:00:00Z: disk full; nothing is done"
    )
    assert [a.phase for a in plan.actions if a.phase] == ["release", "run"]  # what resuming would do
    assert not plan.has_changes
    assert plan.suspended is not None and plan.suspended.by == "alice@ws1"


def test_a_converged_suspended_environment_is_converged_and_says_it_is_suspended() -> None:
    env = observed(Running).environment.with_suspension(RECORD).into_any()

    plan = plan_environment("web", env, desired("running"), PlanContext(now=NOW))

    assert plan.verdict is Verdict.CONVERGED
    assert "suspended by alice@ws1" in plan.reason


def test_it_is_never_pruned_nor_destroyed() -> None:
    env = observed(Configured).environment.with_suspension(RECORD).into_any()

    pruned = plan_environment("web", env, None, PlanContext(now=NOW, prune=True))
    destroyed = plan_environment("web", env, desired("destroyed"), PlanContext(now=NOW))

    assert pruned.verdict is Verdict.SUSPENDED
    assert destroyed.verdict is Verdict.SUSPENDED
    assert [str(a.phase) for a in destroyed.actions] == ["destroy"]
