"""SPEC 4.4: the data dir is ``data/`` at the top of the work tree, wherever in it the command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.conftest import GitOpsRepo, env_file

pytestmark = pytest.mark.timeout(120)


def _reconcile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``reconcile ARGS`` as a user types it: no --repo, no --data-dir."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=120,
        check=False,
    )


def _web(release: str) -> str:
    # Every phase that runs appends to a file in the environment's data dir: two data dirs, two files.
    note = 'echo "$RECONCILE_PHASE_TAG" >> "$RECONCILE_DATA_DIR/ran"'
    phases = {
        "provision": [{"shell": {"run": note.replace("$RECONCILE_PHASE_TAG", "provision")}}],
        "release": [{"shell": {"run": note.replace("$RECONCILE_PHASE_TAG", f"release-{release}")}}],
    }
    return env_file("web", "released", phases=phases)


def test_apply_from_a_subdirectory_uses_the_data_dir_at_the_top(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": _web("v1")})
    sub = gitops.path / "environments"

    first = _reconcile(sub, "apply", "web")
    assert first.returncode == 0, first.stderr

    gitops.commit({"environments/web.yaml": _web("v2")})
    second = _reconcile(gitops.path, "apply", "web")
    assert second.returncode == 0, second.stderr

    ran = gitops.path / "data" / "web" / "ran"
    assert ran.read_text().splitlines() == ["provision", "release-v1", "release-v2"]
    assert not (sub / "data").exists()
