"""The plain JSON views of SPEC section 5, shared by the CLI's ``--format json`` and the dashboard API.

Every document has ``"formatVersion": 1`` at its top and holds only plain
values: states and verdicts by name, times in RFC 3339 (UTC, ``Z``), numbers,
booleans and ``null``. Never a display string: a text renderer formats these
views, it never parses them back. Adding a key is compatible; renaming or
retyping one bumps ``formatVersion``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reconciler.domain import FailureContext, Lock
from reconciler.domain.values import format_timestamp
from reconciler.planner.model import EnvironmentPlan, Verdict
from reconciler.store.lock import stale_reason
from reconciler.store.model import CorruptState, Observed, TransitionRecord

FORMAT_VERSION = 1

JSON = dict[str, Any]


def document(**fields: Any) -> JSON:
    """A top-level JSON document: ``formatVersion`` first, then ``fields`` in order."""
    return {"formatVersion": FORMAT_VERSION, **fields}


def error_document(message: str, kind: str) -> JSON:
    """What a command writes to stderr instead of ``error: ...`` under ``--format json``.

    ``kind`` is one word a script can branch on: ``usage`` (exit 2), ``not_found``
    (an unknown environment), ``interrupted`` (aborted) or ``error`` (exit 1).
    """
    return document(error={"message": message, "kind": kind})


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def lock_view(lock: Lock, now: datetime, host: str | None = None) -> JSON:
    """The lock as state.json has it (SPEC 4.3), plus whether it is stale now and why."""
    why = stale_reason(lock, now, host)
    return {
        "id": str(lock.id),
        "holder": {
            "host": lock.holder.host,
            "pid": lock.holder.pid,
            "processStartedAt": timestamp(lock.holder.process_started_at),
        },
        "acquiredAt": format_timestamp(lock.acquired_at),
        "expiresAt": format_timestamp(lock.expires_at),
        "stale": why is not None,
        "staleReason": why,
    }


def failure_view(failure: FailureContext) -> JSON:
    """The failure as state.json has it (SPEC 4.2)."""
    data: JSON = failure.model_dump(mode="json", by_alias=True)
    return data


def transition_view(record: TransitionRecord) -> JSON:
    """One state-branch event, as ``history --format json`` prints it."""
    return {
        "event": record.event,
        "from": record.from_state,
        "to": record.to_state,
        "at": format_timestamp(record.at),
        "actor": record.actor,
        "desiredCommit": record.desired_commit,
        "commit": record.commit_id,
    }


def environment_view(
    name: str,
    observed: Observed | CorruptState | None,
    plan: EnvironmentPlan | None,
    *,
    labels: Mapping[str, str] | None = None,
    declared: bool,
    last: TransitionRecord | None,
    now: datetime,
) -> JSON:
    """One row of ``status``: observed against desired, converged?, lock, last transition, failure.

    ``plan`` is ``None`` only for corrupt state (nothing can be planned from it).
    ``verdict`` is the planner's word (``converged``, ``changes``, ``waiting``,
    ``blocked``, ``ahead``, ``suspended``, ``protected``, ``unmanaged``,
    ``invalid``, ``corrupt``); ``converged`` is ``verdict == "converged"``.
    """
    verdict = Verdict.CORRUPT if plan is None else plan.verdict
    row: JSON = {
        "name": name,
        "labels": dict(labels or {}),
        "declared": declared,
        "observed": None,
        "desired": plan.desired_state if plan is not None else None,
        "converged": verdict is Verdict.CONVERGED,
        "verdict": str(verdict),
        "reason": plan.reason if plan is not None else None,
        "desiredCommit": None,
        "lock": None,
        "lastTransition": None if last is None else transition_view(last),
        "failure": None,
        "corrupt": None,
        "suspended": None if plan is None or plan.suspended is None else plan.suspended.to_json(),
        "updatedAt": None,
        "drift": None,
    }
    if isinstance(observed, CorruptState):
        row["corrupt"] = {"path": observed.path, "error": observed.error}
    elif observed is not None:
        env = observed.env
        row["observed"] = env.state_name
        row["desiredCommit"] = env.desired_commit
        row["updatedAt"] = format_timestamp(env.updated_at)
        if env.lock is not None:
            row["lock"] = lock_view(env.lock, now)
        if env.error_details is not None:
            row["failure"] = failure_view(env.error_details)
        if env.drift is not None:
            row["drift"] = env.drift.model_dump(mode="json", by_alias=True)
    return row
