"""The pull-request workflow users copy: its shell steps run for real against a repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.domain import Running
from tests.conftest import git

from .gitops import GitOps, environment

WORKFLOW = Path(__file__).parents[2] / ".github" / "workflows" / "reconcile-plan.yml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(WORKFLOW.read_text())
    return data


def step(name: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = load()["jobs"]["plan"]["steps"]
    return next(s for s in steps if s.get("name") == name)


def test_workflow_checks_out_full_history_and_updates_one_marked_comment() -> None:
    data = load()
    assert "pull_request" in data["on"]
    assert data["permissions"]["pull-requests"] == "write"
    checkout = data["jobs"]["plan"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    script = step("Post or update the plan comment")["with"]["script"]
    assert '"<!-- reconcile-plan -->"' in script
    assert "updateComment" in script
    assert "createComment" in script


def run_step(name: str, repo: Path, env: dict[str, str]) -> tuple[int, dict[str, str]]:
    output = repo / "github-output"
    output.write_text("")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["bash", "-e", "-c", step(name)["run"]],
        cwd=repo,
        env={**os.environ, **env, "GITHUB_OUTPUT": str(output), "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return result.returncode, outputs


def test_plan_step_writes_the_markdown_comment_and_its_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "gitops"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = GitOps(path)
    repo.write("scripts/release.sh", "echo v1\n")
    repo.write("environments/web.yaml", environment("web"))
    base = repo.commit("web")
    repo.observe("web", Running, hashes=repo.hashes("web"))
    repo.write("environments/web.yaml", environment("web", "destroyed"))
    head = repo.commit("tear down web")

    env = {"HEAD_SHA": head, "BASE_SHA": base, "STATE_BRANCH": "reconciler/state"}
    code, outputs = run_step("reconcile validate", path, env)
    assert code == 0
    assert outputs["exitcode"] == "0"
    code, outputs = run_step("reconcile plan", path, env)
    assert code == 0
    assert outputs["exitcode"] == "0"
    comment = (path / "plan.md").read_text()
    assert "| **web** ✏️ | running | destroyed | `-` **🔄 destroy** | desired state is destroyed |" in comment

    repo.write("environments/web.yaml", "spec: [")
    head = repo.commit("broken")
    code, outputs = run_step("reconcile plan", path, {**env, "HEAD_SHA": head})
    assert code == 0  # the step records the failure; the last step fails the job after commenting
    assert outputs["exitcode"] == "1"
    assert "#### ❌ Invalid files" in (path / "plan.md").read_text()
