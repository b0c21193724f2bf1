"""``Reconcile-Actor`` and ``Reconcile-Event`` on every state-branch commit (SPEC 4.1), read with real git."""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file


def _trailer_log(repo: Path) -> list[tuple[str, str, str]]:
    """(subject, actor, event) of every state-branch commit, oldest first, via ``%(trailers)``."""
    fmt = "%s%x1f" + "%x1f".join(
        f"%(trailers:key=Reconcile-{key},valueonly,separator=)" for key in ("Actor", "Event")
    )
    out = git(repo, "log", "--reverse", f"--format={fmt}", "reconciler/state")
    rows = []
    for line in out.splitlines():
        if line.strip():
            subject, actor, event = line.split("\x1f")
            rows.append((subject, actor.strip(), event.strip()))
    return rows


def test_each_commit_says_who_and_what_kind(gitops: GitOpsRepo, tmp_path: Path) -> None:
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    phases = counting_phases(tmp_path / "log", extra={"release": "test -f ok || exit 5"})
    gitops.write({"environments/web.yaml": env_file("web", phases=phases)})
    git(gitops.path, "add", "-A")
    git(
        gitops.path,
        "-c",
        "user.name=Ada",
        "commit",
        "-q",
        "-m",
        "web",
        "--author",
        "Ada Lovelace <ada@example.com>",
    )
    assert gitops.reconcile("apply").returncode == 1  # release fails
    planned = _trailer_log(gitops.path)
    assert planned[-1] == ("web: releasing -> release_failed", "Ada Lovelace <ada@example.com>", "transition")
    assert {actor for _, actor, _ in planned} == {"Ada Lovelace <ada@example.com>"}

    gitops.reconcile("retry", "web", check=True)
    gitops.reconcile("provision", "web", check=True)
    by_hand = _trailer_log(gitops.path)[len(planned) :]
    assert by_hand[0] == ("web: release_failed -> release_failed", me, "retry")
    assert by_hand[1:] == [
        ("web: release_failed -> provisioning", me, "transition"),
        ("web: provisioning -> provisioned", me, "transition"),
    ]

    history = json.loads(gitops.reconcile("history", "web", "--format", "json", check=True).stdout)
    entries = history["events"]
    assert (entries[0]["actor"], entries[0]["event"]) == (me, "transition")
    assert (entries[2]["actor"], entries[2]["event"]) == (me, "retry")
    assert entries[-1]["actor"] == "Ada Lovelace <ada@example.com>"
