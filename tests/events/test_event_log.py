"""The state branch as an event log, through its index under the git dir."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pygit2

from reconciler.domain import Phase
from reconciler.domain.dispatch import start_phase
from reconciler.store import GitStore
from reconciler.store.events import EventLog, EventQuery
from reconciler.store.lock import new_lock
from tests.conftest import git
from tests.store.kit import T0, created

OLD_STYLE = (
    "old: none -> created\n\nwritten before actors\n\n"
    "Reconcile-Environment: old\nReconcile-From: none\nReconcile-To: created\n"
    "Reconcile-Desired-Commit: c0ffee\nReconcile-Holder: h:1\n"
)


def _history(store: GitStore) -> None:
    web = store.apply(
        "web", None, created("web"), from_state="none", desired_commit="c0ffee", actor="Ada <a@x>"
    )
    store.apply("db", None, created("db"), from_state="none", desired_commit="c0ffee", actor="bob@host")
    store.apply(
        "web",
        web.version,
        start_phase(web.env, Phase.PROVISION, lock=new_lock(60, 30, T0), at=T0),
        from_state="created",
        desired_commit="c0ffee",
        actor="Ada <a@x>",
    )


def _commit_on_state(repo: Path, message: str) -> None:
    """A commit on the state branch by hand (same tree), as ``git commit-tree`` would make it."""
    tree = git(repo, "rev-parse", "reconciler/state^{tree}").strip()
    new = git(repo, "commit-tree", tree, "-p", "reconciler/state", "-m", message).strip()
    git(repo, "update-ref", "refs/heads/reconciler/state", new)


def test_events_filter_and_survive_a_lost_index(repo: Path) -> None:
    store = GitStore(repo)
    _history(store)
    _commit_on_state(repo, OLD_STYLE)
    _commit_on_state(repo, "a hand edit, no trailers")
    log = EventLog(pygit2.Repository(str(repo)), store.ref)

    every = log.events()
    assert [(e.environment, e.kind, e.actor) for e in every] == [
        ("old", "transition", None),
        ("web", "transition", "Ada <a@x>"),
        ("db", "transition", "bob@host"),
        ("web", "transition", "Ada <a@x>"),
    ]
    assert every[0].detail == "written before actors"
    assert [e.to_state for e in log.events(EventQuery(names=("web",)))] == ["provisioning", "created"]
    assert [e.environment for e in log.events(EventQuery(actor="BOB"))] == ["db"]
    assert len(log.events(EventQuery(limit=2))) == 2
    future = datetime.now(UTC) + timedelta(days=1)
    assert log.events(EventQuery(since=future)) == []
    assert log.index_path.is_file()

    # A lost or garbled index is rebuilt from the branch.
    log.close()
    log.index_path.write_bytes(b"this is not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{log.index_path}{suffix}").unlink(missing_ok=True)
    again = EventLog(pygit2.Repository(str(repo)), store.ref)
    assert again.events() == every


def test_a_rewritten_branch_is_reindexed(repo: Path) -> None:
    store = GitStore(repo)
    _history(store)
    log = store.events
    assert len(log.events()) == 3
    git(repo, "update-ref", "refs/heads/reconciler/state", "reconciler/state~2")
    assert [e.environment for e in log.events()] == ["web"]
    store.apply("db", None, created("db"), from_state="none", desired_commit="beef", actor="eve@h")
    assert [(e.environment, e.desired_commit) for e in log.events()] == [("db", "beef"), ("web", "c0ffee")]
    assert [e.environment for e in log.after(log.events()[1].commit)] == ["db"]
