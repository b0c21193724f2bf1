"""Deciding what to do: observed state x desired state x clock -> the transitions to run and why.

A pure function of values (SPEC section 3, Planning): no git, no processes,
no clock reads. The engine acts on a ``CHANGES`` plan; ``reconcile plan``
prints every plan. See docs/decisions/005-planner.md for the choices the
SPEC leaves open.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Protocol

from reconciler.desired.models import DesiredState, Retry
from reconciler.desired.resolved import DesiredSnapshot, ResolvedEnvironment
from reconciler.domain.erased import AnyEnvironment
from reconciler.domain.states import (
    FAILED,
    FORWARD_PHASES,
    Destroyed,
    DestroyFailed,
    Phase,
    State,
    completed_phases,
)
from reconciler.domain.values import ErrorKind, FailureContext, Lock, PhaseRecord, format_timestamp
from reconciler.planner.model import Action, ActionKind, EnvironmentPlan, PlanContext, Verdict
from reconciler.planner.suspension import Suspension, suspension

#: How many forward phases each desired state needs completed.
_LEVEL: Mapping[DesiredState, int] = {
    DesiredState.CREATED: 0,
    DesiredState.PROVISIONED: 1,
    DesiredState.CONFIGURED: 2,
    DesiredState.RELEASED: 3,
    DesiredState.RUNNING: 4,
}
#: The success state of each forward phase, as a reason says it: "not yet provisioned".
_DONE: Mapping[Phase, str] = {
    Phase.PROVISION: "provisioned",
    Phase.CONFIGURE: "configured",
    Phase.RELEASE: "released",
    Phase.RUN: "running",
}


class Unreadable(Protocol):
    """A state that could not be read (the store's ``CorruptState``): reported, left alone."""

    @property
    def error(self) -> str: ...


@dataclass(frozen=True)
class _Decision:
    """A plan before the name and states are attached."""

    verdict: Verdict
    reason: str
    actions: tuple[Action, ...] = ()
    retry_at: datetime | None = None
    next_attempt: int = 1


# -- one environment -------------------------------------------------------------------


def plan_environment(
    name: str,
    observed: AnyEnvironment | None,
    desired: ResolvedEnvironment | None,
    ctx: PlanContext,
) -> EnvironmentPlan:
    """What reconciling ``name`` would do now, and why."""
    suspended = suspension(desired, observed)
    decision = _decide(name, observed, desired, ctx, suspended)
    return EnvironmentPlan(
        name=name,
        verdict=decision.verdict,
        actions=decision.actions,
        reason=decision.reason,
        observed_state=observed.state_name if observed is not None else None,
        desired_state=str(desired.desired_state) if desired is not None else None,
        retry_at=decision.retry_at,
        next_attempt=decision.next_attempt,
        suspended=suspended,
    )


def _decide(
    name: str,
    observed: AnyEnvironment | None,
    desired: ResolvedEnvironment | None,
    ctx: PlanContext,
    suspended: Suspension | None,
) -> _Decision:
    if observed is not None and observed.is_in_progress:
        lock = observed.lock
        if lock is not None and not ctx.lock_stale:
            return _Decision(Verdict.WAITING, _locked_reason(observed, lock))
        core = _recover(name, observed, desired, ctx)
    elif desired is None:
        core = _undeclared(name, observed, ctx)
    else:
        core = _declared(name, observed, desired, ctx.now)
    return _gate(core, suspended, ctx)


def _locked_reason(observed: AnyEnvironment, lock: Lock) -> str:
    holder = f"{lock.holder.host}:{lock.holder.pid}"
    return f"{observed.state_name}: locked by {holder} until {format_timestamp(lock.expires_at)}"


def _recover(
    name: str, observed: AnyEnvironment, desired: ResolvedEnvironment | None, ctx: PlanContext
) -> _Decision:
    """A stale lock: end the phase as ``interrupted``, then plan from that failed state.

    The planner cannot see the attempt count of the failure the interrupted run
    was retrying (the store can, and keeps it); an interruption is retried at
    once either way, so the plan does not depend on it.
    """
    phase = observed.state.phase
    assert phase is not None  # every in-progress state belongs to a phase
    why = "lock expired or its holder is gone" if observed.lock is not None else "no lock recorded"
    recover = Action(ActionKind.RECOVER, phase, f"{observed.state_name} was interrupted ({why})")
    failed = _View(
        state=FAILED[phase],
        phases=observed.phases,
        failure=FailureContext(
            phase=phase,
            failed_step=f"{phase} phase",
            error_kind=ErrorKind.INTERRUPTED,
            error_summary="interrupted",
            attempt=0,
            execution_started_at=ctx.now,
            failed_at=ctx.now,
            execution_duration_seconds=0,
        ),
    )
    if desired is None:
        rest = _undeclared_view(name, failed, ctx) if ctx.prune else None
    else:
        rest = _declared_view(name, failed, desired, ctx.now)
    if rest is None or rest.verdict is not Verdict.CHANGES:
        then = f"; then {rest.verdict}: {rest.reason}" if rest is not None else ""
        return _Decision(Verdict.CHANGES, f"stale lock on {observed.state_name}: recover{then}", (recover,))
    return replace(
        rest,
        actions=(recover, *rest.actions),
        reason=f"stale lock on {observed.state_name}: recover, then {rest.reason}",
    )


def _undeclared(name: str, observed: AnyEnvironment | None, ctx: PlanContext) -> _Decision:
    if observed is None:
        return _Decision(Verdict.UNMANAGED, "no environment file and no recorded state")
    return _undeclared_view(name, _View.of(observed), ctx)


def _undeclared_view(name: str, view: _View, ctx: PlanContext) -> _Decision:
    if view.state is Destroyed:
        return _Decision(Verdict.CONVERGED, "environment file removed; already destroyed")
    if not ctx.prune:
        return _Decision(
            Verdict.UNMANAGED,
            "environment file removed; left as it is (set `prune: true` in reconciler.yaml to destroy it)",
        )
    if ctx.protected_before:
        return _Decision(
            Verdict.PROTECTED,
            f"environment file removed, but it was protected: never pruned; it stays {view.state.name}",
        )
    return _destroy(name, view, None, Retry(), now=ctx.now, why="environment file removed and prune is on")


def _declared(
    name: str, observed: AnyEnvironment | None, desired: ResolvedEnvironment, now: datetime
) -> _Decision:
    if observed is None:
        if desired.desired_state is DesiredState.DESTROYED:
            return _Decision(Verdict.CONVERGED, "destroyed (never created)")
        create = Action(ActionKind.CREATE, None, "no recorded state yet")
        return _forward_from_scratch(create, desired)
    return _declared_view(name, _View.of(observed), desired, now)


def _declared_view(name: str, view: _View, desired: ResolvedEnvironment, now: datetime) -> _Decision:
    wanted = desired.desired_state
    if wanted is DesiredState.DESTROYED:
        if view.state is Destroyed:
            return _Decision(Verdict.CONVERGED, "destroyed")
        if desired.spec.protected:
            return _Decision(
                Verdict.PROTECTED,
                f"desired state is destroyed, but the environment is protected: it stays {view.state.name}",
            )
        hash_ = desired.phase_hashes.get(Phase.DESTROY)
        return _destroy(name, view, hash_, desired.spec.retry, now=now, why="desired state is destroyed")
    if view.state is Destroyed:
        recreate = Action(ActionKind.RECREATE, None, f"destroyed, desired {wanted}")
        return _forward_from_scratch(recreate, desired)
    return _forward(name, view, desired, now)


def _forward_from_scratch(first: Action, desired: ResolvedEnvironment) -> _Decision:
    phases = FORWARD_PHASES[: _LEVEL[desired.desired_state]]
    actions = (first, *(Action(ActionKind.PHASE, p, f"not yet {_DONE[p]}") for p in phases))
    return _Decision(Verdict.CHANGES, first.reason, actions)


def _forward(name: str, view: _View, desired: ResolvedEnvironment, now: datetime) -> _Decision:
    """Desired created..running from any state that is neither in progress nor destroyed."""
    wanted = desired.desired_state
    level = _LEVEL[wanted]
    failed = view.failure.phase if view.failure is not None else None
    forward_failure = failed in FORWARD_PHASES
    reached = len(completed_phases(view.state)) + (1 if forward_failure else 0)
    if reached > level:
        return _Decision(
            Verdict.AHEAD,
            f"observed {view.state.name} is past desired {wanted}; nothing is undone",
        )
    actions = _phases_to_run(view, desired, FORWARD_PHASES[:level])
    if not actions and view.state.name != wanted:
        # Only destroy_failed -> created: no transition leads back to ``created`` but ``recreate``.
        return _Decision(
            Verdict.BLOCKED,
            f"no transition leads from {view.state.name} to {wanted}; "
            "declare `provisioned` or later to rebuild it, or `destroyed` to retry the destroy",
        )
    if not actions:
        return _Decision(Verdict.CONVERGED, f"{wanted}; inputs unchanged")
    summary = actions[0].reason
    if failed is None or not forward_failure or view.failure is None:
        return _Decision(Verdict.CHANGES, summary, actions)
    return _retry(name, view.failure, actions, desired.phase_hashes.get(failed), desired.spec.retry, now=now)


def _phases_to_run(
    view: _View, desired: ResolvedEnvironment, wanted: tuple[Phase, ...]
) -> tuple[Action, ...]:
    """Every phase from the earliest one needing a run through the last wanted one."""
    completed = completed_phases(view.state)
    own: dict[Phase, str] = {}
    for phase in wanted:
        if phase not in completed:
            own[phase] = f"not yet {_DONE[phase]}"
            continue
        want = desired.phase_hashes.get(phase)
        record = view.phases.get(phase)
        if want is None:
            continue  # nothing to compare with: completion alone counts
        if record is None:
            own[phase] = f"{phase} inputs not recorded"
        elif record.hash != want:
            own[phase] = f"{phase} inputs changed"
    if not own:
        return ()
    first = next(p for p in wanted if p in own)
    start = wanted.index(first)
    return tuple(Action(ActionKind.PHASE, p, own.get(p, f"re-applied after {first}")) for p in wanted[start:])


def _destroy(
    name: str, view: _View, hash_: str | None, retry: Retry, *, now: datetime, why: str
) -> _Decision:
    action = Action(ActionKind.PHASE, Phase.DESTROY, why)
    if view.state is DestroyFailed and view.failure is not None:
        return _retry(name, view.failure, (action,), hash_, retry, now=now)
    return _Decision(Verdict.CHANGES, why, (action,))


def _retry(
    name: str,
    failure: FailureContext,
    actions: tuple[Action, ...],
    desired_hash: str | None,
    retry: Retry,
    *,
    now: datetime,
) -> _Decision:
    """The retry rules for a failed phase that the plan runs again (SPEC section 3)."""
    failed = failure.phase
    what = f"{failed} failed: {failure.error_summary}"
    first = actions[0]
    if first.phase is not failed:
        reason = f"{first.phase} inputs changed since {what}; attempts reset"
        return _Decision(Verdict.CHANGES, reason, actions)
    if failure.phase_hash is not None and desired_hash is not None and failure.phase_hash != desired_hash:
        reason = f"{failed} inputs changed since it failed; attempts reset"
        return _Decision(Verdict.CHANGES, reason, _retitle(actions, reason))
    if failure.attempt == 0:
        reason = "retry requested" if failure.error_kind is not ErrorKind.INTERRUPTED else "interrupted"
        reason = f"{reason}; retry {failed} at once"
        return _Decision(Verdict.CHANGES, reason, _retitle(actions, reason))
    # ``retry.limit`` counts retries: the first run plus ``limit`` retries are ``limit + 1`` attempts.
    if failure.attempt > retry.limit:
        return _Decision(
            Verdict.BLOCKED,
            f"{what}; retries exhausted ({failure.attempt - 1}/{retry.limit}); "
            f"fix the inputs or run `reconcile retry {name}`",
        )
    attempt = failure.attempt + 1
    counted = f"retry {attempt - 1}/{retry.limit}"
    if failure.error_kind is ErrorKind.INTERRUPTED:
        reason = f"{failed} was interrupted; retry at once ({counted})"
        return _Decision(Verdict.CHANGES, reason, _retitle(actions, reason), next_attempt=attempt)
    retry_at = failure.failed_at + timedelta(seconds=_backoff(retry.backoff_seconds, failure.attempt))
    if now < retry_at:
        return _Decision(
            Verdict.WAITING,
            f"{what}; backing off until {format_timestamp(retry_at)} ({counted})",
            _retitle(actions, f"retry after {what} ({counted})"),
            retry_at=retry_at,
            next_attempt=attempt,
        )
    reason = f"retry after {what} ({counted})"
    return _Decision(Verdict.CHANGES, reason, _retitle(actions, reason), next_attempt=attempt)


def _retitle(actions: tuple[Action, ...], reason: str) -> tuple[Action, ...]:
    return (replace(actions[0], reason=reason), *actions[1:])


def _gate(core: _Decision, suspended: Suspension | None, ctx: PlanContext) -> _Decision:
    """Suspension (its file's or an operator's) and dependencies hold back a plan that would act."""
    if suspended is not None:
        if core.verdict is Verdict.CONVERGED:
            return replace(core, reason=f"{core.reason} ({suspended.describe()})")
        return replace(
            core, verdict=Verdict.SUSPENDED, reason=f"{suspended.describe()}; nothing is done ({core.reason})"
        )
    if core.verdict is not Verdict.CHANGES:
        return core
    destroys = any(a.phase is Phase.DESTROY and a.kind is ActionKind.PHASE for a in core.actions)
    if destroys:
        alive = sorted(n for n, gone in ctx.dependents.items() if not gone)
        if alive:
            return replace(
                core, verdict=Verdict.WAITING, reason=f"waiting for {_join(alive)} to be destroyed first"
            )
        return core
    builds = any(a.kind is not ActionKind.RECOVER for a in core.actions)
    pending = sorted(n for n, ready in ctx.dependencies.items() if not ready)
    if builds and pending:
        return replace(core, verdict=Verdict.WAITING, reason=f"waiting for {_join(pending)}")
    return core


def _join(names: list[str]) -> str:
    return ", ".join(names)


@dataclass(frozen=True)
class _View:
    """What a decision reads of an observed state, so a recovered state can be planned unbuilt."""

    state: type[State]
    phases: Mapping[Phase, PhaseRecord]
    failure: FailureContext | None

    @classmethod
    def of(cls, env: AnyEnvironment) -> _View:
        return cls(state=env.state, phases=env.phases, failure=env.error_details)


# -- every environment ------------------------------------------------------------------


#: One environment's last plan and what it was decided from: found, desired, prune, dependencies, dependents.
_Memo = tuple[
    AnyEnvironment | None,
    ResolvedEnvironment | None,
    bool,
    Mapping[str, bool],
    Mapping[str, bool],
    EnvironmentPlan,
]


class _Memory:
    """What the latest ``plan_all`` decided; each call replaces it as a whole, never mutates it."""

    #: Name -> its plan, for the plans that depend neither on the clock nor on a lock.
    plans: Mapping[str, _Memo] = MappingProxyType({})
    #: The names and dependencies ordered last, and their order.
    ordered: tuple[frozenset[str], Mapping[str, tuple[str, ...]], list[str]] | None = None


#: What a kept plan was decided from, in plain values: the observed state's version, the desired
#: file's blob id and phase hashes, ``prune``, the dependency verdicts and the dependents' gone-ness.
KeptKey = tuple[
    str | None, str | None, str | None, bool, tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]
]


class KeptPlans(Protocol):
    """Plans an earlier process decided, found again by what they were decided from.

    The key holds content ids only: a version that fixes the observed state (the
    state branch's ``<name>/`` tree id), and the desired file's blob id (which
    fixes its whole ``spec``) with its phase hashes (which cover what the
    blueprint adds). Only plans that depend neither on the clock nor on a lock
    are kept. A planner that comes to read more of ``ResolvedEnvironment`` than
    its ``spec`` and ``phase_hashes`` must add it to ``_desired_key``.
    """

    def observed_version(self, name: str) -> str | None: ...

    def get(self, name: str, key: KeptKey) -> EnvironmentPlan | None: ...

    def keep(self, name: str, key: KeptKey, plan: EnvironmentPlan) -> None: ...


def _desired_key(desired: ResolvedEnvironment | None) -> tuple[str | None, str | None]:
    """A kept plan's desired side: the file's blob id (its whole ``spec``), a digest of its phase hashes."""
    if desired is None:
        return None, None
    hashes = desired.phase_hashes
    digest = hashlib.blake2b("\0".join((*hashes, *hashes.values())).encode(), digest_size=16).hexdigest()
    return desired.blob_id, digest


def plan_all(
    snapshot: DesiredSnapshot,
    observed: Mapping[str, AnyEnvironment | Unreadable],
    *,
    now: datetime,
    prune: bool,
    lock_stale: Callable[[Lock], bool],
    protected_before: Callable[[AnyEnvironment], bool] | None = None,
    kept: KeptPlans | None = None,
) -> list[EnvironmentPlan]:
    """A plan for every environment with a file or a state, dependencies before their dependents.

    A dependency counts as converged when its own plan says ``converged``.

    Linear in the number of environments. An environment that the previous
    call planned from the very same (immutable) observed and desired values,
    with the same dependency verdicts, gets that plan again without deciding
    anew, so re-planning after a one-file change decides about one
    environment. Only plans that cannot depend on the clock or a lock are
    reused: an observed state with a failure or a lock is decided every time.

    ``protected_before`` answers, for an environment whose file is gone, whether
    the definition it was last applied from was protected (never pruned).

    ``kept``: plans an earlier process decided (``reconcile plan``); with it,
    ``observed`` may parse lazily, as an environment whose kept plan still holds
    is never looked up in it (only its dependents' gone-ness is).
    """
    names = snapshot.names | frozenset(observed)
    environments = snapshot.environments
    broken = snapshot.broken
    deps_of = {name: env.depends_on for name, env in environments.items() if env.depends_on}
    dependents_of: dict[str, dict[str, None]] = {}
    for other, needs in deps_of.items():
        for dep in needs:
            dependents_of.setdefault(dep, {})[other] = None
    previous = _Memory.plans
    memo: dict[str, _Memo] = {}
    plans: dict[str, EnvironmentPlan] = {}
    for name in _ordered(names, deps_of):
        key: KeptKey | None = None
        desired = environments.get(name)
        #: Computed once, when first needed (a kept plan's key, or a decision).
        dependencies: dict[str, bool] | None = None
        dependents: dict[str, bool] | None = None
        if kept is not None and name not in broken and (desired is None or desired.blob_id):
            deps = deps_of.get(name)
            dependencies = (
                {d: d in plans and plans[d].verdict is Verdict.CONVERGED for d in deps} if deps else {}
            )
            others = dependents_of.get(name)
            dependents = {other: _gone(observed.get(other)) for other in others} if others else {}
            blob, hashes = _desired_key(desired)
            key = (
                kept.observed_version(name),
                blob,
                hashes,
                prune,
                tuple(dependencies.items()),
                tuple(dependents.items()),
            )
            hit = kept.get(name, key)
            if hit is not None:
                plans[name] = hit
                continue
        found = observed.get(name)
        if found is not None and not isinstance(found, AnyEnvironment):
            plans[name] = _corrupt(name, found, snapshot)
            continue
        if name in broken:
            plans[name] = _invalid(name, found, snapshot)
            continue
        if found is None and desired is None:
            continue  # a ``<name>/`` tree without a state (a lazily read ``observed``): nothing to plan
        if dependencies is None or dependents is None:
            deps = deps_of.get(name)
            dependencies = (
                {d: d in plans and plans[d].verdict is Verdict.CONVERGED for d in deps} if deps else {}
            )
            others = dependents_of.get(name)
            dependents = {other: _gone(observed.get(other)) for other in others} if others else {}
        last = previous.get(name)
        if (
            last is not None
            and last[0] is found
            and last[1] is desired
            and last[2] == prune
            and last[3] == dependencies
            and last[4] == dependents
        ):
            memo[name] = last
            plans[name] = last[5]
            continue
        stale = found is not None and found.is_in_progress and (found.lock is None or lock_stale(found.lock))
        protected = False
        if prune and desired is None and found is not None and protected_before is not None:
            protected = protected_before(found)
        ctx = PlanContext(
            now=now,
            prune=prune,
            lock_stale=stale,
            dependencies=dependencies,
            dependents=dependents,
            protected_before=protected,
        )
        plan = plans[name] = plan_environment(name, found, desired, ctx)
        if found is None or (not found.is_in_progress and found.error_details is None):
            memo[name] = (found, desired, prune, dependencies, dependents, plan)
            if kept is not None and key is not None:
                kept.keep(name, key, plan)
    _Memory.plans = memo
    return list(plans.values())


def _ordered(names: frozenset[str], deps_of: Mapping[str, tuple[str, ...]]) -> list[str]:
    """``dependency_order``, reusing the previous call's order when nothing it depends on changed."""
    last = _Memory.ordered
    if last is not None and last[0] == names and last[1] == deps_of:
        return last[2]
    order = _dependency_order(set(names), deps_of)
    _Memory.ordered = (names, deps_of, order)
    return order


def _gone(found: AnyEnvironment | Unreadable | None) -> bool:
    return found is None or (isinstance(found, AnyEnvironment) and found.state is Destroyed)


def _corrupt(name: str, found: Unreadable, snapshot: DesiredSnapshot) -> EnvironmentPlan:
    path = getattr(found, "path", None)
    where = f"{path}: " if path else ""
    desired = snapshot.environments.get(name)
    return EnvironmentPlan(
        name=name,
        verdict=Verdict.CORRUPT,
        actions=(),
        reason=f"state cannot be read, left alone: {where}{found.error}",
        observed_state=None,
        desired_state=str(desired.desired_state) if desired is not None else None,
    )


def _invalid(name: str, env: AnyEnvironment | None, snapshot: DesiredSnapshot) -> EnvironmentPlan:
    problems = snapshot.broken[name]
    first = str(problems[0]) if problems else "invalid environment file"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return EnvironmentPlan(
        name=name,
        verdict=Verdict.INVALID,
        actions=(),
        reason=f"environment file is invalid, left alone: {first}{more}",
        observed_state=env.state_name if env is not None else None,
        desired_state=None,
    )


def dependency_order(names: Iterable[str], snapshot: DesiredSnapshot) -> list[str]:
    """Dependencies first, then by name; names in a cycle come last, by name."""
    deps_of = {name: env.depends_on for name, env in snapshot.environments.items()}
    return _dependency_order(set(names), deps_of)


def _dependency_order(wanted: set[str], deps_of: Mapping[str, tuple[str, ...]]) -> list[str]:
    #: Only the environments that wait for another: most wait for none.
    remaining: dict[str, int] = {}
    blocking: dict[str, list[str]] = {}
    for name, deps in deps_of.items():
        if not deps or name not in wanted:
            continue
        needs = {d for d in deps if d in wanted and d != name}
        if needs:
            remaining[name] = len(needs)
            for dep in needs:
                blocking.setdefault(dep, []).append(name)
    ready = sorted(name for name in wanted if name not in remaining)  # a sorted list is a heap
    if not remaining:
        return ready
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for dependent in blocking.get(name, ()):
            remaining[dependent] -= 1
            if remaining[dependent] == 0:
                heapq.heappush(ready, dependent)
    placed = set(order)
    return order + sorted(wanted - placed)


#: The longest wait between two attempts: exponential backoff stops doubling there (SPEC 7's 7 days).
MAX_BACKOFF_SECONDS = 7 * 24 * 3600


def _backoff(base: float, attempt: int) -> float:
    """``base`` doubled for each attempt after the first, at most ``MAX_BACKOFF_SECONDS``."""
    return min(base * 2.0 ** min(max(attempt - 1, 0), 64), float(MAX_BACKOFF_SECONDS))
