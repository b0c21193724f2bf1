"""Which environments an operator suspended or resumed in a move of the state branch (decision 021).

The daemon's own commits never change ``suspended``; ``reconcile suspend`` and
``reconcile resume``, run by a person in another process (or on another clone
of the remote), do. A resumed environment must be looked at again at once,
not at the next resync, so the daemon wakes the environments whose
``suspended`` changed between the two tips it compares.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pygit2

_KEY = b'"suspended"'


def suspension_changed(repo: pygit2.Repository, deltas: Iterable[pygit2.DiffDelta]) -> set[str]:
    """The environments whose ``state.json`` gained, lost or changed ``suspended`` in ``deltas``.

    A document without the key is not parsed: a fleet's transitions cost a substring test each.
    """
    changed: set[str] = set()
    for delta in deltas:
        path = delta.new_file.path or delta.old_file.path
        if not path or not path.endswith("/state.json"):
            continue
        old = _blob(repo, delta.old_file.id)
        new = _blob(repo, delta.new_file.id)
        if _KEY not in old and _KEY not in new:
            continue
        if _suspended(old) != _suspended(new):
            changed.add(path.split("/", 1)[0])
    return changed


def _blob(repo: pygit2.Repository, oid: pygit2.Oid) -> bytes:
    if oid.raw == bytes(len(oid.raw)):  # the zero id: no such side (added or deleted)
        return b""
    obj = repo.get(oid)
    return obj.data if isinstance(obj, pygit2.Blob) else b""


def _suspended(data: bytes) -> Any:
    if _KEY not in data:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None  # a corrupt document is reported elsewhere; it suspends nothing here
    return doc.get("suspended") if isinstance(doc, dict) else None
