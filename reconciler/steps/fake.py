"""An in-memory step runner for engine tests: scripted outcomes, recorded calls, no processes.

It honours the same contract as ``LocalStepRunner``: failures are values,
summaries use the same wording, output lines go through redaction to
``ctx.log``, a delay past ``ctx.deadline`` ends in ``timeout`` and a set
``ctx.cancel`` in ``interrupted``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.desired.models import Step
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.outcome import (
    StepContext,
    StepOutcome,
    exited_summary,
    interrupted_summary,
    make_outcome,
    timed_out_summary,
)
from reconciler.steps.redact import redact


@dataclass(frozen=True)
class FakeResult:
    """One scripted result. ``exit_code`` set and ``error_kind`` unset means ``command_failed``."""

    ok: bool = True
    error_kind: ErrorKind | None = None
    summary: str | None = None
    exit_code: int | None = None
    output: str = ""
    outputs: Mapping[str, str] = field(default_factory=dict)
    #: Seconds the step "runs"; it still ends at ``ctx.deadline`` or on ``ctx.cancel``.
    delay: float = 0.0
    #: A look for drift (``ctx.detect``) that finds the step's effect changed.
    drifted: bool = False


@dataclass(frozen=True)
class FakeCall:
    environment: str
    step: str
    phase: str | None
    started_at: datetime
    finished_at: datetime
    started_monotonic: float
    finished_monotonic: float
    outcome: StepOutcome


def fails(
    exit_code: int = 1, *, error_kind: ErrorKind = ErrorKind.COMMAND_FAILED, summary: str | None = None
) -> FakeResult:
    return FakeResult(ok=False, error_kind=error_kind, exit_code=exit_code, summary=summary)


class FakeStepRunner:
    """Scripted per ``(environment, key)``, key being the step's ``describe()`` or the phase.

    Scripted results are used up in order; afterwards (or when nothing is
    scripted) a step succeeds. A step's own description wins over its phase.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], deque[FakeResult]] = defaultdict(deque)
        self._calls: list[FakeCall] = []

    def script(self, environment: str, key: str, *results: FakeResult) -> None:
        with self._lock:
            self._scripts[(environment, key)].extend(results)

    @property
    def calls(self) -> tuple[FakeCall, ...]:
        with self._lock:
            return tuple(self._calls)

    def calls_for(self, environment: str) -> tuple[FakeCall, ...]:
        return tuple(call for call in self.calls if call.environment == environment)

    def _next(self, environment: str, step: str, phase: str | None) -> FakeResult:
        with self._lock:
            for key in (step, phase):
                if key is None:
                    continue
                queue = self._scripts.get((environment, key))
                if queue:
                    return queue.popleft()
        return FakeResult()

    def run(self, step: Step, ctx: StepContext) -> StepOutcome:
        started_at = utcnow()
        started = time.monotonic()
        description = step.describe()
        result = self._next(ctx.environment, description, ctx.phase)
        family = f"{step.kind.value}"
        lines = [redact(line, ctx.secrets) for line in result.output.splitlines()]
        if ctx.log is not None:
            for line in lines:
                ctx.log(line)
        tail = "\n".join(lines)
        kind, summary, exit_code = self._wait(result, ctx, family, started)
        if kind is None and not result.ok:
            kind = result.error_kind or ErrorKind.COMMAND_FAILED
            exit_code = result.exit_code
            summary = result.summary or (
                exited_summary(family, exit_code) if exit_code is not None else f"{family} failed"
            )
        if kind is None:
            summary = result.summary or f"{family} exited 0"
        outcome = make_outcome(
            description,
            started_at,
            ctx.secrets,
            error_kind=kind,
            summary=summary,
            exit_code=exit_code if kind is not None else (result.exit_code or 0),
            output_tail=tail,
            outputs=result.outputs if kind is None else {},
            error_chain=(summary,) if kind is not None else (),
            drifted=kind is None and result.drifted,
        )
        with self._lock:
            self._calls.append(
                FakeCall(
                    environment=ctx.environment,
                    step=description,
                    phase=ctx.phase,
                    started_at=started_at,
                    finished_at=outcome.finished_at,
                    started_monotonic=started,
                    finished_monotonic=time.monotonic(),
                    outcome=outcome,
                )
            )
        return outcome

    @staticmethod
    def _wait(
        result: FakeResult, ctx: StepContext, family: str, started: float
    ) -> tuple[ErrorKind | None, str, int | None]:
        """Sleep the scripted delay, cut short by the deadline or a cancel like a real process."""
        end = started + result.delay
        while True:
            now = time.monotonic()
            if ctx.cancel is not None and ctx.cancel.is_set():
                return ErrorKind.INTERRUPTED, interrupted_summary(family), -15
            if now >= ctx.deadline:
                return ErrorKind.TIMEOUT, timed_out_summary(family, now - started), -15
            if now >= end:
                return None, "", None
            pause = min(end, ctx.deadline) - now
            if ctx.cancel is not None:
                ctx.cancel.wait(min(pause, 0.05))
            else:
                time.sleep(min(pause, 0.05))
