"""Environments in any state, reached through the real transitions."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.domain import Environment, ErrorKind, FailureContext, Lock, LockHolder, Phase
from tests.domain.lifecycle_table import STATES, TRANSITIONS

T0 = datetime(2026, 11, 28, 10, 15, tzinfo=UTC)


def failure(phase: str | Phase, summary: str = "tofu apply exited 1") -> FailureContext:
    return FailureContext(
        phase=Phase(phase),
        failed_step="tofu apply infra/vm",
        error_kind=ErrorKind.COMMAND_FAILED,
        error_summary=summary,
        attempt=1,
        execution_started_at=T0,
        failed_at=T0 + timedelta(seconds=12.3),
        execution_duration_seconds=12.3,
        trace_file="data/web/traces/20261128-101500-provision.log",
    )


def lock() -> Lock:
    return Lock(
        holder=LockHolder(
            host="ci-1", pid=4242, process_started_at=datetime(2026, 11, 28, 9, 0, 0, 500000, tzinfo=UTC)
        ),
        acquired_at=T0,
        expires_at=T0 + timedelta(minutes=31),
    )


def call(env: Any, method: str, **kwargs: Any) -> Any:
    """Call a transition by name, passing a failure context of the right phase if it needs one."""
    if method.endswith("_failed"):
        return getattr(env, method)(failure(method.removesuffix("_failed")), **kwargs)
    return getattr(env, method)(**kwargs)


def _paths() -> dict[str, list[str]]:
    """The shortest sequence of methods from ``created`` to each state."""
    paths: dict[str, list[str]] = {"created": []}
    queue = deque(["created"])
    while queue:
        state = queue.popleft()
        for method, (sources, target) in TRANSITIONS.items():
            if state in sources and target not in paths:
                paths[target] = [*paths[state], method]
                queue.append(target)
    assert set(paths) == set(STATES)
    return paths


PATHS = _paths()


def reach(state: str, name: str = "web") -> Any:
    """``Environment.create(name)`` driven to ``state`` by real transitions."""
    env: Any = Environment.create(name, at=T0)
    for method in PATHS[state]:
        env = call(env, method, at=T0)
    assert env.state.name == state
    return env
