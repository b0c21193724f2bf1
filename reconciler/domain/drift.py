"""What the last look for drift found (SPEC 3.1, the ``drift`` key of ``state.json``).

A value, not a state: drift never moves an environment through the
lifecycle. It rides along with the environment's state (every transition
keeps it, a destroy forgets it) until the next look replaces it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, field_serializer

from reconciler.domain.values import WireModel, format_timestamp


class DriftStatus(StrEnum):
    """``in_sync``: nothing differs; ``drifted``: a completed phase's effect differs from reality;
    ``failing``: a ``check`` step fails, or a look could not be made."""

    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    FAILING = "failing"


class DriftRecord(WireModel):
    """``{"status", "phase", "step", "summary", "checkedAt", "since"}``.

    ``phase`` is the completed phase whose step drifted (or ``check``), ``step``
    that step's label; both are ``None`` when in sync. ``since`` is when this
    status (for this phase and step) was first seen, ``checkedAt`` the look
    that recorded it: a look that finds the same writes nothing (decision 020).
    """

    status: DriftStatus
    phase: str | None = None
    step: str | None = None
    summary: str | None = None
    checked_at: AwareDatetime
    since: AwareDatetime

    @field_serializer("checked_at", "since")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)

    def same_finding(self, other: DriftRecord | None) -> bool:
        """Whether ``other`` reports the same thing (status, phase and step; not times or wording)."""
        if other is None:
            return self.status is DriftStatus.IN_SYNC
        return (self.status, self.phase, self.step) == (other.status, other.phase, other.step)
