"""``shell`` steps: ``/bin/sh -c run`` in the checkout.

``run`` is never templated; what it may need arrives as environment
variables, so no declared value can inject shell syntax.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.desired.models import ShellStep, Step
from reconciler.domain.values import utcnow
from reconciler.steps.outcome import StepContext, StepOutcome, make_outcome
from reconciler.steps.paths import as_text, plain_value, resolve_in_checkout
from reconciler.steps.process import Command, failure_of, run_process

SHELL = "/bin/sh"


def env_name(prefix: str, name: str) -> str:
    """``RECONCILE_VAR_`` + ``http-port`` -> ``RECONCILE_VAR_HTTP_PORT``."""
    return prefix + re.sub(r"[^A-Z0-9]", "_", name.upper())


def reconcile_environ(ctx: StepContext) -> dict[str, str]:
    """The ``RECONCILE_*`` variables every shell step gets (SPEC section 2.3)."""
    env = {
        "RECONCILE_ENVIRONMENT": ctx.environment,
        "RECONCILE_DESIRED_COMMIT": ctx.desired_commit,
        "RECONCILE_DATA_DIR": str(ctx.data_dir),
    }
    if ctx.lock_id is not None:
        env["RECONCILE_LOCK_ID"] = ctx.lock_id
    env.update(_prefixed("RECONCILE_VAR_", ctx.vars, where="vars"))
    env.update(_prefixed("RECONCILE_OUTPUT_", ctx.outputs, where="outputs"))
    return env


def _prefixed(prefix: str, values: Mapping[str, Any], *, where: str) -> dict[str, str]:
    return {
        env_name(prefix, name): as_text(plain_value(values[name], where=f"{where}.{name}"))
        for name in sorted(values)
    }


def build_shell_command(step: ShellStep, ctx: StepContext) -> Command:
    """The command for ``step``: pure, so it is tested by equality."""
    env = reconcile_environ(ctx)
    env.update({name: as_text(plain_value(value, where=f"env.{name}")) for name, value in step.env.items()})
    cwd = ctx.checkout / step.cwd if step.cwd else ctx.checkout
    return Command(label="shell", argv=(SHELL, "-c", step.run), cwd=cwd, env=env)


def shell_context(step: ShellStep, ctx: StepContext) -> StepContext:
    """``ctx`` with the step's own ``timeoutSeconds`` applied, when it comes before the phase's."""
    if step.timeout_seconds is None:
        return ctx
    return replace(ctx, deadline=min(ctx.deadline, time.monotonic() + step.timeout_seconds))


def check_shell_paths(step: ShellStep, ctx: StepContext) -> None:
    if step.cwd:
        resolve_in_checkout(ctx.checkout, step.cwd, what="cwd", expect="dir")


def run_shell(step: Step, ctx: StepContext) -> StepOutcome:
    """Run a ``shell`` step; failures are returned, never raised."""
    started_at = utcnow()
    body = step.shell
    assert body is not None
    check_shell_paths(body, ctx)
    command = build_shell_command(body, ctx)
    result = run_process(command, shell_context(body, ctx))
    failure = failure_of(result, command.label)
    if failure is None:
        return make_outcome(
            step.describe(),
            started_at,
            ctx.secrets,
            summary="shell exited 0",
            exit_code=0,
            output_tail=result.tail,
        )
    kind, summary = failure
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        error_kind=kind,
        summary=summary,
        exit_code=result.exit_code,
        output_tail=result.tail,
        error_chain=(summary,),
    )
