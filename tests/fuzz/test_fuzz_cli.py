"""Fuzzing the desired-state files through ``validate``, ``plan`` and ``apply`` (SPEC section 7).

Random mutations of a valid environment, blueprint and reconciler.yaml
(``tests/fuzz/mutations.py``) go through the real commands, in process for
speed (one test checks that the in-process run says what a subprocess says).
Whatever the files hold: no traceback, exit 0 or 1 only, the good environment
beside them is never blamed nor stopped, and nothing ``validate`` accepts
crashes ``apply`` or leaves a lock held.

Bounded for ``make test``; ``RECONCILE_FUZZ_EXAMPLES=10000`` runs that many
examples through ``validate`` and a tenth of them through the whole pipeline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner, Result

from reconciler.cli import app
from reconciler.desired.models import Step
from reconciler.steps import FakeStepRunner
from reconciler.steps.http import build_http_probe
from reconciler.steps.outcome import StepContext, StepOutcome
from reconciler.steps.shell import build_shell_command
from tests.fuzz.mutations import BLUEPRINT, CONFIG, ENVIRONMENT, GOOD_ENV, emit, files

DEEP = int(os.environ.get("RECONCILE_FUZZ_EXAMPLES", "0"))
LOADER_EXAMPLES = DEEP or 100
PIPELINE_EXAMPLES = DEEP // 10 if DEEP else 15
pytestmark = pytest.mark.timeout(max(300, DEEP))

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
    # make test sees the same examples every run; the deep profile explores.
    "derandomize": not DEEP,
    "database": None,
}
PROBLEM = re.compile(r"^(reconciler\.yaml|environments/[^:/]+\.ya?ml|blueprints/[^:/]+\.ya?ml):\d+:\d+: \S")
SIGNATURE = pygit2.Signature("Fuzz", "fuzz@localhost", 1_700_000_000, 0)
runner = CliRunner()


class ArgvCheckingRunner(FakeStepRunner):
    """The in-package fake, which first builds what the real runner would hand the OS.

    A shell step's argv and environment are what ``subprocess`` would refuse
    (a NUL, an ``=`` in a name): each such refusal is recorded, never raised,
    so that the engine cannot hide it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[str] = []

    def run(self, step: Step, ctx: StepContext) -> StepOutcome:
        try:
            if step.shell is not None:
                command = build_shell_command(step.shell, ctx)
                for part in command.argv:
                    assert "\0" not in part, f"NUL in argv {part!r}"
                for name, value in command.env.items():
                    assert name and "=" not in name and "\0" not in name, f"bad env name {name!r}"
                    assert "\0" not in value, f"NUL in env value of {name}"
            elif step.http is not None:
                build_http_probe(step.http)
        except Exception as e:
            self.refusals.append(f"{step.describe()}: {type(e).__name__}: {e}")
        return super().run(step, ctx)


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> list[ArgvCheckingRunner]:
    made: list[ArgvCheckingRunner] = []

    def make() -> ArgvCheckingRunner:
        made.append(ArgvCheckingRunner())
        return made[-1]

    monkeypatch.setattr("reconciler.engine.workspace.LocalStepRunner", make)
    return made


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    crash = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crash, f"reconcile {' '.join(args)} raised {result.exception!r}\n{result.output}"
    assert result.exit_code in (0, 1), (args, result.exit_code, result.output)
    assert "Traceback" not in result.output
    return result


def write(root: Path, content: dict[str, bytes]) -> None:
    for rel, data in content.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def commit_all(root: Path, content: dict[str, bytes]) -> None:
    """A real repository holding ``content`` on ``main`` (pygit2, to keep each example fast)."""
    write(root, content)
    repo = pygit2.init_repository(str(root), initial_head="main")
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    repo.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, "fuzz", tree, [])


def blamed(output: str) -> dict[str, list[str]]:
    """Problem lines by file; every line of validate's stdout must be one."""
    by_file: dict[str, list[str]] = {}
    for line in output.splitlines():
        assert PROBLEM.match(line), f"not a path:line:col problem: {line!r}"
        by_file.setdefault(line.split(":", 1)[0], []).append(line)
    return by_file


@settings(max_examples=LOADER_EXAMPLES, **_SETTINGS)
@given(content=files())
def test_validate_never_crashes_and_never_blames_the_good_file(content: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), content)
        result = invoke("validate", "--worktree", "--repo", tmp)
    by_file = blamed(result.stdout)
    assert "environments/good.yaml" not in by_file
    assert (result.exit_code == 1) == bool(by_file)


@settings(max_examples=PIPELINE_EXAMPLES, **_SETTINGS)
@given(content=files())
def test_validate_plan_apply_never_crash_and_a_bad_file_never_stops_another(
    content: dict[str, bytes], fake_runner: list[ArgvCheckingRunner]
) -> None:
    fake_runner.clear()  # the fixture lives as long as the test, across examples
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        commit_all(root, content)
        data = Path(tmp) / "data"
        validate = invoke("validate", "--repo", str(root))
        by_file = blamed(validate.stdout)
        assert "environments/good.yaml" not in by_file
        config_ok = "reconciler.yaml" not in by_file
        config_untouched = content["reconciler.yaml"] == emit(CONFIG).encode()

        plan = invoke("plan", "--repo", str(root), "--format", "json")
        if not config_ok:
            assert plan.exit_code == 1
            assert "reconciler.yaml is invalid" in plan.stderr
        elif config_untouched:
            names = {p["name"] for p in json.loads(plan.stdout)["environments"]}
            assert "good" in names

        apply = invoke("apply", "--repo", str(root), "--data-dir", str(data))
        repo = pygit2.Repository(str(root))
        if not config_ok:
            assert apply.exit_code == 1
            assert "reconciler.yaml is invalid" in apply.stderr
            assert list(repo.references) == ["refs/heads/main"]
            return
        for made in fake_runner:
            assert made.refusals == []
        if not config_untouched:
            return  # a valid but different config (another branch, a remote) may rightly act on nothing
        states = _states(repo)
        assert states["good"]["state"] == "running", apply.output
        for name, state in states.items():
            assert state["lock"] is None, (name, state)
        if "environments/fuzz.yaml" in by_file or "blueprints/bp.yaml" in by_file:
            assert "fuzz" not in states
        else:  # accepted by validate: apply acted on it, and ended it as a state of the lifecycle
            assert "fuzz" in states
            assert apply.exit_code == (0 if states["fuzz"]["failure"] is None else 1), apply.output


def _states(repo: pygit2.Repository) -> dict[str, dict[str, Any]]:
    ref = repo.references.get("refs/heads/reconciler/state")
    if ref is None:
        return {}
    tree = ref.peel(pygit2.Commit).tree
    out: dict[str, dict[str, Any]] = {}
    for entry in tree:
        blob = repo[(tree / entry.name / "state.json").id]
        assert isinstance(blob, pygit2.Blob)
        out[entry.name or ""] = json.loads(blob.data)
    return out


HOSTILE_SAMPLES: dict[str, bytes] = {
    "environments/deep.yaml": b"apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: deep}\n"
    b"spec: {desiredState: running, vars: {x: " + b"[" * 1000 + b"]" * 1000 + b"}}\n",
    "environments/huge.yaml": b"apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: huge}\n"
    b"spec: {desiredState: running, timeoutSeconds: " + b"9" * 5000 + b"}\n",
    "environments/tagged.yaml": b"apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: tagged}\n"
    b"spec: {desiredState: running, timeoutSeconds: !!int x}\n",
    "environments/tabs.yaml": b"apiVersion: reconciler/v1\nkind: Environment\nmetadata:\n\tname: tabs\n",
    "environments/latin.yaml": "kind: Environment # caf\xe9\n".encode("latin-1"),
    "environments/fuzz.yaml": emit(ENVIRONMENT).encode(),
    "environments/good.yaml": emit(GOOD_ENV).encode(),
    # Every step a shell `true`, so the real runner needs no tofu nor ansible here.
    "blueprints/bp.yaml": emit(
        {**BLUEPRINT, "spec": {**BLUEPRINT["spec"], "phases": {"release": [{"shell": {"run": "true"}}]}}}
    ).encode(),
    "reconciler.yaml": emit(CONFIG).encode(),
}


def test_in_process_runs_say_what_the_real_command_says(
    tmp_path: Path, fake_runner: list[ArgvCheckingRunner]
) -> None:
    root = tmp_path / "repo"
    commit_all(root, HOSTILE_SAMPLES)
    for args in (["validate"], ["validate", "--format", "json"], ["plan", "--format", "json"]):
        inside = invoke(*args, "--repo", str(root))
        real = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--repo", str(root)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert real.returncode == inside.exit_code, (args, real.stderr)
        assert "Traceback" not in real.stderr
        if args[0] == "plan":  # the plan is stamped with the time it was made
            strip = ("generatedAt",)
            ours, theirs = json.loads(inside.stdout), json.loads(real.stdout)
            for key in strip:
                ours.pop(key, None)
                theirs.pop(key, None)
            assert ours == theirs
        else:
            assert real.stdout == inside.stdout
    # apply: in process with the fake runner, and for real (every step is `true`): the same outcome.
    inside = invoke("apply", "--repo", str(root), "--data-dir", str(tmp_path / "data-in"))
    clone = tmp_path / "clone"
    commit_all(clone, HOSTILE_SAMPLES)
    real = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            "--repo",
            str(clone),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "Traceback" not in real.stderr
    assert real.returncode == inside.exit_code == 1  # the hostile files are problems
    ours, theirs = _states(pygit2.Repository(str(root))), _states(pygit2.Repository(str(clone)))
    assert {n: s["state"] for n, s in ours.items()} == {n: s["state"] for n, s in theirs.items()}
    assert {n: s["state"] for n, s in ours.items()} == {"good": "running", "fuzz": "running"}
