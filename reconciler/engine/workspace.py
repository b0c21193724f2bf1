"""Opening a GitOps repository: its desired state, its state store, its data dir."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pygit2

from reconciler.desired.loader import ParseCache, default_revision, load_snapshot
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine.clock import Clock, SystemClock
from reconciler.engine.reconcile import Engine
from reconciler.steps import LocalStepRunner, StepRunner
from reconciler.store import StateStore
from reconciler.store.file import FileStore
from reconciler.store.git import GitStore

StoreKind = Literal["git", "file"]


class WorkspaceError(Exception):
    """The repository cannot be opened or has no desired state to read."""


@dataclass
class Workspace:
    repo_path: Path
    repo: pygit2.Repository
    data_dir: Path
    store_kind: StoreKind = "git"
    cache: ParseCache = field(default_factory=ParseCache)
    _store: StateStore | None = None
    _store_ref: str | None = None

    def snapshot(self, rev: str | None = None) -> DesiredSnapshot:
        """Desired state at ``rev`` (default: the desired-state branch)."""
        try:
            revision = rev or default_revision(self.repo)
            return load_snapshot(self.repo, revision, cache=self.cache)
        except (LookupError, ValueError, pygit2.GitError) as e:
            raise WorkspaceError(
                f"{self.repo_path}: cannot read desired state at '{rev or 'HEAD'}': {e}"
            ) from e

    def store_for(self, snapshot: DesiredSnapshot) -> StateStore:
        cfg = snapshot.config
        if self._store is not None and self._store_ref == cfg.state_ref:
            return self._store
        store: StateStore
        if self.store_kind == "file":
            store = FileStore(self.data_dir)
        else:
            store = GitStore(
                self.repo_path,
                ref=cfg.state_ref,
                identity=(cfg.identity.name, cfg.identity.email),
            )
        self._store, self._store_ref = store, cfg.state_ref
        return store

    def engine(
        self,
        snapshot: DesiredSnapshot,
        *,
        runner: StepRunner | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Engine:
        return Engine(
            repo=self.repo,
            store=self.store_for(snapshot),
            runner=runner or LocalStepRunner(),
            data_dir=self.data_dir,
            clock=clock or SystemClock(),
            environ=dict(environ if environ is not None else os.environ),
        )


def open_workspace(repo: Path, data_dir: Path | None = None, store: StoreKind = "git") -> Workspace:
    try:
        found = pygit2.discover_repository(str(repo))
    except pygit2.GitError as e:  # pragma: no cover - discover returns None on absence
        raise WorkspaceError(f"{repo}: not a git repository: {e}") from e
    if found is None:
        raise WorkspaceError(f"{repo}: not a git repository (or any parent up to the mount point)")
    repository = pygit2.Repository(found)
    root = Path(repository.workdir) if repository.workdir else Path(repository.path)
    return Workspace(
        repo_path=root,
        repo=repository,
        data_dir=(data_dir or Path("data")).absolute(),
        store_kind=store,
    )
