"""The values and the protocol every state store shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from reconciler.domain import AnyEnvironment, FailureContext
from reconciler.store.message import TRANSITION

DEFAULT_STATE_REF = "refs/heads/reconciler/state"


@dataclass(frozen=True)
class Observed:
    """An environment as the store last recorded it, with the token to compare-and-swap against."""

    env: AnyEnvironment
    #: Opaque compare-and-swap token (the git store: the blob id of ``<name>/state.json``).
    version: str | None


@dataclass(frozen=True)
class CorruptState:
    """A ``state.json`` that cannot be read: reported, never overwritten."""

    name: str
    path: str
    error: str


@dataclass(frozen=True)
class TransitionRecord:
    """One transition as the audit trail records it."""

    name: str
    from_state: str
    to_state: str
    desired_commit: str | None
    holder: str
    detail: str | None
    at: datetime
    #: The transition commit on the state branch (``None`` for the file and memory stores).
    commit_id: str | None
    #: Who caused it (SPEC 4.1); ``None`` for a record written before actors were recorded.
    actor: str | None = None
    #: ``transition`` or an observation's kind (``retry``, ``unlock``, ``drift``, ...).
    event: str = TRANSITION


class StateStore(Protocol):
    """Where observed state lives; every write is one compare-and-swap transition."""

    def read(self, name: str) -> Observed | None:
        """``None`` when the environment was never observed; ``CorruptStateError`` when unreadable."""
        ...

    def read_all(self) -> dict[str, Observed | CorruptState]: ...

    def apply(
        self,
        name: str,
        expected_version: str | None,
        after: AnyEnvironment,
        *,
        from_state: str,
        desired_commit: str | None,
        detail: str | None = None,
        actor: str | None = None,
        event: str = TRANSITION,
    ) -> Observed:
        """Record ``after`` as one transition if ``name`` is still at ``expected_version``.

        Raises ``LostRace`` (nothing written) when it is not, and
        ``CorruptStateError`` when the current state cannot be read. ``actor``
        (default ``reconciler``) and ``event`` are recorded with it (SPEC 4.1).
        """
        ...

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        """Transitions, newest first, optionally of one environment only."""
        ...

    def unlock(self, name: str, lock_id: UUID) -> Observed:
        """Force-unlock: end the in-progress state as failed with error kind ``interrupted``."""
        ...


@runtime_checkable
class RemembersFailures(Protocol):
    """A store that can tell what failure an environment carried before its latest transition.

    Recovery uses it so that an ``interrupted`` failure keeps the attempt count
    of the failure it was retrying (an interruption is not an attempt).
    """

    def failure_before(self, name: str) -> FailureContext | None: ...
