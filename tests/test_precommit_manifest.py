"""The pre-commit hook this repository offers (``.pre-commit-hooks.yaml``), checked by pre-commit itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pre_commit() -> str:
    found = shutil.which("pre-commit") or str(Path(sys.executable).with_name("pre-commit"))
    if not Path(found).exists():
        pytest.skip("pre-commit is not installed (it is in the dev extras: make setup installs it)")
    return found


def test_the_hook_manifest_is_one_pre_commit_accepts() -> None:
    done = subprocess.run(
        [_pre_commit(), "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_pre_commit_refuses_a_manifest_with_the_old_unquoted_description(tmp_path: Path) -> None:
    """The check can fail: the manifest as it was (an unquoted ``(path:line:col: message)``)."""
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    broken = tmp_path / ".pre-commit-hooks.yaml"
    broken.write_text(text.replace('description: "', "description: ").replace('message)."', "message)."))
    done = subprocess.run(
        [_pre_commit(), "validate-manifest", str(broken)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_try_repo_installs_the_hook_from_this_repository_and_refuses_a_broken_environment(
    tmp_path: Path,
) -> None:
    """As a user would try the hook before adding it: pre-commit clones this repository (uncommitted
    changes included), installs its python package into a hook environment and runs the hook.
    Offline here (pip reads the machine's package index configuration); elsewhere it needs PyPI."""
    pre_commit = _pre_commit()
    gitops = tmp_path / "gitops"
    gitops.mkdir()
    ours = {str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")}
    env = {
        **{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p not in ours),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PRE_COMMIT_COLOR": "never",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=gitops, env=env, capture_output=True, text=True, check=False, timeout=240
        )

    assert run("git", "init", "-q", "-b", "main").returncode == 0
    assert run(sys.executable, "-m", "reconciler", "init", ".").returncode == 0
    assert run("git", "add", "-A").returncode == 0

    good = run(pre_commit, "try-repo", str(ROOT), "reconcile-validate")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "reconcile validate" in good.stdout and "Passed" in good.stdout

    (gitops / "environments" / "example.yaml").write_text("spec: [\n")
    assert run("git", "add", "-A").returncode == 0
    bad = run(pre_commit, "try-repo", str(ROOT), "reconcile-validate")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    assert "environments/example.yaml:2:1: YAML syntax error" in bad.stdout
