"""What libgit2 keeps cached for the state branch stays within its budget while the branch moves.

Each transition names a new root tree (40 bytes per environment) and only the
tip's is read again. libgit2 evicts by count, at random, so among the small
``<name>/`` trees a ``read_all`` cached, old root trees used to pile up past the
budget: the daemon's memory grew with every push (decision 027).
"""

from __future__ import annotations

import gc
import subprocess
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pygit2
import pytest

from reconciler.domain import Environment
from reconciler.store import GitStore, Observed
from reconciler.store.objectcache import clear

REF = "refs/heads/reconciler/state"
FLEET = 10_000
BUDGET = 1024 * 1024
T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def _document(name: str, minute: int = 0) -> bytes:
    env = Environment.create(name, desired_commit="c0ffee", at=T0 + timedelta(minutes=minute))
    return env.into_any().to_json().encode()


def _fleet(path: Path) -> Path:
    """A state branch of ``FLEET`` environments in one commit (a 360 KB root tree), by ``git fast-import``."""
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    lines = [f"commit {REF}", "committer t <t@localhost> 1764928800 +0000", "data 5", "fleet"]
    for i in range(FLEET):
        name = f"env-{i:05d}"
        document = _document(name)
        lines += [f"M 100644 inline {name}/state.json", f"data {len(document)}", document.decode()]
    stream = "\n".join(lines) + "\n"
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=stream.encode(), check=True)
    return path


@pytest.fixture
def small_budget() -> Iterator[None]:
    """libgit2's cache budget (process-wide) at 1 MiB for the test, as the daemon sets it; restored after."""
    gc.collect()  # repositories other tests left behind give their caches back
    allowed = pygit2.settings.cached_memory[1]
    pygit2.settings.cache_max_size(BUDGET)
    try:
        yield
    finally:
        pygit2.settings.cache_max_size(allowed)


def _cached() -> int:
    return int(pygit2.settings.cached_memory[0])


@pytest.mark.usefixtures("small_budget")
def test_old_root_trees_do_not_pile_up_in_the_cache(tmp_path: Path) -> None:
    store = GitStore(_fleet(tmp_path / "state.git"), REF, fsync=False)
    assert len(store.read_all()) == FLEET  # thousands of small trees cached, as in a daemon
    before = _cached()
    for k in range(20):
        name = f"env-{k * 37 % FLEET:05d}"
        observed = store.read(name)
        assert observed is not None
        after = Environment.create(name, desired_commit="c0ffee", at=T0 + timedelta(minutes=k + 1))
        store.apply(name, observed.version, after.into_any(), from_state="created", desired_commit="c0ffee")
        store.read(name)  # the new tip's root tree is parsed (and cached) by the next read
    # 20 root trees of 360 KB each were parsed on the way: without the clears about 6 MiB of them
    # stay cached, 5x the budget (decision 027); with them, what is cached is within the budget.
    assert _cached() - before <= BUDGET
    assert store.tip_cache.clears >= 1
    # Nothing read is lost: a fresh store reads the same states.
    fresh = GitStore(tmp_path / "state.git", REF, fsync=False)
    assert {n: o.version for n, o in store.read_all().items() if isinstance(o, Observed)} == {
        n: o.version for n, o in fresh.read_all().items() if isinstance(o, Observed)
    }


def test_clear_empties_only_that_repositorys_cache_and_leaves_caching_on(tmp_path: Path) -> None:
    path = _fleet(tmp_path / "state.git")
    kept, cleared = pygit2.Repository(str(path)), pygit2.Repository(str(path))
    tip = kept.references[REF].target
    for repo in (kept, cleared):
        root = repo[tip].peel(pygit2.Tree)
        assert len(root) == FLEET
    both = _cached()
    clear(cleared, tip)
    one = _cached()
    assert one < both  # the cleared repository's root tree (360 KB, raw and parsed) is gone
    assert len(cleared[tip].peel(pygit2.Tree)) == FLEET  # and read again as before
    assert _cached() > one  # caching is on again: that read was cached


def test_reading_the_same_states_again_keeps_no_more_memory(tmp_path: Path) -> None:
    """pygit2 keeps a reference to each key a tree is indexed with: reads must not keep one per read."""
    store = GitStore(_small_fleet(tmp_path / "state.git"), REF, fsync=False)
    names = [f"env-{i:05d}" for i in range(50)]

    def read_all_names() -> int:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for name in names:
            assert store.read("".join(name)) is not None  # a fresh string each time, as callers pass
        gc.collect()
        return int(tracemalloc.get_traced_memory()[0] - before)

    tracemalloc.start()
    try:
        read_all_names()  # the first pass may keep what the paths cost once
        kept = [read_all_names() for _ in range(20)]
    finally:
        tracemalloc.stop()
    # Before: ~70 bytes kept per read, 3.5 KB per pass.
    assert sum(kept) < 2_000, kept


def _small_fleet(path: Path) -> Path:
    repo = pygit2.init_repository(str(path), bare=True)
    root = repo.TreeBuilder()
    for i in range(50):
        name = f"env-{i:05d}"
        sub = repo.TreeBuilder()
        sub.insert("state.json", repo.create_blob(_document(name)), pygit2.GIT_FILEMODE_BLOB)
        root.insert(name, sub.write(), pygit2.GIT_FILEMODE_TREE)
    who = pygit2.Signature("t", "t@localhost")
    repo.create_commit(REF, who, who, "fleet", root.write(), [])
    return path
