"""Every transition of SPEC section 3 at run time, and what it records."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from reconciler.domain import Environment, Phase, PhaseRecord, Running
from tests.domain.builders import T0, call, failure, lock, reach
from tests.domain.lifecycle_table import FAILED, IN_PROGRESS, STATES, TRANSITIONS

ALLOWED = [
    (method, state) for method, (sources, _) in TRANSITIONS.items() for state in STATES if state in sources
]
T1 = T0 + timedelta(minutes=5)


def test_the_table_has_every_pair() -> None:
    assert len(ALLOWED) == 10 + 7 + 5 + 3 + 10 + 10 + 1  # five starts, ten ends, recreate


@pytest.mark.parametrize(("method", "state"), ALLOWED)
def test_every_allowed_transition(method: str, state: str, caplog: pytest.LogCaptureFixture) -> None:
    env = reach(state)
    target = TRANSITIONS[method][1]
    caplog.set_level(logging.INFO, logger="reconciler")
    caplog.clear()

    after = call(env, method, at=T1)

    assert after.state.name == target
    assert after.name == "web"
    assert after.updated_at == T1
    assert (after.failure is not None) == (target in FAILED)
    if target in FAILED:
        assert after.failure.phase == target.removesuffix("_failed")
    assert after.lock is None  # no lock was passed; leaving a state never keeps one
    assert env.state.name == state, "transitions return a new environment; the old one is unchanged"
    [record] = caplog.records
    assert (record.from_state, record.to_state) == (state, target)  # type: ignore[attr-defined]


def test_the_happy_path_records_hashes_and_outputs() -> None:
    env = (
        Environment.create("web", desired_commit="c0", at=T0)
        .start_provisioning(at=T0)
        .provisioned(phase_hash="hp", outputs={"ip": "10.0.0.5"}, at=T1)
        .start_configuring()
        .configured(phase_hash="hc", outputs={"user": "deploy"})
        .start_releasing()
        .released(phase_hash="hr", outputs={"ip": "10.0.0.6"})
        .start_running()
        .running(phase_hash="hn")
    )
    assert env.state is Running
    assert dict(env.outputs) == {"ip": "10.0.0.6", "user": "deploy"}
    assert {p: r.hash for p, r in env.phases.items()} == {
        Phase.PROVISION: "hp",
        Phase.CONFIGURE: "hc",
        Phase.RELEASE: "hr",
        Phase.RUN: "hn",
    }
    assert env.phases[Phase.PROVISION] == PhaseRecord(hash="hp", completed_at=T1)
    assert env.desired_commit == "c0"


def test_a_success_without_a_hash_records_no_phase() -> None:
    env = Environment.create("web").start_provisioning().provisioned()
    assert dict(env.phases) == {}


def test_outputs_cannot_be_changed_through_the_environment() -> None:
    outputs = {"ip": "10.0.0.5"}
    env = Environment.create("web").start_provisioning().provisioned(outputs=outputs)
    outputs["ip"] = "changed"
    assert env.outputs["ip"] == "10.0.0.5"
    with pytest.raises(TypeError):
        env.outputs["ip"] = "x"  # type: ignore[index]


def test_starting_a_phase_takes_the_lock_and_leaving_it_releases_it() -> None:
    held = lock()
    provisioning = Environment.create("web").start_provisioning(lock=held, desired_commit="c1")
    assert provisioning.lock == held
    assert provisioning.desired_commit == "c1"
    assert provisioning.provisioned().lock is None
    assert provisioning.provision_failed(failure("provision")).lock is None


def test_a_failure_is_carried_until_the_next_phase_starts() -> None:
    ctx = failure("configure")
    failed = reach("provisioned").start_configuring().configure_failed(ctx)
    assert failed.failure == ctx
    assert failed.start_configuring().failure is None
    assert failed.start_destroying().failure is None


def test_a_failed_phase_keeps_the_phases_completed_before_it() -> None:
    env = Environment.create("web").start_provisioning().provisioned(phase_hash="hp").start_configuring()
    failed = env.configure_failed(failure("configure"))
    assert failed.phases[Phase.PROVISION].hash == "hp"


def test_destroyed_forgets_phases_and_outputs_and_recreate_starts_over() -> None:
    running = reach("released").start_running().running(phase_hash="hn", outputs={"ip": "1"})
    destroyed = running.start_destroying().destroyed()
    assert dict(destroyed.phases) == {}
    assert dict(destroyed.outputs) == {}
    created = destroyed.recreate(desired_commit="c9", at=T1)
    assert created.state.name == "created"
    assert created.desired_commit == "c9"
    assert created.updated_at == T1


def test_a_failure_of_another_phase_is_refused() -> None:
    """A provision_failed carrying a configure failure would be reported as the wrong phase."""
    with pytest.raises(
        ValueError, match="configure failure cannot put the environment in state 'provision_failed'"
    ):
        reach("provisioning").provision_failed(failure("configure"))


@pytest.mark.parametrize("method", ["start_provisioning", "provisioned"])
def test_a_naive_transition_time_is_refused_before_anything_happens(
    method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A naive time used to pass here and break only when the state was written."""
    env = reach(IN_PROGRESS_OF[method])
    caplog.set_level(logging.INFO, logger="reconciler")
    with pytest.raises(ValueError, match="timezone-aware"):
        call(env, method, at=datetime(2026, 11, 28, 10, 15))
    assert caplog.records == []
    with pytest.raises(ValueError, match="timezone-aware"):
        Environment.create("web", at=datetime(2026, 11, 28))


IN_PROGRESS_OF = {"start_provisioning": "created", "provisioned": "provisioning"}


def test_in_progress_states_are_exactly_the_five() -> None:
    assert {s for s in STATES if reach(s).state.is_in_progress} == IN_PROGRESS


def test_with_desired_commit_is_not_a_transition(caplog: pytest.LogCaptureFixture) -> None:
    env = reach("running")
    caplog.set_level(logging.INFO, logger="reconciler")
    moved = env.with_desired_commit("c2")
    assert moved.desired_commit == "c2"
    assert moved.state is Running
    assert moved.updated_at == env.updated_at
    assert caplog.records == []
