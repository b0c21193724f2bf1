"""A git push into the server repository is acted on at once (a real daemon subprocess)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, Server, runs, shell_env, state_is, state_of, transitions, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_a_pushed_environment_converges_and_a_changed_release_reruns_only_release_and_run(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemons.start(server.bare)

    server.write("environments/web.yaml", shell_env("web", log))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)
    assert runs(log) == ["web provision", "web configure", "web release-v1", "web run"]

    server.write("environments/web.yaml", shell_env("web", log, release="v2"))
    server.push("release v2")
    wait_for("web re-released", lambda: "web release-v2" in runs(log), 20)
    wait_for("web running again", state_is(server.bare, "web", "running"), 20)
    assert runs(log)[4:] == ["web release-v2", "web run"]


def test_a_pushed_destroyed_destroys(server: Server, daemons: Daemons, tmp_path: Path) -> None:
    log = tmp_path / "side-effects.log"
    daemons.start(server.bare)
    server.write("environments/web.yaml", shell_env("web", log))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)

    server.write("environments/web.yaml", shell_env("web", log, desired="destroyed"))
    server.push("destroy web")
    wait_for("web destroyed", state_is(server.bare, "web", "destroyed"), 20)
    assert runs(log)[-1] == "web destroy"
    assert ("web", "destroying", "destroyed") in transitions(server.bare)


def test_a_bad_file_pushed_beside_good_ones_leaves_them_converging(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemons.start(server.bare)
    server.write("environments/good.yaml", shell_env("good", log))
    server.write("environments/other.yaml", shell_env("other", log))
    server.write("environments/bad.yaml", "apiVersion: reconciler/v1\nkind: Environment\nspec: [unclosed\n")
    server.push("two good, one bad")

    wait_for("good running", state_is(server.bare, "good", "running"), 20)
    wait_for("other running", state_is(server.bare, "other", "running"), 20)
    assert state_of(server.bare, "bad") is None
    assert {env for env, _, _ in transitions(server.bare)} == {"good", "other"}


def test_resync_runs_checks_a_failing_one_reapplies_a_passing_one_writes_nothing(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    healthy = tmp_path / "healthy"
    healthy.touch()
    daemons.start(server.bare, "--resync", "0.5s")
    server.write("environments/web.yaml", shell_env("web", log, check=f"test -e {healthy}"))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)
    settled = len(transitions(server.bare))
    time.sleep(1.5)  # a few resyncs with a passing check
    assert len(transitions(server.bare)) == settled

    healthy.unlink()  # drift: the check now fails and names `reapply: release`
    wait_for("release re-applied", lambda: runs(log)[4:6] == ["web release-v1", "web run"], 20)
    healthy.touch()
    wait_for("web running", state_is(server.bare, "web", "running"), 20)
    assert runs(log)[:4] == ["web provision", "web configure", "web release-v1", "web run"]


def test_a_check_that_reapplying_does_not_cure_is_reported_and_backed_off(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    # A resync much shorter than the fetch interval is honoured on its own clock.
    daemon = daemons.start(server.bare, "--interval", "30s", "--resync", "0.5s")
    server.write(
        "environments/web.yaml", shell_env("web", tmp_path / "log", check=f"test -e {tmp_path}/never")
    )
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)

    def failing_checks() -> float:
        for line in daemon.get("/metrics")[1].splitlines():
            if line.startswith('reconcile_checks_total{result="failing"}'):
                return float(line.split()[-1])
        return 0.0

    wait_for("a failing check reported", lambda: failing_checks() >= 1, 15)
    first = failing_checks()
    time.sleep(2.0)
    # Backed off: 0.5 s, 1 s, 2 s... between attempts, not one re-apply every resync.
    assert failing_checks() - first <= 2


def test_the_daemon_says_what_it_does_at_the_default_log_level(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    """No ``--log-level``: one line per transition and per failure, nothing per converged no-op."""
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare, "--resync", "0.5s", log_level=None)
    server.write("environments/web.yaml", shell_env("web", log))
    server.write("environments/bad.yaml", shell_env("bad", log).replace("echo", "exit 3; echo", 1))
    server.push("add web and bad")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)
    wait_for("bad failed", lambda: "outcome=failed" in daemon.output(), 20)
    time.sleep(1.5)  # a few resyncs over the converged web
    out = daemon.output()
    assert "state transition environment=web from_state=starting to_state=running" in out
    assert "reconciled environment=bad outcome=failed" in out
    assert out.count("reconciled environment=web outcome=converged") == 1  # the turn that converged it
    assert " DEBUG " not in out
