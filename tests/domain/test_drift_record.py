"""The ``drift`` of ``state.json`` (SPEC 3.1, 4.2): its shape, its life across transitions, old files."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from reconciler.domain import AnyEnvironment, DriftRecord, DriftStatus, StateDocumentError
from tests.domain.builders import T0, reach

DRIFTED = DriftRecord(
    status=DriftStatus.DRIFTED,
    phase="provision",
    step="tofu apply infra/vm",
    summary="Plan: 1 to add, 0 to change, 0 to destroy.",
    checked_at=T0 + timedelta(minutes=5),
    since=T0,
)


def test_drift_is_written_with_the_spec_keys_after_the_others() -> None:
    env = reach("running").into_any().with_drift(DRIFTED)
    doc = json.loads(env.to_json())
    assert list(doc)[-1] == "drift"
    assert doc["drift"] == {
        "status": "drifted",
        "phase": "provision",
        "step": "tofu apply infra/vm",
        "summary": "Plan: 1 to add, 0 to change, 0 to destroy.",
        "checkedAt": "2026-11-28T10:20:00Z",
        "since": "2026-11-28T10:15:00Z",
    }
    assert AnyEnvironment.from_json(env.to_json()) == env


def test_a_file_without_drift_reads_and_is_written_back_without_the_key() -> None:
    env = reach("running").into_any()
    text = env.to_json()
    assert "drift" not in json.loads(text)
    back = AnyEnvironment.from_json(text)
    assert back.drift is None
    assert back.to_json() == text


def test_drift_rides_along_transitions_and_a_destroy_forgets_it() -> None:
    env = reach("running").with_drift(DRIFTED)
    reapplying = env.start_provisioning(at=T0)
    assert reapplying.drift == DRIFTED
    assert reapplying.provisioned(at=T0).drift == DRIFTED
    gone = env.start_destroying(at=T0).destroyed(at=T0)
    assert gone.drift is None


def test_an_unknown_drift_status_is_refused_naming_the_field() -> None:
    doc = json.loads(reach("running").into_any().with_drift(DRIFTED).to_json())
    doc["drift"]["status"] = "sideways"
    with pytest.raises(StateDocumentError, match=r"drift\.status"):
        AnyEnvironment.from_dict(doc)


def test_same_finding_ignores_times_and_wording_and_none_reads_as_in_sync() -> None:
    reworded = DRIFTED.model_copy(update={"summary": "Plan: 2 to add", "checked_at": T0})
    assert DRIFTED.same_finding(reworded)
    assert not DRIFTED.same_finding(DRIFTED.model_copy(update={"phase": "configure"}))
    assert not DRIFTED.same_finding(None)
    in_sync = DriftRecord(status=DriftStatus.IN_SYNC, checked_at=T0, since=T0)
    assert in_sync.same_finding(None)
