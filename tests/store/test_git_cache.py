"""``GitStore.read_all`` parses each ``<name>/`` tree once and gives what a fresh store gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest

from reconciler.domain import Phase
from reconciler.domain.dispatch import start_phase
from reconciler.store import CorruptState, GitStore, Observed
from reconciler.store import git as git_module
from reconciler.store.lock import new_lock
from tests.store.kit import T0, created, plant_corrupt

REF = "refs/heads/reconciler/state"


def _count_parses(store: GitStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ``state.json`` parsed, whether read from its loose file or through libgit2."""
    parsed: list[str] = []
    original: Callable[[str, str, bytes], Observed | CorruptState] = store._parse_data

    def counting(name: str, blob_id: str, data: bytes) -> Observed | CorruptState:
        parsed.append(name)
        return original(name, blob_id, data)

    monkeypatch.setattr(store, "_parse_data", counting)
    return parsed


def _uncached(repo: Path) -> dict[str, Observed | CorruptState]:
    """What a store that never read the branch before finds."""
    git_module._PARSED.clear()
    return GitStore(repo, fsync=False).read_all()


def _three(store: GitStore) -> Observed:
    web = store.apply("web", None, created("web"), from_state="none", desired_commit="c0ffee")
    store.apply("db", None, created("db"), from_state="none", desired_commit="c0ffee")
    store.apply("cache", None, created("cache"), from_state="none", desired_commit="c0ffee")
    return web


def test_a_repeated_read_all_parses_only_what_changed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = GitStore(repo, fsync=False)
    web = _three(store)
    parsed = _count_parses(store, monkeypatch)

    first = store.read_all()
    assert sorted(parsed) == ["cache", "db", "web"]
    parsed.clear()
    assert store.read_all() == first
    assert parsed == []

    started = store.apply(
        "web",
        web.version,
        start_phase(web.env, Phase.PROVISION, lock=new_lock(60, 30, T0), at=T0),
        from_state="created",
        desired_commit="c0ffee",
    )
    parsed.clear()  # ``apply`` reads the document it replaces
    again = store.read_all()
    assert parsed == ["web"]
    assert again["web"] == started
    assert again == _uncached(repo)
    assert list(again) == ["cache", "db", "web"]


def test_a_corrupt_document_is_reported_on_every_read_all(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = GitStore(repo, fsync=False)
    _three(store)
    store.read_all()
    plant_corrupt(f"git:{repo}", "db", '{"schema": 1, "name": "db", "state": "flying"')
    parsed = _count_parses(store, monkeypatch)

    first = store.read_all()
    second = store.read_all()
    assert parsed == ["db"]
    for result in (first, second):
        assert isinstance(result["db"], CorruptState)
        assert isinstance(result["web"], Observed)
    assert first["db"] == second["db"] == _uncached(repo)["db"]


def test_the_same_tree_under_another_name_is_still_refused(repo: Path) -> None:
    store = GitStore(repo, fsync=False)
    _three(store)
    assert isinstance(store.read_all()["web"], Observed)

    # A hand-made commit that files web's tree (same id) under a second name as well.
    git_repo = pygit2.Repository(str(repo))
    tip = git_repo.references[REF].peel(pygit2.Commit)
    builder = git_repo.TreeBuilder(tip.tree)
    builder.insert("web2", tip.tree["web"].id, pygit2.GIT_FILEMODE_TREE)
    signature = pygit2.Signature("t", "t@localhost", 0, 0)
    git_repo.create_commit(REF, signature, signature, "copy web", builder.write(), [tip.id])

    found = store.read_all()
    copy = found["web2"]
    assert isinstance(copy, CorruptState)
    assert "document names environment 'web'" in copy.error
    assert isinstance(found["web"], Observed)


def test_an_environment_removed_from_the_branch_is_gone(repo: Path) -> None:
    store = GitStore(repo, fsync=False)
    _three(store)
    assert set(store.read_all()) == {"web", "db", "cache"}

    git_repo = pygit2.Repository(str(repo))
    tip = git_repo.references[REF].peel(pygit2.Commit)
    builder = git_repo.TreeBuilder(tip.tree)
    builder.remove("db")
    signature = pygit2.Signature("t", "t@localhost", 0, 0)
    git_repo.create_commit(REF, signature, signature, "drop db", builder.write(), [tip.id])

    assert set(store.read_all()) == {"web", "cache"}


def test_every_store_on_the_branch_shares_the_parses(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = GitStore(repo, fsync=False)
    _three(first)
    found = first.read_all()
    second = GitStore(repo, fsync=False)
    parsed = _count_parses(second, monkeypatch)
    again = second.read_all()
    assert parsed == []
    assert again == found
    assert all(again[name] is found[name] for name in found)
    other_ref = GitStore(repo, "refs/heads/elsewhere", fsync=False)
    assert other_ref.read_all() == {}


def test_a_lazy_read_gives_what_read_all_gives_and_parses_only_what_is_asked(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = GitStore(repo, fsync=False)
    _three(store)
    plant_corrupt(f"git:{repo}", "db", "{not json")
    everything = _uncached(repo)
    lazy = GitStore(repo, fsync=False)
    parsed = _count_parses(lazy, monkeypatch)
    tree = lazy.read_lazily()
    assert list(tree) == ["cache", "db", "web"] and parsed == []
    assert tree.version("web") is not None and tree.version("gone") is None
    assert tree["web"] == everything["web"]
    assert parsed == ["web"]
    assert isinstance(tree["db"], CorruptState) and tree["db"] == everything["db"]
    assert tree.get("gone") is None
    assert dict(tree) == everything
    assert sorted(parsed) == ["cache", "db", "web"]  # each parsed once
