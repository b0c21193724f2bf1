"""A GitOps repository in ``tmp_path``, built with the git CLI, and ``reconcile plan`` run on it for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pygit2

from reconciler.desired.loader import load_snapshot
from reconciler.domain import (
    AnyEnvironment,
    ErrorKind,
    FailureContext,
    Lock,
    LockHolder,
    Phase,
    PhaseRecord,
    State,
    StateDocument,
    completed_phases,
)
from reconciler.store import GitStore
from tests.conftest import git

STATE_REF = "refs/heads/reconciler/state"


def environment(name: str, desired: str = "running", **spec: Any) -> str:
    """An environment file whose release phase runs a script of the repository."""
    lines = [
        "apiVersion: reconciler/v1",
        "kind: Environment",
        f"metadata: {{name: {name}}}",
        "spec:",
        f"  desiredState: {desired}",
    ]
    lines += [f"  {key}: {json.dumps(value)}" for key, value in spec.items()]
    lines += [
        "  phases:",
        "    provision: [{shell: {run: echo provision}}]",
        "    release: [{shell: {run: ./scripts/release.sh}}]",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class GitOps:
    path: Path

    def write(self, relpath: str, text: str) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str = "change") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def hashes(self, name: str, rev: str = "HEAD") -> dict[Phase, str]:
        """The phase hashes the loader computes for ``name`` at ``rev``."""
        snapshot = load_snapshot(pygit2.Repository(str(self.path)), rev)
        return dict(snapshot.environments[name].phase_hashes)

    def observe(
        self,
        name: str,
        state: type[State],
        *,
        hashes: dict[Phase, str] | None = None,
        failure: FailureContext | None = None,
        lock: Lock | None = None,
        desired_commit: str | None = None,
    ) -> None:
        """Record ``name`` in ``state`` on the state branch, its completed phases at ``hashes``.

        ``desired_commit``: the commit it was applied from (``None``: as state written by hand).
        """
        hashes = hashes if hashes is not None else {}
        now = datetime.now(UTC)
        doc = StateDocument(
            name=name,
            state=state.name,
            phases={
                p: PhaseRecord(hash=hashes.get(p, "old"), completed_at=now) for p in completed_phases(state)
            },
            lock=lock,
            failure=failure,
            desired_commit=desired_commit,
            updated_at=now,
        )
        store = GitStore(self.path, STATE_REF)
        current = store.read(name)
        store.apply(
            name,
            current.version if current else None,
            AnyEnvironment.from_document(doc),
            from_state=current.env.state_name if current else "none",
            desired_commit=desired_commit,
        )

    def plant_corrupt(self, name: str, text: str) -> None:
        """Overwrite ``name``'s state.json with plain git, as a careless hand would."""
        env = {**os.environ, "GIT_INDEX_FILE": str(self.path / ".git" / "plan-test-index")}

        def run(*args: str, stdin: str | None = None) -> str:
            return subprocess.run(
                ["git", "-C", str(self.path), *args],
                check=True,
                capture_output=True,
                text=True,
                env=env,
                input=stdin,
            ).stdout.strip()

        parent = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "--verify", "-q", STATE_REF],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if parent:
            run("read-tree", parent)
        else:
            run("read-tree", "--empty")
        blob = run("hash-object", "-w", "--stdin", stdin=text)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}/state.json")
        tree = run("write-tree")
        commit = run("commit-tree", tree, *(["-p", parent] if parent else []), "-m", f"{name}: hand edit")
        run("update-ref", STATE_REF, commit)

    def plan(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "plan", "--repo", str(self.path), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd,
        )


def failed(phase: Phase, *, attempt: int, phase_hash: str | None, ago: timedelta) -> FailureContext:
    at = datetime.now(UTC) - ago
    return FailureContext(
        phase=phase,
        failed_step="shell ./scripts/release.sh",
        error_kind=ErrorKind.COMMAND_FAILED,
        error_summary="./scripts/release.sh exited 3",
        attempt=attempt,
        execution_started_at=at - timedelta(seconds=2),
        failed_at=at,
        execution_duration_seconds=2,
        phase_hash=phase_hash,
    )


def held_lock() -> Lock:
    now = datetime.now(UTC)
    return Lock(
        holder=LockHolder(host="build-7", pid=999),
        acquired_at=now,
        expires_at=now + timedelta(hours=1),
    )
