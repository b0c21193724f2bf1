"""A clone that holds a commit without all its objects still decides on the remote's state.

``git clone`` of a path copies the objects directory; when a push is writing
into it at that moment, the clone can end up with a commit but not its trees
or blobs. A fetch then brings nothing (the commit is "already here") and the
state it points at cannot be read. The store must notice, fetch the objects,
and never take the unreadable state for an environment that does not exist:
that would let a second host create it again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pygit2
import pytest

from reconciler.domain import Environment
from reconciler.store import GitStore, LostRace
from tests.conftest import git
from tests.gitservers import GitServer
from tests.store.test_remote_cas import STATE, clone, store

pytestmark = pytest.mark.timeout(120)


def copy_loose(src: Path, dest: Path, oids: list[pygit2.Oid]) -> None:
    """Copy these loose objects from one clone's store to another's, as a racing copy does."""
    for oid in oids:
        hexa = str(oid)
        target = dest / ".git" / "objects" / hexa[:2]
        target.mkdir(exist_ok=True)
        shutil.copy(src / ".git" / "objects" / hexa[:2] / hexa[2:], target / hexa[2:])


def half_copied(served: tuple[GitServer, Path], tmp_path: Path, copied: int) -> tuple[Path, pygit2.Oid]:
    """Host a creates ``web``; host b, cloned before, gets the first ``copied`` of its objects only.

    The objects are, in order: the commit, the root tree, ``web/``, ``web/state.json``.
    Returns b's clone and the winner's commit.
    """
    server, bare = served
    a_path = clone(server, bare, tmp_path / "a")
    b_path = clone(server, bare, tmp_path / "b")
    store(a_path).apply(
        "web",
        None,
        Environment.create("web", desired_commit="c1").into_any(),
        from_state="none",
        desired_commit="c1",
    )
    commit = pygit2.Repository(str(a_path)).revparse_single(STATE)
    assert isinstance(commit, pygit2.Commit)
    objects = [commit.id, commit.tree.id, commit.tree["web"].id, commit.tree["web/state.json"].id]
    copy_loose(a_path, b_path, objects[:copied])
    return b_path, commit.id


@pytest.mark.parametrize("copied", [2, 3], ids=["without-the-env-tree", "without-the-state-blob"])
def test_a_host_holding_the_winners_commit_without_its_objects_loses_the_race(
    served: tuple[GitServer, Path], tmp_path: Path, copied: int
) -> None:
    b_path, _ = half_copied(served, tmp_path, copied)
    b = store(b_path)
    with pytest.raises(LostRace):
        b.apply(
            "web",
            None,
            Environment.create("web", desired_commit="c2").into_any(),
            from_state="none",
            desired_commit="c2",
        )
    assert git(served[1], "log", "--format=%s", STATE).splitlines() == ["web: none -> created"]
    seen = b.read("web")
    assert seen is not None and seen.env.desired_commit == "c1", "b reads the winner's state"


def test_a_read_that_meets_a_missing_object_fetches_it_and_reads_the_state(
    served: tuple[GitServer, Path], tmp_path: Path
) -> None:
    b_path, tip = half_copied(served, tmp_path, 3)
    # b's branch already names the commit, as after a fetch that brought nothing.
    git(b_path, "update-ref", STATE, str(tip))
    git(b_path, "update-ref", f"refs/remotes/origin/{STATE.removeprefix('refs/heads/')}", str(tip))
    b = store(b_path)
    seen = b.read("web")
    assert seen is not None and seen.env.desired_commit == "c1"
    assert set(b.read_all()) == {"web"}


def test_a_missing_object_is_an_error_not_an_absent_environment(
    served: tuple[GitServer, Path], tmp_path: Path
) -> None:
    """Without a remote to fetch from, the plain store refuses to read: no "no such environment"."""
    b_path, tip = half_copied(served, tmp_path, 2)
    git(b_path, "update-ref", STATE, str(tip))
    local = GitStore(b_path, fsync=False)
    with pytest.raises(pygit2.GitError):
        local.read("web")
    with pytest.raises(pygit2.GitError):
        local.read_all()
