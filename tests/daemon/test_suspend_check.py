"""SPEC 3.1: a suspended environment is checked and reported by the daemon, never healed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon.kit import (
    DaemonProcess,
    Daemons,
    Server,
    runs,
    shell_env,
    state_is,
    state_of,
    transitions,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def _suspended(text: str) -> str:
    return text.replace("  desiredState: running\n", "  desiredState: running\n  suspend: true\n")


def test_a_suspended_environment_whose_check_fails_is_reported_not_reapplied(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    healthy = tmp_path / "healthy"
    healthy.touch()
    daemon = daemons.start(server.bare, "--resync", "0.5s")
    server.write("environments/web.yaml", shell_env("web", log, check=f"test -e {healthy}"))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)

    server.write("environments/web.yaml", _suspended(shell_env("web", log, check=f"test -e {healthy}")))
    server.push("suspend web")
    suspended_at = subprocess.run(
        ["git", "-C", str(server.clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The check fails only once the daemon acts on the suspending commit (else it heals, rightly):
    # two passing checks after it is loaded, so the second one started with it.
    wait_for("the suspend loaded", lambda: suspended_at in daemon.output(), 20)
    passed = checks(daemon, "passed")
    wait_for("a check under the suspend", lambda: checks(daemon, "passed") >= passed + 2, 20)
    settled = len(transitions(server.bare))
    healthy.unlink()  # the check now fails and names `reapply: release`

    wait_for("failing checks reported", lambda: checks(daemon, "failing") >= 3, 20)
    time.sleep(1.0)  # a few more resyncs
    assert runs(log) == ["web provision", "web configure", "web release-v1", "web run"]
    # One observation records the failing check (From == To); no transition, and no second commit.
    assert transitions(server.bare)[settled:] == [("web", "running", "running")]
    assert state_of(server.bare, "web")["drift"]["status"] == "failing"  # type: ignore[index]
    assert "suspended, so not re-applied" in daemon.output()
    assert state_is(server.bare, "web", "running")()


def checks(daemon: DaemonProcess, result: str) -> float:
    for line in daemon.get("/metrics")[1].splitlines():
        if line.startswith(f'reconcile_checks_total{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0
