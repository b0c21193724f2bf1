"""The values an environment records: failure contexts, locks, phase records.

They are frozen pydantic models so that the same definition is the in-memory
value and the JSON shape of SPEC section 4.2 (camelCase on the wire).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel

from reconciler.domain.states import Phase


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds kept only when present."""
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


class WireModel(BaseModel):
    """Frozen, camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


class ErrorKind(StrEnum):
    """Why a phase failed; the engine decides retries from it."""

    TEMPLATE = "template"
    CONFIGURATION = "configuration"
    COMMAND_FAILED = "command_failed"
    TIMEOUT = "timeout"
    INTERRUPTED = "interrupted"
    HEALTH_CHECK = "health_check"
    FILESYSTEM = "filesystem"
    STATE_PERSISTENCE = "state_persistence"


class FailureContext(WireModel):
    """What a failed state carries: enough to diagnose without the logs."""

    phase: Phase
    failed_step: str
    error_kind: ErrorKind
    error_summary: str
    attempt: int = Field(default=1, ge=0)
    execution_started_at: AwareDatetime
    failed_at: AwareDatetime
    execution_duration_seconds: float = Field(ge=0)
    trace_id: UUID = Field(default_factory=uuid4)
    trace_file: str | None = None
    #: The phase hash of the inputs that failed, so a changed input resets attempts.
    phase_hash: str | None = None

    @field_serializer("execution_started_at", "failed_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class LockHolder(WireModel):
    host: str
    pid: int
    process_started_at: AwareDatetime | None = None
    """When the holder process started, so a reused PID is not taken for it."""

    @field_serializer("process_started_at")
    def _ts(self, value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)


class Lock(WireModel):
    id: UUID = Field(default_factory=uuid4)
    holder: LockHolder
    acquired_at: AwareDatetime
    expires_at: AwareDatetime

    @field_serializer("acquired_at", "expires_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class PhaseRecord(WireModel):
    """A completed phase: the hash of the inputs it completed with."""

    hash: str
    completed_at: AwareDatetime

    @field_serializer("completed_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


class SuspensionRecord(WireModel):
    """An operator's ``reconcile suspend`` as ``state.json`` keeps it (SPEC 4.2 ``suspended``).

    It lives on the state branch, not in the environment's file, so it holds
    whatever the file says until ``reconcile resume``.
    """

    #: ``<user>@<host>`` of who suspended it.
    by: str = Field(min_length=1)
    at: AwareDatetime
    reason: str | None = None

    @field_serializer("at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)
