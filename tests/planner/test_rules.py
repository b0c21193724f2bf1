"""The planning rules of SPEC section 3, one situation at a time, as a user would read the plan."""

from __future__ import annotations

from datetime import timedelta

from reconciler.domain import (
    Configured,
    ConfigureFailed,
    Configuring,
    Destroyed,
    DestroyFailed,
    ErrorKind,
    Phase,
    ProvisionFailed,
    Provisioning,
    RunFailed,
    Running,
)
from reconciler.planner import ActionKind, EnvironmentPlan, PlanContext, Verdict, plan_environment

from .builders import NOW, desired, failure, hashes, lock, observed


def phases_of(plan: EnvironmentPlan) -> list[str]:
    return [str(a.phase) for a in plan.actions if a.kind is ActionKind.PHASE]


def test_new_environment_is_created_then_every_phase_runs() -> None:
    plan = plan_environment("web", None, desired("running"), PlanContext(now=NOW))
    assert plan.verdict is Verdict.CHANGES
    assert plan.actions[0].kind is ActionKind.CREATE
    assert phases_of(plan) == ["provision", "configure", "release", "run"]
    assert [a.reason for a in plan.actions[1:]] == [
        "not yet provisioned",
        "not yet configured",
        "not yet released",
        "not yet running",
    ]
    assert plan.path[-1] == "running"


def test_changed_release_reruns_release_and_run_only() -> None:
    plan = plan_environment(
        "web", observed(Running), desired("running", phase_hashes=hashes(release="new")), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.CHANGES
    assert phases_of(plan) == ["release", "run"]
    assert plan.actions[0].reason == "release inputs changed"
    assert plan.actions[1].reason == "re-applied after release"


def test_changed_configure_while_at_configured_reruns_it_then_goes_on() -> None:
    plan = plan_environment(
        "web",
        observed(Configured),
        desired("running", phase_hashes=hashes(configure="new")),
        PlanContext(now=NOW),
    )
    assert phases_of(plan) == ["configure", "release", "run"]
    assert [a.reason for a in plan.actions] == [
        "configure inputs changed",
        "not yet released",
        "not yet running",
    ]


def test_unchanged_inputs_are_converged() -> None:
    plan = plan_environment("web", observed(Running), desired("running"), PlanContext(now=NOW))
    assert plan.verdict is Verdict.CONVERGED
    assert not plan.has_changes


def test_a_later_phase_changing_does_not_matter_below_the_desired_state() -> None:
    plan = plan_environment(
        "web",
        observed(Configured),
        desired("configured", phase_hashes=hashes(run="new")),
        PlanContext(now=NOW),
    )
    assert plan.verdict is Verdict.CONVERGED


def test_missing_phase_record_reruns_it() -> None:
    env = observed(Running, recorded={Phase.PROVISION: "h-provision", Phase.CONFIGURE: "h-configure"})
    plan = plan_environment("web", env, desired("running"), PlanContext(now=NOW))
    assert phases_of(plan) == ["release", "run"]
    assert plan.actions[0].reason == "release inputs not recorded"


def test_desired_below_observed_is_ahead_and_changes_nothing() -> None:
    plan = plan_environment("web", observed(Running), desired("provisioned"), PlanContext(now=NOW))
    assert plan.verdict is Verdict.AHEAD
    assert plan.actions == ()
    assert plan.reason == "observed running is past desired provisioned; nothing is undone"


def test_destroyed_environment_declared_alive_is_recreated() -> None:
    plan = plan_environment("web", observed(Destroyed), desired("provisioned"), PlanContext(now=NOW))
    assert [a.kind for a in plan.actions] == [ActionKind.RECREATE, ActionKind.PHASE]
    assert plan.path == ("created", "provisioning", "provisioned")


# -- failures and retries -------------------------------------------------------------


def test_failure_within_backoff_waits_until_retry_time() -> None:
    fail = failure(Phase.PROVISION, attempt=2, failed_at=NOW - timedelta(seconds=10))
    plan = plan_environment(
        "web", observed(ProvisionFailed, fail=fail), desired("running", backoff=30), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.WAITING
    # 30 s doubled once for the second attempt, counted from the failure.
    assert plan.retry_at == fail.failed_at + timedelta(seconds=60)
    assert plan.next_attempt == 3
    assert "backing off until 2026-11-28T10:00:50Z (retry 2/3)" in plan.reason
    assert phases_of(plan) == ["provision", "configure", "release", "run"]
    assert plan.has_changes


def test_failure_after_backoff_retries_with_the_next_attempt() -> None:
    fail = failure(Phase.CONFIGURE, attempt=1, failed_at=NOW - timedelta(seconds=30))
    plan = plan_environment(
        "web", observed(ConfigureFailed, fail=fail), desired("running"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.CHANGES
    assert plan.next_attempt == 2
    assert phases_of(plan) == ["configure", "release", "run"]
    assert plan.actions[0].reason == "retry after configure failed: tofu apply exited 1 (retry 1/3)"


def test_retries_exhausted_is_blocked_with_the_way_out() -> None:
    # retry.limit 3 = the first run and three retries: blocked after the fourth attempt.
    fail = failure(Phase.CONFIGURE, attempt=4)
    plan = plan_environment(
        "web", observed(ConfigureFailed, fail=fail), desired("running"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.BLOCKED
    assert plan.actions == ()
    assert "retries exhausted (3/3); fix the inputs or run `reconcile retry web`" in plan.reason


def test_changed_inputs_of_the_failed_phase_reset_attempts_and_retry_at_once() -> None:
    fail = failure(Phase.CONFIGURE, attempt=3, failed_at=NOW)
    plan = plan_environment(
        "web",
        observed(ConfigureFailed, fail=fail),
        desired("running", phase_hashes=hashes(configure="fixed")),
        PlanContext(now=NOW),
    )
    assert plan.verdict is Verdict.CHANGES
    assert plan.next_attempt == 1
    assert plan.retry_at is None
    assert "configure inputs changed since it failed; attempts reset" in plan.reason


def test_changed_inputs_of_an_earlier_phase_reset_attempts_and_start_there() -> None:
    fail = failure(Phase.RUN, attempt=3, failed_at=NOW)
    plan = plan_environment(
        "web",
        observed(RunFailed, fail=fail),
        desired("running", phase_hashes=hashes(provision="fixed")),
        PlanContext(now=NOW),
    )
    assert plan.verdict is Verdict.CHANGES
    assert plan.next_attempt == 1
    assert phases_of(plan) == ["provision", "configure", "release", "run"]


def test_retry_command_resets_attempt_to_zero_and_retries_at_once() -> None:
    fail = failure(Phase.CONFIGURE, attempt=0, failed_at=NOW)
    plan = plan_environment(
        "web", observed(ConfigureFailed, fail=fail), desired("running"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.CHANGES
    assert plan.next_attempt == 1
    assert plan.actions[0].reason.startswith("retry requested")


def test_interrupted_phase_is_retried_at_once_without_spending_an_attempt() -> None:
    fail = failure(Phase.CONFIGURE, attempt=1, kind=ErrorKind.INTERRUPTED, failed_at=NOW)
    plan = plan_environment(
        "web", observed(ConfigureFailed, fail=fail), desired("running"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.CHANGES
    assert plan.retry_at is None
    assert plan.next_attempt == 2
    assert "configure was interrupted; retry at once" in plan.reason


def test_zero_retry_limit_blocks_after_the_first_failure() -> None:
    fail = failure(Phase.PROVISION, attempt=1)
    plan = plan_environment(
        "web", observed(ProvisionFailed, fail=fail), desired("running", limit=0), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.BLOCKED
    assert "(0/0)" in plan.reason


def test_the_limit_counts_retries_not_attempts() -> None:
    """SPEC section 3: "retried up to retry.limit times": limit 1 allows one retry."""
    fail = failure(Phase.PROVISION, attempt=1, failed_at=NOW - timedelta(hours=1))
    plan = plan_environment(
        "web", observed(ProvisionFailed, fail=fail), desired("running", limit=1), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.CHANGES
    assert plan.next_attempt == 2
    fail = failure(Phase.PROVISION, attempt=2, failed_at=NOW - timedelta(hours=1))
    plan = plan_environment(
        "web", observed(ProvisionFailed, fail=fail), desired("running", limit=1), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.BLOCKED


def test_destroy_failure_follows_the_same_retry_rules() -> None:
    fail = failure(Phase.DESTROY, attempt=4)
    plan = plan_environment(
        "web", observed(DestroyFailed, fail=fail), desired("destroyed"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.BLOCKED
    fail = failure(Phase.DESTROY, attempt=1, failed_at=NOW)
    plan = plan_environment(
        "web", observed(DestroyFailed, fail=fail), desired("destroyed"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.WAITING
    assert phases_of(plan) == ["destroy"]


def test_failed_destroy_then_declared_alive_provisions_again_without_backoff() -> None:
    fail = failure(Phase.DESTROY, attempt=3, failed_at=NOW)
    plan = plan_environment(
        "web", observed(DestroyFailed, fail=fail), desired("running"), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.CHANGES
    assert phases_of(plan) == ["provision", "configure", "release", "run"]


# -- locks -----------------------------------------------------------------------------


def test_held_lock_waits_naming_the_holder_and_expiry() -> None:
    plan = plan_environment("web", observed(Provisioning), desired("running"), PlanContext(now=NOW))
    assert plan.verdict is Verdict.WAITING
    assert plan.reason == "provisioning: locked by ci-runner-1:4242 until 2026-11-28T10:30:00Z"
    assert not plan.has_changes


def test_stale_lock_is_recovered_then_the_phase_runs_again() -> None:
    env = observed(Configuring, held=lock(expires_at=NOW - timedelta(seconds=1)))
    plan = plan_environment("web", env, desired("running"), PlanContext(now=NOW, lock_stale=True))
    assert plan.verdict is Verdict.CHANGES
    assert plan.actions[0].kind is ActionKind.RECOVER
    assert plan.actions[0].phase is Phase.CONFIGURE
    assert phases_of(plan) == ["configure", "release", "run"]
    assert plan.path[:3] == ("configure_failed", "configuring", "configured")


def test_stale_lock_with_no_file_and_no_prune_only_recovers() -> None:
    plan = plan_environment("web", observed(Configuring), None, PlanContext(now=NOW, lock_stale=True))
    assert [a.kind for a in plan.actions] == [ActionKind.RECOVER]
    assert plan.verdict is Verdict.CHANGES


# -- destroy, protection, prune, suspend, dependencies ----------------------------------


def test_protected_environment_is_never_destroyed() -> None:
    plan = plan_environment(
        "web", observed(Running), desired("destroyed", protected=True), PlanContext(now=NOW)
    )
    assert plan.verdict is Verdict.PROTECTED
    assert plan.actions == ()
    assert "protected" in plan.reason


def test_deleted_file_without_prune_is_unmanaged() -> None:
    plan = plan_environment("web", observed(Running), None, PlanContext(now=NOW))
    assert plan.verdict is Verdict.UNMANAGED
    assert "prune: true" in plan.reason


def test_deleted_file_with_prune_is_destroyed() -> None:
    plan = plan_environment("web", observed(Running), None, PlanContext(now=NOW, prune=True))
    assert plan.verdict is Verdict.CHANGES
    assert phases_of(plan) == ["destroy"]
    assert plan.actions[0].reason == "environment file removed and prune is on"


def test_deleted_file_of_a_protected_environment_is_never_pruned() -> None:
    ctx = PlanContext(now=NOW, prune=True, protected_before=True)
    plan = plan_environment("web", observed(Running), None, ctx)
    assert plan.verdict is Verdict.PROTECTED
    assert plan.actions == ()
    assert "never pruned" in plan.reason


def test_deleted_file_of_a_destroyed_environment_is_converged() -> None:
    plan = plan_environment("web", observed(Destroyed), None, PlanContext(now=NOW, prune=True))
    assert plan.verdict is Verdict.CONVERGED


def test_suspended_environment_lists_what_it_would_do_but_does_nothing() -> None:
    plan = plan_environment("web", None, desired("running", suspend=True), PlanContext(now=NOW))
    assert plan.verdict is Verdict.SUSPENDED
    assert phases_of(plan) == ["provision", "configure", "release", "run"]
    assert plan.reason.startswith("suspended")
    assert not plan.has_changes


def test_suspended_but_converged_is_converged() -> None:
    plan = plan_environment("web", observed(Running), desired("running", suspend=True), PlanContext(now=NOW))
    assert plan.verdict is Verdict.CONVERGED


def test_unconverged_dependency_waits() -> None:
    ctx = PlanContext(now=NOW, dependencies={"database": False, "cache": True})
    plan = plan_environment("web", None, desired("running", depends_on=("database", "cache")), ctx)
    assert plan.verdict is Verdict.WAITING
    assert plan.reason == "waiting for database"
    assert phases_of(plan) == ["provision", "configure", "release", "run"]


def test_converged_dependencies_let_it_go() -> None:
    ctx = PlanContext(now=NOW, dependencies={"database": True})
    plan = plan_environment("web", None, desired("running", depends_on=("database",)), ctx)
    assert plan.verdict is Verdict.CHANGES


def test_destroy_waits_for_dependents_to_be_gone() -> None:
    ctx = PlanContext(now=NOW, dependents={"web": False, "worker": True})
    plan = plan_environment(
        "database", observed(Running, name="database"), desired("destroyed", name="database"), ctx
    )
    assert plan.verdict is Verdict.WAITING
    assert plan.reason == "waiting for web to be destroyed first"
