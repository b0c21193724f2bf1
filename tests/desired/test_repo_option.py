"""``--repo``: one refusal for every command; ``validate --worktree`` reads the right work tree (issue 15)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import env_file

pytestmark = pytest.mark.timeout(120)


def reconcile(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=60,
    )


def test_a_wrong_repo_is_refused_in_the_same_words_by_every_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    said = set()
    for command in (
        ["validate"],
        ["plan"],
        ["apply"],
        ["status"],
        ["show", "web"],
        ["history"],
        ["suspend", "web"],
        ["retry", "web"],
        ["log", "web"],
    ):
        out = reconcile(*command, "--repo", str(missing), cwd=tmp_path)
        assert out.returncode == 1, (command, out.stderr)
        said.add(out.stderr.strip())
    assert said == {
        f"error: {missing}: not a git repository (nor is any parent directory); --repo takes a work tree, "
        "a directory inside one, or a bare repository"
    }


def test_validate_worktree_refuses_a_bare_repository_and_finds_the_top_of_a_work_tree(tmp_path: Path) -> None:
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    refused = reconcile("validate", "--repo", str(bare), "--worktree", cwd=tmp_path)
    assert refused.returncode == 1
    assert "a bare repository has no work tree to validate; drop --worktree" in refused.stderr
    assert "ok:" not in refused.stdout + refused.stderr

    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "environments").mkdir()
    (work / "environments" / "web.yaml").write_text(env_file("web"))
    (work / "environments" / "db.yaml").write_text(env_file("db"))
    from_inside = reconcile("validate", "--worktree", "--repo", "environments", cwd=work)
    assert from_inside.returncode == 0, from_inside.stderr
    assert "ok: 2 environment(s) valid at the work tree" in from_inside.stderr
