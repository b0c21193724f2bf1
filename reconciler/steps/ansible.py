"""``ansible`` steps: ``ansible-playbook`` on a local-connection inventory by default.

The default stdout callback streams the run line by line; a small callback
plugin of ours (``ansible_plugins/reconcile_events.py``) records each task
result as a JSON line beside it, which become the outcome's ``events``.
Everything ansible would write to ``~`` goes under the environment's data
dir instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.desired.models import AnsibleStep, Step
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.errors import StepRefused
from reconciler.steps.outcome import StepContext, StepOutcome, make_outcome
from reconciler.steps.paths import plain_value, resolve_in_checkout
from reconciler.steps.process import Command, GeneratedFile, ProcessResult, failure_of, run_process
from reconciler.steps.redact import redact

CALLBACK_PLUGINS = Path(__file__).parent / "ansible_plugins"
EVENTS_CALLBACK = "reconcile_events"
#: Events kept per run, so a playbook with thousands of tasks cannot swell a trace.
MAX_EVENTS = 1000


@dataclass(frozen=True)
class AnsibleCommand:
    """The pure part of an ``ansible`` step: the command and where its events land."""

    command: Command
    events_file: Path


def find_ansible_playbook(which: Callable[[str], str | None] = shutil.which) -> str:
    """``ansible-playbook`` next to this Python first (the same venv), then on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = which("ansible-playbook")
    if found is None:
        raise StepRefused(ErrorKind.CONFIGURATION, "ansible-playbook was not found next to Python or on PATH")
    return found


def extra_vars(step: AnsibleStep, ctx: StepContext) -> dict[str, Any]:
    """The environment's vars, under the step's ``extraVars``, plus the ``reconcile_*`` facts."""
    merged: dict[str, Any] = {key: plain_value(value, where=f"vars.{key}") for key, value in ctx.vars.items()}
    merged.update(
        {key: plain_value(value, where=f"extraVars.{key}") for key, value in step.extra_vars.items()}
    )
    merged.update(
        {
            "reconcile_environment": ctx.environment,
            "reconcile_desired_commit": ctx.desired_commit,
            "reconcile_data_dir": str(ctx.data_dir),
            "reconcile_outputs": dict(ctx.outputs),
        }
    )
    return merged


def build_ansible_command(
    step: AnsibleStep, ctx: StepContext, executable: str, python: str
) -> AnsibleCommand:
    """The ``ansible-playbook`` command for ``step``: pure, so it is tested by equality."""
    base = ctx.data_dir / "ansible"
    vars_file = base / "extra-vars.json"
    events_file = base / "events.jsonl"
    files = [GeneratedFile(vars_file, json.dumps(extra_vars(step, ctx), indent=2, sort_keys=True) + "\n")]
    if step.inventory:
        inventory = ctx.checkout / step.inventory
    else:
        inventory = base / "inventory.ini"
        files.append(
            GeneratedFile(
                inventory, f"localhost ansible_connection=local ansible_python_interpreter={python}\n"
            )
        )
    env = {
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOME": str(base / "home"),
        "ANSIBLE_LOCAL_TEMP": str(base / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(base / "tmp-remote"),
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS),
        "ANSIBLE_CALLBACKS_ENABLED": EVENTS_CALLBACK,
        "RECONCILE_ANSIBLE_EVENTS": str(events_file),
        "PYTHONUNBUFFERED": "1",
    }
    argv = (
        executable,
        "-i",
        str(inventory),
        "--extra-vars",
        f"@{vars_file}",
        str(ctx.checkout / step.playbook),
    )
    return AnsibleCommand(
        command=Command(label="ansible-playbook", argv=argv, cwd=ctx.checkout, env=env, files=tuple(files)),
        events_file=events_file,
    )


def read_events(path: Path, secrets: frozenset[str]) -> tuple[dict[str, Any], ...]:
    """The callback's JSON lines, redacted; unreadable lines are skipped."""
    events: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ()
    for line in text.splitlines():
        if len(events) >= MAX_EVENTS:
            break
        try:
            event = json.loads(redact(line, secrets)) if secrets else json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return tuple(events)


def first_failure(events: tuple[Mapping[str, Any], ...]) -> str | None:
    """``task 'Install' failed on localhost: <msg>`` for the first failed, unignored task."""
    for event in events:
        if event.get("event") in {"failed", "unreachable"} and not event.get("ignore_errors"):
            message = str(event.get("msg") or "").strip().splitlines()
            verb = "failed" if event["event"] == "failed" else "was unreachable"
            text = f"task {event.get('task', '')!r} {verb} on {event.get('host', '')}"
            return f"{text}: {message[0][:200]}" if message else text
    return None


def run_playbook(
    body: AnsibleStep, ctx: StepContext, *, extra_args: tuple[str, ...] = ()
) -> tuple[ProcessResult, tuple[dict[str, Any], ...], str]:
    """Run the playbook (``extra_args`` before its path); its result, its events and the command's label."""
    resolve_in_checkout(ctx.checkout, body.playbook, what="playbook", expect="file")
    if body.inventory:
        resolve_in_checkout(ctx.checkout, body.inventory, what="inventory")
    built = build_ansible_command(body, ctx, find_ansible_playbook(), sys.executable)
    command = built.command
    if extra_args:
        command = replace(
            command,
            label=" ".join((command.label, *extra_args)),
            argv=(*command.argv[:-1], *extra_args, command.argv[-1]),
        )
    for directory in ("home", "tmp", "tmp-remote"):
        (ctx.data_dir / "ansible" / directory).mkdir(parents=True, exist_ok=True, mode=0o700)
    built.events_file.unlink(missing_ok=True)
    os.close(os.open(built.events_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        result = run_process(command, ctx)
        events = read_events(built.events_file, ctx.secrets)
    finally:
        with contextlib.suppress(FileNotFoundError):
            built.events_file.unlink()
    return result, events, command.label


def run_ansible(step: Step, ctx: StepContext) -> StepOutcome:
    """Run the playbook; its task results become the outcome's events."""
    started_at = utcnow()
    body = step.ansible
    assert body is not None
    result, events, label = run_playbook(body, ctx)
    failure = failure_of(result, label)
    if failure is None:
        return make_outcome(
            step.describe(),
            started_at,
            ctx.secrets,
            summary="ansible-playbook exited 0",
            exit_code=0,
            output_tail=result.tail,
            events=events,
        )
    kind, summary = failure
    failed_task = first_failure(events)
    if failed_task is not None and kind is ErrorKind.COMMAND_FAILED:
        summary = f"{summary}: {failed_task}"
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        error_kind=kind,
        summary=summary,
        exit_code=result.exit_code,
        output_tail=result.tail,
        error_chain=(summary,) if failed_task is None else (summary, failed_task),
        events=events,
    )
