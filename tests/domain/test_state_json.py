"""``state.json`` (SPEC section 4.2): its exact shape, round trips, and refusals."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from reconciler.domain import (
    STATES_BY_NAME,
    AnyEnvironment,
    Environment,
    ErrorKind,
    FailureContext,
    Lock,
    LockHolder,
    Phase,
    PhaseRecord,
    StateDocumentError,
    format_timestamp,
)
from tests.domain.builders import T0, failure, lock, reach
from tests.domain.lifecycle_table import FAILED, IN_PROGRESS, STATES

M = TypeVar("M", bound=BaseModel)
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")
TOP_KEYS = ["schema", "name", "state", "desiredCommit", "phases", "outputs", "lock", "failure", "updatedAt"]
SPEC_FAILURE_KEYS = {
    "phase",
    "failedStep",
    "errorKind",
    "errorSummary",
    "attempt",
    "executionStartedAt",
    "failedAt",
    "executionDurationSeconds",
    "traceId",
    "traceFile",
}


def document(state: str, **kwargs: Any) -> dict[str, Any]:
    return json.loads(reach(state, **kwargs).into_any().to_json())  # type: ignore[no-any-return]


# -- the shape ---------------------------------------------------------------------


def test_a_failed_state_in_the_spec_shape() -> None:
    env = (
        Environment.create("web", desired_commit="a" * 40, at=T0)
        .start_provisioning(at=T0)
        .provisioned(phase_hash="hp", outputs={"ip": "10.0.0.5"}, at=T0)
        .start_provisioning(at=T0)
        .provision_failed(failure("provision"), at=T0 + timedelta(seconds=12))
    )
    doc = json.loads(env.into_any().to_json())

    assert list(doc) == TOP_KEYS
    assert doc["schema"] == 1
    assert doc["name"] == "web"
    assert doc["state"] == "provision_failed"
    assert doc["desiredCommit"] == "a" * 40
    assert doc["phases"] == {"provision": {"hash": "hp", "completedAt": "2026-11-28T10:15:00Z"}}
    assert doc["outputs"] == {"ip": "10.0.0.5"}
    assert doc["lock"] is None
    assert doc["updatedAt"] == "2026-11-28T10:15:12Z"
    f = doc["failure"]
    # Every key the SPEC names, camelCase; phaseHash is ours (it resets attempts when inputs change).
    assert set(f) == SPEC_FAILURE_KEYS | {"phaseHash"}
    assert f["phase"] == "provision"
    assert f["failedStep"] == "tofu apply infra/vm"
    assert f["errorKind"] == "command_failed"
    assert f["errorSummary"] == "tofu apply exited 1"
    assert f["attempt"] == 1
    assert f["executionStartedAt"] == "2026-11-28T10:15:00Z"
    assert f["failedAt"] == "2026-11-28T10:15:12.300000Z"
    assert f["executionDurationSeconds"] == 12.3
    assert re.fullmatch(r"[0-9a-f-]{36}", f["traceId"])
    assert f["traceFile"] == "data/web/traces/20261128-101500-provision.log"


def test_the_lock_in_the_spec_shape() -> None:
    held = lock()
    doc = json.loads(Environment.create("web").start_provisioning(lock=held).into_any().to_json())
    assert doc["state"] == "provisioning"
    assert doc["lock"] == {
        "id": str(held.id),
        "holder": {"host": "ci-1", "pid": 4242, "processStartedAt": "2026-11-28T09:00:00.500000Z"},
        "acquiredAt": "2026-11-28T10:15:00Z",
        "expiresAt": "2026-11-28T10:46:00Z",
    }


@pytest.mark.parametrize("state", STATES)
def test_every_state_has_the_spec_keys(state: str) -> None:
    doc = document(state)
    assert list(doc) == TOP_KEYS
    assert doc["state"] == state
    assert (doc["failure"] is not None) == (state in FAILED)
    assert RFC3339_Z.match(doc["updatedAt"])


def test_timestamps_are_utc_with_a_z_whatever_zone_they_were_made_in() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2026, 11, 28, 15, 45, 0, 250000, tzinfo=ist)
    assert format_timestamp(at) == "2026-11-28T10:15:00.250000Z"
    doc = json.loads(Environment.create("web", at=at).into_any().to_json())
    assert doc["updatedAt"] == "2026-11-28T10:15:00.250000Z"


def test_json_is_stable_text() -> None:
    text = reach("running").into_any().to_json()
    assert text.endswith("}\n")
    assert text.startswith('{\n  "schema": 1,\n  "name": "web",\n')
    assert AnyEnvironment.from_json(text).to_json() == text


# -- round trips -------------------------------------------------------------------

zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones)
words = st.text(min_size=1, max_size=30)
durations = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def model(cls: type[M], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[M]:
    """Build a pydantic value by field name (``st.builds`` would fill its camelCase aliases)."""
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


def contexts(phase: Phase) -> st.SearchStrategy[FailureContext]:
    return model(
        FailureContext,
        phase=st.just(phase),
        failed_step=words,
        error_kind=st.sampled_from(ErrorKind),
        error_summary=st.text(max_size=200),
        attempt=st.integers(min_value=0, max_value=1000),
        execution_started_at=times,
        failed_at=times,
        execution_duration_seconds=durations,
        trace_id=st.uuids(version=4),
        trace_file=st.none() | words,
        phase_hash=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    )


locks = model(
    Lock,
    id=st.uuids(version=4),
    holder=model(
        LockHolder,
        host=words,
        pid=st.integers(min_value=1, max_value=2**22),
        process_started_at=st.none() | times,
    ),
    acquired_at=times,
    expires_at=times,
)
phase_records = st.dictionaries(
    st.sampled_from(Phase), model(PhaseRecord, hash=words, completed_at=times), max_size=5
)
outputs = st.dictionaries(words, st.text(max_size=50), max_size=5)


@st.composite
def environments(draw: st.DrawFn) -> AnyEnvironment:
    state = STATES_BY_NAME[draw(st.sampled_from(STATES))]
    env: Environment[Any] = Environment(
        name=draw(st.from_regex(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", fullmatch=True)),
        state=state,
        desired_commit=draw(st.none() | st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)),
        phases=draw(phase_records),
        outputs=draw(outputs),
        lock=draw(st.none() | locks) if state.name in IN_PROGRESS else None,
        failure=draw(contexts(state.phase)) if state.name in FAILED else None,  # type: ignore[arg-type]
        updated_at=draw(times),
    )
    return env.into_any()


@given(environments())
def test_every_state_round_trips_through_json(env: AnyEnvironment) -> None:
    text = env.to_json()
    back = AnyEnvironment.from_json(text)
    assert back == env
    assert back.state is env.state
    assert back.error_details == env.error_details
    assert back.lock == env.lock
    assert back.to_json() == text
    doc = json.loads(text)
    assert list(doc) == TOP_KEYS
    stamps = [doc["updatedAt"], *(r["completedAt"] for r in doc["phases"].values())]
    if doc["failure"]:
        stamps += [doc["failure"]["executionStartedAt"], doc["failure"]["failedAt"]]
    if doc["lock"]:
        stamps += [doc["lock"]["acquiredAt"], doc["lock"]["expiresAt"]]
    assert all(RFC3339_Z.match(s) for s in stamps), stamps


@given(environments())
def test_from_dict_reads_what_to_json_wrote(env: AnyEnvironment) -> None:
    assert AnyEnvironment.from_dict(json.loads(env.to_json())) == env


# -- refusals ----------------------------------------------------------------------


def _mutated(from_state: str, **changes: Any) -> str:
    doc = document(from_state)
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _mutated("created", state="half_provisioned"),
            "unknown state 'half_provisioned' (expected one of: created,",
        ),
        (_mutated("provision_failed", failure=None), "state 'provision_failed' requires a failure context"),
        (
            _mutated("created", failure=document("run_failed")["failure"]),
            "state 'created' cannot carry a failure context",
        ),
        (
            _mutated("provision_failed", failure=document("run_failed")["failure"]),
            "state 'provision_failed' cannot carry a run failure",
        ),
        (
            _mutated("running", lock=json.loads(lock().model_dump_json(by_alias=True))),
            "state 'running' cannot hold a lock",
        ),
        (_mutated("created", name=5), "name: Input should be a valid string"),
        (_mutated("created", schema=2), "schema: Input should be 1"),
        (_mutated("created", outputs={"ip": 10}), "outputs.ip: Input should be a valid string"),
        (
            _mutated("created", phases={"check": {"hash": "h", "completedAt": "2026-11-28T10:15:00Z"}}),
            "phases.check",
        ),
        (_mutated("created", updatedAt="2026-11-28T10:15:00"), "updatedAt: Input should have timezone info"),
        (_mutated("created", surprise=True), "surprise: Extra inputs are not permitted"),
        (json.dumps({k: v for k, v in document("created").items() if k != "name"}), "name: Field required"),
        ("[]", "invalid state document"),
        ('{"schema": 1,', "invalid state document"),
        (b"\xff\xfe", "invalid state document"),
    ],
)
def test_bad_documents_are_refused_with_a_clear_message(text: str | bytes, message: str) -> None:
    with pytest.raises(StateDocumentError) as caught:
        AnyEnvironment.from_json(text)
    assert message in str(caught.value)


def test_a_bad_failure_field_is_named() -> None:
    doc = document("run_failed")
    doc["failure"]["errorKind"] = "gremlins"
    with pytest.raises(StateDocumentError, match=r"failure\.errorKind: Input should be 'template'"):
        AnyEnvironment.from_json(json.dumps(doc))
