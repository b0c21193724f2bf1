"""The GitHub Action (``action.yml``): its steps run for real, as a runner would, against a fake GitHub API.

Each run installs reconciler from a copy of this repository (as GitHub checks
the action out at its ref) into a fresh venv (playing ``actions/setup-python``),
plans a pull request of a GitOps repository cloned from a bare "origin", and
posts the comment to a real HTTP server on 127.0.0.1 playing GitHub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler.domain import Running
from tests.conftest import git
from tests.planner.gitops import GitOps, environment

from .composite import ActionRun, load_action, run_composite
from .github_api import FakeGitHub, fake_github

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- reconcile-plan -->"
REPOSITORY = "acme/gitops"
TOKEN = "ghs_not_a_real_token"
PR = 7

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_action_is_composite_and_pastes_no_input_into_a_script() -> None:
    action = load_action(ROOT / "action.yml")
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert "${{" not in step["run"], (
                f"step {step.get('name')!r}: pass values through env:, not the script"
            )


@pytest.fixture(scope="module")
def action_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's files as ``uses: org/reconciler@ref`` gets them: tracked and new, no venv."""
    target = tmp_path_factory.mktemp("action")
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target / rel)
    return target


@pytest.fixture(scope="module")
def runner_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What actions/setup-python leaves on PATH: a Python with nothing of ours installed."""
    venv = tmp_path_factory.mktemp("setup-python") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    return venv / "bin"


def base_env() -> dict[str, str]:
    """The job's environment, minus this test's own venv: only what the action installs may answer."""
    ours = {str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p not in ours)
    return env


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, GitOps]:
    """A bare 'origin' with main, the state branch (web running) and a pull request that destroys web."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    author = tmp_path / "author"
    author.mkdir()
    git(author, "init", "-q", "-b", "main")
    repo = GitOps(author)
    repo.write("scripts/release.sh", "echo v1\n")
    repo.write("environments/web.yaml", environment("web"))
    repo.commit("web")
    repo.observe("web", Running, hashes=repo.hashes("web"))
    git(author, "remote", "add", "origin", str(bare))
    git(author, "push", "-q", "origin", "main", "reconciler/state")
    git(author, "checkout", "-q", "-b", "feature")
    return bare, repo


def checkout(tmp_path: Path, bare: Path, sha: str, name: str, *, shallow: bool = False) -> Path:
    """What actions/checkout does with ``ref: <sha>``: with ``fetch-depth: 0`` a clone detached at the sha;
    with its default depth of 1, that one commit alone."""
    workspace = tmp_path / name
    if shallow:
        git(tmp_path, "init", "-q", str(workspace))
        git(workspace, "remote", "add", "origin", f"file://{bare}")
        git(workspace, "fetch", "-q", "--no-tags", "--depth", "1", "origin", sha)
        git(workspace, "checkout", "-q", "--detach", "FETCH_HEAD")
        return workspace
    git(tmp_path, "clone", "-q", "--no-checkout", str(bare), str(workspace))
    git(workspace, "checkout", "-q", "--detach", sha)
    return workspace


def run_action(
    action_dir: Path,
    runner_python: Path,
    workspace: Path,
    github_api: FakeGitHub,
    head: str,
    base: str,
    token: str = TOKEN,
) -> ActionRun:
    github: dict[str, Any] = {
        "repository": REPOSITORY,
        "token": token,
        "api_url": "https://api.github.invalid",  # the api-url input must win
        "server_url": "https://github.example",
        "run_id": "4242",
        "event": {"pull_request": {"number": PR, "head": {"sha": head}, "base": {"sha": base}}},
    }

    def setup_python(with_: Mapping[str, str]) -> list[str]:
        assert with_["python-version"]
        return [str(runner_python)]

    return run_composite(
        action_dir,
        inputs={"api-url": github_api.url},
        github=github,
        workspace=workspace,
        runner_temp=workspace.parent / f"{workspace.name}-runner-temp",
        uses={"actions/setup-python": setup_python},
        base_env=base_env(),
    )


def test_the_action_posts_one_plan_comment_then_updates_it(
    tmp_path: Path, origin: tuple[Path, GitOps], action_dir: Path, runner_python: Path
) -> None:
    bare, repo = origin
    base = git(repo.path, "rev-parse", "main").strip()
    repo.write("environments/web.yaml", environment("web", "destroyed"))
    head = repo.commit("tear down web")
    git(repo.path, "push", "-q", "origin", "feature")

    with fake_github(REPOSITORY, TOKEN) as github_api:
        # A hundred comments already, the first a person quoting the marker: ours lands on page 2.
        github_api.add_comment(PR, f"{MARKER}\nquoting the bot", {"login": "alice", "type": "User"})
        for i in range(99):
            github_api.add_comment(PR, f"comment {i}", {"login": "bob", "type": "User"})

        workspace = checkout(tmp_path, bare, head, "run-1")
        first = run_action(action_dir, runner_python, workspace, github_api, head, base)
        assert first.succeeded, first.log
        assert (runner_python / "reconcile").exists(), "reconcile was not installed by the action"
        assert [(r.method, r.path) for r in github_api.writes()] == [
            ("POST", f"/repos/{REPOSITORY}/issues/{PR}/comments")
        ]
        ours = github_api.on(PR)[-1]
        assert len(github_api.on(PR)) == 101
        assert ours["body"].startswith(f"{MARKER}\n### reconcile plan")
        (web,) = [line for line in ours["body"].splitlines() if line.startswith("| **web** ✏️ |")]
        assert (
            "| running | destroyed |" in web and "🔄 destroy" in web and "desired state is destroyed" in web
        )
        assert f"Plan of {head[:12]}" in ours["body"]
        assert "https://github.example/acme/gitops/actions/runs/4242" in ours["body"]
        assert first.outputs["comment-id"] == str(ours["id"])
        assert first.outputs["comment-url"] == ours["html_url"]
        assert first.outputs["plan-exitcode"] == "0"
        assert git(workspace, "rev-parse", "--verify", "-q", "refs/heads/reconciler/state").strip()
        assert git(workspace, "status", "--porcelain") == "", "the action left files in the checkout"

        # A second push breaks the file: the same comment is updated, and the job fails after saying why.
        repo.write("environments/web.yaml", "spec: [\n")
        head2 = repo.commit("broken")
        git(repo.path, "push", "-q", "origin", "feature")
        workspace = checkout(tmp_path, bare, head2, "run-2", shallow=True)  # fetch-depth forgotten
        second = run_action(action_dir, runner_python, workspace, github_api, head2, base)

        assert not second.succeeded
        assert "::notice::shallow checkout" in second.step("Fetch the state branch and both commits").stdout
        assert second.steps[-1].name == "Fail on invalid files or a failed plan", second.log
        assert "reconcile plan exited 1" in second.steps[-1].stdout
        assert [(r.method, r.path) for r in github_api.writes()] == [
            ("POST", f"/repos/{REPOSITORY}/issues/{PR}/comments"),
            ("PATCH", f"/repos/{REPOSITORY}/issues/comments/{ours['id']}"),
        ]
        assert len(github_api.on(PR)) == 101
        assert ours["body"].startswith(MARKER)
        assert f"Plan of {head2[:12]}" in ours["body"]
        assert "#### ❌ Invalid files" in ours["body"]
        assert "environments/web.yaml" in ours["body"]
        assert "#### `reconcile validate` failed" in ours["body"]
        assert github_api.on(PR)[0]["body"] == f"{MARKER}\nquoting the bot"
        assert second.outputs["plan-exitcode"] == "1"
        assert second.outputs["comment-id"] == str(ours["id"])
        pages = [r.query.get("page") for r in github_api.requests if r.method == "GET"]
        assert ["2"] in pages, "the comment on page 2 was found by reading page 2"
        assert all(r.authorization == f"Bearer {TOKEN}" for r in github_api.requests)


def test_a_refused_token_fails_the_action_and_posts_nothing(
    tmp_path: Path, origin: tuple[Path, GitOps], action_dir: Path, runner_python: Path
) -> None:
    bare, repo = origin
    base = git(repo.path, "rev-parse", "main").strip()
    with fake_github(REPOSITORY, "another-token") as github_api:
        workspace = checkout(tmp_path, bare, base, "run")
        run = run_action(action_dir, runner_python, workspace, github_api, base, base)
        assert not run.succeeded
        assert run.steps[-1].name == "Post or update the plan comment", run.log
        assert "::error::GitHub answered 401 to GET" in run.steps[-1].stdout
        assert github_api.comments == []


def test_a_read_only_token_from_a_fork_warns_and_leaves_the_plan_in_the_job_summary(
    tmp_path: Path, origin: tuple[Path, GitOps], action_dir: Path, runner_python: Path
) -> None:
    bare, repo = origin
    base = git(repo.path, "rev-parse", "main").strip()
    repo.write("environments/web.yaml", environment("web", "destroyed"))
    head = repo.commit("tear down web")
    git(repo.path, "push", "-q", "origin", "feature")
    with fake_github(REPOSITORY, TOKEN, read_only_token="fork-token") as github_api:
        workspace = checkout(tmp_path, bare, head, "run")
        run = run_action(action_dir, runner_python, workspace, github_api, head, base, token="fork-token")
        assert run.succeeded, run.log
        assert "::warning::GitHub answered 403 to POST" in run.step("Post or update the plan comment").stdout
        assert github_api.comments == []
        assert [r.method for r in github_api.writes()] == ["POST"]
        (web,) = [line for line in run.summary.splitlines() if line.startswith("| **web** ✏️ |")]
        assert "🔄 destroy" in web
