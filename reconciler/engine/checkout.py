"""Exports of desired commits: steps run in these, never in the user's work tree.

Each commit is exported once into ``<data>/checkouts/<sha>`` (built in a
temporary directory and renamed into place, so a half-written export is never
used) and shared by every environment that applies that commit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pygit2

_lock = threading.Lock()

#: How many exports to keep; older ones are removed when a new one is made.
KEEP_CHECKOUTS = 8


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
        tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=root))
        obj = repo.revparse_single(commit).peel(pygit2.Commit)
        _export_tree(repo, obj.tree, tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process exported it first: theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
        _prune(root, keep=target)
    return target


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
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
