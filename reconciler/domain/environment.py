"""``Environment[S]``: the lifecycle as a type-state.

Every transition is a method whose ``self`` type admits only the states the
SPEC's table lets it start from, so ``Environment.create("web").configured()``
is a ``mypy --strict`` error rather than a runtime check. All transitions go
through ``_to``, which is the one place that logs them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, TypeVar

from reconciler.domain.drift import DriftRecord
from reconciler.domain.states import (
    CanConfigure,
    CanDestroy,
    CanProvision,
    CanRelease,
    CanRun,
    Configured,
    ConfigureFailed,
    Configuring,
    Created,
    Destroyed,
    DestroyFailed,
    Destroying,
    Phase,
    Provisioned,
    ProvisionFailed,
    Provisioning,
    Released,
    ReleaseFailed,
    Releasing,
    RunFailed,
    Running,
    Starting,
    State,
)
from reconciler.domain.values import (
    FailureContext,
    Lock,
    PhaseRecord,
    SuspensionRecord,
    format_timestamp,
    utcnow,
)

if TYPE_CHECKING:
    from reconciler.domain.erased import AnyEnvironment

logger = logging.getLogger(__name__)

S_co = TypeVar("S_co", bound=State, covariant=True)
T = TypeVar("T", bound=State)

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY


def _when(at: datetime | None) -> datetime:
    """``at`` or now; a naive time is refused here rather than when the state is written."""
    if at is None:
        return utcnow()
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"transition time must be timezone-aware, got naive {at.isoformat()}")
    return at


@dataclass(frozen=True)
class Environment(Generic[S_co]):
    """One environment in state ``S``.

    ``state`` is the marker class; ``lock`` is set exactly in the in-progress
    states and ``failure`` exactly in the failed ones.
    """

    name: str
    state: type[S_co]
    desired_commit: str | None = None
    phases: Mapping[Phase, PhaseRecord] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    lock: Lock | None = None
    failure: FailureContext | None = None
    updated_at: datetime = field(default_factory=utcnow)
    #: What the last look for drift found (SPEC 3.1); kept across transitions, forgotten by a destroy.
    drift: DriftRecord | None = None
    #: An operator's ``reconcile suspend``: kept through every transition until ``reconcile resume``.
    suspended: SuspensionRecord | None = None

    @staticmethod
    def create(
        name: str, *, desired_commit: str | None = None, at: datetime | None = None
    ) -> Environment[Created]:
        return Environment(name=name, state=Created, desired_commit=desired_commit, updated_at=_when(at))

    # -- the one transition helper -------------------------------------------------

    def _to(
        self,
        state: type[T],
        *,
        at: datetime | None,
        desired_commit: str | None = None,
        lock: Lock | None = None,
        failure: FailureContext | None = None,
        phases: Mapping[Phase, PhaseRecord] | None = None,
        outputs: Mapping[str, str] | None = None,
        keep_drift: bool = True,
    ) -> Environment[T]:
        when = _when(at)
        if failure is not None and failure.phase is not state.phase:
            raise ValueError(
                f"{self.name}: a {failure.phase} failure cannot put the environment in state '{state.name}'"
            )
        logger.info(
            "state transition",
            extra={
                "environment": self.name,
                "from_state": self.state.name,
                "to_state": state.name,
                "timestamp": format_timestamp(when),
            },
        )
        return Environment(
            name=self.name,
            state=state,
            desired_commit=desired_commit or self.desired_commit,
            phases=self.phases if phases is None else phases,
            outputs=self.outputs if outputs is None else _frozen(outputs),
            lock=lock,
            failure=failure,
            updated_at=when,
            drift=self.drift if keep_drift else None,
            suspended=self.suspended,
        )

    def _start(
        self, state: type[T], lock: Lock | None, desired_commit: str | None, at: datetime | None
    ) -> Environment[T]:
        return self._to(state, at=at, lock=lock, desired_commit=desired_commit)

    def _succeed(
        self,
        state: type[T],
        phase: Phase,
        phase_hash: str | None,
        outputs: Mapping[str, str] | None,
        at: datetime | None,
    ) -> Environment[T]:
        when = _when(at)
        phases = dict(self.phases)
        if phase_hash is not None:
            phases[phase] = PhaseRecord(hash=phase_hash, completed_at=when)
        merged = {**self.outputs, **outputs} if outputs else None
        return self._to(state, at=when, phases=MappingProxyType(phases), outputs=merged)

    # -- provision -----------------------------------------------------------------

    def start_provisioning(
        self: Environment[CanProvision],
        *,
        lock: Lock | None = None,
        desired_commit: str | None = None,
        at: datetime | None = None,
    ) -> Environment[Provisioning]:
        return self._start(Provisioning, lock, desired_commit, at)

    def provisioned(
        self: Environment[Provisioning],
        *,
        phase_hash: str | None = None,
        outputs: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> Environment[Provisioned]:
        return self._succeed(Provisioned, Phase.PROVISION, phase_hash, outputs, at)

    def provision_failed(
        self: Environment[Provisioning], ctx: FailureContext, *, at: datetime | None = None
    ) -> Environment[ProvisionFailed]:
        return self._to(ProvisionFailed, at=at, failure=ctx)

    # -- configure -----------------------------------------------------------------

    def start_configuring(
        self: Environment[CanConfigure],
        *,
        lock: Lock | None = None,
        desired_commit: str | None = None,
        at: datetime | None = None,
    ) -> Environment[Configuring]:
        return self._start(Configuring, lock, desired_commit, at)

    def configured(
        self: Environment[Configuring],
        *,
        phase_hash: str | None = None,
        outputs: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> Environment[Configured]:
        return self._succeed(Configured, Phase.CONFIGURE, phase_hash, outputs, at)

    def configure_failed(
        self: Environment[Configuring], ctx: FailureContext, *, at: datetime | None = None
    ) -> Environment[ConfigureFailed]:
        return self._to(ConfigureFailed, at=at, failure=ctx)

    # -- release -------------------------------------------------------------------

    def start_releasing(
        self: Environment[CanRelease],
        *,
        lock: Lock | None = None,
        desired_commit: str | None = None,
        at: datetime | None = None,
    ) -> Environment[Releasing]:
        return self._start(Releasing, lock, desired_commit, at)

    def released(
        self: Environment[Releasing],
        *,
        phase_hash: str | None = None,
        outputs: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> Environment[Released]:
        return self._succeed(Released, Phase.RELEASE, phase_hash, outputs, at)

    def release_failed(
        self: Environment[Releasing], ctx: FailureContext, *, at: datetime | None = None
    ) -> Environment[ReleaseFailed]:
        return self._to(ReleaseFailed, at=at, failure=ctx)

    # -- run -----------------------------------------------------------------------

    def start_running(
        self: Environment[CanRun],
        *,
        lock: Lock | None = None,
        desired_commit: str | None = None,
        at: datetime | None = None,
    ) -> Environment[Starting]:
        return self._start(Starting, lock, desired_commit, at)

    def running(
        self: Environment[Starting],
        *,
        phase_hash: str | None = None,
        outputs: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> Environment[Running]:
        return self._succeed(Running, Phase.RUN, phase_hash, outputs, at)

    def run_failed(
        self: Environment[Starting], ctx: FailureContext, *, at: datetime | None = None
    ) -> Environment[RunFailed]:
        return self._to(RunFailed, at=at, failure=ctx)

    # -- destroy -------------------------------------------------------------------

    def start_destroying(
        self: Environment[CanDestroy],
        *,
        lock: Lock | None = None,
        desired_commit: str | None = None,
        at: datetime | None = None,
    ) -> Environment[Destroying]:
        return self._start(Destroying, lock, desired_commit, at)

    def destroyed(self: Environment[Destroying], *, at: datetime | None = None) -> Environment[Destroyed]:
        """Nothing survives a destroy but the name: phase records and outputs go."""
        return self._to(Destroyed, at=at, phases=MappingProxyType({}), outputs={}, keep_drift=False)

    def destroy_failed(
        self: Environment[Destroying], ctx: FailureContext, *, at: datetime | None = None
    ) -> Environment[DestroyFailed]:
        return self._to(DestroyFailed, at=at, failure=ctx)

    # -- back to life --------------------------------------------------------------

    def recreate(
        self: Environment[Destroyed], *, desired_commit: str | None = None, at: datetime | None = None
    ) -> Environment[Created]:
        return self._to(Created, at=at, desired_commit=desired_commit)

    # -- erasure -------------------------------------------------------------------

    def into_any(self) -> AnyEnvironment:
        from reconciler.domain.erased import AnyEnvironment

        return AnyEnvironment(self)

    def with_suspension(self, suspended: SuspensionRecord | None) -> Environment[S_co]:
        """The same state, suspended by an operator (or resumed: ``None``); no transition."""
        return replace(self, suspended=suspended)

    def with_desired_commit(self, desired_commit: str) -> Environment[S_co]:
        """The same state, pointing at another desired commit (no transition)."""
        return replace(self, desired_commit=desired_commit)

    def with_drift(self, drift: DriftRecord | None) -> Environment[S_co]:
        """The same state with what a look for drift found (an observation, not a transition)."""
        return replace(self, drift=drift)
