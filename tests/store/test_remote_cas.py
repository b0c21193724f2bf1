"""The push is the compare-and-swap, on every transport: local path, file://, git:// and smart HTTP.

Each test runs against real servers (``git daemon``, ``git http-backend``) on
127.0.0.1, clones as separate hosts, and checks what the *server* holds.
"""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

import pytest

from reconciler.domain import Environment
from reconciler.store import GitStore, LostRace, PushRefused
from reconciler.store.push import PushStatus, parse_porcelain
from reconciler.store.remote import RemoteStore
from tests.conftest import git
from tests.gitservers import REFUSE_STATE_BRANCH, GitServer, install_hook

pytestmark = pytest.mark.timeout(120)

STATE = "refs/heads/reconciler/state"


def clone(server: GitServer, bare: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", server.url(bare), str(dest)], check=True, capture_output=True)
    return dest


def store(path: Path) -> RemoteStore:
    return RemoteStore(GitStore(path, fsync=False), path, "origin")


def remote_tip(bare: Path) -> str | None:
    done = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "--verify", "-q", STATE],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def test_the_loser_of_a_race_on_the_remote_gets_lost_race(
    served: tuple[GitServer, Path], tmp_path: Path
) -> None:
    server, bare = served
    a = store(clone(server, bare, tmp_path / "a"))
    b = store(clone(server, bare, tmp_path / "b"))
    a.apply(
        "web",
        None,
        Environment.create("web", desired_commit="c1").into_any(),
        from_state="none",
        desired_commit="c1",
    )
    with pytest.raises(LostRace):
        # b has not fetched: it still reads "web does not exist" and tries to create it.
        b.apply(
            "web",
            None,
            Environment.create("web", desired_commit="c2").into_any(),
            from_state="none",
            desired_commit="c2",
        )
    assert git(bare, "log", "--format=%s", STATE).splitlines() == ["web: none -> created"]
    seen = b.read("web")
    assert seen is not None and seen.env.desired_commit == "c1", "the loser now reads the winner's state"


def test_a_remote_moved_for_another_environment_is_rebuilt_not_lost(
    served: tuple[GitServer, Path], tmp_path: Path
) -> None:
    server, bare = served
    a = store(clone(server, bare, tmp_path / "a"))
    b = store(clone(server, bare, tmp_path / "b"))
    a.apply("web", None, Environment.create("web").into_any(), from_state="none", desired_commit=None)
    b.apply("db", None, Environment.create("db").into_any(), from_state="none", desired_commit=None)
    assert git(bare, "log", "--format=%s", STATE).splitlines() == [
        "db: none -> created",
        "web: none -> created",
    ]
    assert b.read("web") is not None and b.read("db") is not None


def test_a_push_the_server_refuses_is_refused_and_leaves_no_local_commit(
    served: tuple[GitServer, Path], tmp_path: Path
) -> None:
    server, bare = served
    install_hook(bare, "pre-receive", REFUSE_STATE_BRANCH)
    a = store(clone(server, bare, tmp_path / "a"))
    with pytest.raises(PushRefused, match="web: none -> created"):
        a.apply("web", None, Environment.create("web").into_any(), from_state="none", desired_commit=None)
    assert remote_tip(bare) is None
    assert a.read("web") is None, "the local branch never claims what the remote refused"
    assert git(tmp_path / "a", "for-each-ref", "refs/heads/reconciler") == ""


def _contender(url: str, dest: str, rounds: int, results: multiprocessing.Queue[tuple[int, str]]) -> None:
    subprocess.run(["git", "clone", "-q", url, dest], check=True, capture_output=True)
    s = store(Path(dest))
    for round_no in range(rounds):
        s.sync()
        name = f"env{round_no}"
        try:
            s.apply(
                name,
                None,  # "does not exist yet": whoever created it first, everyone else loses
                Environment.create(name, desired_commit=dest).into_any(),
                from_state="none",
                desired_commit=dest,
            )
            results.put((round_no, dest))
        except LostRace:
            pass


def test_four_hosts_racing_for_the_same_environment_have_exactly_one_winner(
    served: tuple[GitServer, Path], tmp_path: Path
) -> None:
    """Four processes, each its own clone, create the same environments at once: one wins each."""
    server, bare = served
    rounds = 6
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[int, str]] = ctx.Queue()
    procs = [
        ctx.Process(target=_contender, args=(server.url(bare), str(tmp_path / f"h{i}"), rounds, results))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    winners: dict[int, list[str]] = {}
    while not results.empty():
        round_no, who = results.get()
        winners.setdefault(round_no, []).append(who)
    # Each environment was created by exactly one host: the one whose commit the server holds.
    for round_no in range(rounds):
        assert len(winners.get(round_no, [])) == 1, winners
        recorded = git(bare, "show", f"{STATE}:env{round_no}/state.json")
        assert winners[round_no][0] in recorded
    subjects = git(bare, "log", "--format=%s", STATE).splitlines()
    assert sorted(subjects) == sorted(f"env{r}: none -> created" for r in range(rounds))


def test_porcelain_verdicts_are_read_per_ref() -> None:
    out = (
        "To git://127.0.0.1/x.git\n"
        "!\t0123abc:refs/heads/reconciler/state\t[remote rejected] (pre-receive hook declined)\n"
        "Done\n"
    )
    verdict = parse_porcelain(out, STATE)
    assert verdict is not None and verdict.status is PushStatus.REJECTED
    assert verdict.reason == "pre-receive hook declined"
    stale = parse_porcelain(f"!\tabc:{STATE}\t[rejected] (stale info)\n", STATE)
    assert stale is not None and stale.reason == "stale info"
    assert parse_porcelain(f"*\tabc:{STATE}\t[new branch]\n", STATE).accepted  # type: ignore[union-attr]
    # Another ref's verdict says nothing about ours.
    assert parse_porcelain("*\tabc:refs/heads/other\t[new branch]\n", STATE) is None
