"""What a step runner is given and what it hands back.

A step's failure is a value (``StepOutcome(ok=False, ...)``), never an
exception: the engine records it and decides retries from ``error_kind``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from reconciler.desired.models import Step
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.redact import redact


@dataclass(frozen=True)
class StepContext:
    """Everything a step may use besides its own (already rendered) fields."""

    environment: str
    desired_commit: str
    #: An export of the desired commit's tree; steps run here and repo-relative paths resolve here.
    checkout: Path
    #: The environment's own data dir, ``<data>/<name>``; tofu working dirs live under ``tofu/``.
    data_dir: Path
    vars: Mapping[str, Any]
    outputs: Mapping[str, str]
    #: Values to redact from everything captured (resolved ``fromEnv`` secrets).
    secrets: frozenset[str]
    #: ``time.monotonic()`` by which the step must be done; past it the step is killed (``timeout``).
    deadline: float
    #: Receives each output line, already redacted, as it arrives.
    log: Callable[[str], None] | None = None
    #: Set it to stop the step promptly; the outcome is then ``interrupted``.
    cancel: threading.Event | None = None
    #: The phase the step belongs to (``provision`` ... ``check``), for fakes and traces.
    phase: str | None = None
    #: The id of the lock the phase holds; shell steps get it as ``RECONCILE_LOCK_ID`` so that
    #: processes an interrupted phase left behind can be told apart from earlier phases' services.
    lock_id: str | None = None
    #: That lock's ``expiresAt`` (wall clock, as other reconcilers read it): a command still running
    #: ``TERM_GRACE_SECONDS`` before it is stopped by its supervisor, even if this process is stuck.
    lock_expires_at: datetime | None = None
    #: Look for drift instead of applying (SPEC 3.1): ``tofu plan -detailed-exitcode``, ``ansible-playbook
    #: --check --diff``, a shell step's ``check``; the outcome's ``drifted`` says what was found.
    detect: bool = False


@dataclass(frozen=True)
class StepOutcome:
    """How one step ended; ``ok=False`` carries the error kind and a one-line summary."""

    ok: bool
    step: str
    error_kind: ErrorKind | None
    summary: str
    exit_code: int | None
    #: The last lines of the step's merged output, bounded and redacted.
    output_tail: str
    #: Outputs the step produced (tofu's non-sensitive outputs), as strings.
    outputs: Mapping[str, str]
    started_at: datetime
    finished_at: datetime
    #: Causes, outermost first, for the trace file.
    error_chain: tuple[str, ...] = ()
    #: Structured events (ansible task results), when the tool gives them.
    events: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    #: A look for drift (``StepContext.detect``) that ran and found the step's effect changed.
    drifted: bool = False

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


class StepRunner(Protocol):
    """The seam between the engine and the processes a step starts."""

    def run(self, step: Step, ctx: StepContext) -> StepOutcome: ...


def exited_summary(command: str, exit_code: int) -> str:
    """``tofu apply exited 1``: the one-line summary of a failed command, shared with the fake."""
    if exit_code < 0:
        return f"{command} was killed by signal {-exit_code}"
    return f"{command} exited {exit_code}"


def timed_out_summary(command: str, seconds: float) -> str:
    return f"{command} timed out after {seconds:.1f}s"


def lock_expired_summary(command: str, seconds: float) -> str:
    return f"{command} reached its lock's expiry after {seconds:.1f}s and was stopped"


def interrupted_summary(command: str) -> str:
    return f"{command} was interrupted"


def make_outcome(
    step: str,
    started_at: datetime,
    secrets: frozenset[str],
    *,
    error_kind: ErrorKind | None = None,
    summary: str,
    exit_code: int | None = None,
    output_tail: str = "",
    outputs: Mapping[str, str] | None = None,
    error_chain: tuple[str, ...] = (),
    events: tuple[Mapping[str, Any], ...] = (),
    drifted: bool = False,
) -> StepOutcome:
    """A finished outcome, ``ok`` when there is no error kind; every text in it is redacted."""
    return StepOutcome(
        ok=error_kind is None,
        step=redact(step, secrets),
        error_kind=error_kind,
        summary=redact(summary, secrets),
        exit_code=exit_code,
        output_tail=redact(output_tail, secrets),
        outputs=MappingProxyType(dict(outputs or {})),
        started_at=started_at,
        finished_at=utcnow(),
        error_chain=tuple(redact(cause, secrets) for cause in error_chain),
        events=events,
        drifted=drifted,
    )
