"""``AnyEnvironment``: the state known only at run time, and how the type comes back."""

from __future__ import annotations

import pytest

from reconciler.domain import (
    ALL_STATES,
    STATES_BY_NAME,
    AnyEnvironment,
    CanProvision,
    Failed,
    Provisioned,
    Running,
    StateTypeError,
    can_start,
    completed_phases,
)
from tests.domain.builders import failure, reach
from tests.domain.lifecycle_table import FAILED, STARTS, STATES, SUCCESS, TERMINAL, TRANSITIONS, class_name


def test_sixteen_states_by_their_spec_names() -> None:
    assert [s.name for s in ALL_STATES] == list(STATES)
    assert [s.__name__ for s in ALL_STATES] == [class_name(s) for s in STATES]
    assert {s.name: s for s in ALL_STATES} == STATES_BY_NAME


@pytest.mark.parametrize("state", STATES)
def test_success_error_and_terminal_per_the_spec(state: str) -> None:
    env = reach(state).into_any()
    assert env.state_name == state
    assert env.is_success_state == (state in SUCCESS)
    assert env.is_error_state == (state in FAILED)
    assert env.is_terminal_state == (state in TERMINAL)


@pytest.mark.parametrize("state", STATES)
def test_can_start_matches_the_spec_table(state: str) -> None:
    cls = STATES_BY_NAME[state]
    for method, phase in STARTS.items():
        assert can_start(cls, phase) == (state in TRANSITIONS[method][0]), (state, method)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "completed"),
    [
        ("created", []),
        ("provisioning", []),
        ("provisioned", ["provision"]),
        ("configure_failed", ["provision"]),
        ("releasing", ["provision", "configure"]),
        ("released", ["provision", "configure", "release"]),
        ("run_failed", ["provision", "configure", "release"]),
        ("running", ["provision", "configure", "release", "run"]),
        ("destroyed", []),
        ("destroy_failed", []),
    ],
)
def test_completed_phases(state: str, completed: list[str]) -> None:
    assert list(completed_phases(STATES_BY_NAME[state])) == completed


@pytest.mark.parametrize("state", STATES)
def test_into_any_and_back(state: str) -> None:
    env = reach(state)
    cls = STATES_BY_NAME[state]
    assert env.into_any().try_into(cls) == env


def test_try_into_the_wrong_state_names_expected_and_actual() -> None:
    env = reach("created").into_any()
    with pytest.raises(StateTypeError) as caught:
        env.try_into(Provisioned)
    assert str(caught.value) == "Environment 'web': expected state 'provisioned', but found 'created'"
    assert (caught.value.expected, caught.value.actual) == ("provisioned", "created")
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize("marker", [CanProvision, Failed])
def test_try_into_a_capability_is_a_state_type_error(marker: type[CanProvision]) -> None:
    """It used to be an AttributeError: capabilities have no ``name``."""
    with pytest.raises(StateTypeError, match=f"expected state '{marker.__name__}', but found 'running'"):
        reach("running").into_any().try_into(marker)


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ("created", "Environment 'web' is in state: created"),
        ("running", "Environment 'web' is in state: running"),
        ("provisioning", "Environment 'web' is in state: provisioning"),
        (
            "provision_failed",
            "Environment 'web' is in state: provision_failed (failed at: tofu apply exited 1)",
        ),
        ("run_failed", "Environment 'web' is in state: run_failed (failed at: tofu apply exited 1)"),
    ],
)
def test_display_strings(state: str, text: str) -> None:
    assert str(reach(state).into_any()) == text


@pytest.mark.parametrize("state", STATES)
def test_error_details_only_on_failed_states(state: str) -> None:
    details = reach(state).into_any().error_details
    if state in FAILED:
        assert details is not None
        expected = failure(state.removesuffix("_failed"))
        assert details.model_dump(exclude={"trace_id"}) == expected.model_dump(exclude={"trace_id"})
        assert details.error_summary == "tofu apply exited 1"
    else:
        assert details is None


def test_equality_is_by_value() -> None:
    a = reach("running").into_any()
    b = reach("running").into_any()
    assert a == b
    assert hash(a) == hash(b)
    assert a != reach("running", name="db").into_any()
    assert a != reach("released").into_any()
    assert a != "running"


def test_the_erased_view_exposes_what_was_recorded() -> None:
    env = (
        reach("released")
        .start_running(desired_commit="c3")
        .running(phase_hash="hn", outputs={"ip": "10.0.0.5"})
        .into_any()
    )
    assert env.name == "web"
    assert env.state is Running
    assert env.desired_commit == "c3"
    assert dict(env.outputs) == {"ip": "10.0.0.5"}
    assert env.phases["run"].hash == "hn"
    assert env.lock is None
    assert not env.is_in_progress
    assert isinstance(env, AnyEnvironment)
    assert env.environment.state is Running
