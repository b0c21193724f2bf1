"""The pre-commit hook this repository offers (``.pre-commit-hooks.yaml``), checked by pre-commit itself."""

from __future__ import annotations

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
