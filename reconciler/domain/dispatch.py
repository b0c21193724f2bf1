"""Transitions on an ``AnyEnvironment``, for code that learns the state at run time.

The engine reads states from the store, so it cannot name the state class
statically. These functions recover the typed environment with ``try_into``
and call the typed method, so the state machine is still written once, in
``Environment``, and an invalid request is an ``InvalidTransition``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from reconciler.domain.environment import Environment
from reconciler.domain.erased import AnyEnvironment
from reconciler.domain.states import (
    CAPABILITY,
    IN_PROGRESS,
    Configuring,
    Destroyed,
    Destroying,
    Phase,
    Provisioning,
    Releasing,
    Starting,
    State,
)
from reconciler.domain.values import FailureContext, Lock


class InvalidTransition(ValueError):
    """The requested phase cannot start (or end) from the environment's state."""


def start_phase(
    env: AnyEnvironment,
    phase: Phase,
    *,
    lock: Lock | None = None,
    desired_commit: str | None = None,
    at: datetime | None = None,
) -> AnyEnvironment:
    """Enter ``phase``'s in-progress state (taking ``lock``)."""
    if not issubclass(env.state, CAPABILITY[phase]):
        raise InvalidTransition(f"{env.name}: cannot start {phase} from state '{env.state_name}'")
    typed: Any = env.environment
    starts: dict[Phase, Callable[..., Environment[State]]] = {
        Phase.PROVISION: typed.start_provisioning,
        Phase.CONFIGURE: typed.start_configuring,
        Phase.RELEASE: typed.start_releasing,
        Phase.RUN: typed.start_running,
        Phase.DESTROY: typed.start_destroying,
    }
    return starts[phase](lock=lock, desired_commit=desired_commit, at=at).into_any()


def _in_progress_phase(env: AnyEnvironment) -> Phase:
    for phase, state in IN_PROGRESS.items():
        if env.state is state:
            return phase
    raise InvalidTransition(f"{env.name}: state '{env.state_name}' is not an in-progress state")


def succeed_phase(
    env: AnyEnvironment,
    *,
    phase_hash: str | None = None,
    outputs: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> AnyEnvironment:
    """Leave the in-progress state for its success state (releasing the lock)."""
    phase = _in_progress_phase(env)
    if phase is Phase.PROVISION:
        return (
            env.try_into(Provisioning).provisioned(phase_hash=phase_hash, outputs=outputs, at=at).into_any()
        )
    if phase is Phase.CONFIGURE:
        return env.try_into(Configuring).configured(phase_hash=phase_hash, outputs=outputs, at=at).into_any()
    if phase is Phase.RELEASE:
        return env.try_into(Releasing).released(phase_hash=phase_hash, outputs=outputs, at=at).into_any()
    if phase is Phase.RUN:
        return env.try_into(Starting).running(phase_hash=phase_hash, outputs=outputs, at=at).into_any()
    return env.try_into(Destroying).destroyed(at=at).into_any()


def fail_phase(env: AnyEnvironment, ctx: FailureContext, *, at: datetime | None = None) -> AnyEnvironment:
    """Leave the in-progress state for its failed state, carrying ``ctx``."""
    phase = _in_progress_phase(env)
    if phase is Phase.PROVISION:
        return env.try_into(Provisioning).provision_failed(ctx, at=at).into_any()
    if phase is Phase.CONFIGURE:
        return env.try_into(Configuring).configure_failed(ctx, at=at).into_any()
    if phase is Phase.RELEASE:
        return env.try_into(Releasing).release_failed(ctx, at=at).into_any()
    if phase is Phase.RUN:
        return env.try_into(Starting).run_failed(ctx, at=at).into_any()
    return env.try_into(Destroying).destroy_failed(ctx, at=at).into_any()


def in_progress_phase(env: AnyEnvironment) -> Phase | None:
    """The phase an in-progress environment is running, else ``None``."""
    return _in_progress_phase(env) if env.is_in_progress else None


def recreate(
    env: AnyEnvironment, *, desired_commit: str | None = None, at: datetime | None = None
) -> AnyEnvironment:
    """``destroyed`` back to ``created``."""
    if env.state is not Destroyed:
        raise InvalidTransition(f"{env.name}: cannot recreate from state '{env.state_name}'")
    return env.try_into(Destroyed).recreate(desired_commit=desired_commit, at=at).into_any()
