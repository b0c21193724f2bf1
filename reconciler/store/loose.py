"""The state branch's ``<name>/`` trees and ``state.json`` blobs read straight from their loose files.

Every transition commit writes them as loose objects, so a cold ``reconcile plan``
or a daemon's first ``read_all`` reads two per environment. libgit2 spends
~14 µs on each (it asks the pack backend first, stats the file, reads it,
inflates it and hashes it with SHA-1DC); reading the file here with three
system calls, ``zlib`` and OpenSSL's SHA-1 costs ~9 µs (issue 11, decision 030).

Only the common case is read here: a loose SHA-1 object of the expected type,
whole, whose content hashes to its id, and a ``<name>/`` tree whose
``state.json`` is a regular file. For anything else (a packed object, a
SHA-256 repository, a damaged file, another tree shape) the reader answers
``None`` and the caller reads the object through libgit2 exactly as before,
so every refusal and every error is still libgit2's.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

#: A ``state.json`` is a few hundred bytes; a larger file is left to libgit2 (it reads any size).
MAX_COMPRESSED = 1 << 16
MAX_INFLATED = 1 << 20
#: After this many misses, four times the hits or more (``git gc`` packed them), only libgit2 is asked.
MAX_MISSES = 64
_SHA1_HEX = 40
_SHA1_RAW = 20
_REGULAR_FILE = b"100644"


def objects_dir(git_dir: str | os.PathLike[str]) -> str | None:
    """The loose object directory of the repository at ``git_dir`` (a linked worktree's common one)."""
    path = Path(git_dir)
    try:
        common = (path / "commondir").read_text().strip()
    except (OSError, UnicodeDecodeError):
        common = ""
    if common:
        path = path / common
    objects = path / "objects"
    return str(objects) if objects.is_dir() else None


class DamagedObject(ValueError):
    """A loose object file whose compressed data ends early: libgit2 1.9 loops forever reading one."""


class LooseObjects:
    """Reads verified loose objects of one repository; ``None`` means "ask libgit2"."""

    __slots__ = ("_dir", "hits", "misses")

    def __init__(self, git_dir: str | os.PathLike[str]) -> None:
        self._dir = objects_dir(git_dir)
        #: How many objects were read here, and how many were left to libgit2.
        self.hits = 0
        self.misses = 0

    def read(self, oid: str, kind: bytes) -> bytes | None:
        """The content of the loose object ``oid`` when it is a whole, verified ``kind`` (``b"blob"``).

        Raises ``DamagedObject`` for a file cut short (git writes a loose object to a
        temporary file and renames it, so that is damage, never a write in progress):
        left to libgit2, the read would never return.
        """
        if self._dir is None or len(oid) != _SHA1_HEX or self._packed():
            return None
        content = self._read(oid, kind)
        if content is None:
            self.misses += 1
        else:
            self.hits += 1
        return content

    def _packed(self) -> bool:
        """Whether most objects turned out not to be loose (``git gc`` packed them): stop looking."""
        return self.misses > MAX_MISSES and self.misses > 4 * self.hits

    def _read(self, oid: str, kind: bytes) -> bytes | None:
        path = f"{self._dir}/{oid[:2]}/{oid[2:]}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            compressed = os.read(fd, MAX_COMPRESSED)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(compressed) >= MAX_COMPRESSED:
            return None
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(compressed, MAX_INFLATED)
        except zlib.error:
            return None
        if inflater.unconsumed_tail:
            return None  # larger than a state: libgit2 reads it
        if not inflater.eof:
            if _size(path) != len(compressed):
                return None  # a short read (a network filesystem), not a short file: libgit2 reads it
            raise DamagedObject(f"object {oid} is damaged: its compressed data ends early")
        header, nul, content = raw.partition(b"\0")
        if not nul or header != b"%s %d" % (kind, len(content)):
            return None
        if hashlib.sha1(raw, usedforsecurity=False).hexdigest() != oid:
            return None
        return content


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def regular_file_id(tree: bytes, name: bytes) -> str | None:
    """The blob id of ``name`` in the content of a SHA-1 tree when it is a regular file.

    ``None`` when the tree has no such entry, when the entry is anything but a regular
    file, or when the tree does not parse: the caller then asks libgit2.
    """
    pos = 0
    end = len(tree)
    found: str | None = None
    while pos < end:
        space = tree.find(b" ", pos)
        nul = tree.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 1 + _SHA1_RAW > end:
            return None
        if tree[space + 1 : nul] == name:
            if tree[pos:space] != _REGULAR_FILE:
                return None
            found = tree[nul + 1 : nul + 1 + _SHA1_RAW].hex()
        pos = nul + 1 + _SHA1_RAW
    return found
