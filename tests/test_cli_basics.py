"""The two commands the README promises, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import reconciler

SCRIPT = Path(sys.executable).with_name("reconcile")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def test_version(tmp_path: Path) -> None:
    out = run("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"reconcile {reconciler.__version__}\n"


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout
    assert "--version" in out.stdout
    assert "validate" in out.stdout


def test_no_command_shows_help_and_is_a_usage_error(tmp_path: Path) -> None:
    out = run(cwd=tmp_path)
    assert out.returncode == 2
    assert "Usage:" in out.stdout + out.stderr


def test_an_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    out = run("frobnicate", cwd=tmp_path)
    assert out.returncode == 2
    assert "No such command 'frobnicate'" in out.stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is installed by `pip install -e .`")
def test_the_installed_console_script(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(SCRIPT), "--version"], check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"reconcile {reconciler.__version__}\n"


def test_every_command_accepts_repo(tmp_path: Path) -> None:
    """SPEC section 5: all commands take --repo PATH."""
    target = tmp_path / "scaffolded"
    init = subprocess.run(
        [sys.executable, "-m", "reconciler", "init", "--repo", str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    assert (target / "environments" / "example.yaml").is_file()
    schema = subprocess.run(
        [sys.executable, "-m", "reconciler", "schema", "--repo", str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stderr
    assert json.loads(schema.stdout)["title"]
