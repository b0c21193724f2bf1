"""``tofu`` steps: OpenTofu (or Terraform) in a per-environment working directory.

The module's files are copied from the checkout into
``<data_dir>/tofu/<module slug>`` on every run, over what is kept there from
run to run (``.terraform/``, the state files, the lock file), so state
persists and a person can run plain ``tofu state list`` in that directory to
recover (docs/decisions/006-step-runners.md).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.desired.models import Step, TofuStep
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.errors import StepRefused
from reconciler.steps.outcome import StepContext, StepOutcome, make_outcome
from reconciler.steps.paths import as_text, plain_value, resolve_in_checkout
from reconciler.steps.process import Command, GeneratedFile, failure_of, joined_tail, run_process

#: Entries of a working directory that belong to it, not to the module: kept across runs.
KEPT_IN_WORKDIR = frozenset(
    {
        ".terraform",
        "terraform.tfstate",
        "terraform.tfstate.backup",
        "terraform.tfstate.d",
        ".terraform.tfstate.lock.info",
        ".terraform.lock.hcl",
    }
)
#: Entries of a module never copied over the working directory's own (the lock file is: the repo's wins).
NOT_COPIED = KEPT_IN_WORKDIR - {".terraform.lock.hcl"}
VAR_FILE_NAME = ".reconcile.tfvars.json"
_MAX_LINK_DEPTH = 32


@dataclass(frozen=True)
class TofuCommands:
    """The pure part of a ``tofu`` step: the working directory and the commands to run in it."""

    workdir: Path
    init: Command
    action: Command
    #: ``output -json`` after an apply; ``None`` after a destroy.
    output: Command | None


def module_slug(module: str) -> str:
    """``infra/vm`` -> ``infra__vm``: one working directory per module path, readable on disk."""
    parts = [p for p in PurePosixPath(module).parts if p not in {".", "/"}]
    return "__".join(re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in parts) or "root"


def select_binary(step: TofuStep, which: Callable[[str], str | None] = shutil.which) -> str:
    """``step.binary``, else ``tofu`` on PATH, else ``terraform``; refused when none is found."""
    if step.binary:
        found = step.binary if "/" in step.binary else which(step.binary)
        if found is None:
            raise StepRefused(ErrorKind.CONFIGURATION, f"tofu binary {step.binary!r} not found on PATH")
        return found
    for name in ("tofu", "terraform"):
        found = which(name)
        if found is not None:
            return found
    raise StepRefused(ErrorKind.CONFIGURATION, "neither tofu nor terraform was found on PATH")


def build_tofu_commands(step: TofuStep, ctx: StepContext, binary: str) -> TofuCommands:
    """The commands of ``step`` with ``binary``: pure, so it is tested by equality."""
    workdir = ctx.data_dir / "tofu" / module_slug(step.module)
    name = Path(binary).name
    env = {"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}
    var_file = workdir / VAR_FILE_NAME
    variables = {key: plain_value(value, where=f"vars.{key}") for key, value in step.vars.items()}
    init = Command(
        label=f"{name} init",
        argv=(binary, "init", "-input=false", "-no-color"),
        cwd=workdir,
        env=env,
    )
    action = Command(
        label=f"{name} {step.action}",
        argv=(binary, step.action, "-input=false", "-auto-approve", "-no-color", f"-var-file={var_file}"),
        cwd=workdir,
        env=env,
        files=(_var_file(var_file, variables, ctx.secrets),),
    )
    output = None
    if step.action == "apply":
        output = Command(
            label=f"{name} output", argv=(binary, "output", "-json", "-no-color"), cwd=workdir, env=env
        )
    return TofuCommands(workdir=workdir, init=init, action=action, output=output)


def _var_file(path: Path, variables: dict[str, Any], secrets: frozenset[str]) -> GeneratedFile:
    """The step's vars, kept after the run (for a manual ``tofu plan -var-file=...``) unless secret."""
    content = json.dumps(variables, indent=2, sort_keys=True) + "\n"
    holds_secret = any(secret and secret in content for secret in secrets)
    return GeneratedFile(path, content, keep=not holds_secret)


def sync_module(source: Path, workdir: Path, checkout: Path) -> None:
    """Make ``workdir`` hold exactly the module's files, plus what it keeps across runs."""
    root = checkout.resolve()
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in workdir.iterdir():
        if entry.name in KEPT_IN_WORKDIR:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    _copy_tree(source, workdir, root, top=True, depth=0)


def _copy_tree(source: Path, target: Path, root: Path, *, top: bool, depth: int) -> None:
    if depth > _MAX_LINK_DEPTH:
        raise StepRefused(ErrorKind.CONFIGURATION, f"{source}: directories nested too deep (a symlink loop?)")
    target.mkdir(exist_ok=True)
    for entry in sorted(source.iterdir()):
        if top and entry.name in NOT_COPIED:
            continue
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            relative = entry.relative_to(root) if entry.is_relative_to(root) else entry
            raise StepRefused(ErrorKind.CONFIGURATION, f"{relative}: symlink points outside the repository")
        if entry.is_dir():
            _copy_tree(entry, target / entry.name, root, top=False, depth=depth + 1)
        elif entry.is_file():
            shutil.copyfile(entry, target / entry.name)


def parse_outputs(document: Mapping[str, Any]) -> dict[str, str]:
    """``output -json`` -> the non-sensitive outputs as strings (non-strings as compact JSON)."""
    outputs: dict[str, str] = {}
    for name, described in document.items():
        if not isinstance(described, Mapping) or described.get("sensitive"):
            continue
        outputs[name] = as_text(described.get("value"))
    return outputs


def run_tofu(step: Step, ctx: StepContext, which: Callable[[str], str | None] = shutil.which) -> StepOutcome:
    """``init``, then ``apply``/``destroy``, then (after an apply) ``output -json``."""
    started_at = utcnow()
    body = step.tofu
    assert body is not None
    source = resolve_in_checkout(ctx.checkout, body.module, what="module", expect="dir")
    commands = build_tofu_commands(body, ctx, select_binary(body, which))
    sync_module(source, commands.workdir, ctx.checkout)
    tails: list[str] = []

    def failed(kind: ErrorKind, summary: str, exit_code: int | None, *causes: str) -> StepOutcome:
        return make_outcome(
            step.describe(),
            started_at,
            ctx.secrets,
            error_kind=kind,
            summary=summary,
            exit_code=exit_code,
            output_tail=joined_tail(*tails),
            error_chain=(summary, *causes),
        )

    for command in (commands.init, commands.action):
        result = run_process(command, ctx)
        tails.append(result.tail)
        failure = failure_of(result, command.label)
        if failure is not None:
            return failed(*failure, result.exit_code)
    outputs: dict[str, str] = {}
    if commands.output is not None:
        result = run_process(commands.output, ctx, echo=False)
        tails.append(result.tail)
        failure = failure_of(result, commands.output.label)
        if failure is not None:
            return failed(*failure, result.exit_code)
        try:
            document = json.loads(result.captured or b"{}")
        except ValueError as exc:
            return failed(
                ErrorKind.COMMAND_FAILED, f"{commands.output.label} printed unreadable JSON", 0, str(exc)
            )
        if not isinstance(document, Mapping):
            return failed(ErrorKind.COMMAND_FAILED, f"{commands.output.label} printed no JSON object", 0)
        outputs = parse_outputs(document)
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        summary=f"{commands.action.label} succeeded",
        exit_code=0,
        output_tail=joined_tail(*tails),
        outputs=outputs,
    )
