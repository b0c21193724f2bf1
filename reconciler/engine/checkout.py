"""Exports of desired commits: steps run in these, never in the user's work tree.

Each commit is exported once into ``<data>/checkouts/<sha>`` (built in a
temporary directory and renamed into place, so a half-written export is never
used) and shared by every environment that applies that commit.

Writing every file of a large repository for each new commit made an export
cost the whole fleet (10,000 environment files: seconds) for a push that
changed one file. So a new export is made from the newest export nobody is
using: it is renamed aside, brought back to exactly its commit's tree (files
the steps added or changed are removed or rewritten), then the tree diff to the
new commit is applied: work in proportion to what changed, plus one ``lstat``
per file. ``checkout`` holds a shared ``flock`` lease on an export while steps
run in it (across processes sharing the data dir), and an export is taken
over only under an exclusive one, so none is ever changed under a running
step. See docs/decisions/014-wake-by-difference.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pygit2

_lock = threading.Lock()

#: How many exports to keep; older ones are removed when a new one is made.
KEEP_CHECKOUTS = 8


@contextlib.contextmanager
def checkout(repo: pygit2.Repository, commit: str, data_dir: Path) -> Iterator[Path]:
    """``commit``'s tree exported, under a lease that keeps it from being reused until the block ends."""
    root = data_dir / "checkouts"
    root.mkdir(parents=True, exist_ok=True)
    fd = _lease(_lease_path(root, commit), fcntl.LOCK_SH)
    assert fd is not None  # a blocking lock is always had
    try:
        yield ensure_checkout(repo, commit, data_dir)
    finally:
        os.close(fd)  # releases the lease


def _lease(path: Path, how: int, *, create: bool = True) -> int | None:
    """An open ``flock``'d file descriptor on ``path``; ``None`` when it is held elsewhere (``LOCK_NB``).

    The file may be removed (an export taken over) between opening and locking:
    a lock is kept only on the file that is still at ``path``.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)
        if not create:
            return None


def ensure_checkout(repo: pygit2.Repository, commit: str, data_dir: Path) -> Path:
    """The directory holding ``commit``'s tree, exporting it if needed."""
    root = data_dir / "checkouts"
    target = root / commit
    if target.is_dir():
        return target
    with _lock:
        if target.is_dir():
            return target
        root.mkdir(parents=True, exist_ok=True)
        new_tree = repo.revparse_single(commit).peel(pygit2.Commit).tree
        tmp = _reuse(repo, root, commit, new_tree)
        if tmp is None:
            tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=root))
            _export_tree(repo, new_tree, tmp)
        _seal(root, commit)
        try:
            tmp.rename(target)
        except OSError:
            # Another process exported it first: theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
        _prune(root, keep=target)
    return target


def _lease_path(root: Path, commit: str) -> Path:
    return root / f".{commit}.lease"


def _seal(root: Path, commit: str) -> None:
    """Mark ``commit``'s export complete, by the lease file's time stamp.

    The kernel stamps it with the clock that stamped the export's files, so a
    file stamped later or at the same tick was changed by a step (or is
    rewritten to be safe).
    """
    fd = os.open(_lease_path(root, commit), os.O_WRONLY | os.O_CREAT, 0o644)  # the same file: leases stay
    try:
        os.ftruncate(fd, 0)
        os.write(fd, b"sealed\n")
    finally:
        os.close(fd)


def _sealed_at(root: Path, commit: str) -> int | None:
    """The time stamp ``_seal`` left, ``None`` for an export that was never sealed."""
    try:
        info = os.stat(_lease_path(root, commit))
    except OSError:
        return None
    return info.st_mtime_ns if info.st_size > 0 else None


def _reuse(repo: pygit2.Repository, root: Path, commit: str, new_tree: pygit2.Tree) -> Path | None:
    """The newest idle export, renamed aside and turned into ``commit``'s tree; ``None`` if there is none."""
    exports = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in exports:
        try:
            old_tree = repo.revparse_single(old.name).peel(pygit2.Commit).tree
        except (KeyError, ValueError, pygit2.GitError):
            continue
        sealed = _sealed_at(root, old.name)
        if sealed is None:
            continue
        lease = _lease_path(root, old.name)
        fd = _lease(lease, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False)
        if fd is None:
            continue  # steps run in it now
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=root))
            tmp.rmdir()
            try:
                old.rename(tmp)
            except OSError:
                continue
            lease.unlink(missing_ok=True)  # while held: a waiting user sees it gone and looks again
        finally:
            os.close(fd)
        try:
            _restore(repo, old_tree, tmp, sealed)
            _apply_diff(repo, old_tree, new_tree, tmp)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        return tmp
    return None


def _files(
    repo: pygit2.Repository, tree: pygit2.Tree, prefix: str = ""
) -> Iterator[tuple[str, pygit2.Object]]:
    """Every entry of ``tree`` but subtrees, by path (``a/b/c``), recursively."""
    for entry in tree:
        path = f"{prefix}{entry.name}"
        if entry.filemode == pygit2.enums.FileMode.TREE:
            sub = repo[entry.id]
            assert isinstance(sub, pygit2.Tree)
            yield from _files(repo, sub, path + "/")
        else:
            yield path, entry


def _restore(repo: pygit2.Repository, tree: pygit2.Tree, dest: Path, sealed: int) -> None:
    """Make ``dest`` exactly ``tree`` again: remove what steps added, rewrite what they changed or removed."""
    expected = dict(_files(repo, tree))
    directories: set[str] = set()
    for rel in expected:
        cut = rel.rfind("/")
        while cut > 0 and rel[:cut] not in directories:
            directories.add(rel[:cut])
            cut = rel.rfind("/", 0, cut)
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(dest):
        rel_dir = os.path.relpath(dirpath, dest)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for name in list(dirnames):
            rel = rel_dir + name
            full = os.path.join(dirpath, name)
            entry = expected.get(rel)
            if entry is not None and entry.filemode == pygit2.enums.FileMode.COMMIT:
                seen.add(rel)
                dirnames.remove(name)  # a submodule: an empty directory, whatever a step put there
                shutil.rmtree(full, ignore_errors=True)
                os.mkdir(full)
            elif os.path.islink(full):
                dirnames.remove(name)
                filenames.append(name)
            elif entry is not None or rel not in directories:  # a step's directory
                dirnames.remove(name)
                shutil.rmtree(full)
        for name in filenames:
            rel = rel_dir + name
            full = os.path.join(dirpath, name)
            entry = expected.get(rel)
            if entry is None or os.lstat(full).st_mtime_ns >= sealed:
                os.unlink(full)  # not in the tree, or touched since the export: rewritten below
            else:
                seen.add(rel)
    for rel, entry in expected.items():
        if rel not in seen:
            _write(repo, entry, dest / rel)


def _apply_diff(repo: pygit2.Repository, old: pygit2.Tree, new: pygit2.Tree, dest: Path) -> None:
    """Turn ``dest`` (``old``'s tree) into ``new``'s tree, touching only the paths that differ."""
    deltas = list(old.diff_to_tree(new).deltas)
    for delta in deltas:  # removals first: a file may give way to a directory of the same name
        if delta.status in (pygit2.enums.DeltaStatus.DELETED, pygit2.enums.DeltaStatus.TYPECHANGE):
            path = dest / delta.old_file.path
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            _remove_empty_parents(path.parent, dest)
    for delta in deltas:
        if delta.status is not pygit2.enums.DeltaStatus.DELETED:
            _write(repo, new[delta.new_file.path], dest / delta.new_file.path)


def _remove_empty_parents(directory: Path, top: Path) -> None:
    while directory != top and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _write(repo: pygit2.Repository, entry: pygit2.Object, path: Path) -> None:
    """One tree entry (not a subtree) at ``path``, replacing whatever is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    mode = entry.filemode
    if mode == pygit2.enums.FileMode.COMMIT:
        path.mkdir()
        return
    blob = repo[entry.id]
    assert isinstance(blob, pygit2.Blob)
    if mode == pygit2.enums.FileMode.LINK:
        os.symlink(blob.data.decode("utf-8", "surrogateescape"), path)
        return
    path.write_bytes(blob.data)
    if mode == pygit2.enums.FileMode.BLOB_EXECUTABLE:
        path.chmod(0o755)


def _export_tree(repo: pygit2.Repository, tree: pygit2.Tree, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in tree:
        path = dest / (entry.name or "")
        if entry.filemode == pygit2.enums.FileMode.TREE:
            sub = repo[entry.id]
            assert isinstance(sub, pygit2.Tree)
            _export_tree(repo, sub, path)
        elif entry.filemode == pygit2.enums.FileMode.LINK:
            blob = repo[entry.id]
            assert isinstance(blob, pygit2.Blob)
            os.symlink(blob.data.decode("utf-8", "surrogateescape"), path)
        elif entry.filemode == pygit2.enums.FileMode.COMMIT:
            path.mkdir(exist_ok=True)  # a submodule: not exported
        else:
            blob = repo[entry.id]
            assert isinstance(blob, pygit2.Blob)
            path.write_bytes(blob.data)
            if entry.filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE:
                path.chmod(0o755)


def _prune(root: Path, keep: Path) -> None:
    exports = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in exports[KEEP_CHECKOUTS:]:
        if old == keep:
            continue
        lease = _lease_path(root, old.name)
        fd = _lease(lease, fcntl.LOCK_EX | fcntl.LOCK_NB, create=False) if lease.exists() else None
        if fd is None and lease.exists():
            continue  # steps still run in it: the next export's pruning looks again
        try:
            shutil.rmtree(old, ignore_errors=True)
            lease.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
