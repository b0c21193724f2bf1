"""The state branch read with plain git: the audit trail needs no reconciler to be understood."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pygit2
import pytest

from reconciler.domain import Phase
from reconciler.domain.dispatch import fail_phase, start_phase
from reconciler.store import GitStore
from reconciler.store.lock import new_lock
from tests.conftest import git
from tests.store.kit import T0, created, failure


def _story(store: GitStore) -> None:
    web = store.apply("web", None, created("web"), from_state="none", desired_commit="c0ffee")
    store.apply("db", None, created("db"), from_state="none", desired_commit="c0ffee")
    web = store.apply(
        "web",
        web.version,
        start_phase(web.env, Phase.PROVISION, lock=new_lock(60, 30, T0), at=T0),
        from_state="created",
        desired_commit="c0ffee",
    )
    store.apply(
        "web",
        web.version,
        fail_phase(web.env, failure(Phase.PROVISION), at=T0),
        from_state="provisioning",
        desired_commit="c0ffee",
        detail="failed step: shell ./fail.sh\nexited 1",
    )


def test_git_log_reads_as_the_audit_trail(repo: Path) -> None:
    store = GitStore(repo)
    _story(store)
    holder = f"{socket.gethostname()}:{os.getpid()}"

    subjects = git(repo, "log", "--format=%s", "reconciler/state").splitlines()
    assert subjects == [
        "web: provisioning -> provision_failed",
        "web: created -> provisioning",
        "db: none -> created",
        "web: none -> created",
    ]
    newest = git(repo, "log", "-1", "--format=%B", "reconciler/state")
    assert newest == (
        "web: provisioning -> provision_failed\n\n"
        "| failed step: shell ./fail.sh\n| exited 1\n\n"
        "Reconcile-Environment: web\n"
        "Reconcile-From: provisioning\n"
        "Reconcile-To: provision_failed\n"
        "Reconcile-Desired-Commit: c0ffee\n"
        f"Reconcile-Holder: {holder}\n"
        "Reconcile-Actor: reconciler\n"
        "Reconcile-Event: transition\n\n"
    )
    trailers = git(repo, "log", "-1", "--format=%(trailers:key=Reconcile-To,valueonly)", "reconciler/state")
    assert trailers.strip() == "provision_failed"
    author = git(repo, "log", "-1", "--format=%an <%ae>", "reconciler/state").strip()
    assert author == "reconciler <reconciler@localhost>"

    only_web = git(repo, "log", "--format=%H", "--grep", "Reconcile-Environment: web", "reconciler/state")
    web_history = store.history("web")
    assert only_web.split() == [r.commit_id for r in web_history]
    assert [(r.from_state, r.to_state) for r in web_history] == [
        ("provisioning", "provision_failed"),
        ("created", "provisioning"),
        ("none", "created"),
    ]
    assert web_history[0].detail == "failed step: shell ./fail.sh\nexited 1"
    assert web_history[0].holder == holder

    shown = json.loads(git(repo, "show", "reconciler/state:web/state.json"))
    assert shown["state"] == "provision_failed"
    assert shown["failure"]["failedStep"] == "shell ./fail.sh"
    assert git(repo, "ls-tree", "-r", "--name-only", "reconciler/state").split() == [
        "db/state.json",
        "web/state.json",
    ]


def test_work_tree_index_and_head_are_never_touched(repo: Path) -> None:
    (repo / "notes.txt").write_text("uncommitted work\n")
    git(repo, "add", "notes.txt")
    (repo / "notes.txt").write_text("more uncommitted work\n")
    head_before = git(repo, "rev-parse", "HEAD")
    status_before = git(repo, "status", "--porcelain")

    _story(GitStore(repo))

    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(repo, "status", "--porcelain") == status_before
    assert (repo / "notes.txt").read_text() == "more uncommitted work\n"
    assert not (repo / "web").exists()


def test_works_in_a_bare_repository_with_a_custom_ref_and_identity(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    store = GitStore(bare, ref="refs/reconciler/observed", identity=("Ops Bot", "ops@example.com"))
    assert store.read_all() == {}
    _story(store)
    assert git(bare, "log", "-1", "--format=%an <%ae> %s", "refs/reconciler/observed").strip() == (
        "Ops Bot <ops@example.com> web: provisioning -> provision_failed"
    )
    assert set(GitStore(bare, ref="refs/reconciler/observed").read_all()) == {"web", "db"}
    git(bare, "fsck", "--strict")


def test_a_ref_moved_by_someone_else_is_built_upon_not_overwritten(repo: Path) -> None:
    """Another writer (here the git CLI) commits to the branch: our next transition keeps its commit."""
    store = GitStore(repo)
    web = store.apply("web", None, created("web"), from_state="none", desired_commit=None)
    tip = git(repo, "rev-parse", "reconciler/state").strip()
    tree = git(repo, "rev-parse", "reconciler/state^{tree}").strip()
    foreign = git(repo, "commit-tree", tree, "-p", tip, "-m", "annotate by hand").strip()
    git(repo, "update-ref", "refs/heads/reconciler/state", foreign, tip)

    store.apply(
        "web",
        web.version,
        start_phase(web.env, Phase.PROVISION, lock=new_lock(60, 30, T0)),
        from_state="created",
        desired_commit=None,
    )
    assert git(repo, "rev-parse", "reconciler/state~1").strip() == foreign
    assert [r.to_state for r in store.history()] == ["provisioning", "created"]  # the hand commit is skipped


def test_a_store_without_fsync_does_not_inherit_per_file_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libgit2's fsync switch is process-wide: each store sets it for itself when it opens."""
    calls: list[bool] = []
    monkeypatch.setattr(
        type(pygit2.settings), "enable_fsync_gitdir", lambda _self, value: calls.append(value)
    )
    git(tmp_path, "init", "-q")
    GitStore(tmp_path, per_file_fsync=True)
    GitStore(tmp_path, fsync=False)
    assert calls == [True, False]
