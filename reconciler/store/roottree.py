"""The state branch's root tree, rewritten one entry at a time without rebuilding it.

Every transition commit names a new root tree: the previous one with one
``<name>/`` entry changed. With 10,000 environments that tree is 360 KB, and
libgit2's ``TreeBuilder`` copies all 10,000 entries into a map, sorts and
serializes them again for each commit (about 8 ms of a 12 ms commit). Here
the raw entries of the last root tree are kept in git's order, and a new tree
is the old one with one entry replaced or inserted (a binary search and a
list splice), serialized with one ``join``. The object written is byte for
byte what ``TreeBuilder`` writes (tests compare the ids).

A tree object is ``<mode> <name>\\0<20-byte id>`` entries, sorted by name as
bytes, a directory's name compared as if it ended in ``/``.

The other half of that cost was deflating the tree (its 10,000 ids are random
bytes that do not compress: 360 KB become 240 KB, for ~6 ms). A large root
tree is written as a loose object stored without compression (zlib level 0,
a valid object for git and libgit2 alike), made durable by the store's
barrier like every other object. It costs disk until git packs it (``git gc``
delta-compresses these trees against each other far better than zlib could).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import pygit2

#: The mode git writes for a directory entry (no leading zero).
TREE_MODE = b"40000"

#: A tree at least this large is written uncompressed (smaller ones are not worth the disk).
STORE_UNCOMPRESSED_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Entries:
    tree_id: pygit2.Oid
    #: Each entry's sort key (its name, ``/`` appended for a directory), in git's order.
    keys: list[bytes]
    #: Each entry's raw bytes, in the same order.
    chunks: list[bytes]


def _parse(raw: bytes, tree_id: pygit2.Oid) -> _Entries:
    keys: list[bytes] = []
    chunks: list[bytes] = []
    pos, end = 0, len(raw)
    while pos < end:
        space = raw.index(b" ", pos)
        nul = raw.index(b"\0", space)
        stop = nul + 21
        if stop > end:
            raise ValueError(f"tree {tree_id}: truncated entry at byte {pos}")
        name = raw[space + 1 : nul]
        keys.append(name + b"/" if raw[pos:space] == TREE_MODE else name)
        chunks.append(raw[pos:stop])
        pos = stop
    return _Entries(tree_id, keys, chunks)


class RootTrees:
    """Writes root trees that differ from a recent one by one directory entry."""

    def __init__(self, repo: pygit2.Repository, *, per_file_fsync: bool = False) -> None:
        self._repo = repo
        self._objects = Path(repo.path) / "objects"
        #: libgit2 writes (and fsyncs) every object itself when the store asks for per-file fsyncs.
        self._own_writes = not per_file_fsync
        self._last: _Entries | None = None
        self._lock = threading.Lock()

    def _entries(self, tree_id: pygit2.Oid) -> _Entries:
        last = self._last
        if last is not None and last.tree_id == tree_id:
            return last
        kind, raw = self._repo.odb.read(tree_id)
        if kind != pygit2.enums.ObjectType.TREE:
            raise ValueError(f"{tree_id} is not a tree")
        return _parse(raw, tree_id)

    def with_directory(self, base: pygit2.Oid | None, name: str, subtree: pygit2.Oid) -> pygit2.Oid:
        """Write the tree ``base`` (``None``: empty) with directory ``name`` set to ``subtree``."""
        with self._lock:
            entries = _Entries(pygit2.Oid(raw=bytes(20)), [], []) if base is None else self._entries(base)
            encoded = name.encode()
            key = encoded + b"/"
            chunk = TREE_MODE + b" " + encoded + b"\0" + subtree.raw
            keys, chunks = list(entries.keys), list(entries.chunks)
            file_at = bisect.bisect_left(keys, encoded)
            if file_at < len(keys) and keys[file_at] == encoded:
                del keys[file_at], chunks[file_at]  # a file of that name is replaced, as TreeBuilder does
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                chunks[at] = chunk
            else:
                keys.insert(at, key)
                chunks.insert(at, chunk)
            tree_id = self._write(b"".join(chunks))
            self._last = _Entries(tree_id, keys, chunks)
            return tree_id

    def _write(self, raw: bytes) -> pygit2.Oid:
        odb = self._repo.odb
        if not self._own_writes or len(raw) < STORE_UNCOMPRESSED_BYTES:
            return odb.write(pygit2.enums.ObjectType.TREE, raw)
        header = b"tree %d\0" % len(raw)
        digest = hashlib.sha1(header)  # noqa: S324 (git's object id, not a security hash)
        digest.update(raw)
        hexid = digest.hexdigest()
        tree_id = pygit2.Oid(hex=hexid)
        if tree_id in odb:
            return tree_id
        folder = self._objects / hexid[:2]
        folder.mkdir(exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="tmp_tree_", dir=folder)
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(zlib.compress(header + raw, 0))
            temporary.chmod(0o444)
            os.replace(temporary, folder / hexid[2:])
        finally:
            temporary.unlink(missing_ok=True)
        if tree_id not in odb:  # an object directory of another shape: let libgit2 write it
            return odb.write(pygit2.enums.ObjectType.TREE, raw)
        return tree_id
