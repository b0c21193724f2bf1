"""Transitions waiting for the writer lock are committed together: one commit each, one ref move."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pygit2

from reconciler.domain import Phase
from reconciler.domain.dispatch import start_phase
from reconciler.store import GitStore, LostRace, Observed
from reconciler.store.lock import new_lock
from tests.conftest import git
from tests.store.kit import T0, created

REF = "refs/heads/reconciler/state"


def _start(store: GitStore, name: str, base: Observed, version: str | None) -> Observed:
    after = start_phase(base.env, Phase.PROVISION, lock=new_lock(60, 30, T0), at=T0)
    return store.apply(name, version, after, from_state=base.env.state_name, desired_commit="c0ffee")


def test_queued_transitions_share_one_ref_move_and_fail_alone(repo: Path) -> None:
    store = GitStore(repo)  # durable, as apply and the daemon use it
    names = ["web", "db", "cache"]
    first = {n: store.apply(n, None, created(n), from_state="none", desired_commit="c0ffee") for n in names}
    results: dict[str, Observed | BaseException] = {}

    def run(name: str, version: str | None) -> None:
        try:
            results[name] = _start(store, name, first[name], version)
        except BaseException as e:
            results[name] = e

    with store.writer_lock():  # another writer is busy: these three wait, queued
        threads = [
            threading.Thread(target=run, args=("web", first["web"].version)),
            threading.Thread(target=run, args=("db", first["db"].version)),
            threading.Thread(target=run, args=("cache", "0" * 40)),  # read long ago: refused
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(store._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)

    assert isinstance(results["web"], Observed)
    assert isinstance(results["db"], Observed)
    assert isinstance(results["cache"], LostRace)
    # One commit per transition, on top of one another; the refused one left no commit.
    subjects = git(repo, "log", "--format=%s", REF).splitlines()
    assert len(subjects) == 5
    assert sorted(s.split(":")[0] for s in subjects[:2]) == ["db", "web"]
    # ... and the ref moved once for both.
    reflog = git(repo, "reflog", "show", "--format=%gs", REF).splitlines()
    assert len(reflog) == 4
    assert reflog[0].endswith("(+1 more)")
    observed = store.read_all()
    assert observed["web"] == results["web"]
    assert observed["db"] == results["db"]
    assert observed["cache"] == first["cache"]
    assert git(repo, "fsck", "--no-progress", "--no-dangling").strip() == ""


def test_concurrent_writers_lose_no_transition(repo: Path) -> None:
    store = GitStore(repo, fsync=False)
    workers = 8
    rounds = 5

    def worker(i: int) -> None:
        name = f"env-{i}"
        current = store.apply(name, None, created(name), from_state="none", desired_commit="c0ffee")
        for _ in range(rounds):
            after = created(name)
            current = store.apply(
                name, current.version, after, from_state=current.env.state_name, desired_commit="c0ffee"
            )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    history = pygit2.Repository(str(repo))
    tip = history.references[REF].target
    assert sum(1 for _ in history.walk(tip)) == workers * (rounds + 1)
    assert sorted(store.read_all()) == sorted(f"env-{i}" for i in range(workers))
