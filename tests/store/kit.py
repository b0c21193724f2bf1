"""Shared by the store tests and their helper processes: opening a store from a spec string."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.domain import AnyEnvironment, Environment, ErrorKind, FailureContext, Phase
from reconciler.store import FileStore, GitStore, MemoryStore, StateStore

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def open_store(spec: str) -> StateStore:
    """``git:<repo>``, ``file:<data dir>`` or ``memory:``."""
    kind, _, where = spec.partition(":")
    if kind == "git":
        return GitStore(where)
    if kind == "file":
        return FileStore(where)
    if kind == "memory":
        return MemoryStore()
    raise ValueError(spec)


def created(name: str) -> AnyEnvironment:
    return Environment.create(name, desired_commit="c0ffee", at=T0).into_any()


def failure(phase: Phase, attempt: int = 1) -> FailureContext:
    return FailureContext(
        phase=phase,
        failed_step="shell ./fail.sh",
        error_kind=ErrorKind.COMMAND_FAILED,
        error_summary="exited 1",
        attempt=attempt,
        execution_started_at=T0,
        failed_at=T0 + timedelta(seconds=3),
        execution_duration_seconds=3.0,
    )


def plant_corrupt(spec: str, name: str, text: str) -> None:
    """Replace ``name``'s state.json by hand, as a user with plain git or an editor would."""
    kind, _, where = spec.partition(":")
    if kind == "file":
        (Path(where) / name / "state.json").write_text(text)
        return
    assert kind == "git"
    env = {**os.environ, "GIT_INDEX_FILE": str(Path(where) / "tmp-index")}

    def git(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            ["git", "-C", where, *args], check=True, capture_output=True, text=True, env=env, input=stdin
        ).stdout.strip()

    ref = "refs/heads/reconciler/state"
    blob = git("hash-object", "-w", "--stdin", stdin=text)
    git("read-tree", ref)
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}/state.json")
    tree = git("write-tree")
    commit = git("commit-tree", tree, "-p", ref, "-m", f"hand edit of {name}")
    git("update-ref", ref, commit)
    Path(env["GIT_INDEX_FILE"]).unlink()
