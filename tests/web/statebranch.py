"""State-branch commits written with pygit2, as another reconciler would write them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pygit2

STATE_REF = "refs/heads/reconciler/state"
NOW = "2026-12-05T08:00:00Z"


def state_json(name: str, state: str, desired: str, **fields: Any) -> dict[str, Any]:
    return {
        "schema": 1,
        "name": name,
        "state": state,
        "desiredCommit": desired,
        "phases": {},
        "outputs": {},
        "lock": None,
        "failure": None,
        "updatedAt": NOW,
        **fields,
    }


def commit_state(
    repo: Path,
    document: dict[str, Any],
    from_state: str,
    *,
    actor: str = "tester",
    holder: str = "tester:1",
    detail: str | None = None,
) -> str:
    """One transition commit putting ``document`` at ``<name>/state.json``, the others kept."""
    name, to_state = document["name"], document["state"]
    body = f"{detail}\n\n" if detail else ""
    message = (
        f"{name}: {from_state} -> {to_state}\n\n{body}"
        f"Reconcile-Environment: {name}\nReconcile-From: {from_state}\nReconcile-To: {to_state}\n"
        f"Reconcile-Desired-Commit: {document['desiredCommit']}\nReconcile-Holder: {holder}\n"
        f"Reconcile-Actor: {actor}\nReconcile-Event: transition\n"
    )
    return commit_blob(repo, name, json.dumps(document).encode(), message)


def commit_blob(repo: Path, name: str, data: bytes, message: str) -> str:
    """A commit putting ``data`` at ``<name>/state.json`` as it is (valid or not), the others kept."""
    r = pygit2.Repository(str(repo))
    reference = r.references.get(STATE_REF)
    parent: Any = r.get(reference.target) if reference is not None else None
    top = r.TreeBuilder(parent.tree) if parent is not None else r.TreeBuilder()
    sub = r.TreeBuilder()
    sub.insert("state.json", r.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
    top.insert(name, sub.write(), pygit2.GIT_FILEMODE_TREE)
    signature = pygit2.Signature("tester", "tester@example.com")
    parents = [parent.id] if parent is not None else []
    return str(r.create_commit(STATE_REF, signature, signature, message, top.write(), parents))
