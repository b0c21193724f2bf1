"""Two daemons at once: every phase of every environment runs exactly once per change."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import git
from tests.daemon.kit import (
    Daemons,
    Server,
    assert_no_overlap,
    make_server,
    runs,
    shell_env,
    state_is,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NAMES = ("alpha", "beta", "gamma")


def _push_all(server: Server, log: Path, release: str) -> None:
    for name in NAMES:
        server.write(f"environments/{name}.yaml", shell_env(name, log, release=release))
    server.push(f"release {release}")


def _converge(repo: Path, release: str, log: Path) -> None:
    for name in NAMES:
        wait_for(f"{name} on {release}", lambda n=name: f"{n} release-{release}" in runs(log, n), 30)
        wait_for(f"{name} running", state_is(repo, name, "running"), 30)


def _assert_each_phase_once(log: Path, first: int = 0) -> None:
    counts = Counter(runs(log)[first:])
    assert counts and set(counts.values()) == {1}, counts
    assert_no_overlap(log)


def test_two_daemons_on_one_repository_run_each_phase_once(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemons.start(server.bare, "--workers", "3")
    daemons.start(server.bare, "--workers", "3")

    _push_all(server, log, "v1")
    _converge(server.bare, "v1", log)
    _assert_each_phase_once(log)
    assert len(runs(log)) == 4 * len(NAMES)

    before = len(runs(log))
    _push_all(server, log, "v2")
    _converge(server.bare, "v2", log)
    assert sorted(runs(log)[before:]) == sorted(f"{n} {p}" for n in NAMES for p in ("release-v2", "run"))
    _assert_each_phase_once(log, before)


def test_two_daemons_on_two_clones_sharing_a_remote_run_each_phase_once(
    daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    server = make_server(tmp_path, "apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
    hosts = []
    for i in (1, 2):
        clone = tmp_path / f"host{i}"
        subprocess.run(["git", "clone", "-q", str(server.bare), str(clone)], check=True, capture_output=True)
        hosts.append(clone)
        daemons.start(clone, "--workers", "3", "--interval", "0.3s")

    _push_all(server, log, "v1")
    _converge(server.bare, "v1", log)
    _assert_each_phase_once(log)
    assert len(runs(log)) == 4 * len(NAMES)

    before = len(runs(log))
    _push_all(server, log, "v2")
    _converge(server.bare, "v2", log)
    assert sorted(runs(log)[before:]) == sorted(f"{n} {p}" for n in NAMES for p in ("release-v2", "run"))
    _assert_each_phase_once(log, before)
    # Every transition reached the shared remote, and each host's state branch follows it.
    tip = git(server.bare, "rev-parse", "reconciler/state").strip()
    for clone in hosts:
        wait_for(
            f"{clone.name} to follow the remote state branch",
            lambda c=clone: git(c, "rev-parse", "reconciler/state").strip() == tip,
            10,
        )
