"""The state branch's root tree, spliced one entry at a time, is exactly the tree libgit2 would build."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.store.roottree import STORE_UNCOMPRESSED_BYTES, RootTrees

# Names whose order in a tree is easy to get wrong: a directory sorts as if it ended in "/".
TRICKY = ["a", "a-b", "a.b", "a0", "a_b", "ab", "b", "A", "z", "a-", "a/"[:-1] + "~", "é"]


def repo_at(path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(path), bare=True)


def subtree(repo: pygit2.Repository, text: str) -> pygit2.Oid:
    builder = repo.TreeBuilder()
    builder.insert("state.json", repo.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    return builder.write()


def built_by_libgit2(
    repo: pygit2.Repository, base: pygit2.Oid | None, name: str, sub: pygit2.Oid
) -> pygit2.Oid:
    builder = repo.TreeBuilder(repo[base]) if base is not None else repo.TreeBuilder()
    builder.insert(name, sub, pygit2.GIT_FILEMODE_TREE)
    return builder.write()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TRICKY), st.integers(0, 3)), min_size=1, max_size=25))
def test_every_splice_gives_the_id_treebuilder_gives(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    repo = repo_at(tmp_path_factory.mktemp("repo"))
    trees = RootTrees(repo)
    ours: pygit2.Oid | None = None
    theirs: pygit2.Oid | None = None
    for name, version in ops:
        sub = subtree(repo, f"{name} {version}")
        ours = trees.with_directory(ours, name, sub)
        theirs = built_by_libgit2(repo, theirs, name, sub)
        assert ours == theirs


def test_a_tree_with_files_and_foreign_entries_is_spliced_in_git_order(tmp_path: Path) -> None:
    """A root tree someone else wrote (a file at the top, other directories) is read, then spliced."""
    repo = repo_at(tmp_path / "repo")
    builder = repo.TreeBuilder()
    builder.insert("README", repo.create_blob(b"hi"), pygit2.GIT_FILEMODE_BLOB)
    builder.insert("a-b", subtree(repo, "x"), pygit2.GIT_FILEMODE_TREE)
    builder.insert("a", repo.create_blob(b"a file named like a directory"), pygit2.GIT_FILEMODE_BLOB)
    base = builder.write()
    sub = subtree(repo, "new")
    for name in ("a", "a.b", "README2", "a-b"):
        assert RootTrees(repo).with_directory(base, name, sub) == built_by_libgit2(repo, base, name, sub)


def test_a_large_root_tree_is_written_uncompressed_and_git_reads_it(tmp_path: Path) -> None:
    names = [f"env-{i:05d}" for i in range(2000)]  # 2000 entries of ~37 bytes: past the threshold
    reference = repo_at(tmp_path / "reference")
    expected: pygit2.Oid | None = None
    for name in names:
        expected = built_by_libgit2(reference, expected, name, subtree(reference, "same"))
    repo = repo_at(tmp_path / "repo")
    sub = subtree(repo, "same")
    builder = repo.TreeBuilder()
    for name in names[:-1]:
        builder.insert(name, sub, pygit2.GIT_FILEMODE_TREE)
    ours = RootTrees(repo).with_directory(builder.write(), names[-1], sub)
    assert ours == expected
    loose = tmp_path / "repo" / "objects" / str(ours)[:2] / str(ours)[2:]
    assert loose.stat().st_size >= STORE_UNCOMPRESSED_BYTES, "written by us, stored without compression"
    sig = pygit2.Signature("t", "t@localhost", 0, 0)
    repo.create_commit("refs/heads/state", sig, sig, "m", ours, [])
    git_dir = str(tmp_path / "repo")
    listed = subprocess.run(
        ["git", "--git-dir", git_dir, "ls-tree", "--name-only", "state"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == names
    fsck = subprocess.run(
        ["git", "--git-dir", git_dir, "fsck", "--strict"], capture_output=True, text=True, check=False
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
