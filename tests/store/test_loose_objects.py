"""The state branch read from loose files gives exactly what libgit2 gives, or leaves it to libgit2."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.store import CorruptState, GitStore, Observed
from reconciler.store import git as git_module
from reconciler.store.loose import LooseObjects, regular_file_id
from tests.conftest import git
from tests.store.kit import created, plant_corrupt

REF = "refs/heads/reconciler/state"


def _libgit2_only(path: Path) -> dict[str, Observed | CorruptState]:
    """``read_all`` of a fresh store that never reads a loose file itself."""
    git_module._PARSED.clear()
    store = GitStore(path, fsync=False)
    store._loose = LooseObjects(path / "no-such-git-dir")
    return store.read_all()


def _fresh(path: Path) -> tuple[GitStore, dict[str, Observed | CorruptState]]:
    git_module._PARSED.clear()
    store = GitStore(path, fsync=False)
    return store, store.read_all()


def _add_tree(repo_path: Path, name: str, entries: dict[str, tuple[int, bytes | None]]) -> None:
    """Commit ``<name>/`` holding ``entries`` (file name -> mode and content; ``None``: a directory)."""
    repo = pygit2.Repository(str(repo_path))
    builder = repo.TreeBuilder()
    for file, (mode, data) in entries.items():
        if data is None:
            inner = repo.TreeBuilder()
            inner.insert("inside", repo.create_blob(b"{}"), pygit2.GIT_FILEMODE_BLOB)
            oid = inner.write()
        else:
            oid = repo.create_blob(data)
        builder.insert(file, oid, mode)
    tip = repo.references[REF].peel(pygit2.Commit)
    root = repo.TreeBuilder(tip.tree)
    root.insert(name, builder.write(), pygit2.GIT_FILEMODE_TREE)
    signature = pygit2.Signature("test", "test@localhost")
    repo.create_commit(REF, signature, signature, f"odd {name}", root.write(), [tip.id])


@pytest.fixture
def branch(repo: Path) -> Path:
    """A state branch with ordinary states and every odd ``<name>/`` tree a hand edit can make."""
    store = GitStore(repo, fsync=False)
    for name in ("web", "db", "cache"):
        store.apply(name, None, created(name), from_state="none", desired_commit="c0ffee")
    document = created("extra").to_json().encode()
    _add_tree(
        repo, "extra", {"state.json": (pygit2.GIT_FILEMODE_BLOB, document), "notes.txt": (0o100644, b"x")}
    )
    _add_tree(
        repo,
        "exec",
        {"state.json": (pygit2.GIT_FILEMODE_BLOB_EXECUTABLE, created("exec").to_json().encode())},
    )
    _add_tree(repo, "link", {"state.json": (pygit2.GIT_FILEMODE_LINK, b"../web/state.json")})
    _add_tree(repo, "dir", {"state.json": (pygit2.GIT_FILEMODE_TREE, None)})
    _add_tree(repo, "empty", {"notes.txt": (pygit2.GIT_FILEMODE_BLOB, b"no state here")})
    plant_corrupt(f"git:{repo}", "broken", '{"schema": 1, "name": "broken"')
    plant_corrupt(f"git:{repo}", "other", created("web").to_json())
    return repo


def test_every_state_reads_as_libgit2_reads_it(branch: Path) -> None:
    store, found = _fresh(branch)
    assert found == _libgit2_only(branch)
    assert sorted(found) == ["broken", "cache", "db", "dir", "exec", "extra", "link", "other", "web"]
    assert isinstance(found["web"], Observed) and found["web"].env == created("web")
    assert isinstance(found["dir"], CorruptState) and "not a file" in found["dir"].error
    assert isinstance(found["other"], CorruptState) and "names environment 'web'" in found["other"].error
    # The common shape was read from its loose files, not only left to libgit2.
    assert store._loose.hits >= 2 * 5
    lazily = GitStore(branch, fsync=False).read_lazily()
    assert {name: lazily[name] for name in lazily if name != "empty"} == found


def test_a_packed_branch_reads_the_same(branch: Path) -> None:
    before = _libgit2_only(branch)
    git(branch, "gc", "-q", "--prune=now")
    store, found = _fresh(branch)
    assert found == before
    assert store._loose.hits == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: zlib.compress(b"blob 3\0abc"), id="other-content"),
        pytest.param(lambda data: b"not zlib at all", id="garbage"),
    ],
)
def test_a_damaged_loose_state_is_libgit2s_error(repo: Path, damage: object) -> None:
    store = GitStore(repo, fsync=False)
    web = store.apply("web", None, created("web"), from_state="none", desired_commit="c0ffee")
    assert web.version is not None
    path = repo / ".git" / "objects" / web.version[:2] / web.version[2:]
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(damage(data))  # type: ignore[operator]
    with pytest.raises(pygit2.GitError) as libgit2:
        _libgit2_only(repo)
    with pytest.raises(pygit2.GitError) as ours:
        _fresh(repo)
    assert str(ours.value) == str(libgit2.value)


@pytest.mark.parametrize("what", ["state", "tree"])
def test_a_loose_object_cut_short_is_reported_not_read_forever(repo: Path, what: str) -> None:
    # libgit2 1.9 never returns from reading a loose object whose zlib stream ends early.
    store = GitStore(repo, fsync=False)
    store.apply("db", None, created("db"), from_state="none", desired_commit="c0ffee")
    web = store.apply("web", None, created("web"), from_state="none", desired_commit="c0ffee")
    assert web.version is not None
    tree = pygit2.Repository(str(repo)).revparse_single(f"{REF}:web").id
    oid = web.version if what == "state" else str(tree)
    path = repo / ".git" / "objects" / oid[:2] / oid[2:]
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[: len(data) // 2])
    _, found = _fresh(repo)
    assert isinstance(found["db"], Observed)
    damaged = found["web"]
    assert isinstance(damaged, CorruptState)
    assert damaged.path == f"{REF}:web/state.json"
    assert damaged.error == f"object {oid} is damaged: its compressed data ends early"


def test_a_linked_worktree_reads_the_common_objects(repo: Path, tmp_path: Path) -> None:
    store = GitStore(repo, fsync=False)
    store.apply("web", None, created("web"), from_state="none", desired_commit="c0ffee")
    git(repo, "worktree", "add", "-q", str(tmp_path / "linked"))
    linked, found = _fresh(tmp_path / "linked")
    assert found == _libgit2_only(repo)
    assert linked._loose.hits == 2


NAMES = st.text(alphabet="abs.jno-_", min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))
MODES = st.sampled_from(
    [
        pygit2.GIT_FILEMODE_BLOB,
        pygit2.GIT_FILEMODE_BLOB_EXECUTABLE,
        pygit2.GIT_FILEMODE_LINK,
        pygit2.GIT_FILEMODE_TREE,
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    entries=st.dictionaries(st.one_of(NAMES, st.just("state.json")), MODES, max_size=6),
    cut=st.integers(0, 40),
)
def test_a_tree_entry_is_found_as_libgit2_finds_it(
    tmp_path_factory: pytest.TempPathFactory, entries: dict[str, int], cut: int
) -> None:
    repo = pygit2.init_repository(str(tmp_path_factory.mktemp("trees")), bare=True)
    builder = repo.TreeBuilder()
    for name, mode in entries.items():
        oid = (
            repo.TreeBuilder().write()
            if mode == pygit2.GIT_FILEMODE_TREE
            else repo.create_blob(name.encode())
        )
        builder.insert(name, oid, mode)
    tree = repo[builder.write()]
    assert isinstance(tree, pygit2.Tree)
    content = repo.odb.read(tree.id)[1]
    entry = tree["state.json"] if "state.json" in entries else None
    regular = entry is not None and entries["state.json"] == pygit2.GIT_FILEMODE_BLOB
    assert regular_file_id(content, b"state.json") == (str(entry.id) if regular and entry else None)
    # A tree cut short never yields an id it does not hold whole.
    if cut and content:
        short = content[: max(0, len(content) - cut)]
        found = regular_file_id(short, b"state.json")
        assert found is None or (regular and entry is not None and found == str(entry.id))
        assert found is None or bytes.fromhex(found) in short


def test_objects_elsewhere_are_left_to_libgit2(tmp_path: Path) -> None:
    loose = LooseObjects(tmp_path / "nowhere")
    assert loose.read("0" * 40, b"blob") is None
    assert loose.read("0" * 64, b"blob") is None
    assert not os.path.exists(tmp_path / "nowhere")
