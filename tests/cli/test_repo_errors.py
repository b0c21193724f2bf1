"""A wrong ``--repo`` is said the same way by every command; ``validate --worktree`` needs a work tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconciler.desired.repository import NotARepository
from tests.conftest import git


def reconcile(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_every_command_words_a_wrong_repo_alike(tmp_path: Path) -> None:
    nowhere = tmp_path / "not-a-repo"
    nowhere.mkdir()
    said = " ".join(f"error: {NotARepository(nowhere)}".split())
    for command in (["validate"], ["plan"], ["status"], ["history"], ["show", "web"], ["apply"]):
        out = reconcile(*command, "--repo", str(nowhere), cwd=tmp_path)
        assert out.returncode == 1, command
        assert " ".join(out.stderr.split()) == said, (command, out.stderr)


def test_validate_worktree_refuses_a_bare_repository(tmp_path: Path) -> None:
    """It said "ok: 0 environment(s) valid at the work tree": a CI check passing on nothing."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "environments").mkdir()
    (work / "environments" / "web.yaml").write_text("kind: nope\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "broken")
    bare = tmp_path / "gitops.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))

    out = reconcile("validate", "--repo", str(bare), "--worktree", cwd=tmp_path)
    assert out.returncode == 1
    assert "a bare repository has no work tree to validate; drop --worktree" in out.stderr
    committed = reconcile("validate", "--repo", str(bare), cwd=tmp_path)
    assert committed.returncode == 1 and "environments/web.yaml:1:1" in committed.stdout
