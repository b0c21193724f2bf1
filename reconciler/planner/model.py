"""The planner's values: what it decides for one environment, and what it decides from.

A plan is data, not a procedure: the engine executes the actions of a
``CHANGES`` plan in order, and the ``plan`` command prints the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from reconciler.domain.states import FAILED, IN_PROGRESS, SUCCEEDED, Created, Phase
from reconciler.planner.suspension import Suspension


class Verdict(StrEnum):
    """Where an environment stands against its desired state.

    Only ``CHANGES`` is to be acted on. ``WAITING`` (on a dependency or a
    backoff) and ``SUSPENDED`` still list the actions that would run once
    the wait ends or the suspension is lifted, so a reviewer sees them.
    """

    CONVERGED = "converged"
    CHANGES = "changes"
    WAITING = "waiting"
    BLOCKED = "blocked"
    AHEAD = "ahead"
    SUSPENDED = "suspended"
    PROTECTED = "protected"
    UNMANAGED = "unmanaged"
    INVALID = "invalid"
    CORRUPT = "corrupt"


class ActionKind(StrEnum):
    """One step of a plan; each is one or more transition commits."""

    #: No state yet: record the environment as ``created``.
    CREATE = "create"
    #: ``destroyed`` back to ``created``.
    RECREATE = "recreate"
    #: A stale lock: end the in-progress state as its failed state, error kind ``interrupted``.
    RECOVER = "recover"
    #: Run a phase: enter its in-progress state, run its steps, then its success or failed state.
    PHASE = "phase"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    #: The phase a ``PHASE`` or ``RECOVER`` action concerns; ``None`` for create and recreate.
    phase: Phase | None
    #: Why, in words a reviewer understands: ``configure inputs changed``.
    reason: str

    def describe(self) -> str:
        """``provision`` / ``create`` / ``recover configure``: what the action does, briefly."""
        if self.kind is ActionKind.PHASE:
            return str(self.phase)
        if self.kind is ActionKind.RECOVER:
            return f"recover {self.phase}" if self.phase is not None else "recover"
        return str(self.kind)


@dataclass(frozen=True, slots=True)
class EnvironmentPlan:
    """The planner's decision for one environment."""

    name: str
    verdict: Verdict
    actions: tuple[Action, ...]
    reason: str
    observed_state: str | None
    desired_state: str | None
    #: When a ``WAITING`` plan's backoff ends.
    retry_at: datetime | None = None
    #: The attempt number the next run of the first ``PHASE`` action will be.
    next_attempt: int = 1
    #: What suspends it (its file or an operator), even when it has converged; ``None``: nothing.
    suspended: Suspension | None = None

    @property
    def has_changes(self) -> bool:
        """Whether reconciling would run a transition, now or once a wait ends."""
        return bool(self.actions) and self.verdict in (Verdict.CHANGES, Verdict.WAITING)

    @property
    def path(self) -> tuple[str, ...]:
        """The states the actions pass through on success: ``provisioning``, ``provisioned``, …"""
        states: list[str] = []
        for action in self.actions:
            if action.kind in (ActionKind.CREATE, ActionKind.RECREATE):
                states.append(Created.name)
            elif action.kind is ActionKind.RECOVER and action.phase is not None:
                states.append(FAILED[action.phase].name)
            elif action.phase is not None:
                states += [IN_PROGRESS[action.phase].name, SUCCEEDED[action.phase].name]
        return tuple(states)


_NO_DEPENDENCIES: Mapping[str, bool] = MappingProxyType({})


@dataclass(frozen=True)
class PlanContext:
    """Everything outside the two states that a decision depends on; the clock is a value here."""

    now: datetime
    #: ``reconciler.yaml``'s ``prune``: destroy an environment whose file was deleted.
    prune: bool = False
    #: Whether the lock of an in-progress observed state is stale (SPEC section 4.3).
    lock_stale: bool = False
    #: ``dependsOn`` name -> has it converged?
    dependencies: Mapping[str, bool] = field(default_factory=lambda: _NO_DEPENDENCIES)
    #: Environments that depend on this one -> are they gone (destroyed or never created)?
    #: Destroying waits for them, so a database is not destroyed under a running web.
    dependents: Mapping[str, bool] = field(default_factory=lambda: _NO_DEPENDENCIES)
    #: For an environment whose file is gone: was it ``protected`` in the definition it was last
    #: applied from (its recorded desired commit)? Then it is never pruned (SPEC section 2.1).
    protected_before: bool = False
