"""A daemon killed or stopped mid-phase: nothing runs twice at once, nothing is left running."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from reconciler.store.lock import process_alive
from tests.daemon.kit import (
    Daemons,
    Server,
    assert_no_overlap,
    read_log,
    runs,
    shell_env,
    state_is,
    state_of,
    transitions,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _in_phase(log: Path, env: str, phase: str) -> bool:
    return any(x.env == env and x.phase == phase and x.event == "start" for x in read_log(log))


def test_sigkill_mid_phase_then_restart_records_interrupted_retries_and_converges(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    data = tmp_path / "data"
    first = daemons.start(server.bare, data_dir=data)
    server.write("environments/web.yaml", shell_env("web", log, slow="configure", pause=3))
    server.push("add web")
    wait_for("configure to start", lambda: _in_phase(log, "web", "configure"), 20)
    assert state_of(server.bare, "web")["state"] == "configuring"

    first.stop(signal.SIGKILL)
    orphan = int((tmp_path / "side-effects.log.web.pid").read_text())
    # Its supervisor stops the step with the reconciler, without waiting for a restart.
    wait_for("the step to stop with its reconciler", lambda: not process_alive(orphan), 10)

    daemons.start(server.bare, data_dir=data)
    wait_for("web running", state_is(server.bare, "web", "running"), 30)

    history = transitions(server.bare)
    assert ("web", "configuring", "configure_failed") in history
    interrupted_at = history.index(("web", "configuring", "configure_failed"))
    assert ("web", "configure_failed", "configuring") in history[interrupted_at:]
    assert runs(log) == ["web provision", "web configure", "web configure", "web release-v1", "web run"]
    assert not process_alive(orphan)
    assert_no_overlap(log)


def test_sigterm_during_a_long_step_exits_within_grace_and_records_interrupted(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare, "--grace", "2s")
    server.write("environments/web.yaml", shell_env("web", log, slow="provision", pause=60))
    server.push("add web")
    pid_file = tmp_path / "side-effects.log.web.pid"
    wait_for("the long step to start", pid_file.exists, 20)
    step_pid = int(pid_file.read_text())

    t0 = time.monotonic()
    code = daemon.stop(signal.SIGTERM, timeout=30)
    elapsed = time.monotonic() - t0

    assert code == 0, daemon.output()
    assert elapsed < 2 + 5, f"took {elapsed:.1f}s to stop"
    assert not process_alive(step_pid)
    doc = state_of(server.bare, "web")
    assert doc is not None
    assert doc["state"] == "provision_failed"
    assert doc["failure"]["errorKind"] == "interrupted"
    assert doc["lock"] is None
    assert [x.event for x in read_log(log) if x.phase == "provision"] == ["start", "killed"]
    with pytest.raises(ProcessLookupError):
        os.kill(step_pid, 0)


def test_sigterm_lets_a_phase_that_finishes_within_grace_finish_and_starts_nothing_new(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare, "--grace", "10s")
    server.write("environments/web.yaml", shell_env("web", log, slow="provision", pause=1.5))
    server.push("add web")
    wait_for("the step to start", lambda: _in_phase(log, "web", "provision"), 20)

    assert daemon.stop(signal.SIGTERM, timeout=30) == 0
    doc = state_of(server.bare, "web")
    assert doc is not None
    assert doc["state"] == "provisioned", "the running phase finishes; the next one does not start"
    assert runs(log) == ["web provision"]
