"""What ``status`` and ``show`` report: observed against desired, and what to do next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.selector import Selector, select
from reconciler.domain import AnyEnvironment, DriftStatus, ErrorKind, utcnow
from reconciler.engine.reconcile import Engine
from reconciler.store import CorruptState
from reconciler.store.lock import stale_reason
from reconciler.store.model import TransitionRecord
from reconciler.views import environment_view


def environment_rows(
    engine: Engine, snapshot: DesiredSnapshot, only: str | None = None, selector: Selector | None = None
) -> list[dict[str, Any]]:
    """One plain row per environment, declared or observed (``reconciler.views.environment_view``).

    With ``selector``, only declared environments whose labels match: one that is
    only observed (its file deleted) or whose file is invalid has no labels to match.
    """
    observed_all = engine.store.read_all()
    declared = snapshot.names  # a property that builds a set: once, not per row
    names = sorted(set(declared) | set(observed_all))
    if only is not None:
        names = [n for n in names if n == only]
    labels = {n: env.labels for n, env in snapshot.environments.items()}
    names = select(names, labels, selector)
    last: dict[str, TransitionRecord] = {}
    for record in engine.store.history(None, limit=max(200, 4 * len(names))):
        last.setdefault(record.name, record)
    now = engine.clock.now()
    rows: list[dict[str, Any]] = []
    for name in names:
        item = observed_all.get(name)
        plan = None if isinstance(item, CorruptState) else engine.plan(snapshot, name, item)
        rows.append(
            environment_view(
                name,
                item,
                plan,
                labels=labels.get(name),
                declared=name in declared,
                last=last.get(name),
                now=now,
            )
        )
    return rows


_NEXT = {
    "created": "run `reconcile apply {name}` to provision it",
    "provisioned": "run `reconcile apply {name}` to carry on to the desired state",
    "configured": "run `reconcile apply {name}` to carry on to the desired state",
    "released": "run `reconcile apply {name}` to start it",
    "running": "nothing: it is running; `reconcile status {name}` shows whether it is converged",
    "destroyed": "nothing; declare it alive again (desiredState) to recreate it",
}


def next_step(env: AnyEnvironment, declared: bool, now: datetime | None = None) -> str:
    """The suggested next step for an environment in its current state."""
    name = env.name
    if env.suspended is not None and not env.is_in_progress:
        return (
            f"nothing acts on it while it is suspended (by {env.suspended.by}); "
            f"`reconcile resume {name}` lifts it (docs/recovery.md)"
        )
    if env.is_in_progress:
        lock = env.lock
        who = f"{lock.holder.host}:{lock.holder.pid}" if lock else "an unknown holder"
        lock_id = lock.id if lock else "<id>"
        why = stale_reason(lock, now or utcnow()) if lock is not None else None
        if why is not None:
            return (
                f"the lock is stale ({why}): the next `reconcile apply {name}` (or the daemon) stops "
                "anything its holder left running on this host, records the phase as interrupted "
                "and retries it"
            )
        return (
            f"a phase is running, held by {who}; wait for it. If that process is gone for sure, "
            f"`reconcile unlock {name} --lock-id {lock_id}` (docs/recovery.md)"
        )
    failure = env.error_details
    if failure is not None:
        trace = f" Read the trace: {failure.trace_file}." if failure.trace_file else ""
        if failure.error_kind is ErrorKind.INTERRUPTED:
            return f"{failure.phase} was interrupted; the next `reconcile apply {name}` retries it at once."
        if failure.error_kind is ErrorKind.TEMPLATE or failure.error_kind is ErrorKind.CONFIGURATION:
            return f"fix the environment's files and commit; the change retries it at once.{trace}"
        return (
            f"{failure.phase} failed at '{failure.failed_step}'.{trace} "
            "Fix the cause and commit (retried at once), "
            f"or run `reconcile retry {name}` to retry the same inputs; see docs/recovery.md"
        )
    drift = env.drift
    if declared and drift is not None and drift.status is not DriftStatus.IN_SYNC:
        return (
            f"the last look found it {drift.status} at {drift.phase} ({drift.summary}); "
            f"`reconcile check {name} --heal` re-applies from there, or see docs/recovery.md (drift)"
        )
    if not declared:
        return "its file was deleted; set `prune: true` in reconciler.yaml to destroy it, or restore the file"
    return _NEXT.get(env.state_name, "run `reconcile apply`").format(name=name)
