"""The real step runner: dispatches on the step's kind and turns refusals into outcomes."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from reconciler.desired.models import Step, StepKind
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.ansible import run_ansible
from reconciler.steps.detect import detect
from reconciler.steps.errors import StepRefused
from reconciler.steps.http import run_http
from reconciler.steps.outcome import StepContext, StepOutcome, make_outcome
from reconciler.steps.shell import run_shell
from reconciler.steps.tofu import run_tofu

logger = logging.getLogger(__name__)


class LocalStepRunner:
    """Runs steps as real processes (and HTTP requests) on this machine."""

    def __init__(self, which: Callable[[str], str | None] = shutil.which) -> None:
        self._which = which

    def run(self, step: Step, ctx: StepContext) -> StepOutcome:
        started_at = utcnow()
        try:
            ctx.data_dir.mkdir(parents=True, exist_ok=True)
            if ctx.detect:
                return detect(step, ctx, self._which)
            kind = step.kind
            if kind is StepKind.SHELL:
                return run_shell(step, ctx)
            if kind is StepKind.TOFU:
                return run_tofu(step, ctx, self._which)
            if kind is StepKind.ANSIBLE:
                return run_ansible(step, ctx)
            return run_http(step, ctx)
        except StepRefused as refused:
            return make_outcome(
                step.describe(),
                started_at,
                ctx.secrets,
                error_kind=refused.kind,
                summary=refused.summary,
                error_chain=(refused.summary, *refused.causes),
            )
        except OSError as exc:
            # The data dir or the checkout could not be used: the machine's problem, not the step's.
            summary = f"{step.describe()}: {exc.strerror or exc}" + (
                f": {exc.filename}" if exc.filename else ""
            )
            logger.warning(
                "step could not run", extra={"environment": ctx.environment, "step": step.describe()}
            )
            return make_outcome(
                step.describe(),
                started_at,
                ctx.secrets,
                error_kind=ErrorKind.FILESYSTEM,
                summary=summary,
                error_chain=(summary, repr(exc)),
            )
