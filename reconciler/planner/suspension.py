"""Is an environment suspended? The one predicate every decision asks (SPEC 2.1 ``suspend``, 5 ``suspend``).

Two things suspend an environment: its file (``spec.suspend: true``, reviewed
like any change) and an operator's ``reconcile suspend`` (``suspended`` in its
``state.json`` on the state branch, which holds whatever the file says until
``reconcile resume``). Either way it is observed and reported, never acted on:
no phase starts, no check heals it, no prune destroys it. Planning, the engine's
checks, drift healing and the phase commands all ask ``suspension`` so that they
cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from reconciler.desired.resolved import ResolvedEnvironment
from reconciler.domain.erased import AnyEnvironment
from reconciler.domain.values import format_timestamp


class SuspensionSource(StrEnum):
    """Where a suspension comes from."""

    #: ``reconcile suspend``: ``suspended`` on the state branch, lifted by ``reconcile resume``.
    OPERATOR = "operator"
    #: ``spec.suspend: true`` in the environment's file, lifted by a commit.
    FILE = "file"


@dataclass(frozen=True)
class Suspension:
    """Why an environment is not acted on; an operator's override wins when both apply."""

    source: SuspensionSource
    #: ``<user>@<host>`` for an operator's suspension; ``None`` for the file's.
    by: str | None = None
    at: datetime | None = None
    reason: str | None = None
    #: An operator's suspension whose environment's file says ``suspend: true`` as well.
    also_in_file: bool = False

    def describe(self) -> str:
        """``suspended by alice@ws1 at 2026-12-05T08:00:00Z: disk full``, or by its file."""
        if self.source is SuspensionSource.FILE:
            return "suspended by its file (spec.suspend: true)"
        text = f"suspended by {self.by}"
        if self.at is not None:
            text += f" at {format_timestamp(self.at)}"
        if self.reason:
            text += f": {self.reason}"
        if self.also_in_file:
            text += " (its file says spec.suspend: true as well)"
        return text

    def to_json(self) -> dict[str, str | None]:
        """Plain values for ``--format json`` (SPEC 5)."""
        return {
            "source": str(self.source),
            "by": self.by,
            "at": None if self.at is None else format_timestamp(self.at),
            "reason": self.reason,
        }


def suspension(desired: ResolvedEnvironment | None, observed: AnyEnvironment | None) -> Suspension | None:
    """Whether ``desired`` (its file) or ``observed`` (the state branch) suspends the environment, and how.

    ``None``: nothing suspends it, the reconciler may act on it.
    """
    in_file = desired is not None and desired.spec.suspend
    record = observed.suspended if observed is not None else None
    if record is not None:
        return Suspension(
            SuspensionSource.OPERATOR, by=record.by, at=record.at, reason=record.reason, also_in_file=in_file
        )
    if in_file:
        return Suspension(SuspensionSource.FILE)
    return None
