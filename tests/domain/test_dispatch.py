"""``dispatch``: the same state machine, for code that learns the state at run time."""

from __future__ import annotations

import pytest

from reconciler.domain import Phase
from reconciler.domain.dispatch import (
    InvalidTransition,
    fail_phase,
    in_progress_phase,
    recreate,
    start_phase,
    succeed_phase,
)
from tests.domain.builders import failure, lock, reach
from tests.domain.lifecycle_table import IN_PROGRESS, STARTS, STATES, TRANSITIONS

IN_PROGRESS_OF = {"provision": "provisioning", "configure": "configuring", "release": "releasing"}
IN_PROGRESS_OF |= {"run": "starting", "destroy": "destroying"}
SUCCESS_OF = {"provision": "provisioned", "configure": "configured", "release": "released"}
SUCCESS_OF |= {"run": "running", "destroy": "destroyed"}

PAIRS = [(state, method) for state in STATES for method in STARTS]


@pytest.mark.parametrize(("state", "method"), PAIRS)
def test_start_phase_follows_the_spec_table(state: str, method: str) -> None:
    env = reach(state).into_any()
    phase = Phase(STARTS[method])
    if state in TRANSITIONS[method][0]:
        held = lock()
        started = start_phase(env, phase, lock=held, desired_commit="c7")
        assert started.state_name == IN_PROGRESS_OF[phase]
        assert started.lock == held
        assert started.desired_commit == "c7"
        assert in_progress_phase(started) is phase
    else:
        with pytest.raises(InvalidTransition, match=f"web: cannot start {phase} from state '{state}'"):
            start_phase(env, phase)


@pytest.mark.parametrize("phase", list(Phase))
def test_succeed_and_fail_the_running_phase(phase: Phase) -> None:
    env = reach(IN_PROGRESS_OF[phase]).into_any()
    done = succeed_phase(env, phase_hash="h", outputs={"k": "v"})
    assert done.state_name == SUCCESS_OF[phase]
    assert done.lock is None
    if phase is not Phase.DESTROY:
        assert done.phases[phase].hash == "h"
        assert done.outputs["k"] == "v"
    ctx = failure(phase, summary="boom")
    failed = fail_phase(env, ctx)
    assert failed.state_name == f"{phase}_failed"
    assert failed.error_details == ctx
    assert str(failed).endswith("(failed at: boom)")


@pytest.mark.parametrize("state", sorted(set(STATES) - IN_PROGRESS))
def test_only_an_in_progress_state_can_succeed_or_fail(state: str) -> None:
    env = reach(state).into_any()
    assert in_progress_phase(env) is None
    with pytest.raises(InvalidTransition, match=f"state '{state}' is not an in-progress state"):
        succeed_phase(env)
    with pytest.raises(InvalidTransition, match="not an in-progress state"):
        fail_phase(env, failure("provision"))


def test_recreate_only_from_destroyed() -> None:
    back = recreate(reach("destroyed").into_any(), desired_commit="c8")
    assert back.state_name == "created"
    assert back.desired_commit == "c8"
    # It used to raise StateTypeError, unlike every other refusal in this module.
    with pytest.raises(InvalidTransition, match="web: cannot recreate from state 'destroy_failed'"):
        recreate(reach("destroy_failed").into_any())
