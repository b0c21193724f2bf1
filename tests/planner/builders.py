"""Hand-built planner inputs: observed states and resolved environments, no git."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from reconciler.desired.models import DesiredState, EnvironmentSpec, Retry
from reconciler.desired.resolved import ResolvedEnvironment
from reconciler.domain import (
    AnyEnvironment,
    ErrorKind,
    FailureContext,
    Lock,
    LockHolder,
    Phase,
    PhaseRecord,
    State,
    StateDocument,
    completed_phases,
)

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1)


def hashes(**changed: str) -> dict[Phase, str]:
    """The desired hash of every phase: ``h-<phase>``, unless ``changed`` says otherwise."""
    return {p: changed.get(p.value, f"h-{p.value}") for p in Phase}


def desired(
    state: DesiredState | str,
    *,
    name: str = "web",
    phase_hashes: Mapping[Phase, str] | None = None,
    suspend: bool = False,
    protected: bool = False,
    limit: int = 3,
    backoff: float = 30,
    depends_on: tuple[str, ...] = (),
) -> ResolvedEnvironment:
    spec = EnvironmentSpec(
        desired_state=DesiredState(state),
        suspend=suspend,
        protected=protected,
        retry=Retry(limit=limit, backoff_seconds=backoff),
        depends_on=list(depends_on),
    )
    return ResolvedEnvironment(
        name=name,
        path=f"environments/{name}.yaml",
        spec=spec,
        vars=MappingProxyType({}),
        phases=MappingProxyType({}),
        phase_hashes=MappingProxyType(dict(phase_hashes if phase_hashes is not None else hashes())),
    )


def failure(
    phase: Phase,
    *,
    attempt: int = 1,
    phase_hash: str | None = "same",
    kind: ErrorKind = ErrorKind.COMMAND_FAILED,
    failed_at: datetime = LONG_AGO,
) -> FailureContext:
    return FailureContext(
        phase=phase,
        failed_step="tofu apply infra/vm",
        error_kind=kind,
        error_summary="tofu apply exited 1",
        attempt=attempt,
        execution_started_at=failed_at - timedelta(seconds=5),
        failed_at=failed_at,
        execution_duration_seconds=5,
        phase_hash=f"h-{phase.value}" if phase_hash == "same" else phase_hash,
    )


def lock(*, expires_at: datetime = NOW + timedelta(minutes=30)) -> Lock:
    return Lock(
        holder=LockHolder(host="ci-runner-1", pid=4242),
        acquired_at=NOW - timedelta(minutes=1),
        expires_at=expires_at,
    )


def observed(
    state: type[State],
    *,
    name: str = "web",
    recorded: Mapping[Phase, str] | None = None,
    fail: FailureContext | None = None,
    held: Lock | None = None,
) -> AnyEnvironment:
    """An environment in ``state`` whose completed phases recorded ``recorded`` (default ``h-<phase>``)."""
    done = completed_phases(state)
    records = recorded if recorded is not None else {p: f"h-{p.value}" for p in done}
    if state.is_error() and fail is None:
        assert state.phase is not None
        fail = failure(state.phase)
    if state.is_in_progress and held is None:
        held = lock()
    doc = StateDocument(
        name=name,
        state=state.name,
        phases={p: PhaseRecord(hash=h, completed_at=LONG_AGO) for p, h in records.items()},
        lock=held,
        failure=fail,
        updated_at=LONG_AGO,
    )
    return AnyEnvironment.from_document(doc)
