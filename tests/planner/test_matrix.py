"""Every observed state (and none) x every desired state (and no file), with and without changed inputs.

Each cell asserts what the user sees (the verdict) and that the actions are a
path of valid transitions, per the SPEC's table, that ends in the desired state.
"""

from __future__ import annotations

import pytest

from reconciler.desired.models import DesiredState
from reconciler.domain import (
    ALL_STATES,
    FORWARD_PHASES,
    STATES_BY_NAME,
    Destroyed,
    DestroyFailed,
    Phase,
    State,
    can_start,
)
from reconciler.domain.states import FAILED, SUCCEEDED, Created, completed_phases
from reconciler.planner import ActionKind, EnvironmentPlan, PlanContext, Verdict, plan_environment

from .builders import NOW, desired, hashes, observed

LEVEL = {"created": 0, "provisioned": 1, "configured": 2, "released": 3, "running": 4}
OBSERVED = [None, *ALL_STATES]
DESIRED = [None, *DesiredState]
CHANGED = [None, *FORWARD_PHASES, Phase.DESTROY]


def walk(start: type[State] | None, plan: EnvironmentPlan) -> type[State] | None:
    """Apply the plan's actions to a state class, asserting each is allowed."""
    state = start
    for action in plan.actions:
        if action.kind is ActionKind.CREATE:
            assert state is None, plan
            state = Created
        elif action.kind is ActionKind.RECREATE:
            assert state is Destroyed, plan
            state = Created
        elif action.kind is ActionKind.RECOVER:
            assert state is not None, plan
            assert state.is_in_progress, plan
            assert action.phase is state.phase
            state = FAILED[action.phase]
        else:
            assert action.phase is not None, plan
            assert state is not None, plan
            assert can_start(state, action.phase), f"{action.phase} cannot start from {state.name}: {plan}"
            state = SUCCEEDED[action.phase]
        assert action.reason, plan
    return state


def reached(state: type[State]) -> int:
    """How far forward a state has gone: completed phases, plus the one a failure attempted."""
    extra = 1 if state.is_error() and state.phase in FORWARD_PHASES else 0
    return len(completed_phases(state)) + extra


def label(value: object) -> str:
    if value is None:
        return "none"
    return str(getattr(value, "name", value))


@pytest.mark.parametrize("changed", CHANGED, ids=label)
@pytest.mark.parametrize("want", DESIRED, ids=label)
@pytest.mark.parametrize("have", OBSERVED, ids=label)
def test_every_observed_and_desired_state(
    have: type[State] | None, want: DesiredState | None, changed: Phase | None
) -> None:
    env = observed(have) if have is not None else None
    spec = desired(want, phase_hashes=hashes(**{changed.value: "new"} if changed else {})) if want else None
    plan = plan_environment("web", env, spec, PlanContext(now=NOW))

    assert plan.observed_state == (have.name if have else None)
    assert plan.desired_state == (str(want) if want else None)
    end = walk(have, plan)

    if have is not None and have.is_in_progress:
        # The lock is held (not stale): someone is working on it.
        assert plan.verdict is Verdict.WAITING
        assert plan.actions == ()
        assert "locked by ci-runner-1:4242" in plan.reason
        return
    if want is None:
        expected = Verdict.CONVERGED if have is Destroyed else Verdict.UNMANAGED
        assert plan.verdict is expected
        assert plan.actions == ()
        return
    if want is DesiredState.DESTROYED:
        if have in (None, Destroyed):
            assert plan.verdict is Verdict.CONVERGED
            assert plan.actions == ()
        else:
            assert plan.verdict is Verdict.CHANGES
            assert [a.phase for a in plan.actions] == [Phase.DESTROY]
            assert end is Destroyed
        return

    level = LEVEL[want]
    if have is not None and have is not Destroyed and reached(have) > level:
        assert plan.verdict is Verdict.AHEAD, plan
        assert plan.actions == ()
        assert "nothing is undone" in plan.reason
        return
    wanted = FORWARD_PHASES[:level]
    if have is DestroyFailed and level == 0:
        assert plan.verdict is Verdict.BLOCKED
        assert "no transition leads from destroy_failed to created" in plan.reason
        return
    already = completed_phases(have) if have is not None and have is not Destroyed else ()
    if have is not None and have.is_error() and have.phase is not Phase.DESTROY and changed is None:
        # Failed with the same inputs, attempt 1 long ago: the backoff is over, attempt 2.
        assert plan.verdict is Verdict.CHANGES
        assert plan.next_attempt == 2
        assert "retry 1/3" in plan.reason
    elif have not in (None, Destroyed) and all(p in already for p in wanted) and changed not in wanted:
        assert plan.verdict is Verdict.CONVERGED, plan
        assert plan.actions == ()
        return
    assert plan.verdict is Verdict.CHANGES, plan
    assert end is STATES_BY_NAME[str(want)]
    phases = [a.phase for a in plan.actions if a.kind is ActionKind.PHASE]
    # The phases run are a suffix of the wanted ones, in order, starting at the earliest needing a run.
    assert phases == list(wanted[wanted.index(phases[0]) :]) if phases else wanted == ()
    needing = [p for p in wanted if p not in already or p == changed]
    if phases:
        assert phases[0] == needing[0]
    if changed in already and changed in wanted and changed == phases[0]:
        assert plan.actions[len(plan.actions) - len(phases)].reason.startswith(
            f"{changed} inputs changed"
        ) or (have is not None and have.is_error())


@pytest.mark.parametrize("have", [s for s in ALL_STATES if not s.is_in_progress], ids=label)
def test_not_yet_completed_phases_say_so(have: type[State]) -> None:
    plan = plan_environment("web", observed(have), desired("running"), PlanContext(now=NOW))
    for action in plan.actions:
        if action.kind is ActionKind.PHASE and action.phase not in completed_phases(have):
            if action is plan.actions[0] and have.is_error():
                continue  # a retry says why it retries
            assert action.reason.startswith("not yet "), plan
