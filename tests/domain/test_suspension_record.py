"""``suspended`` in ``state.json`` (SPEC 4.2): optional, kept through transitions, older files still read."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from reconciler.domain import AnyEnvironment, Environment, StateDocumentError, SuspensionRecord
from reconciler.domain.dispatch import start_phase, succeed_phase
from reconciler.domain.states import Phase
from tests.domain.builders import T0, lock

RECORD = SuspensionRecord(by="alice@ws1", at=T0, reason="disk full on the host")


def test_written_only_when_set_and_in_the_spec_shape() -> None:
    env = Environment.create("web", at=T0).into_any()
    assert "suspended" not in json.loads(env.to_json())

    suspended = env.environment.with_suspension(RECORD).into_any()
    doc = json.loads(suspended.to_json())

    assert list(doc)[-1] == "suspended"
    assert doc["suspended"] == {
        "by": "alice@ws1",
        "at": "2026-11-28T10:15:00Z",
        "reason": "disk full on the host",
    }
    assert AnyEnvironment.from_json(suspended.to_json()) == suspended
    assert AnyEnvironment.from_json(suspended.to_json()).suspended == RECORD


def test_a_file_written_before_the_key_existed_reads_as_not_suspended() -> None:
    old = (
        '{"schema": 1, "name": "web", "state": "created", "desiredCommit": null, "phases": {}, '
        '"outputs": {}, "lock": null, "failure": null, "updatedAt": "2026-11-28T10:15:00Z"}'
    )
    env = AnyEnvironment.from_json(old)
    assert env.suspended is None
    assert json.loads(env.to_json()) == json.loads(old)


def test_transitions_keep_it_until_it_is_lifted() -> None:
    """A phase that was running when somebody suspended the environment ends suspended."""
    env = Environment.create("web", at=T0).into_any()
    running = start_phase(env, Phase.PROVISION, lock=lock(), at=T0)
    suspended = running.environment.with_suspension(RECORD).into_any()

    done = succeed_phase(suspended, phase_hash="h1", at=T0 + timedelta(seconds=5))

    assert done.state_name == "provisioned"
    assert done.suspended == RECORD
    assert done.environment.with_suspension(None).into_any().suspended is None


@pytest.mark.parametrize(
    ("suspended", "field"),
    [
        ({"by": "", "at": "2026-11-28T10:15:00Z"}, "suspended.by"),
        ({"by": "a@b", "at": "2026-11-28T10:15:00"}, "suspended.at"),
        ({"by": "a@b", "at": "2026-11-28T10:15:00Z", "why": "x"}, "suspended.why"),
        ("yes", "suspended"),
    ],
)
def test_a_bad_record_is_refused_naming_the_field(suspended: object, field: str) -> None:
    doc = json.loads(Environment.create("web", at=T0).into_any().to_json())
    doc["suspended"] = suspended
    with pytest.raises(StateDocumentError, match=field.replace(".", r"\.")):
        AnyEnvironment.from_dict(doc)
