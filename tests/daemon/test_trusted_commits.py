"""A daemon acts only on trusted commits (SPEC section 10): it reports an unverified tip, keeps the last."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git
from tests.daemon.kit import DaemonProcess, Daemons, Server, runs, shell_env, state_is, wait_for
from tests.signing import Keys, SshKey

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _push(server: Server, keys: Keys, key: SshKey | None, message: str) -> str:
    sha = keys.commit(server.clone, key, message)
    git(server.clone, "push", "-q", "origin", "HEAD:refs/heads/main")
    return sha


def _unverified(daemon: DaemonProcess) -> float:
    for line in daemon.get("/metrics")[1].splitlines():
        if line.startswith("reconcile_desired_tip_unverified "):
            return float(line.split()[-1])
    raise AssertionError("reconcile_desired_tip_unverified is not served")


def test_an_unverified_tip_is_reported_and_the_last_verified_commit_stays_desired(
    server: Server, daemons: Daemons, signing_keys: Keys, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    signers = signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice)
    daemon = daemons.start(server.bare, env={"RECONCILE_ALLOWED_SIGNERS": str(signers)})
    server.write("environments/web.yaml", shell_env("web", log))
    _push(server, signing_keys, signing_keys.alice, "add web, signed")
    wait_for("web running", state_is(server.bare, "web", "running"), 30)
    assert _unverified(daemon) == 0

    server.write("environments/web.yaml", shell_env("web", log, release="v2"))
    unsigned = _push(server, signing_keys, None, "release v2, unsigned")

    wait_for("the unsigned tip reported", lambda: _unverified(daemon) == 1, 20)
    status, body = daemon.get("/healthz")
    assert status == 200
    assert f"desired tip {unsigned[:12]} is not applied: unsigned" in body
    assert "desired tip not applied" in daemon.output()
    assert runs(log) == ["web provision", "web configure", "web release-v1", "web run"]

    # Signed by a key the file does not hold: still refused; once the operator adds it, applied.
    server.write("environments/web.yaml", shell_env("web", log, release="v3"))
    _push(server, signing_keys, signing_keys.mallory, "release v3, by mallory")
    wait_for(
        "the untrusted tip reported",
        lambda: "which is not in the allowed-signers file" in daemon.get("/healthz")[1],
        20,
    )
    assert "web release-v3" not in runs(log)
    signers.write_text(signers.read_text() + signing_keys.mallory.allowed_line())
    wait_for("release v3 applied", lambda: "web release-v3" in runs(log), 30)
    wait_for("web running", state_is(server.bare, "web", "running"), 30)
    assert _unverified(daemon) == 0
    assert daemon.get("/healthz") == (200, "ok\n")
    assert "web release-v2" not in runs(log)
    assert daemon.stop() == 0
