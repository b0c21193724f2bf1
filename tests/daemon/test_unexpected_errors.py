"""SPEC 7 in the daemon: a phase that crashes is failed, not left locked, and the daemon goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, Server, runs, shell_env, state_is, state_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

#: Valid YAML and a valid template, whose rendered value holds a NUL byte: no process can get it
#: in its environment, so starting the step raises (ValueError) inside the step runner.
CRASHING = """\
apiVersion: reconciler/v1
kind: Environment
metadata: {name: web}
spec:
  desiredState: running
  retry: {limit: 1, backoffSeconds: 1}
  phases:
    provision:
      - name: start with a NUL in its environment
        shell: {run: "true", env: {GREETING: "{{ '%c' % 0 }}"}}
"""


def test_a_phase_that_crashes_is_failed_unlocked_and_the_daemon_goes_on(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare)
    server.write("environments/web.yaml", CRASHING)
    server.write("environments/other.yaml", shell_env("other", log))
    server.push("web crashes, other is fine")

    wait_for("web failed and unlocked", state_is(server.bare, "web", "provision_failed"), 30)
    wait_for("other running", state_is(server.bare, "other", "running"), 30)
    web = state_of(server.bare, "web")
    assert web is not None
    failure = web["failure"]
    assert failure["failedStep"].startswith("start with a NUL")
    trace = Path(failure["traceFile"])
    trace = trace if trace.is_absolute() else tmp_path / trace  # the daemon runs in tmp_path
    assert failure["traceId"] in trace.read_text()

    # The daemon is alive and healthy, and goes on with the others: a change to other is applied.
    assert daemon.get("/healthz")[0] == 200
    server.write("environments/other.yaml", shell_env("other", log, release="v2"))
    server.push("other v2")
    wait_for("other re-released", lambda: "other release-v2" in runs(log), 30)
    wait_for("other running again", state_is(server.bare, "other", "running"), 30)
    # Never locked "by the daemon itself": web is failed, and stays so (retry limit 1: blocked).
    assert state_is(server.bare, "web", "provision_failed")()
    assert "Traceback" not in daemon.output()
