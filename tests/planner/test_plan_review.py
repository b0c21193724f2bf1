"""Plans people can review (issue 15): terraform's counts and marks, and which inputs changed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.domain import Destroyed, Phase, ReleaseFailed, Running
from tests.conftest import git

from .gitops import GitOps, failed

pytestmark = pytest.mark.timeout(120)


def module_environment(name: str, desired: str = "running", **vars: Any) -> str:
    """An environment whose provision runs a module directory and whose configure sees vars."""
    return "\n".join(
        [
            "apiVersion: reconciler/v1",
            "kind: Environment",
            f"metadata: {{name: {name}}}",
            "spec:",
            f"  desiredState: {desired}",
            f"  vars: {json.dumps(vars or {'port': 8080})}",
            "  phases:",
            "    provision: [{shell: {run: sh apply.sh, cwd: infra/vm}}]",
            "    configure: [{shell: {run: ./scripts/configure.sh}}]",
            "    release: [{shell: {run: ./scripts/release.sh}}]",
        ]
    )


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    path = tmp_path / "gitops"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = GitOps(path)
    repo.write("infra/vm/apply.sh", "echo vm v1\n")
    repo.write("infra/vm/vars.tf", "variable x {}\n")
    repo.write("scripts/configure.sh", "#!/bin/sh\necho configure\n")
    repo.write("scripts/release.sh", "#!/bin/sh\necho release\n")
    repo.write("environments/web.yaml", module_environment("web"))
    repo.write("environments/db.yaml", module_environment("db"))
    repo.write("environments/old.yaml", module_environment("old", "destroyed"))
    repo.write("environments/gone.yaml", module_environment("gone"))
    return repo


def applied(repo: GitOps, commit: str, *names: str) -> None:
    """``names`` converged (running) from ``commit``, as apply records it."""
    for name in names:
        repo.observe(name, Running, hashes=repo.hashes(name, commit), desired_commit=commit)


def env_json(stdout: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in json.loads(stdout)["environments"] if e["name"] == name)
    return found


def test_counts_at_the_top_and_a_mark_for_each_kind_of_change(gitops: GitOps) -> None:
    first = gitops.commit("four environments")
    applied(gitops, first, "web", "db")
    gitops.observe("gone", Destroyed, desired_commit=first)
    gitops.write("environments/new.yaml", module_environment("new"))
    gitops.write("environments/db.yaml", module_environment("db", "destroyed"))
    gitops.write("scripts/release.sh", "#!/bin/sh\necho release v2\n")
    gitops.commit("add new, destroy db, bring gone back, release v2")

    text = gitops.plan().stdout
    lines = text.splitlines()
    assert lines[2] == "Plan: 1 to create, 1 to change, 1 to destroy, 1 to recreate; 1 unchanged"
    marked = {
        line.split()[1]: line.split()[0] for line in lines[4:] if line[:4].strip() in ("+", "~", "-", "-/+")
    }
    assert marked == {"new": "+", "web": "~", "db": "-", "gone": "-/+"}

    data = json.loads(gitops.plan("--format", "json").stdout)
    assert data["changes"] == {"create": 1, "change": 1, "destroy": 1, "recreate": 1}
    assert {e["name"]: e["change"] for e in data["environments"]} == {
        "db": "destroy",
        "gone": "recreate",
        "new": "create",
        "old": None,
        "web": "change",
    }

    markdown = gitops.plan("--format", "markdown").stdout
    assert "**Plan:** 1 to create, 1 to change, 1 to destroy, 1 to recreate; 1 unchanged" in markdown
    assert "⚠️ **To destroy:** db" in markdown
    assert "♻️ **To recreate from scratch:** gone" in markdown
    assert "| **db** | running | destroyed | `-` **🔄 destroy** | desired state is destroyed |" in markdown
    assert "| **gone** | destroyed | running | `-/+` **🔄 recreate → provision → configure" in markdown


def test_unchanged_and_blocked_are_counted_after_the_changes(gitops: GitOps) -> None:
    first = gitops.commit("four environments")
    applied(gitops, first, "web")
    hashes = gitops.hashes("db", first)
    spent = failed(
        Phase.RELEASE,
        attempt=9,
        phase_hash=hashes[Phase.RELEASE],
        ago=timedelta(hours=1),
    )
    gitops.observe("db", ReleaseFailed, hashes=hashes, failure=spent, desired_commit=first)
    gitops.observe("old", Destroyed, desired_commit=first)
    gitops.observe("gone", Running, hashes=gitops.hashes("gone", first), desired_commit=first)
    text = gitops.plan().stdout
    assert text.splitlines()[2] == "Plan: 0 to create, 0 to change, 0 to destroy; 1 blocked, 3 unchanged"


def test_a_rerun_phase_names_the_files_vars_and_steps_that_changed(gitops: GitOps) -> None:
    first = gitops.commit("start")
    applied(gitops, first, "web", "db", "old", "gone")
    gitops.write("infra/vm/apply.sh", "echo vm v2\n")  # a file inside the module directory
    gitops.write("environments/web.yaml", module_environment("web", port=9090, debug=True))
    gitops.write(
        "environments/db.yaml",
        module_environment("db").replace("./scripts/release.sh", "./scripts/release.sh --fast"),
    )
    gitops.commit("vm v2, web on 9090, db releases fast")

    web = env_json(gitops.plan("--format", "json").stdout, "web")
    provision = web["actions"][0]
    assert provision["phase"] == "provision"
    assert provision["changedInputs"] == {
        "known": True,
        "files": ["infra/vm/apply.sh"],
        "moreFiles": 0,
        "vars": ["debug", "port"],
        "steps": [],
    }
    configure = web["actions"][1]
    assert configure["reason"] == "configure inputs changed"
    assert configure["changedInputs"]["vars"] == ["debug", "port"]
    assert configure["changedInputs"]["files"] == []
    db = env_json(gitops.plan("--format", "json").stdout, "db")
    release = next(a for a in db["actions"] if a["phase"] == "release")
    assert release["changedInputs"]["steps"] == ["shell ./scripts/release.sh --fast"]
    run = next(a for a in db["actions"] if a["phase"] == "run")
    assert run["changedInputs"] is None  # re-run only because release is

    text = gitops.plan().stdout
    assert "changed: files infra/vm/apply.sh; vars debug, port" in text
    assert "changed: steps shell ./scripts/release.sh --fast" in text

    markdown = gitops.plan("--format", "markdown").stdout
    assert "provision: files `infra/vm/apply.sh`; vars `debug`, `port`" in markdown
    assert "release: steps `shell ./scripts/release.sh --fast`" in markdown


def test_state_without_its_applied_commit_says_inputs_changed_without_a_list(gitops: GitOps) -> None:
    first = gitops.commit("start")
    gitops.observe("web", Running, hashes=gitops.hashes("web", first))  # no desiredCommit recorded
    gone = "0" * 40  # a commit that no longer exists (garbage-collected, shallow clone)
    gitops.observe("db", Running, hashes=gitops.hashes("db", first), desired_commit=gone)
    gitops.write("scripts/release.sh", "#!/bin/sh\necho v2\n")
    gitops.commit("release v2")

    result = gitops.plan("--format", "json")
    assert result.returncode == 0, result.stderr
    for name in ("web", "db"):
        release = env_json(result.stdout, name)["actions"][0]
        assert release["reason"] == "release inputs changed"
        assert release["changedInputs"] == {
            "known": False,
            "files": [],
            "moreFiles": 0,
            "vars": [],
            "steps": [],
        }
    text = gitops.plan()
    assert text.returncode == 0
    assert "release inputs changed" in text.stdout and "changed:" not in text.stdout


def test_a_failed_phase_whose_inputs_were_fixed_names_the_fix(gitops: GitOps) -> None:
    first = gitops.commit("start")
    hashes = gitops.hashes("web", first)
    broken = failed(
        Phase.RELEASE,
        attempt=4,
        phase_hash=hashes[Phase.RELEASE],
        ago=timedelta(hours=1),
    )
    gitops.observe("web", ReleaseFailed, hashes=hashes, failure=broken, desired_commit=first)
    gitops.write("scripts/release.sh", "#!/bin/sh\necho fixed\n")
    gitops.commit("fix the release script")
    web = env_json(gitops.plan("--format", "json").stdout, "web")
    assert web["verdict"] == "changes"
    assert web["actions"][0]["changedInputs"]["files"] == ["scripts/release.sh"]


def test_a_stale_pull_request_lists_only_its_own_changed_inputs(gitops: GitOps) -> None:
    """Issue 15's stale branch: main moved on (a new environment, a new configure script) after the
    branch left; the PR comment shows the merge, and only what the PR itself changes is listed."""
    fork = gitops.commit("start")
    applied(gitops, fork, "web", "db", "gone")
    gitops.observe("old", Destroyed, desired_commit=fork)
    git(gitops.path, "checkout", "-q", "-b", "feature")
    gitops.write("scripts/release.sh", "#!/bin/sh\necho release v2\n")
    head = gitops.commit("release v2")
    git(gitops.path, "checkout", "-q", "main")
    gitops.write("environments/slow.yaml", module_environment("slow"))
    gitops.write("scripts/configure.sh", "#!/bin/sh\necho configure v2\n")
    base = gitops.commit("slow, configure v2")
    applied(gitops, base, "web", "db", "gone", "slow")  # main was applied

    result = gitops.plan("--rev", head, "--base", base, "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["changes"] == {"create": 0, "change": 4, "destroy": 0, "recreate": 0}
    slow = env_json(result.stdout, "slow")  # main's: not removed, and the PR's script is re-released on it
    assert slow["fileChanged"] is False
    assert slow["change"] == "change"
    assert [a["phase"] for a in slow["actions"]] == ["release", "run"]
    web = env_json(result.stdout, "web")
    assert [a["phase"] for a in web["actions"]] == ["release", "run"]
    assert web["actions"][0]["changedInputs"]["files"] == ["scripts/release.sh"]

    markdown = gitops.plan("--rev", head, "--base", base, "--format", "markdown").stdout
    assert "**Plan:** 0 to create, 4 to change, 0 to destroy" in markdown
    assert "| **slow** | running | running | `~` 🔄 release → run |" in markdown
    assert "To destroy" not in markdown
    assert "release: files `scripts/release.sh`" in markdown
    assert "configure.sh" not in markdown  # main's own change is in the merge and already applied


def test_uncommitted_edits_are_explained_too(gitops: GitOps) -> None:
    first = gitops.commit("start")
    applied(gitops, first, "web", "db", "old", "gone")
    gitops.write("infra/vm/apply.sh", "echo vm v2\n")  # not committed: `plan --worktree`
    web = env_json(gitops.plan("--worktree", "--format", "json").stdout, "web")
    assert web["actions"][0]["phase"] == "provision"
    assert web["actions"][0]["changedInputs"]["files"] == ["infra/vm/apply.sh"]
