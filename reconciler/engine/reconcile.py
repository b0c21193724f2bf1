"""``reconcile(name)``: the one verb at the centre.

Level-based: every turn re-reads the observed state, asks the pure planner
what to do next, and performs exactly one action (one or two transition
commits). A lost compare-and-swap means somebody else moved first: re-read and
decide again. A failing step is a value recorded as the phase's failed state;
only cancellation ends a phase early, and it too is recorded (``interrupted``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import pygit2

from reconciler.desired.loader import ParseCache, definition_at
from reconciler.desired.resolved import DesiredSnapshot, ResolvedEnvironment
from reconciler.desired.templating import TemplateError, render_step, resolve_vars
from reconciler.domain import (
    FORWARD_PHASES,
    AnyEnvironment,
    DriftRecord,
    DriftStatus,
    Environment,
    ErrorKind,
    FailureContext,
    Lock,
    Phase,
    completed_phases,
)
from reconciler.domain.dispatch import fail_phase, start_phase, succeed_phase
from reconciler.domain.dispatch import recreate as recreate_env
from reconciler.domain.states import SUCCEEDED
from reconciler.engine import drift
from reconciler.engine.checkout import checkout as leased_checkout
from reconciler.engine.clock import Clock, SystemClock
from reconciler.engine.orphans import stop_leftovers
from reconciler.engine.progress import ProgressObserver, StepOutput, StepStarted
from reconciler.engine.trace import PhaseLog, phase_log_path, trace_path, write_trace
from reconciler.planner import ActionKind, EnvironmentPlan, PlanContext, Verdict, plan_environment, suspension
from reconciler.steps import StepContext, StepOutcome, StepRunner, redact
from reconciler.steps.redact import REDACTED
from reconciler.store import CorruptStateError, LostRace, Observed, PushRefused, StateStore, StoreError
from reconciler.store.lock import is_stale, new_lock
from reconciler.store.message import RECONCILER_ACTOR, author_actor, person
from reconciler.store.recovery import recover_stale

logger = logging.getLogger(__name__)

#: A reconcile never performs more actions than this in one call (a safety net, not a budget).
MAX_ACTIONS = 32
#: How often a lost compare-and-swap is retried before the turn gives up.
MAX_LOST_RACES = 8
#: Added to a phase's timeout to make its lock's expiry.
LOCK_GRACE_SECONDS = 60.0
#: How long the commit that ends a phase is retried while the store (a remote) cannot be reached.
#: The phase ran: giving up would leave it recorded as still running and, once its lock expired,
#: run it again. Retrying is safe: the commit is a compare-and-swap on the lock-holding version.
FINISH_RETRY_SECONDS = 300.0


class Outcome(StrEnum):
    """How one environment's reconcile ended."""

    CONVERGED = "converged"
    #: ``check`` only: drift or a failing check found and not healed (not allowed, or nothing to heal).
    DRIFTED = "drifted"
    FAILED = "failed"
    BLOCKED = "blocked"
    WAITING = "waiting"
    AHEAD = "ahead"
    SUSPENDED = "suspended"
    PROTECTED = "protected"
    UNMANAGED = "unmanaged"
    INVALID = "invalid"
    CORRUPT = "corrupt"


#: The forward phase whose success state a desired state names (``running`` -> run).
_PHASE_OF_STATE: Mapping[str, Phase] = {SUCCEEDED[p].name: p for p in FORWARD_PHASES}

_FROM_VERDICT: Mapping[Verdict, Outcome] = {
    Verdict.CONVERGED: Outcome.CONVERGED,
    Verdict.WAITING: Outcome.WAITING,
    Verdict.BLOCKED: Outcome.BLOCKED,
    Verdict.AHEAD: Outcome.AHEAD,
    Verdict.SUSPENDED: Outcome.SUSPENDED,
    Verdict.PROTECTED: Outcome.PROTECTED,
    Verdict.UNMANAGED: Outcome.UNMANAGED,
    Verdict.INVALID: Outcome.INVALID,
    Verdict.CORRUPT: Outcome.CORRUPT,
}


class DefinitionMissing(LookupError):
    """The steps of an environment whose file is gone cannot be found."""


@dataclass(frozen=True)
class TransitionEvent:
    """Progress: one transition committed."""

    environment: str
    from_state: str
    to_state: str
    detail: str | None = None


@dataclass(frozen=True)
class ReconcileResult:
    name: str
    outcome: Outcome
    reason: str
    state: str | None
    transitions: tuple[tuple[str, str], ...] = ()
    failure: FailureContext | None = None
    #: ``check`` only: whether check steps ran (not for a destroyed environment or one without any).
    checked: bool = False
    #: ``waiting`` only: the live lock of another reconciler that keeps this environment from moving.
    locked_by: Lock | None = None
    #: ``check`` only: what the last look found, as kept in the environment's state.
    drift: DriftRecord | None = None
    #: ``check`` only: what the first look found, before any heal (``None``: nothing was looked at).
    found: DriftStatus | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONVERGED


@dataclass
class Engine:
    """Acts on plans: the only place transitions are committed during a reconcile."""

    repo: pygit2.Repository
    store: StateStore
    runner: StepRunner
    data_dir: Path
    clock: Clock = field(default_factory=SystemClock)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    on_transition: Callable[[TransitionEvent], None] | None = None
    on_output: Callable[[str, str], None] | None = None
    #: Every transition, step start and output line, for a progress view (``engine.progress``).
    #: Output lines are handed over on the thread that reads the step's pipes: wrap a slow
    #: observer in an ``ObserverRelay``.
    observer: ProgressObserver | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    prune: bool = False
    #: A person's ``<user>@<host>`` when they ran this by hand: every commit is theirs (SPEC 4.1).
    #: ``None``: what is planned from a desired commit is its author's, checks and recovery ``reconciler``'s.
    actor: str | None = None
    #: Told of every look for drift: (environment, finding, seconds it took); the daemon's metrics.
    on_check: Callable[[str, drift.Finding, float], None] | None = None
    #: Definitions of environments whose file is gone, as last applied, by (commit, name).
    _definitions: dict[tuple[str, str], ResolvedEnvironment | None] = field(default_factory=dict, repr=False)
    _definitions_cache: ParseCache = field(default_factory=ParseCache, repr=False)
    _definitions_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _authors: dict[str, str] = field(default_factory=dict, repr=False)

    # -- the verb -----------------------------------------------------------------------

    def reconcile(self, snapshot: DesiredSnapshot, name: str) -> ReconcileResult:
        """Act until ``name`` has converged, failed, or cannot move now."""
        transitions: list[tuple[str, str]] = []
        lost = 0
        for _ in range(MAX_ACTIONS):
            if self.cancel.is_set():
                return self._result(name, Outcome.WAITING, "stopping", transitions)
            try:
                observed = self.store.read(name)
            except CorruptStateError as e:
                return self._result(name, Outcome.CORRUPT, str(e), transitions)
            try:
                plan = self.plan(snapshot, name, observed)
            except StoreError:
                raise
            except Exception as e:  # a bug or an unbounded value: this environment's problem alone
                return self._crashed(name, "planning", e, transitions, observed)
            if plan.verdict is not Verdict.CHANGES:
                result = self._result(name, _FROM_VERDICT[plan.verdict], plan.reason, transitions, observed)
                return replace(result, locked_by=self._live_lock(plan, observed))
            try:
                failure = self._act(snapshot, plan, observed, transitions)
            except DefinitionMissing as e:
                return self._result(name, Outcome.FAILED, str(e), transitions, observed)
            except LostRace:
                lost += 1
                if lost > MAX_LOST_RACES:
                    return self._result(
                        name, Outcome.WAITING, "another reconciler keeps moving first", transitions
                    )
                logger.debug("lost compare-and-swap, re-reading", extra={"environment": name})
                continue
            except StoreError:
                raise
            except Exception as e:  # before a lock was taken (a phase's own errors are its failure)
                doing = f"starting {plan.actions[0].phase or plan.actions[0].kind}"
                return self._crashed(name, doing, e, transitions, observed)
            if failure is not None:
                return self._result(
                    name, Outcome.FAILED, failure.error_summary, transitions, self.store.read(name), failure
                )
        return self._result(name, Outcome.WAITING, "action budget used up; will continue", transitions)

    def _crashed(
        self,
        name: str,
        doing: str,
        e: Exception,
        transitions: list[tuple[str, str]],
        observed: Observed | None,
    ) -> ReconcileResult:
        """An unexpected error outside a phase: reported as this environment's failure, nothing committed."""
        logger.error(
            "unexpected error; nothing was started",
            extra={"environment": name, "doing": doing, "error": f"{type(e).__name__}: {e}"},
        )
        reason = _one_line(f"unexpected error while {doing}: {type(e).__name__}: {e}")
        return self._result(name, Outcome.FAILED, reason, transitions, observed)

    def plan(self, snapshot: DesiredSnapshot, name: str, observed: Observed | None) -> EnvironmentPlan:
        """The planner's view of ``name`` now (reads dependencies' states, not their files)."""
        now = self.clock.now()
        desired = snapshot.environments.get(name)
        if name in snapshot.broken:
            problems = snapshot.broken[name]
            return EnvironmentPlan(
                name=name,
                verdict=Verdict.INVALID,
                actions=(),
                reason="; ".join(str(p) for p in problems),
                observed_state=observed.env.state_name if observed else None,
                desired_state=None,
            )
        env = observed.env if observed else None
        prune = self.prune or snapshot.config.prune
        before = self.last_definition(env) if prune and desired is None and env is not None else None
        ctx = PlanContext(
            now=now,
            prune=prune,
            lock_stale=bool(env and env.lock and is_stale(env.lock, now)),
            dependencies=self._dependencies(snapshot, desired),
            dependents=self._dependents(snapshot, name),
            protected_before=before is not None and before.spec.protected,
        )
        return plan_environment(name, env, desired, ctx)

    def _live_lock(self, plan: EnvironmentPlan, observed: Observed | None) -> Lock | None:
        """The lock a ``waiting`` plan waits for, when it is a live one (a stale one is recovered)."""
        if plan.verdict is not Verdict.WAITING or observed is None or not observed.env.is_in_progress:
            return None
        lock = observed.env.lock
        return lock if lock is not None and not is_stale(lock, self.clock.now()) else None

    def recover_stale_locks(self, names: Iterable[str] | None = None) -> list[str]:
        """End every stale in-progress state as ``interrupted``, after stopping its holder's leftovers.

        A step runs in its own session and outlives a killed reconciler: without
        stopping it first, the retry would run beside it.
        """
        now = self.clock.now()
        for name, item in self.store.read_all().items():
            if names is not None and name not in names:
                continue
            lock = item.env.lock if isinstance(item, Observed) else None
            if lock is not None and is_stale(lock, now):
                stop_leftovers(self.data_dir, name, lock)
        return recover_stale(self.store, now, names=names)

    def last_definition(self, env: AnyEnvironment) -> ResolvedEnvironment | None:
        """``env`` as declared at the desired commit it was last applied from (its file may be gone)."""
        commit = env.desired_commit
        if commit is None:
            return None
        key = (commit, env.name)
        with self._definitions_lock:
            if key not in self._definitions:
                self._definitions[key] = definition_at(
                    self.repo, commit, env.name, cache=self._definitions_cache
                )
            return self._definitions[key]

    def _dependencies(
        self, snapshot: DesiredSnapshot, desired: ResolvedEnvironment | None
    ) -> dict[str, bool]:
        ready: dict[str, bool] = {}
        if desired is None:
            return ready
        now = self.clock.now()
        for dep in desired.depends_on:
            try:
                observed = self.store.read(dep)
            except CorruptStateError:
                ready[dep] = False
                continue
            dep_desired = snapshot.environments.get(dep)
            env = observed.env if observed else None
            dep_plan = plan_environment(dep, env, dep_desired, PlanContext(now=now))
            # A dependency that is waiting only on its own dependencies is not ready either.
            ready[dep] = dep_plan.verdict is Verdict.CONVERGED
        return ready

    def dependency_blockers(self, snapshot: DesiredSnapshot, name: str, phase: Phase) -> list[str]:
        """Why running ``phase`` of ``name`` by hand now would break a ``dependsOn``; empty when nothing does.

        Destroying waits for every environment that depends on it to be destroyed. A forward
        phase needs each dependency to have completed that phase, or, when the dependency's
        desired state stops short of it, to have converged there (provisioned at least).
        """
        blockers: list[str] = []
        if phase is Phase.DESTROY:
            for other, gone in sorted(self._dependents(snapshot, name).items()):
                if not gone:
                    blockers.append(
                        f"{other} depends on it and is {self._state_of(other)} (destroy {other} first)"
                    )
            return blockers
        desired = snapshot.environments.get(name)
        ready = self._dependencies(snapshot, desired)
        for dep in desired.depends_on if desired is not None else ():
            state = self._state_of(dep)
            try:
                observed = self.store.read(dep)
            except CorruptStateError:
                observed = None
            completed = completed_phases(observed.env.state) if observed is not None else ()
            if not (phase in completed or (ready.get(dep) and Phase.PROVISION in completed)):
                blockers.append(f"it depends on {dep}, which has not completed {phase} (it is {state})")
        return blockers

    def _state_of(self, name: str) -> str:
        try:
            observed = self.store.read(name)
        except CorruptStateError:
            return "corrupt"
        return observed.env.state_name if observed is not None else "not created"

    def _dependents(self, snapshot: DesiredSnapshot, name: str) -> dict[str, bool]:
        """Environments declaring ``dependsOn: [name]`` -> are they gone (destroyed or never created)?"""
        gone: dict[str, bool] = {}
        for other in sorted(snapshot.dependents.get(name, ())):
            try:
                observed = self.store.read(other)
            except CorruptStateError:
                gone[other] = False
                continue
            gone[other] = observed is None or observed.env.state_name == "destroyed"
        return gone

    # -- actions ------------------------------------------------------------------------

    def _act(
        self,
        snapshot: DesiredSnapshot,
        plan: EnvironmentPlan,
        observed: Observed | None,
        transitions: list[tuple[str, str]],
    ) -> FailureContext | None:
        action = plan.actions[0]
        name = plan.name
        commit = snapshot.commit
        now = self.clock.now()
        actor = self.actor_of(commit)
        if action.kind is ActionKind.CREATE:
            created = Environment.create(name, desired_commit=commit, at=now).into_any()
            self._commit(name, observed, created, transitions, detail=action.reason, actor=actor)
            return None
        if action.kind is ActionKind.RECREATE:
            assert observed is not None
            self._commit(
                name,
                observed,
                recreate_env(observed.env, desired_commit=commit, at=now),
                transitions,
                actor=actor,
            )
            return None
        if action.kind is ActionKind.RECOVER:
            assert observed is not None
            before = observed.env.state_name
            if self.recover_stale_locks([name]):
                after = self.store.read(name)
                to_state = after.env.state_name if after else "?"
                transitions.append((before, to_state))
                self._emit(TransitionEvent(name, before, to_state, "stale lock recovered"))
                return None
            raise LostRace(f"{name}: lock was not stale any more")
        assert action.kind is ActionKind.PHASE
        assert action.phase is not None
        assert observed is not None
        desired = snapshot.environments.get(name) or self.last_definition(observed.env)
        if desired is None:
            # Pruning an environment whose file is gone: its steps come from the commit it was last
            # applied from; without that commit there is nothing to run, so nothing is done.
            raise DefinitionMissing(
                f"{name}: cannot {action.phase}: its file is gone and the commit it was last applied from "
                f"({observed.env.desired_commit or 'none'}) cannot be read; restore the file, or destroy "
                "it by hand and remove its state (docs/recovery.md)"
            )
        return self.run_phase(
            snapshot, desired, observed, action.phase, plan.next_attempt, transitions, actor=actor
        )

    def actor_of(self, commit: str | None) -> str:
        """Who a commit planned from desired commit ``commit`` is attributed to (SPEC 4.1)."""
        if self.actor is not None:
            return self.actor
        if commit is None:
            return person()  # a work tree's desired state: only a person applies that
        with self._definitions_lock:
            known = self._authors.get(commit)
        if known is not None:
            return known
        try:
            obj = self.repo.get(commit)
        except (ValueError, pygit2.GitError):
            obj = None
        author = (
            author_actor(obj.author.name, obj.author.email)
            if isinstance(obj, pygit2.Commit)
            else RECONCILER_ACTOR
        )
        with self._definitions_lock:
            self._authors[commit] = author
        return author

    def _commit(
        self,
        name: str,
        observed: Observed | None,
        after: AnyEnvironment,
        transitions: list[tuple[str, str]],
        *,
        detail: str | None = None,
        actor: str | None = None,
    ) -> Observed:
        before = observed.env.state_name if observed else "none"
        result = self.store.apply(
            name,
            observed.version if observed else None,
            after,
            from_state=before,
            desired_commit=after.desired_commit,
            detail=detail,
            actor=actor or self.actor or RECONCILER_ACTOR,
        )
        transitions.append((before, after.state_name))
        self._emit(TransitionEvent(name, before, after.state_name, detail))
        return result

    def _emit(self, event: TransitionEvent) -> None:
        if self.on_transition is not None:
            self.on_transition(event)
        if self.observer is not None:
            self.observer(event)

    # -- one phase ----------------------------------------------------------------------

    def run_phase(
        self,
        snapshot: DesiredSnapshot,
        desired: ResolvedEnvironment,
        observed: Observed,
        phase: Phase,
        attempt: int,
        transitions: list[tuple[str, str]] | None = None,
        *,
        actor: str | None = None,
        cause: str | None = None,
    ) -> FailureContext | None:
        """Take the lock, run the phase's steps, commit success or failure.

        Returns the failure context, or ``None`` on success. ``LostRace`` from
        taking the lock propagates: nothing ran. ``actor`` (default: ``self.actor``,
        else the desired commit's author) is who the commits are attributed to;
        ``cause`` (a heal's finding) goes in the body of the commits it makes.
        """
        transitions = transitions if transitions is not None else []
        actor = actor or self.actor_of(snapshot.commit)
        name = desired.name
        timeout = float(desired.spec.timeout_seconds)
        started_at = self.clock.now()
        lock = new_lock(timeout, LOCK_GRACE_SECONDS, started_at)
        entering = start_phase(observed.env, phase, lock=lock, desired_commit=snapshot.commit, at=started_at)
        held = self._commit(name, observed, entering, transitions, detail=cause, actor=actor)

        started = time.monotonic()
        deadline = started + timeout
        outputs: dict[str, str] = dict(held.env.outputs)
        phase_log = self._open_phase_log(name, phase, started_at)
        secrets: frozenset[str] = frozenset()
        outcome: StepOutcome | None = None
        kind: ErrorKind | None = None
        summary = ""
        failed_step = f"{phase} phase"
        chain: tuple[str, ...] = ()
        tail = ""
        leases = contextlib.ExitStack()
        try:
            checkout = leases.enter_context(self._checkout(snapshot))
            resolved_vars, secrets = resolve_vars(desired.vars, self.environ)
            steps = desired.steps(phase)
            for index, step in enumerate(steps, 1):
                failed_step = step.describe()
                if self.cancel.is_set():
                    kind, summary = ErrorKind.INTERRUPTED, "interrupted before the step started"
                    break
                if self.observer is not None:
                    self.observer(StepStarted(name, str(phase), failed_step, index, len(steps)))
                rendered = render_step(
                    step, environment=name, vars=desired.vars, outputs=outputs, environ=self.environ
                )
                secrets = secrets | rendered.secrets
                step_deadline = deadline
                body_timeout = getattr(rendered.step.body, "timeout_seconds", None)
                if rendered.step.shell is not None and body_timeout:
                    step_deadline = min(deadline, time.monotonic() + float(body_timeout))
                outcome = self.runner.run(
                    rendered.step,
                    StepContext(
                        environment=name,
                        desired_commit=snapshot.commit or "",
                        checkout=checkout,
                        data_dir=self.data_dir / name,
                        vars=resolved_vars,
                        outputs=dict(outputs),
                        secrets=secrets,
                        deadline=step_deadline,
                        log=self._output_sink(name, phase_log, str(phase), failed_step),
                        cancel=self.cancel,
                        phase=str(phase),
                        lock_id=str(lock.id),
                        lock_expires_at=lock.expires_at,
                    ),
                )
                if not outcome.ok:
                    kind = outcome.error_kind or ErrorKind.COMMAND_FAILED
                    summary, chain, tail = outcome.summary, outcome.error_chain, outcome.output_tail
                    failed_step = outcome.step
                    break
                outputs.update(outcome.outputs)
        except TemplateError as e:
            kind, summary = ErrorKind.TEMPLATE, f"template error in {e}"
            chain = (str(e),)
        except OSError as e:
            kind, summary = ErrorKind.FILESYSTEM, f"{type(e).__name__}: {e}"
            chain = (str(e),)
        except Exception as e:  # SPEC 7: whatever broke, the phase ends failed and its lock is released
            kind, summary, chain = _unexpected(e, name, phase, failed_step, secrets)
        finally:
            leases.close()
            if phase_log is not None:
                phase_log.close()

        finished_at = self.clock.now()
        current = self._still_held(name, phase, lock)

        if kind is None:
            try:
                done = succeed_phase(
                    current.env,
                    phase_hash=desired.phase_hashes.get(phase),
                    outputs=redact_outputs(outputs, secrets),
                    at=finished_at,
                )
                self._finish(name, current, done, transitions, detail=cause, actor=actor)
                return None
            except StoreError:
                # The phase ran: a remote that stayed away, or a lost lock, is not its failure, and
                # recording one would have it run again.
                raise
            except Exception as e:  # the success cannot be recorded at all (a bug): record a failure instead
                kind, summary, chain = _unexpected(e, name, phase, "recording the phase's success", secrets)
                failed_step = f"{phase} phase (recording its success)"
                current = self._still_held(name, phase, lock)

        summary = redact(summary, secrets)
        failure = FailureContext(
            phase=phase,
            failed_step=redact(failed_step, secrets),
            error_kind=kind,
            error_summary=summary,
            # An interruption is not an attempt: the retry runs with the same number again.
            attempt=max(0, attempt - 1) if kind is ErrorKind.INTERRUPTED else attempt,
            execution_started_at=started_at,
            failed_at=finished_at,
            execution_duration_seconds=round(time.monotonic() - started, 3),
            phase_hash=desired.phase_hashes.get(phase),
        )
        path = trace_path(self.data_dir, name, str(phase), finished_at.strftime("%Y%m%d-%H%M%S"))
        failure = failure.model_copy(update={"trace_file": _display_path(path)})
        try:
            write_trace(
                path,
                environment=name,
                desired_commit=snapshot.commit,
                failure=failure,
                error_chain=[redact(c, secrets) for c in chain],
                output_tail=redact(tail, secrets),
            )
        except OSError as e:
            logger.error("could not write the trace file", extra={"environment": name, "error": str(e)})
            failure = failure.model_copy(update={"trace_file": None})
        try:
            self._finish(
                name,
                current,
                fail_phase(current.env, failure, at=finished_at),
                transitions,
                detail=f"Failed step: {failure.failed_step}\nError: {failure.error_kind}: {summary}"
                + (f"\n{cause}" if cause else ""),
                actor=actor,
            )
        except StoreError:
            raise
        except Exception as e:  # the record itself is refused: record it again, plainer, or not at all
            logger.error(
                "could not record the phase's failure; recording it without its details",
                extra={
                    "environment": name,
                    "phase": str(phase),
                    "error": redact(f"{type(e).__name__}: {e}", secrets),
                },
            )
            current = self._still_held(name, phase, lock)  # a record that landed before the error stands
            failure = failure.model_copy(
                update={"failed_step": _one_line(failure.failed_step), "error_summary": _one_line(summary)}
            )
            self._finish(
                name, current, fail_phase(current.env, failure, at=finished_at), transitions, actor=actor
            )
        return failure

    def _finish(
        self,
        name: str,
        current: Observed,
        after: AnyEnvironment,
        transitions: list[tuple[str, str]],
        *,
        detail: str | None = None,
        actor: str | None = None,
    ) -> Observed:
        """Commit the end of a phase that ran, retrying while the store cannot be reached.

        A refusal by the remote is final. A lost race is final only when the lock
        is no longer this phase's (someone force-unlocked it): while the
        environment still holds it, nobody else can have moved it, so the race was
        lost to other environments' commits on the same ref (a busy shared remote)
        and the commit is made again. Anything else (a fetch or push that failed, a
        remote that is away) is retried too, with backoff for
        ``FINISH_RETRY_SECONDS``, so neither turns a phase that ran into one that
        runs again once its lock expires.
        """
        held = current.env.lock.id if current.env.lock is not None else None
        deadline = time.monotonic() + FINISH_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                return self._commit(name, current, after, transitions, detail=detail, actor=actor)
            except (PushRefused, CorruptStateError):
                raise
            except LostRace as e:
                fresh = self.store.read(name)
                ours = fresh is not None and fresh.env.lock is not None and fresh.env.lock.id == held
                if not ours or fresh is None or time.monotonic() + delay > deadline:
                    raise
                logger.info(
                    "the state branch moved while recording the end of the phase; recording it again",
                    extra={"environment": name, "state": after.state_name, "error": str(e)},
                )
                current = fresh
                # An operator may have suspended or resumed it while the phase ran: their word stands.
                after = after.environment.with_suspension(fresh.env.suspended).into_any()
            except StoreError as e:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "cannot record the end of the phase yet; retrying",
                    extra={"environment": name, "state": after.state_name, "error": str(e)},
                )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _still_held(self, name: str, phase: Phase, lock: Lock) -> Observed:
        """The observed state, when ``lock`` is still the one it holds; else ``LostRace``.

        Somebody who force-unlocked meanwhile, or a success commit that landed
        before an error was raised, has the last word: nothing is committed over it.
        """
        current = self.store.read(name)
        if current is None or current.env.lock is None or current.env.lock.id != lock.id:
            logger.warning(
                "lock taken away during the phase", extra={"environment": name, "phase": str(phase)}
            )
            raise LostRace(f"{name}: the lock was removed while {phase} ran")
        return current

    # -- drift and health ---------------------------------------------------------------

    def check(self, snapshot: DesiredSnapshot, name: str, *, heal: bool = True) -> ReconcileResult:
        """Look at a converged environment for drift (SPEC 3.1); heal it when allowed.

        The probes of its completed phases and its ``check`` steps run (``engine/drift.py``);
        what they find is kept as ``drift`` in its state, with a state-branch commit only
        when it changed (decision 020). A finding is healed (re-applied from the drifted
        phase, or a failing check's ``reapply``, up to the desired state) when ``heal`` and
        ``spec.drift.heal`` allow it and the environment is not suspended; then it is
        looked at again. A heal that does not cure is a ``failed`` result without a
        failure, for the caller to back off from.
        """
        observed = self.store.read(name)
        plan = self.plan(snapshot, name, observed)
        desired = snapshot.environments.get(name)
        if plan.verdict is not Verdict.CONVERGED or observed is None or desired is None:
            return self._result(
                name, _FROM_VERDICT.get(plan.verdict, Outcome.WAITING), plan.reason, [], observed
            )
        target = str(desired.desired_state)
        if target in ("created", "destroyed"):
            return self._result(name, Outcome.CONVERGED, "nothing to check", [], observed)
        target_phase = _PHASE_OF_STATE[target]
        if not drift.has_anything_to_look_at(desired, target_phase):
            return self._result(name, Outcome.CONVERGED, "nothing to check", [], observed)
        finding, observed = self._look_and_record(snapshot, desired, target_phase, observed)
        if observed is None:
            return self._result(name, Outcome.WAITING, "it moved while it was looked at", [])
        if finding.in_sync:
            return self._checked(name, Outcome.CONVERGED, "in sync", [], observed, found=finding.status)
        what = f"{finding.status} at {finding.phase} step {finding.step}: {finding.summary}"
        # Read again: an operator may have suspended it while it was looked at.
        suspended = suspension(desired, (self.store.read(name) or observed).env)
        if suspended is not None:
            # SPEC 3.1: a suspended environment (its file or `reconcile suspend`) is checked and
            # reported, never healed.
            logger.warning(
                "drift found; suspended, so not re-applied",
                extra={"environment": name, "found": what, "suspended": suspended.describe()},
            )
            return self._checked(
                name,
                Outcome.SUSPENDED,
                f"{what}; {suspended.describe()}, not healed",
                [],
                observed,
                found=finding.status,
            )
        if finding.reapply is None or not heal or not desired.spec.drift.heal:
            why = (
                "could not look, nothing to heal"
                if finding.reapply is None
                else ("spec.drift.heal is false" if heal else "not asked to heal")
            )
            logger.warning("drift found; not healed", extra={"environment": name, "found": what, "why": why})
            return self._checked(name, Outcome.DRIFTED, f"{what} ({why})", [], observed, found=finding.status)
        logger.warning(
            "drift found; re-applying",
            extra={"environment": name, "found": what, "reapply": str(finding.reapply)},
        )
        cause = f"Healing drift: {what}"
        transitions: list[tuple[str, str]] = []
        order = list(FORWARD_PHASES)
        for phase in order[order.index(finding.reapply) : order.index(target_phase) + 1]:
            current = self.store.read(name)
            assert current is not None
            failure = self.run_phase(
                snapshot,
                desired,
                current,
                phase,
                attempt=1,
                transitions=transitions,
                actor=self.actor or RECONCILER_ACTOR,  # healing: the daemon's own, or `check --heal`'s
                cause=cause,
            )
            if failure is not None:
                return self._checked(
                    name,
                    Outcome.FAILED,
                    failure.error_summary,
                    transitions,
                    self.store.read(name),
                    failure,
                    found=finding.status,
                )
        after = self.store.read(name)
        if after is None:
            return self._checked(
                name, Outcome.WAITING, "it moved while it was healed", transitions, None, found=finding.status
            )
        again, recorded = self._look_and_record(snapshot, desired, target_phase, after)
        after = recorded or after
        if not again.in_sync:
            # The re-apply succeeded but did not cure it: a failure for the caller to back off
            # from (the state stays honest: every phase it ran succeeded).
            how = "check still fails" if again.phase == drift.CHECK else f"still {again.status}"
            return self._checked(
                name,
                Outcome.FAILED,
                f"{how} after re-applying from {finding.reapply}: {again.summary}",
                transitions,
                after,
                found=finding.status,
            )
        return self._checked(
            name, Outcome.CONVERGED, f"{what}; healed", transitions, after, found=finding.status
        )

    def _look_and_record(
        self, snapshot: DesiredSnapshot, desired: ResolvedEnvironment, target: Phase, observed: Observed
    ) -> tuple[drift.Finding, Observed | None]:
        """One look, and its ``drift`` recorded when it is news; ``None``: the environment moved meanwhile."""
        started = time.monotonic()
        with self._checkout(snapshot) as checkout:
            finding = drift.look(
                self.runner,
                desired,
                target,
                desired_commit=snapshot.commit or "",
                checkout=checkout,
                data_dir=self.data_dir / desired.name,
                outputs=dict(observed.env.outputs),
                environ=self.environ,
                cancel=self.cancel,
            )
        if self.on_check is not None:
            self.on_check(desired.name, finding, time.monotonic() - started)
        return finding, self.record_drift(desired.name, observed, finding, snapshot.commit)

    def record_drift(
        self, name: str, observed: Observed, finding: drift.Finding, desired_commit: str | None
    ) -> Observed | None:
        """Keep what a look found; a commit (``drift``/``in-sync``) only when it is news.

        Nothing is written over a state that moved since it was looked at: the look is stale.
        """
        now = self.clock.now()
        previous = observed.env.drift
        record = drift.next_record(previous, finding, now)
        if not drift.is_news(previous, record):
            return observed
        trace: str | None = None
        if not finding.in_sync:
            path = drift.drift_trace_path(self.data_dir, name, now)
            try:
                drift.write_drift_trace(
                    path,
                    environment=name,
                    desired_commit=desired_commit,
                    record=record,
                    output=finding.output,
                )
                trace = _display_path(path)
            except OSError as e:
                logger.error("could not write the drift trace", extra={"environment": name, "error": str(e)})
        try:
            return self.store.apply(
                name,
                observed.version,
                observed.env.with_drift(record),
                from_state=observed.env.state_name,
                desired_commit=observed.env.desired_commit,
                detail=drift.commit_body(previous, record, trace),
                actor=self.actor or RECONCILER_ACTOR,
                event=drift.event_of(record),
            )
        except LostRace:
            logger.info(
                "state moved while it was looked at; the look is not recorded", extra={"environment": name}
            )
            return None

    def _checked(
        self,
        name: str,
        outcome: Outcome,
        reason: str,
        transitions: list[tuple[str, str]],
        observed: Observed | None,
        failure: FailureContext | None = None,
        *,
        found: DriftStatus,
    ) -> ReconcileResult:
        result = self._result(name, outcome, reason, transitions, observed, failure, checked=True)
        return replace(result, drift=observed.env.drift if observed is not None else None, found=found)

    def _checkout(self, snapshot: DesiredSnapshot) -> contextlib.AbstractContextManager[Path]:
        """The desired commit's export, kept as it is (never reused for another commit) until closed."""
        if snapshot.commit is None:
            raise OSError("desired state read from a work tree cannot be applied; commit it first")
        return leased_checkout(self.repo, snapshot.commit, self.data_dir)

    def _open_phase_log(self, name: str, phase: Phase, started_at: datetime) -> PhaseLog | None:
        path = phase_log_path(self.data_dir, name, str(phase), started_at.strftime("%Y%m%d-%H%M%S"))
        try:
            return PhaseLog(path)
        except OSError as e:
            logger.warning("cannot write the phase log", extra={"environment": name, "error": str(e)})
            return None

    def _output_sink(
        self, name: str, phase_log: PhaseLog | None, phase: str = "", step: str = ""
    ) -> Callable[[str], None] | None:
        sink = self.on_output
        observer = self.observer
        if sink is None and phase_log is None and observer is None:
            return None

        def both(line: str) -> None:
            if phase_log is not None:
                phase_log.write(line)
            if sink is not None:
                sink(name, line)
            if observer is not None:
                observer(StepOutput(name, phase, step, line))

        return both

    def _result(
        self,
        name: str,
        outcome: Outcome,
        reason: str,
        transitions: list[tuple[str, str]],
        observed: Observed | None = None,
        failure: FailureContext | None = None,
        *,
        checked: bool = False,
    ) -> ReconcileResult:
        return ReconcileResult(
            name=name,
            outcome=outcome,
            reason=reason,
            state=observed.env.state_name if observed else None,
            transitions=tuple(transitions),
            failure=failure,
            checked=checked,
        )


def _unexpected(
    e: Exception, name: str, phase: Phase, where: str, secrets: frozenset[str]
) -> tuple[ErrorKind, str, tuple[str, ...]]:
    """An exception nobody expected while a phase ran, as a ``configuration`` failure (decision 016).

    The traceback goes to the trace file's error chain (redacted there, like
    everything in it): it is what a person needs to report the bug. The log
    gets one redacted line, since an exception's text may quote a secret.
    """
    logger.error(
        "unexpected error while a phase ran; recorded as its failure",
        extra={
            "environment": name,
            "phase": str(phase),
            "step": redact(where, secrets),
            "error": redact(f"{type(e).__name__}: {e}", secrets),
        },
    )
    chain: list[str] = []
    cause: BaseException | None = e
    while cause is not None and len(chain) < 8:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    frames = "".join(traceback.format_exception(e)).rstrip("\n")
    return ErrorKind.CONFIGURATION, _one_line(f"unexpected error: {type(e).__name__}: {e}"), (*chain, frames)


#: Longest summary of an unexpected error; the whole text is in the trace's error chain.
_SUMMARY_CHARS = 300


def _one_line(text: str) -> str:
    """``text`` as one printable line: an exception's text may hold newlines, NUL bytes, anything."""
    line = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return line if len(line) <= _SUMMARY_CHARS else line[: _SUMMARY_CHARS - 1] + "…"


def redact_outputs(outputs: Mapping[str, str], secrets: frozenset[str]) -> dict[str, str]:
    """Outputs as they may be stored: a value holding a secret becomes ``[REDACTED]`` (SPEC 4.2)."""
    return {key: REDACTED if redact(value, secrets) != value else value for key, value in outputs.items()}


def _display_path(path: Path) -> str:
    """``data/web/traces/…`` when the data dir is under the working directory (SPEC 4.2), else absolute.

    A path relative to where the reconciler runs keeps host-specific prefixes out of the state branch.
    """
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def reset_attempts(
    store: StateStore, name: str, *, now: datetime | None = None, actor: str | None = None
) -> Observed:
    """``reconcile retry``: keep the failed state, set its attempt count to 0, as one commit.

    The planner retries a failure whose attempt is 0 at once, whatever the backoff.
    """
    observed = store.read(name)
    if observed is None:
        raise LookupError(f"environment '{name}' has never been observed")
    failure = observed.env.error_details
    if failure is None:
        raise ValueError(f"environment '{name}' is in state '{observed.env.state_name}', not a failed state")
    env = replace(observed.env.environment, failure=failure.model_copy(update={"attempt": 0}))
    if now is not None:
        env = replace(env, updated_at=now)
    after = env.into_any()
    return store.apply(
        name,
        observed.version,
        after,
        from_state=observed.env.state_name,
        desired_commit=observed.env.desired_commit,
        detail="retry requested: attempts reset",
        actor=actor or person(),
        event="retry",
    )
