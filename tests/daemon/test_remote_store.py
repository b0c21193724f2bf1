"""``RemoteStore``: a transition is on the remote before it counts; a rejected push is a lost race."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.domain import Environment
from reconciler.store import GitStore, LostRace
from reconciler.store.remote import RemoteStore
from tests.conftest import git

pytestmark = pytest.mark.timeout(60)


def _hosts(tmp_path: Path) -> tuple[Path, RemoteStore, RemoteStore]:
    bare = tmp_path / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    stores = []
    for name in ("a", "b"):
        clone = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, capture_output=True)
        stores.append(RemoteStore(GitStore(clone, fsync=False), clone, "origin"))
    return bare, stores[0], stores[1]


def test_transitions_reach_the_remote_and_the_other_host_loses_the_race(tmp_path: Path) -> None:
    bare, a, b = _hosts(tmp_path)
    web = Environment.create("web", desired_commit="c1").into_any()
    a.apply("web", None, web, from_state="none", desired_commit="c1")
    assert "web: none -> created" in git(bare, "log", "--format=%s", "reconciler/state")

    other = Environment.create("web", desired_commit="c2").into_any()
    with pytest.raises(LostRace):
        b.apply("web", None, other, from_state="none", desired_commit="c2")
    seen = b.read("web")
    assert seen is not None
    assert seen.env.desired_commit == "c1", "the loser's branch shows the winner's state"
    assert git(bare, "rev-parse", "reconciler/state") == git(tmp_path / "a", "rev-parse", "reconciler/state")


def test_a_remote_moved_only_for_other_environments_is_not_a_lost_race(tmp_path: Path) -> None:
    bare, a, b = _hosts(tmp_path)
    a.apply("web", None, Environment.create("web").into_any(), from_state="none", desired_commit=None)
    b.apply("db", None, Environment.create("db").into_any(), from_state="none", desired_commit=None)
    subjects = git(bare, "log", "--format=%s", "reconciler/state").split("\n")
    assert subjects[:2] == ["db: none -> created", "web: none -> created"]
    a.sync()
    assert a.read("db") is not None


def test_a_push_that_fails_for_good_leaves_no_unacknowledged_local_commit(tmp_path: Path) -> None:
    _bare, a, _b = _hosts(tmp_path)
    git(tmp_path / "a", "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    with pytest.raises(Exception, match="cannot"):
        a.apply("web", None, Environment.create("web").into_any(), from_state="none", desired_commit=None)
    assert a.read("web") is None
