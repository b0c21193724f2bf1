"""Looking for drift (SPEC 3.1): does a completed step's effect still hold?

Each look reuses its step's runner (the same working directory, vars, secrets
and redaction) and answers with a ``StepOutcome``: ``ok`` and not
``drifted`` when nothing differs, ``ok`` and ``drifted`` when it does (the
summary says how), not ``ok`` when the look itself could not be made.

- ``tofu`` (``apply``): ``plan -detailed-exitcode -input=false`` with refresh,
  in the step's working directory and with its var file, without taking the
  state lock (a plan writes no state): exit 2 is drift,
  summarised by the plan's ``Plan: 1 to add, 0 to change, 1 to destroy.``
  line. ``init`` runs only when the plan says the directory needs it.
- ``ansible``: the playbook with ``--check --diff``; a task that would change
  is drift, and the output (the diff) is the outcome's tail.
- ``shell`` with ``check``: that command; a non-zero exit is drift.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from reconciler.desired.models import Step, StepKind
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.ansible import first_failure, run_playbook
from reconciler.steps.outcome import StepContext, StepOutcome, make_outcome
from reconciler.steps.paths import resolve_in_checkout
from reconciler.steps.process import Command, ProcessStatus, failure_of, joined_tail, run_process
from reconciler.steps.shell import build_shell_command, check_shell_paths, shell_context
from reconciler.steps.tofu import build_tofu_commands, select_binary, sync_module

#: ``tofu plan -detailed-exitcode``: 0 no changes, 1 error, 2 changes.
PLAN_CHANGES = 2
_PLAN_LINE = re.compile(r"^Plan: \d+ to add, \d+ to change, \d+ to destroy\.", re.MULTILINE)
_NEEDS_INIT = re.compile(
    r"(terraform|tofu) init|Inconsistent dependency lock file|not installed", re.IGNORECASE
)
#: Changed tasks named in a summary; the rest are counted.
_NAMED_TASKS = 3


def has_probe(step: Step) -> bool:
    """Whether a completed step can be looked at for drift (not an ``http``, destroy or plain shell step)."""
    kind = step.kind
    if kind is StepKind.TOFU:
        return step.tofu is not None and step.tofu.action == "apply"
    if kind is StepKind.SHELL:
        return step.shell is not None and step.shell.check is not None
    return kind is StepKind.ANSIBLE


def detect(step: Step, ctx: StepContext, which: Callable[[str], str | None] = shutil.which) -> StepOutcome:
    """Look at ``step`` for drift; a step without a probe is in sync by definition."""
    kind = step.kind
    if not has_probe(step):
        return make_outcome(step.describe(), utcnow(), ctx.secrets, summary="nothing to look at", exit_code=0)
    if kind is StepKind.TOFU:
        return detect_tofu(step, ctx, which)
    if kind is StepKind.ANSIBLE:
        return detect_ansible(step, ctx)
    return detect_shell(step, ctx)


def plan_command(action: Command, binary: str) -> Command:
    """``plan -detailed-exitcode`` beside ``action`` (an ``apply``): the same directory, env and var file."""
    var_file = next(arg for arg in action.argv if arg.startswith("-var-file="))
    return Command(
        label=f"{Path(binary).name} plan",
        # -lock=false: a plan writes no state, so it neither waits for nor blocks a person's
        # `state rm` or another reconciler's apply (whose outcome a compare-and-swap settles).
        argv=(binary, "plan", "-detailed-exitcode", "-input=false", "-lock=false", "-no-color", var_file),
        cwd=action.cwd,
        env=action.env,
        files=action.files,
    )


def plan_summary(output: str) -> str:
    """The plan's ``Plan: …`` line, else what else it would change."""
    found = _PLAN_LINE.search(output)
    if found is not None:
        return found.group(0)
    if "Changes to Outputs" in output:
        return "only outputs would change"
    return "the plan has changes"


def detect_tofu(
    step: Step, ctx: StepContext, which: Callable[[str], str | None] = shutil.which
) -> StepOutcome:
    started_at = utcnow()
    body = step.tofu
    assert body is not None
    source = resolve_in_checkout(ctx.checkout, body.module, what="module", expect="dir")
    binary = select_binary(body, which)
    commands = build_tofu_commands(body, ctx, binary)
    sync_module(source, commands.workdir, ctx.checkout)
    plan = plan_command(commands.action, binary)
    tails: list[str] = []
    result = run_process(plan, ctx)
    if result.status is ProcessStatus.EXITED and result.exit_code == 1 and _NEEDS_INIT.search(result.tail):
        tails.append(result.tail)
        init = run_process(commands.init, ctx)
        tails.append(init.tail)
        failure = failure_of(init, commands.init.label)
        if failure is not None:
            return _failed(step, ctx, started_at, failure, init.exit_code, joined_tail(*tails))
        result = run_process(plan, ctx)
    tails.append(result.tail)
    tail = joined_tail(*tails)
    if result.status is ProcessStatus.EXITED and result.exit_code == PLAN_CHANGES:
        return make_outcome(
            step.describe(),
            started_at,
            ctx.secrets,
            summary=plan_summary(result.tail),
            exit_code=PLAN_CHANGES,
            output_tail=tail,
            drifted=True,
        )
    failure = failure_of(result, plan.label)
    if failure is not None:
        return _failed(step, ctx, started_at, failure, result.exit_code, tail)
    return make_outcome(
        step.describe(), started_at, ctx.secrets, summary="no changes", exit_code=0, output_tail=tail
    )


def detect_ansible(step: Step, ctx: StepContext) -> StepOutcome:
    started_at = utcnow()
    body = step.ansible
    assert body is not None
    result, events, label = run_playbook(body, ctx, extra_args=("--check", "--diff"))
    failure = failure_of(result, label)
    if failure is not None:
        kind, summary = failure
        failed_task = first_failure(events)
        if failed_task is not None and kind is ErrorKind.COMMAND_FAILED:
            summary = f"{summary}: {failed_task}"
        return _failed(step, ctx, started_at, (kind, summary), result.exit_code, result.tail, events)
    changed = changed_tasks(events)
    if not changed:
        return make_outcome(
            step.describe(),
            started_at,
            ctx.secrets,
            summary="no task would change",
            exit_code=0,
            output_tail=result.tail,
            events=events,
        )
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        summary=changed_summary(changed),
        exit_code=0,
        output_tail=result.tail,
        events=events,
        drifted=True,
    )


def changed_tasks(events: tuple[Mapping[str, Any], ...]) -> list[str]:
    """``'Write the page' on localhost`` for every task result that would change something."""
    return [
        f"{str(e.get('task', ''))!r} on {e.get('host', '')}"
        for e in events
        if e.get("event") == "ok" and e.get("changed")
    ]


def changed_summary(changed: list[str]) -> str:
    """``1 task would change: 'Write the page' on localhost``."""
    count = len(changed)
    named = ", ".join(changed[:_NAMED_TASKS])
    more = f" and {count - _NAMED_TASKS} more" if count > _NAMED_TASKS else ""
    return f"{count} task{'s' if count != 1 else ''} would change: {named}{more}"


def detect_shell(step: Step, ctx: StepContext) -> StepOutcome:
    started_at = utcnow()
    body = step.shell
    assert body is not None
    assert body.check is not None
    check_shell_paths(body, ctx)
    command = build_shell_command(body.model_copy(update={"run": body.check}), ctx)
    command = Command(
        label="shell check", argv=command.argv, cwd=command.cwd, env=command.env, files=command.files
    )
    result = run_process(command, shell_context(body, ctx))
    if result.status is ProcessStatus.EXITED and result.exit_code not in (0, None):
        last = next((line.strip() for line in reversed(result.tail.splitlines()) if line.strip()), "")
        summary = f"check exited {result.exit_code}" + (f": {last[:200]}" if last else "")
        return make_outcome(
            step.describe(),
            started_at,
            ctx.secrets,
            summary=summary,
            exit_code=result.exit_code,
            output_tail=result.tail,
            drifted=True,
        )
    failure = failure_of(result, command.label)
    if failure is not None:
        return _failed(step, ctx, started_at, failure, result.exit_code, result.tail)
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        summary="check exited 0",
        exit_code=0,
        output_tail=result.tail,
    )


def _failed(
    step: Step,
    ctx: StepContext,
    started_at: Any,
    failure: tuple[ErrorKind, str],
    exit_code: int | None,
    tail: str,
    events: tuple[Mapping[str, Any], ...] = (),
) -> StepOutcome:
    kind, summary = failure
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        error_kind=kind,
        summary=summary,
        exit_code=exit_code,
        output_tail=tail,
        error_chain=(summary,),
        events=events,
    )
