"""Replay: the fleet as it was, who changed it and why it failed, from the CLI alone (real applies)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file


def _commit_as(gitops: GitOpsRepo, author: str, files: dict[str, str]) -> None:
    gitops.write(files)
    git(gitops.path, "add", "-A")
    git(gitops.path, "commit", "-q", "-m", "change", "--author", author)


def _tick() -> datetime:
    """A moment strictly between two seconds' commits (commit times have one-second resolution)."""
    time.sleep(1.1)
    moment = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    return moment


def test_what_ran_then_who_changed_it_and_why_it_failed(gitops: GitOpsRepo, tmp_path: Path) -> None:
    good = counting_phases(tmp_path / "log")
    _commit_as(
        gitops,
        "Ada <ada@example.com>",
        {
            "environments/web.yaml": env_file("web", phases=good),
            "environments/db.yaml": env_file("db", "provisioned", phases=good),
        },
    )
    gitops.reconcile("apply", check=True)
    then = _tick()
    bad = counting_phases(tmp_path / "log", extra={"release": "echo 'no artefact' >&2; exit 7"})
    bad["release"][0]["name"] = "ship artefact"  # type: ignore[index]
    _commit_as(
        gitops,
        "Bob <bob@example.com>",
        {"environments/web.yaml": env_file("web", phases=bad, vars={"v": "2"})},
    )
    assert gitops.reconcile("apply").returncode == 1

    # What was running at that moment.
    fleet = json.loads(
        gitops.reconcile("status", "--at", then.isoformat(), "--format", "json", check=True).stdout
    )
    assert fleet["formatVersion"] == 1
    states = {row["name"]: row["state"] for row in fleet["environments"]}
    assert states == {"web": "running", "db": "provisioned"}
    web_then = next(r for r in fleet["environments"] if r["name"] == "web")
    assert web_then["lastTransition"]["actor"] == "Ada <ada@example.com>"
    assert "running" in gitops.reconcile("status", "--at", then.isoformat(), check=True).stdout
    now = json.loads(
        gitops.reconcile("status", "--at", "reconciler/state", "--format", "json", check=True).stdout
    )
    assert {r["name"]: r["state"] for r in now["environments"]}["web"] == "release_failed"
    shown = json.loads(
        gitops.reconcile("show", "web", "--at", then.isoformat(), "--format", "json", check=True).stdout
    )
    assert shown["state"]["state"] == "running" and shown["state"]["failure"] is None

    # Who changed it, and why it failed.
    changed = json.loads(
        gitops.reconcile("history", "web", "--since", then.isoformat(), "--format", "json", check=True).stdout
    )["events"]
    assert {e["actor"] for e in changed} == {"Bob <bob@example.com>"}
    assert changed[0]["to"] == "release_failed"
    assert "ship artefact" in changed[0]["detail"] and "exited 7" in changed[0]["detail"]
    by_ada = json.loads(
        gitops.reconcile("history", "--actor", "ada@", "--until", then.isoformat(), "--format", "json").stdout
    )["events"]
    assert by_ada and {e["actor"] for e in by_ada} == {"Ada <ada@example.com>"}
    assert {e["environment"] for e in by_ada} == {"web", "db"}
    text = gitops.reconcile("history", "web", "--limit", "1", check=True).stdout
    assert "release_failed" in text and "by Bob <bob@example.com>" in text
    retries = json.loads(
        gitops.reconcile("history", "--event", "retry", "--format", "json", check=True).stdout
    )
    assert retries["events"] == []


def test_history_and_at_refuse_what_they_cannot_show(gitops: GitOpsRepo, tmp_path: Path) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", "created")})
    before = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    gitops.reconcile("apply", check=True)

    unknown = gitops.reconcile("history", "nosuch")
    assert unknown.returncode == 1 and "unknown environment 'nosuch'" in unknown.stderr
    assert gitops.reconcile("history", "web", "--since", "yesterday").returncode == 2
    assert gitops.reconcile("history", "--event", "party").returncode == 2
    bad_at = gitops.reconcile("status", "--at", "10:15")
    assert bad_at.returncode == 2 and "RFC 3339" in bad_at.stderr
    not_state = gitops.reconcile("status", "--at", "main")
    assert not_state.returncode == 2 and "not on the state branch" in not_state.stderr
    too_early = gitops.reconcile("status", "--at", before.isoformat())
    assert too_early.returncode == 1 and "nothing was recorded yet" in too_early.stderr
