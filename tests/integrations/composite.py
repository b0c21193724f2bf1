"""Runs a composite GitHub Action's ``run:`` steps as the runner does, so a test exercises the real scripts.

What the runner gives a step and this gives too: inputs with their defaults
evaluated, ``${{ }}`` in ``env:``, ``working-directory:`` and outputs, the
``GITHUB_*``/``RUNNER_*`` variables, ``GITHUB_OUTPUT``/``GITHUB_ENV``/
``GITHUB_PATH`` files between steps, ``GITHUB_STEP_SUMMARY``, ``bash --noprofile --norc -eo pipefail``,
and a failed step ending the action. A ``uses:`` step is played by a handler
the test passes (``actions/setup-python``: a fresh venv first on PATH). An
expression other than a plain context path, or an ``if:``, is refused, so the
action cannot rely on something this does not check.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CONTEXT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")

UsesHandler = Callable[[Mapping[str, str]], list[str]]
"""Plays a ``uses:`` step: gets its evaluated ``with:``, returns directories to put first on PATH."""


@dataclass
class StepResult:
    name: str
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]


@dataclass
class ActionRun:
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    """What the steps wrote to GITHUB_STEP_SUMMARY: the job summary on the run's page."""

    @property
    def succeeded(self) -> bool:
        return all(s.returncode == 0 for s in self.steps)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} (exit {s.returncode})\n{s.stdout}{s.stderr}" for s in self.steps)

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)


def load_action(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(path.read_text())
    return data


def evaluate(text: str, contexts: Mapping[str, Any]) -> str:
    """Every ``${{ a.b.c }}`` in ``text`` replaced by its value ('' when absent, as GitHub does)."""

    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if not CONTEXT_PATH.match(expression):
            raise ValueError(f"expression not supported by the test runner: {expression!r}")
        value: Any = contexts
        for part in expression.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return EXPRESSION.sub(one, text)


def _read_file_commands(path: Path) -> dict[str, str]:
    """``name=value`` and ``name<<DELIMITER`` … ``DELIMITER`` lines, as in GITHUB_OUTPUT and GITHUB_ENV."""
    values: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for more in lines:
                if more == delimiter:
                    break
                body.append(more)
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def run_composite(
    action_dir: Path,
    *,
    inputs: Mapping[str, str],
    github: Mapping[str, Any],
    workspace: Path,
    runner_temp: Path,
    uses: Mapping[str, UsesHandler],
    base_env: Mapping[str, str],
    timeout: float = 300,
) -> ActionRun:
    action = load_action(action_dir / "action.yml")
    assert action["runs"]["using"] == "composite"
    declared: dict[str, Any] = action.get("inputs") or {}
    unknown = set(inputs) - set(declared)
    assert not unknown, f"inputs the action does not declare: {sorted(unknown)}"
    github = {**github, "action_path": str(action_dir), "workspace": str(workspace)}
    contexts: dict[str, Any] = {"github": github, "runner": {"temp": str(runner_temp)}, "steps": {}}
    contexts["inputs"] = {
        name: inputs[name] if name in inputs else evaluate(str(spec.get("default", "")), contexts)
        for name, spec in declared.items()
    }
    runner_temp.mkdir(parents=True, exist_ok=True)
    path_first: list[str] = []
    extra_env: dict[str, str] = {}
    run = ActionRun()
    for index, step in enumerate(action["runs"]["steps"]):
        assert "if" not in step, f"step {index}: `if:` is not supported by the test runner"
        name = step.get("name") or step.get("uses") or f"step {index}"
        if "uses" in step:
            handler = uses[step["uses"].split("@", 1)[0]]
            with_ = {k: evaluate(str(v), contexts) for k, v in (step.get("with") or {}).items()}
            path_first = handler(with_) + path_first
            run.steps.append(StepResult(name, 0, "", "", {}))
            continue
        assert step.get("shell") == "bash", f"step {name!r}: a composite run step must say `shell: bash`"
        files = {
            kind: runner_temp / f"{kind.lower()}-{index}"
            for kind in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
        }
        for f in files.values():
            f.write_text("")
        script = runner_temp / f"step-{index}.sh"
        script.write_text(step["run"])
        env = {
            **base_env,
            **extra_env,
            "GITHUB_ACTION_PATH": str(action_dir),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_REPOSITORY": str(github.get("repository", "")),
            "GITHUB_SERVER_URL": str(github.get("server_url", "")),
            "GITHUB_API_URL": str(github.get("api_url", "")),
            "GITHUB_RUN_ID": str(github.get("run_id", "")),
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "RUNNER_TEMP": str(runner_temp),
            **{k: str(v) for k, v in files.items()},
            **{k: evaluate(str(v), contexts) for k, v in (step.get("env") or {}).items()},
        }
        env["PATH"] = os.pathsep.join([*path_first, base_env["PATH"]])
        cwd = workspace / evaluate(str(step.get("working-directory", ".")), contexts)
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        outputs = _read_file_commands(files["GITHUB_OUTPUT"])
        run.summary += files["GITHUB_STEP_SUMMARY"].read_text()
        run.steps.append(StepResult(name, done.returncode, done.stdout, done.stderr, outputs))
        if "id" in step:
            contexts["steps"][step["id"]] = {"outputs": outputs}
        extra_env.update(_read_file_commands(files["GITHUB_ENV"]))
        path_first = [p for p in files["GITHUB_PATH"].read_text().splitlines() if p] + path_first
        if done.returncode != 0:
            break
    run.outputs = {
        name: evaluate(str(spec.get("value", "")), contexts)
        for name, spec in (action.get("outputs") or {}).items()
    }
    return run
