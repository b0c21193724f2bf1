"""What ``status`` and ``show`` report: observed against desired, and what to do next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.domain import AnyEnvironment, DriftStatus, ErrorKind, utcnow
from reconciler.engine.reconcile import Engine
from reconciler.store import CorruptState
from reconciler.store.lock import stale_reason


def environment_rows(
    engine: Engine, snapshot: DesiredSnapshot, only: str | None = None
) -> list[dict[str, Any]]:
    """One row per environment, declared or observed."""
    observed_all = engine.store.read_all()
    names = sorted(set(snapshot.names) | set(observed_all))
    if only is not None:
        names = [n for n in names if n == only]
    last: dict[str, str] = {}
    for record in engine.store.history(None, limit=max(200, 4 * len(names))):
        last.setdefault(
            record.name, f"{record.from_state} -> {record.to_state} at {record.at:%Y-%m-%d %H:%M:%S}"
        )
    rows: list[dict[str, Any]] = []
    for name in names:
        item = observed_all.get(name)
        desired = snapshot.environments.get(name)
        row: dict[str, Any] = {
            "name": name,
            "observed": None,
            "desired": str(desired.desired_state)
            if desired
            else ("invalid" if name in snapshot.broken else None),
            "verdict": "",
            "lock": None,
            "lastTransition": last.get(name),
            "failure": None,
            "drift": None,
            "suspended": None,
        }
        if isinstance(item, CorruptState):
            row["observed"] = "corrupt"
            row["verdict"] = "corrupt"
            row["failure"] = item.error
        else:
            plan = engine.plan(snapshot, name, item)
            row["verdict"] = "yes" if plan.verdict == "converged" else f"no: {plan.verdict}"
            if plan.suspended is not None:
                row["suspended"] = plan.suspended.to_json()
            if item is not None:
                env = item.env
                row["observed"] = env.state_name
                if env.lock is not None:
                    holder = f"{env.lock.holder.host}:{env.lock.holder.pid}"
                    why = stale_reason(env.lock, engine.clock.now())
                    until = f"until {env.lock.expires_at:%H:%M:%S}"
                    row["lock"] = f"{holder} {until}" if why is None else f"{holder} (stale: {why})"
                if env.drift is not None:
                    row["drift"] = str(env.drift.status)
                if env.error_details is not None:
                    f = env.error_details
                    row["failure"] = f"{f.failed_step}: {f.error_summary} (attempt {f.attempt})"
        rows.append(row)
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
