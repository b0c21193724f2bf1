"""SPEC 3.1: a suspended environment is checked and reported by the daemon, never healed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, Server, runs, shell_env, state_is, transitions, wait_for

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
    settled = len(transitions(server.bare))
    healthy.unlink()  # the check now fails and names `reapply: release`

    def failing_checks() -> float:
        for line in daemon.get("/metrics")[1].splitlines():
            if line.startswith('reconcile_checks_total{result="failing"}'):
                return float(line.split()[-1])
        return 0.0

    wait_for("failing checks reported", lambda: failing_checks() >= 3, 20)
    time.sleep(1.0)  # a few more resyncs
    assert runs(log) == ["web provision", "web configure", "web release-v1", "web run"]
    assert len(transitions(server.bare)) == settled
    assert "suspended, so not re-applied" in daemon.output()
    assert state_is(server.bare, "web", "running")()
