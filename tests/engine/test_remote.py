"""``remote:`` in reconciler.yaml: apply on two clones of one bare repository shares the state branch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import counting_phases, env_file
from tests.gitservers import REFUSE_STATE_BRANCH, TRANSPORTS, init_bare, install_hook, serving

pytestmark = pytest.mark.timeout(120)


def apply(clone: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "apply", "--repo", str(clone), "--data-dir", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_two_clones_sharing_a_remote_run_each_phase_once(tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    first = tmp_path / "first"
    git(tmp_path, "clone", "-q", str(origin), str(first))
    log = tmp_path / "effects.log"
    (first / "environments").mkdir()
    (first / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
    (first / "environments" / "web.yaml").write_text(env_file("web", phases=counting_phases(log)))
    git(first, "add", "-A")
    git(first, "commit", "-q", "-m", "web")
    git(first, "push", "-q", "origin", "main")
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(origin), str(second))

    done = apply(first, tmp_path / "data-first")
    assert done.returncode == 0, done.stderr
    # Every transition reached the remote's state branch.
    subjects = git(origin, "log", "--format=%s", "reconciler/state").splitlines()
    assert subjects[0] == "web: starting -> running"
    assert len(subjects) == 9

    again = apply(second, tmp_path / "data-second")
    assert again.returncode == 0, again.stderr
    assert log.read_text().splitlines() == ["provision web", "configure web", "release web", "run web"]

    # A change pushed from the second clone is acted on by an apply there, and shared back.
    (second / "environments" / "web.yaml").write_text(
        env_file("web", phases=counting_phases(log, {"release": "echo v2"}))
    )
    git(second, "commit", "-q", "-am", "release v2")
    git(second, "push", "-q", "origin", "main")
    assert apply(second, tmp_path / "data-second").returncode == 0
    assert log.read_text().splitlines()[4:] == ["release web", "run web"]
    status = subprocess.run(
        [sys.executable, "-m", "reconciler", "status", "--format", "json", "--repo", str(first)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout)["environments"][0]["converged"] is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_refuses_the_state_branch_makes_apply_report_it_and_run_nothing(
    transport: str, tmp_path: Path
) -> None:
    """The issue's reproduction: a pre-receive hook refuses refs/heads/reconciler/state."""
    root = tmp_path / "srv"
    root.mkdir()
    origin = init_bare(root / "origin.git")
    install_hook(origin, "pre-receive", REFUSE_STATE_BRANCH)
    log = tmp_path / "effects.log"
    with serving(transport, root) as server:
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", server.url(origin), str(clone))
        (clone / "environments").mkdir()
        (clone / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
        (clone / "environments" / "web.yaml").write_text(env_file("web", phases=counting_phases(log)))
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", "web")
        git(clone, "push", "-q", "origin", "HEAD:refs/heads/main")

        done = apply(clone, tmp_path / "data")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "pre-receive hook declined" in done.stdout + done.stderr
    assert not log.exists(), "no step ran under a lock the remote never recorded"
    assert git(origin, "for-each-ref", "refs/heads/reconciler") == ""
    assert git(clone, "for-each-ref", "refs/heads/reconciler") == "", "nothing claimed locally either"


def test_a_remote_away_when_a_phase_ends_is_waited_for_and_the_phase_never_runs_twice(tmp_path: Path) -> None:
    """The remote disappears while provision runs and comes back 2 s later: apply records the
    phase's end once it can, instead of leaving it running behind its lock to be run again."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    log = tmp_path / "effects.log"
    away = tmp_path / "origin.git.away"
    outage = f"mv {origin} {away} && (setsid sh -c 'sleep 2; mv {away} {origin}' >/dev/null 2>&1 &)"
    (clone / "environments").mkdir()
    (clone / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
    (clone / "environments" / "web.yaml").write_text(
        env_file("web", desired="provisioned", phases=counting_phases(log, {"provision": outage}))
    )
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "web")
    git(clone, "push", "-q", "origin", "main")

    done = apply(clone, tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert "retrying" in done.stderr
    assert log.read_text().splitlines() == ["provision web"]
    # The remote has the phase's end, and no lock is left behind.
    subjects = git(origin, "log", "--format=%s", "reconciler/state").splitlines()
    assert subjects[0] == "web: provisioning -> provisioned"
    state = json.loads(git(origin, "show", "reconciler/state:web/state.json"))
    assert state["lock"] is None
    assert apply(clone, tmp_path / "data").returncode == 0
    assert log.read_text().splitlines() == ["provision web"]
