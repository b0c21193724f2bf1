"""Ending in-progress states whose holder is gone (SPEC section 3).

An interrupted phase is not an attempt: the failure keeps the attempt count
of the failure it was retrying, so the retry budget is not spent by crashes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from reconciler.domain import AnyEnvironment, ErrorKind, FailureContext, utcnow
from reconciler.domain.dispatch import fail_phase, in_progress_phase
from reconciler.store.errors import LockIdMismatch, LostRace
from reconciler.store.lock import stale_reason
from reconciler.store.message import RECONCILER_ACTOR, person
from reconciler.store.model import CorruptState, Observed, RemembersFailures, StateStore

logger = logging.getLogger(__name__)


def interrupted(
    env: AnyEnvironment, summary: str, now: datetime, earlier: FailureContext | None = None
) -> AnyEnvironment:
    """``env``'s in-progress state ended as its failed state with error kind ``interrupted``."""
    phase = in_progress_phase(env)
    if phase is None:
        raise LockIdMismatch(f"{env.name}: state '{env.state_name}' is not in progress, nothing to unlock")
    started = env.lock.acquired_at if env.lock is not None else env.updated_at
    same_phase = earlier is not None and earlier.phase is phase
    ctx = FailureContext(
        phase=phase,
        failed_step=f"{phase.value} phase",
        error_kind=ErrorKind.INTERRUPTED,
        error_summary=summary,
        attempt=earlier.attempt if same_phase and earlier is not None else 0,
        execution_started_at=started,
        failed_at=now,
        execution_duration_seconds=max(0.0, (now - started).total_seconds()),
        phase_hash=earlier.phase_hash if same_phase and earlier is not None else None,
    )
    return fail_phase(env, ctx, at=now)


def _earlier_failure(store: StateStore, name: str) -> FailureContext | None:
    return store.failure_before(name) if isinstance(store, RemembersFailures) else None


def force_unlock(store: StateStore, name: str, lock_id: object, actor: str | None = None) -> Observed:
    """``unlock`` for any store: the id is a nonce that must match the current lock.

    Only a person force-unlocks: the commit's actor is ``<user>@<host>`` unless told otherwise.
    """
    observed = store.read(name)
    if observed is None:
        raise LockIdMismatch(f"{name}: no such environment, nothing to unlock")
    env = observed.env
    if env.lock is None:
        raise LockIdMismatch(f"{name}: not locked (state '{env.state_name}')")
    if env.lock.id != lock_id:
        raise LockIdMismatch(
            f"{name}: lock id {lock_id} does not match the current lock {env.lock.id}\n"
            f"Tip: `reconcile show {name}` prints the current lock id."
        )
    summary = f"interrupted: force-unlocked (lock {env.lock.id})"
    failed = interrupted(env, summary, utcnow(), _earlier_failure(store, name))
    return store.apply(
        name,
        observed.version,
        failed,
        from_state=env.state_name,
        desired_commit=env.desired_commit,
        detail=summary,
        actor=actor or person(),
        event="unlock",
    )


def recover_stale(store: StateStore, now: datetime, names: Iterable[str] | None = None) -> list[str]:
    """Move every in-progress environment with a stale lock to its failed state; return their names.

    A race lost to another reconciler is not an error: that one has acted.
    """
    wanted = set(names) if names is not None else None
    recovered: list[str] = []
    for name, observed in sorted(store.read_all().items()):
        if wanted is not None and name not in wanted:
            continue
        if isinstance(observed, CorruptState) or not observed.env.is_in_progress:
            continue
        env = observed.env
        if env.lock is None:
            reason: str | None = "no lock recorded"
        else:
            reason = stale_reason(env.lock, now)
        if reason is None:
            continue
        summary = f"interrupted: {reason}"
        failed = interrupted(env, summary, now, _earlier_failure(store, name))
        try:
            store.apply(
                name,
                observed.version,
                failed,
                from_state=env.state_name,
                desired_commit=env.desired_commit,
                detail=summary,
                actor=RECONCILER_ACTOR,
            )
        except LostRace:
            logger.info("stale lock already handled elsewhere", extra={"environment": name})
            continue
        logger.warning("recovered stale lock", extra={"environment": name, "reason": reason})
        recovered.append(name)
    return recovered
