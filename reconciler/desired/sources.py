"""Where desired-state files come from: a git tree, or a work tree on disk.

Both answer the same questions (the files of a directory, a file's bytes, the
git object id of a repository path after following symlinks that stay inside
the repository), so loading and hashing do not care which one they read.
Object ids of a work tree are the ids git would give the same content, so a
plan of a work tree compares equal to the hashes recorded from commits.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pygit2

#: Symlinks followed while resolving one path, at most.
_MAX_LINK_HOPS = 40


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file in a directory of the repository: its name, content id and whether it is a symlink."""

    name: str
    blob_id: str
    is_link: bool = False


class PathEscape(Exception):
    """A repository path that leads outside the repository."""


def check_repo_path(value: str) -> str | None:
    """Why ``value`` is not a repository-relative path that stays inside, or ``None``."""
    if not value.strip():
        return "is empty; give a path relative to the repository root"
    if value.startswith(("/", "\\", "~")) or (len(value) > 1 and value[1] == ":"):
        return f"{value!r} is absolute; give a path relative to the repository root"
    normal = posixpath.normpath(value.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        return f"{value!r} leads outside the repository; give a path inside it"
    return None


def normalize(value: str) -> str:
    """``./infra//vm/`` -> ``infra/vm``; the root is ``.``."""
    return posixpath.normpath(value.replace("\\", "/"))


class TreeSource(Protocol):
    """The files of one revision of the repository."""

    def entries(self, directory: str) -> list[FileEntry]:
        """The regular files and symlinks directly in ``directory`` (none when it does not exist)."""
        ...

    def read(self, path: str, entry: FileEntry) -> bytes: ...

    def object_id(self, path: str) -> str | None:
        """The git id of the object at ``path`` (symlinks followed), ``None`` when missing.

        Raises ``PathEscape`` when a symlink leads outside the repository.
        """
        ...


class GitTreeSource:
    """The tree of one commit, read from the object database (never a checkout)."""

    def __init__(self, repo: pygit2.Repository, tree: pygit2.Tree) -> None:
        self.repo = repo
        self.tree = tree
        self._ids: dict[str, str | None] = {}

    def entries(self, directory: str) -> list[FileEntry]:
        try:
            sub = self.tree if directory in ("", ".") else self.tree[directory]
        except KeyError:
            return []
        if sub.type != pygit2.enums.ObjectType.TREE:
            return []
        tree = self.repo[sub.id]
        assert isinstance(tree, pygit2.Tree)
        out = []
        for entry in tree:
            mode = entry.filemode
            if mode == pygit2.enums.FileMode.LINK:
                out.append(FileEntry(entry.name or "", str(entry.id), True))
            elif mode in (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE):
                out.append(FileEntry(entry.name or "", str(entry.id)))
        return out

    def read(self, path: str, entry: FileEntry) -> bytes:
        # Straight from the object database: building a ``Blob`` first costs twice the read (issue 11).
        kind, data = self.repo.odb.read(entry.blob_id)
        assert kind == pygit2.enums.ObjectType.BLOB
        return data

    def subtree_id(self, directory: str) -> str | None:
        """The tree id of ``directory`` (no symlinks followed), ``None`` when it is not a directory."""
        try:
            sub = self.tree[directory]
        except KeyError:
            return None
        return str(sub.id) if sub.type == pygit2.enums.ObjectType.TREE else None

    def entry(self, directory: str, name: str) -> FileEntry | None:
        """``entries(directory)``'s entry called ``name``, without listing the directory."""
        try:
            found = self.tree[f"{directory}/{name}"]
        except KeyError:
            return None
        mode = found.filemode
        if mode == pygit2.enums.FileMode.LINK:
            return FileEntry(name, str(found.id), True)
        if mode in (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE):
            return FileEntry(name, str(found.id))
        return None

    def changed_names(self, old_tree: str, new_tree: str) -> set[str]:
        """Names directly in two versions of a directory whose entry differs (by a tree diff)."""
        old, new = self.repo[old_tree], self.repo[new_tree]
        assert isinstance(old, pygit2.Tree)
        assert isinstance(new, pygit2.Tree)
        names: set[str] = set()
        for delta in old.diff_to_tree(new).deltas:
            for path in (delta.old_file.path, delta.new_file.path):
                if path:
                    names.add(path.split("/", 1)[0])
        return names

    def object_id(self, path: str) -> str | None:
        if path in self._ids:
            return self._ids[path]
        oid = self._resolve(path)
        self._ids[path] = oid
        return oid

    def _resolve(self, path: str) -> str | None:
        pending = [p for p in normalize(path).split("/") if p not in ("", ".")]
        current: list[str] = []
        oid: str = str(self.tree.id)
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == "..":
                if not current:
                    raise PathEscape(f"{path!r} leads outside the repository")
                current.pop()
                oid = str(self.tree[("/".join(current))].id) if current else str(self.tree.id)
                continue
            obj = self.repo[oid]
            if not isinstance(obj, pygit2.Tree) or name not in obj:
                return None
            entry = obj[name]
            if entry.filemode == pygit2.enums.FileMode.LINK:
                hops += 1
                blob = self.repo[entry.id]
                assert isinstance(blob, pygit2.Blob)
                target = blob.data.decode("utf-8", "replace")
                if target.startswith("/") or hops > _MAX_LINK_HOPS:
                    raise PathEscape(f"{path!r} is a symlink to {target!r}, outside the repository")
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                # Resolution continues from the directory holding the link.
                oid = str(self.tree["/".join(current)].id) if current else str(self.tree.id)
                continue
            current.append(name)
            oid = str(entry.id)
        return oid


class WorkTreeSource:
    """Files on disk, for ``validate --worktree`` and ``plan --worktree``."""

    def __init__(self, root: Path, repo: pygit2.Repository | None = None) -> None:
        self.root = root.resolve()
        self.repo = repo
        self._ids: dict[str, str | None] = {}

    def entries(self, directory: str) -> list[FileEntry]:
        base = self.root / directory
        if not base.is_dir():
            return []
        out = []
        for child in sorted(base.iterdir()):
            if child.is_symlink():
                out.append(FileEntry(child.name, str(pygit2.hash(os.readlink(child).encode())), True))
            elif child.is_file():
                out.append(FileEntry(child.name, str(pygit2.hashfile(str(child)))))
        return out

    def read(self, path: str, entry: FileEntry) -> bytes:
        return (self.root / path).read_bytes()

    def object_id(self, path: str) -> str | None:
        if path in self._ids:
            return self._ids[path]
        target = (self.root / normalize(path)).resolve()
        if target != self.root and self.root not in target.parents:
            raise PathEscape(f"{path!r} leads outside the repository (to {target})")
        oid: str | None = None
        if target.is_file():
            oid = str(pygit2.hashfile(str(target)))
        elif target.is_dir():
            oid = self._tree_id(target)
        self._ids[path] = oid
        return oid

    def _ignored(self, path: Path, is_dir: bool) -> bool:
        if self.repo is None or self.repo.workdir is None:
            return False
        try:
            rel = path.relative_to(Path(self.repo.workdir).resolve()).as_posix()
        except ValueError:
            return False
        return bool(self.repo.path_is_ignored(rel + ("/" if is_dir else "")))

    def _tree_id(self, directory: Path) -> str | None:
        """The id git would give this directory's tree (ignored files and empty dirs left out)."""
        rows: list[tuple[bytes, bytes]] = []
        for child in directory.iterdir():
            if child.name == ".git":
                continue
            info = child.lstat()
            if stat.S_ISLNK(info.st_mode):
                mode, raw = b"120000", pygit2.hash(os.readlink(child).encode()).raw
                key = child.name
            elif stat.S_ISDIR(info.st_mode):
                if self._ignored(child, True):
                    continue
                sub = self._tree_id(child)
                if sub is None:
                    continue
                mode, raw, key = b"40000", bytes.fromhex(sub), child.name + "/"
            elif stat.S_ISREG(info.st_mode):
                if self._ignored(child, False):
                    continue
                mode = b"100755" if info.st_mode & stat.S_IXUSR else b"100644"
                raw, key = pygit2.hashfile(str(child)).raw, child.name
            else:
                continue
            rows.append((key.encode(), mode + b" " + child.name.encode() + b"\0" + raw))
        if not rows:
            return None
        body = b"".join(row for _, row in sorted(rows))
        return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()
