"""Opening a GitOps repository: its desired state, its state store, its data dir."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pygit2

from reconciler.desired.loader import ParseCache, default_revision, head_branch, load_snapshot
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine.clock import Clock, SystemClock
from reconciler.engine.reconcile import Engine
from reconciler.steps import LocalStepRunner, StepRunner
from reconciler.store import StateStore, StoreError
from reconciler.store.file import FileStore
from reconciler.store.git import GitStore
from reconciler.store.remote import RemoteCredentials, RemoteStore

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

    def desired(self) -> DesiredSnapshot:
        """Desired state as the commands that act see it: with ``remote`` set, the remote's.

        With ``remote`` in reconciler.yaml (and the git store), the remote is fetched,
        desired state is read from ``refs/remotes/<remote>/<branch>``, the state branch is
        synced with the remote's, and every transition is pushed before it counts (a
        rejected push is a lost compare-and-swap), as the daemon does (SPEC 2.4, 4.3).
        """
        snapshot = self.snapshot()
        remote = snapshot.config.remote
        if remote is None or self.store_kind != "git":
            return snapshot
        if remote not in list(self.repo.remotes.names()):
            raise WorkspaceError(
                f"reconciler.yaml names the remote '{remote}', which {self.repo_path} does not have "
                "(see `git remote -v`)"
            )
        try:
            self.repo.remotes[remote].fetch(callbacks=RemoteCredentials())
        except pygit2.GitError as e:
            raise WorkspaceError(f"cannot fetch from '{remote}': {e}") from e
        branch = snapshot.config.branch or head_branch(self.repo)
        tracking = f"refs/remotes/{remote}/{branch}" if branch else None
        if tracking is not None and tracking in self.repo.references:
            snapshot = self.snapshot(tracking)
        local = self.store_for(snapshot)
        if isinstance(local, RemoteStore):
            store = local
        else:
            assert isinstance(local, GitStore)
            store = RemoteStore(local, self.repo_path, remote)
        try:
            store.sync()
        except StoreError as e:
            raise WorkspaceError(f"cannot sync the state branch with '{remote}': {e}") from e
        self._store, self._store_ref = store, snapshot.config.state_ref
        return snapshot

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
