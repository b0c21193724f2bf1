"""SPEC 3.1 in the daemon: its resync finds drift made by hand with the real tools and heals it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pygit2
import pytest

from tests.daemon.kit import Daemons, Server, state_of, wait_for
from tests.engine.test_drift import MODULE, PLAYBOOK, TERRAFORM, needs_ansible, needs_terraform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), needs_terraform, needs_ansible]

ENV = {
    "apiVersion": "reconciler/v1",
    "kind": "Environment",
    "metadata": {"name": "web"},
    "spec": {
        "desiredState": "configured",
        "phases": {
            "provision": [
                {
                    "tofu": {
                        "module": "infra/marker",
                        "binary": Path(TERRAFORM or "terraform").name,
                        "vars": {"name": "{{ environment.name }}", "token": "not-a-secret"},
                    }
                }
            ],
            "configure": [{"ansible": {"playbook": "ansible/page.yml"}}],
        },
    },
}


def observations(repo: Path) -> list[tuple[str, str, str]]:
    """``(Reconcile-Event, Reconcile-Actor, subject)`` of every state-branch commit, oldest first."""
    r = pygit2.Repository(str(repo))
    commit = r.references["refs/heads/reconciler/state"].peel(pygit2.Commit)
    found = []
    while True:
        trailers = dict(
            line.split(": ", 1) for line in commit.message.splitlines() if line.startswith("Reconcile-")
        )
        found.append(
            (trailers["Reconcile-Event"], trailers["Reconcile-Actor"], commit.message.splitlines()[0])
        )
        if not commit.parents:
            return found[::-1]
        commit = commit.parents[0]


def drift_status(repo: Path) -> str | None:
    doc = state_of(repo, "web")
    drift = (doc or {}).get("drift")
    return None if drift is None else str(drift["status"])


def test_the_resync_heals_tofu_and_ansible_drift_and_records_it(server: Server, daemons: Daemons) -> None:
    server.write("infra/marker/main.tf", MODULE)
    server.write("ansible/page.yml", PLAYBOOK)
    server.write("environments/web.yaml", json.dumps(ENV, indent=2))
    daemon = daemons.start(server.bare, "--resync", "1s")
    server.push("add web")

    def looked_in_sync() -> bool:
        metrics = daemon.get("/metrics")[1]
        return 'reconcile_drift_status{environment="web",status="in_sync"} 1' in metrics

    wait_for("web configured and looked at", looked_in_sync, 120)
    assert drift_status(server.bare) is None  # in sync from the start: nothing written
    before = len(observations(server.bare))
    workdir = daemon.data_dir / "web" / "tofu" / "infra__marker"
    assert TERRAFORM is not None

    subprocess.run(
        # The daemon's resync may be running `terraform plan` here, holding the state lock: wait for it.
        [TERRAFORM, "state", "rm", "-lock-timeout=120s", "terraform_data.marker"],
        cwd=workdir,
        check=True,
        capture_output=True,
    )

    def state_list() -> str:
        # Read while the daemon re-applies: a state being rewritten reads as "not yet".
        listed = subprocess.run(
            [TERRAFORM, "state", "list"], cwd=workdir, capture_output=True, text=True, check=False
        )
        return listed.stdout if listed.returncode == 0 else ""

    wait_for("the marker re-created", lambda: "terraform_data.marker" in state_list(), 120)
    wait_for("in sync recorded", lambda: drift_status(server.bare) == "in_sync", 60)
    healed = observations(server.bare)[before:]
    assert healed[0] == ("drift", "reconciler", "web: configured -> configured")
    assert ("transition", "reconciler", "web: configured -> provisioning") in healed
    assert ("transition", "reconciler", "web: configuring -> configured") in healed
    assert healed[-1] == ("in-sync", "reconciler", "web: configured -> configured")

    page = daemon.data_dir / "web" / "page.txt"
    page.write_text("edited by hand\n")
    wait_for("the page restored", lambda: page.read_text() == "hello from web\n", 120)
    wait_for("in sync recorded again", lambda: observations(server.bare)[-1][0] == "in-sync", 60)
    second = observations(server.bare)[before + len(healed) :]
    assert second[0][0] == "drift"
    assert ("transition", "reconciler", "web: configured -> configuring") in second
    assert ("transition", "reconciler", "web: configured -> provisioning") not in second  # configure only
    metrics = daemon.get("/metrics")[1]
    assert 'reconcile_check_duration_seconds_count{status="drifted"}' in metrics
    assert 'reconcile_checks_total{result="reapplied"}' in metrics
