"""The sixteen lifecycle states as marker classes.

Each marker inherits the capabilities of the state it names, so that a
transition method can restrict ``self`` to ``Environment[CanConfigure]`` and
mypy rejects a call on any state whose class lacks that base (see
docs/decisions/001-type-state.md). The markers carry no data: what a state
records (a lock, a failure) lives on the ``Environment``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Final


class Phase(StrEnum):
    """A lifecycle phase; ``check`` is not one (it validates, it does not move)."""

    PROVISION = "provision"
    CONFIGURE = "configure"
    RELEASE = "release"
    RUN = "run"
    DESTROY = "destroy"


#: The forward phases, in the order they must complete.
FORWARD_PHASES: Final[tuple[Phase, ...]] = (
    Phase.PROVISION,
    Phase.CONFIGURE,
    Phase.RELEASE,
    Phase.RUN,
)


class State:
    """Base of every state marker."""

    name: ClassVar[str]
    is_success: ClassVar[bool] = True
    is_terminal: ClassVar[bool] = False
    #: The phase this state is the in-progress or failed state of, if any.
    phase: ClassVar[Phase | None] = None
    is_in_progress: ClassVar[bool] = False

    @classmethod
    def is_error(cls) -> bool:
        return not cls.is_success


# Capabilities: which phase a state may start (or re-start).
class CanProvision(State):
    """May enter ``provisioning``."""


class CanConfigure(State):
    """May enter ``configuring``."""


class CanRelease(State):
    """May enter ``releasing``."""


class CanRun(State):
    """May enter ``starting``."""


class CanDestroy(State):
    """May enter ``destroying``."""


class Failed(CanProvision, CanDestroy):
    """Every ``*_failed`` state: it carries a failure context and is terminal."""

    is_success = False
    is_terminal = True


# The states.
class Created(CanProvision, CanDestroy):
    name = "created"


class Provisioning(State):
    name = "provisioning"
    phase = Phase.PROVISION
    is_in_progress = True


class Provisioned(CanProvision, CanConfigure, CanDestroy):
    name = "provisioned"


class Configuring(State):
    name = "configuring"
    phase = Phase.CONFIGURE
    is_in_progress = True


class Configured(CanProvision, CanConfigure, CanRelease, CanDestroy):
    name = "configured"


class Releasing(State):
    name = "releasing"
    phase = Phase.RELEASE
    is_in_progress = True


class Released(CanProvision, CanConfigure, CanRelease, CanRun, CanDestroy):
    name = "released"


class Starting(State):
    name = "starting"
    phase = Phase.RUN
    is_in_progress = True


class Running(CanProvision, CanConfigure, CanRelease, CanRun, CanDestroy):
    name = "running"
    is_terminal = True


class Destroying(State):
    name = "destroying"
    phase = Phase.DESTROY
    is_in_progress = True


class Destroyed(State):
    name = "destroyed"
    is_terminal = True


class ProvisionFailed(Failed):
    name = "provision_failed"
    phase = Phase.PROVISION


class ConfigureFailed(Failed, CanConfigure):
    name = "configure_failed"
    phase = Phase.CONFIGURE


class ReleaseFailed(Failed, CanConfigure, CanRelease):
    name = "release_failed"
    phase = Phase.RELEASE


class RunFailed(Failed, CanConfigure, CanRelease, CanRun):
    name = "run_failed"
    phase = Phase.RUN


class DestroyFailed(Failed):
    name = "destroy_failed"
    phase = Phase.DESTROY


ALL_STATES: Final[tuple[type[State], ...]] = (
    Created,
    Provisioning,
    Provisioned,
    Configuring,
    Configured,
    Releasing,
    Released,
    Starting,
    Running,
    Destroying,
    Destroyed,
    ProvisionFailed,
    ConfigureFailed,
    ReleaseFailed,
    RunFailed,
    DestroyFailed,
)

STATES_BY_NAME: Final[dict[str, type[State]]] = {s.name: s for s in ALL_STATES}

#: The state a phase enters while it runs, on success and on failure.
IN_PROGRESS: Final[dict[Phase, type[State]]] = {
    Phase.PROVISION: Provisioning,
    Phase.CONFIGURE: Configuring,
    Phase.RELEASE: Releasing,
    Phase.RUN: Starting,
    Phase.DESTROY: Destroying,
}
SUCCEEDED: Final[dict[Phase, type[State]]] = {
    Phase.PROVISION: Provisioned,
    Phase.CONFIGURE: Configured,
    Phase.RELEASE: Released,
    Phase.RUN: Running,
    Phase.DESTROY: Destroyed,
}
FAILED: Final[dict[Phase, type[State]]] = {
    Phase.PROVISION: ProvisionFailed,
    Phase.CONFIGURE: ConfigureFailed,
    Phase.RELEASE: ReleaseFailed,
    Phase.RUN: RunFailed,
    Phase.DESTROY: DestroyFailed,
}
CAPABILITY: Final[dict[Phase, type[State]]] = {
    Phase.PROVISION: CanProvision,
    Phase.CONFIGURE: CanConfigure,
    Phase.RELEASE: CanRelease,
    Phase.RUN: CanRun,
    Phase.DESTROY: CanDestroy,
}


def can_start(state: type[State], phase: Phase) -> bool:
    """Whether the SPEC's table lets ``phase`` start from ``state``."""
    return issubclass(state, CAPABILITY[phase])


def completed_phases(state: type[State]) -> tuple[Phase, ...]:
    """The forward phases that have completed when an environment is in ``state``.

    A failed or in-progress state has completed every phase before its own.
    """
    order = {
        Created: 0,
        Provisioned: 1,
        Configured: 2,
        Released: 3,
        Running: 4,
    }
    if state in order:
        return FORWARD_PHASES[: order[state]]
    if state.phase is not None and state.phase in FORWARD_PHASES:
        return FORWARD_PHASES[: FORWARD_PHASES.index(state.phase)]
    return ()
