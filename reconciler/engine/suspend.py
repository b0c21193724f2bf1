"""``reconcile suspend`` / ``reconcile resume``: an operator's override, recorded on the state branch.

Each is one commit whose From equals To (``Reconcile-Event: suspend`` /
``resume``, actor ``<user>@<host>``), through the store's compare-and-swap, so
with ``remote`` set it counts only once the remote holds it. The state is
otherwise untouched: an environment in progress keeps its lock and its phase
finishes (the engine carries the override into the commit that ends it);
nothing further starts until it is resumed (decision 021).
"""

from __future__ import annotations

import re
from datetime import datetime

from reconciler.domain import SuspensionRecord, format_timestamp, utcnow
from reconciler.store import LostRace, Observed, StateStore
from reconciler.store.message import person

#: A lost compare-and-swap (a reconciler committing the same environment meanwhile) is retried this often.
MAX_LOST_RACES = 8
#: Longest ``--reason``: one line a status table can show.
MAX_REASON_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


class NotSuspendable(ValueError):
    """The override cannot be recorded as asked (already suspended, not suspended, never observed)."""


def check_reason(reason: str | None) -> str | None:
    """``--reason`` as it is kept: one line of at most ``MAX_REASON_CHARS``; empty is none."""
    if reason is None or not reason.strip():
        return None
    text = reason.strip()
    if _CONTROL.search(text):
        raise ValueError(
            "--reason must be one line of text, without control characters (newlines, tabs, NUL)"
        )
    if len(text) > MAX_REASON_CHARS:
        raise ValueError(f"--reason must be at most {MAX_REASON_CHARS} characters, not {len(text)}")
    return text


def suspend(
    store: StateStore,
    name: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Observed:
    """Record ``name`` as suspended by ``actor`` (default: this person), as one commit.

    ``NotSuspendable`` when it has no recorded state or is suspended already.
    """
    who = actor or person()
    record = SuspensionRecord(by=who, at=now or utcnow(), reason=check_reason(reason))
    for _ in range(MAX_LOST_RACES):
        observed = store.read(name)
        if observed is None:
            raise NotSuspendable(
                f"environment '{name}' has no recorded state yet, so there is nothing to suspend; "
                f"to keep it from being created, commit `spec.suspend: true` in its file"
            )
        current = observed.env.suspended
        if current is not None:
            why = f" ({current.reason})" if current.reason else ""
            raise NotSuspendable(
                f"environment '{name}' is already suspended by {current.by} "
                f"since {format_timestamp(current.at)}{why}; "
                f"`reconcile resume {name}` lifts it"
            )
        after = observed.env.environment.with_suspension(record).into_any()
        detail = f"suspended by {who}" + (f": {record.reason}" if record.reason else "")
        try:
            return store.apply(
                name,
                observed.version,
                after,
                from_state=observed.env.state_name,
                desired_commit=observed.env.desired_commit,
                detail=detail,
                actor=who,
                event="suspend",
            )
        except LostRace:
            continue  # a reconciler committed it meanwhile: read again and decide again
    raise LostRace(f"{name}: its state kept moving; try `reconcile suspend {name}` again")


def resume(store: StateStore, name: str, *, actor: str | None = None) -> tuple[Observed, SuspensionRecord]:
    """Lift an operator's suspension of ``name``, as one commit; returns the state and what was lifted.

    ``NotSuspendable`` when no operator suspended it (its file's ``spec.suspend`` is lifted by a commit).
    """
    who = actor or person()
    for _ in range(MAX_LOST_RACES):
        observed = store.read(name)
        lifted = observed.env.suspended if observed is not None else None
        if observed is None or lifted is None:
            raise NotSuspendable(
                f"environment '{name}' is not suspended by `reconcile suspend`, so there is nothing to "
                "resume (a `spec.suspend: true` in its file is lifted by committing `suspend: false`)"
            )
        after = observed.env.environment.with_suspension(None).into_any()
        detail = f"resumed by {who}; it was suspended by {lifted.by}" + (
            f": {lifted.reason}" if lifted.reason else ""
        )
        try:
            result = store.apply(
                name,
                observed.version,
                after,
                from_state=observed.env.state_name,
                desired_commit=observed.env.desired_commit,
                detail=detail,
                actor=who,
                event="resume",
            )
        except LostRace:
            continue
        return result, lifted
    raise LostRace(f"{name}: its state kept moving; try `reconcile resume {name}` again")
