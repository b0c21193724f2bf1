"""A push wakes only what it concerns (SPEC 6): a real daemon, a bare repository, ``git push``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.daemon.kit import (
    DaemonProcess,
    Daemons,
    Server,
    runs,
    shell_env,
    state_is,
    transitions,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _env(name: str, log: Path, *, depends: str | None = None, release: str = "v1") -> str:
    text = shell_env(name, log, release=release)
    return text.replace("spec:\n", f"spec:\n  dependsOn: [{depends}]\n") if depends else text


def _woken_by_change(daemon: DaemonProcess) -> float:
    for line in daemon.get("/metrics")[1].splitlines():
        if line.startswith('reconcile_woken_total{by="change"}'):
            return float(line.split()[-1])
    return 0.0


def _last_woken(daemon: DaemonProcess) -> set[str]:
    """The names the last ``desired state loaded`` record says the daemon queued."""
    found = re.findall(r"desired state loaded .*?woken=(.*?) why=", daemon.output())
    assert found, daemon.output()
    return set() if found[-1] == "none" else set(found[-1].split(", "))


def test_a_push_changing_one_environment_queues_only_it_and_its_dependents(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    fleet = {
        "db": _env("db", log),
        "api": _env("api", log, depends="db"),
        "web": _env("web", log, depends="api"),
        "other": _env("other", log),
        "more": _env("more", log),
    }
    for name, text in fleet.items():
        server.write(f"environments/{name}.yaml", text)
    server.push("a fleet")
    daemon = daemons.start(server.bare)
    for name in fleet:
        wait_for(f"{name} running", state_is(server.bare, name, "running"), 40)
    wait_for("the start-up pass to end", lambda: "reconcile_queue_depth 0" in daemon.get("/metrics")[1], 20)
    before_woken = _woken_by_change(daemon)
    before = len(transitions(server.bare))

    server.write("environments/api.yaml", _env("api", log, depends="db", release="v2"))
    server.push("api v2")
    wait_for("api re-released", lambda: "api release-v2" in runs(log), 20)
    wait_for("api running", state_is(server.bare, "api", "running"), 20)

    assert _last_woken(daemon) == {"api", "web"}, "api changed; web depends on it; db, other, more did not"
    assert _woken_by_change(daemon) - before_woken == 2
    assert {env for env, _, _ in transitions(server.bare)[before:]} == {"api"}

    server.write("README.md", "nothing an environment reads\n")
    server.push("docs")
    wait_for("the docs commit loaded", lambda: daemon.output().count("desired state loaded") >= 3, 20)
    assert _last_woken(daemon) == set()
    assert _woken_by_change(daemon) - before_woken == 2
