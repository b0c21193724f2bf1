"""``reconcile suspend`` run by a person while the daemon runs (decision 021): honoured at its next turn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, Server, runs, shell_env, state_is, state_of, transitions, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def reconcile(server: Server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the server's repository, as an operator on that host types it (another process)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            *args,
            "--repo",
            str(server.bare),
            "--data-dir",
            str(tmp_path / "cli"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_running_daemon_leaves_a_suspended_environment_alone_and_acts_on_it_once_resumed(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    # No resync during the test: what wakes the resumed environment is the state branch moving.
    daemon = daemons.start(server.bare, "--resync", "1h")
    server.write("environments/web.yaml", shell_env("web", log))
    server.write("environments/api.yaml", shell_env("api", log))
    server.push("add web and api")
    wait_for(
        "both running",
        lambda: state_is(server.bare, "web", "running")() and state_is(server.bare, "api", "running")(),
        30,
    )

    suspended = reconcile(server, tmp_path, "suspend", "web", "--reason", "database migration")
    assert suspended.returncode == 0, suspended.stderr

    server.write("environments/web.yaml", shell_env("web", log, release="v2"))
    server.write("environments/api.yaml", shell_env("api", log, release="v2"))
    server.push("release v2")
    wait_for(
        "api released v2",
        lambda: "api release-v2" in runs(log, "api") and state_is(server.bare, "api", "running")(),
        30,
    )
    wait_for(
        "the daemon reporting web suspended",
        lambda: "suspended by" in daemon.output() and "database migration" in daemon.output(),
        30,
    )
    assert runs(log, "web") == ["web provision", "web configure", "web release-v1", "web run"]
    web_commits = [t for t in transitions(server.bare) if t[0] == "web"]
    assert web_commits[-1] == ("web", "running", "running")  # the suspend: nothing after it
    assert state_of(server.bare, "web")["suspended"]["reason"] == "database migration"  # type: ignore[index]

    resumed = reconcile(server, tmp_path, "resume", "web")
    assert resumed.returncode == 0, resumed.stderr

    wait_for("web released v2 once resumed", lambda: "web release-v2" in runs(log, "web"), 30)
    wait_for("web running", state_is(server.bare, "web", "running"), 30)
    assert runs(log, "web")[4:] == ["web release-v2", "web run"]
    assert "suspended" not in (state_of(server.bare, "web") or {})
    assert daemon.proc.poll() is None
