"""Properties over arbitrary observed states, desired states, inputs, failures and clocks.

The actions of a ``CHANGES`` plan, applied in order through
``reconciler.domain.dispatch`` (the engine's own transitions), always reach the
desired state, and planning again from there finds nothing to do.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.desired.models import DesiredState
from reconciler.desired.resolved import ResolvedEnvironment
from reconciler.domain import ALL_STATES, AnyEnvironment, Environment, ErrorKind, FailureContext, Phase, State
from reconciler.domain.dispatch import fail_phase, recreate, start_phase, succeed_phase
from reconciler.planner import ActionKind, EnvironmentPlan, PlanContext, Verdict, plan_environment

from .builders import NOW, desired, failure, observed

HASHES = st.sampled_from(["a", "b"])


@st.composite
def situations(draw: st.DrawFn) -> tuple[AnyEnvironment | None, ResolvedEnvironment, PlanContext]:
    state: type[State] | None = draw(st.sampled_from([None, *ALL_STATES]))
    env = None
    if state is not None:
        recorded = {p: draw(HASHES) for p in Phase if p is not Phase.DESTROY and draw(st.booleans())}
        fail = None
        if state.is_error():
            assert state.phase is not None
            fail = failure(
                state.phase,
                attempt=draw(st.integers(0, 4)),
                phase_hash=draw(st.none() | HASHES),
                kind=draw(st.sampled_from(ErrorKind)),
                failed_at=NOW - timedelta(seconds=draw(st.integers(0, 600))),
            )
        env = observed(state, recorded=recorded, fail=fail)
    want = desired(
        draw(st.sampled_from(DesiredState)),
        phase_hashes={p: draw(HASHES) for p in Phase},
        limit=draw(st.integers(0, 4)),
        backoff=draw(st.sampled_from([0, 10, 60])),
    )
    ctx = PlanContext(now=NOW, lock_stale=draw(st.booleans()))
    return env, want, ctx


def apply(env: AnyEnvironment | None, plan: EnvironmentPlan, spec: ResolvedEnvironment) -> AnyEnvironment:
    for action in plan.actions:
        if action.kind is ActionKind.CREATE:
            assert env is None
            env = Environment.create("web", at=NOW).into_any()
        elif action.kind is ActionKind.RECREATE:
            assert env is not None
            env = recreate(env, at=NOW)
        elif action.kind is ActionKind.RECOVER:
            assert env is not None
            assert action.phase is not None
            ctx = FailureContext(
                phase=action.phase,
                failed_step="-",
                error_kind=ErrorKind.INTERRUPTED,
                error_summary="interrupted",
                attempt=0,
                execution_started_at=NOW,
                failed_at=NOW,
                execution_duration_seconds=0,
            )
            env = fail_phase(env, ctx, at=NOW)
        else:
            assert env is not None
            assert action.phase is not None
            env = start_phase(env, action.phase, at=NOW)  # raises InvalidTransition when not allowed
            env = succeed_phase(env, phase_hash=spec.phase_hashes[action.phase], at=NOW)
    assert env is not None
    return env


@settings(max_examples=600, deadline=None)
@given(situations())
def test_a_changes_plan_reaches_the_desired_state_and_then_converges(
    situation: tuple[AnyEnvironment | None, ResolvedEnvironment, PlanContext],
) -> None:
    env, spec, ctx = situation
    plan = plan_environment("web", env, spec, ctx)
    if plan.verdict is not Verdict.CHANGES:
        return
    after = apply(env, plan, spec)
    again = plan_environment("web", after, spec, PlanContext(now=NOW))
    if [a.kind for a in plan.actions] == [ActionKind.RECOVER]:
        # Recovering a stale lock is all there is to do when the failed state it leaves is
        # past the desired one (or blocked, or protected): the next plan must not act.
        assert again.verdict in (Verdict.AHEAD, Verdict.BLOCKED, Verdict.PROTECTED), again
        return
    assert after.state_name == str(spec.desired_state)
    assert again.verdict is Verdict.CONVERGED, again


@settings(max_examples=300, deadline=None)
@given(situations())
def test_only_plans_that_act_carry_a_first_attempt_of_one_or_more(
    situation: tuple[AnyEnvironment | None, ResolvedEnvironment, PlanContext],
) -> None:
    env, spec, ctx = situation
    plan = plan_environment("web", env, spec, ctx)
    assert plan.next_attempt >= 1
    assert plan.reason
    if plan.verdict in (Verdict.CONVERGED, Verdict.AHEAD, Verdict.BLOCKED, Verdict.PROTECTED):
        assert plan.actions == ()
    if plan.retry_at is not None:
        assert plan.verdict is Verdict.WAITING
        assert plan.retry_at > ctx.now
