"""Opening a GitOps repository: its desired state, its state store, its data dir."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pygit2

from reconciler.desired.loader import (
    ParseCache,
    head_branch,
    load_snapshot,
    resolve_revision,
)
from reconciler.desired.repository import NotARepository, open_repository
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.trust import (
    AllowedSigners,
    DesiredCommit,
    TrustSetupError,
    choose_desired,
    desired_revision,
)
from reconciler.engine.clock import Clock, SystemClock
from reconciler.engine.reconcile import Engine
from reconciler.steps import LocalStepRunner, StepRunner
from reconciler.store import StateStore, StoreError
from reconciler.store.file import FileStore
from reconciler.store.git import GitStore
from reconciler.store.gitcli import FetchError
from reconciler.store.gitcli import fetch as git_fetch
from reconciler.store.remote import RemoteStore

StoreKind = Literal["git", "file"]

logger = logging.getLogger(__name__)


class WorkspaceError(Exception):
    """The repository cannot be opened or has no desired state to read."""


@dataclass
class Workspace:
    repo_path: Path
    repo: pygit2.Repository
    data_dir: Path
    store_kind: StoreKind = "git"
    cache: ParseCache = field(default_factory=ParseCache)
    #: The allowed-signers file (SPEC 10): given, only commits signed by its keys are acted on.
    signers: AllowedSigners | None = None
    #: How the branch tip was judged the last time desired state was read.
    choice: DesiredCommit | None = None
    #: Told, in one line, when the tip is not what is acted on (the CLI prints it on stderr).
    on_notice: Callable[[str], None] = logger.warning
    _store: StateStore | None = None
    _store_ref: str | None = None

    def snapshot(self, rev: str | None = None) -> DesiredSnapshot:
        """Desired state at the newest commit of ``rev`` (default: the desired-state branch) that may be
        acted on: its tip, or with signatures required its newest verified commit (SPEC 10)."""
        try:
            tip = resolve_revision(self.repo, rev or desired_revision(self.repo, self.signers))
            choice = choose_desired(self.repo, tip, self.signers)
            self.choice = choice
            if choice.commit is None:
                raise WorkspaceError(f"{choice.message}: nothing is acted on")
            snapshot = load_snapshot(self.repo, choice.commit, cache=self.cache)
        except (LookupError, ValueError, pygit2.GitError) as e:
            raise WorkspaceError(
                f"{self.repo_path}: cannot read desired state at '{rev or 'HEAD'}': {e}"
            ) from e
        refused = snapshot.config_refused
        if refused is not None:  # SPEC 2.4: refused as a whole, never acted on with defaults
            raise WorkspaceError(refused)
        return snapshot

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
            self._notice()
            return snapshot
        if remote not in list(self.repo.remotes.names()):
            raise WorkspaceError(
                f"reconciler.yaml names the remote '{remote}', which {self.repo_path} does not have "
                "(see `git remote -v`)"
            )
        try:
            git_fetch(self.repo.path, remote)
        except FetchError as e:
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
        self._notice()
        return snapshot

    def _notice(self) -> None:
        if self.choice is not None and self.choice.message is not None:
            self.on_notice(self.choice.message)

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


def default_data_dir(repository: pygit2.Repository) -> Path:
    """``data/`` at the top of the work tree, wherever in it the command runs (SPEC 4.4).

    A bare repository has no work tree: ``./data`` then.

    Following the current directory would give ``cd environments && reconcile apply`` a second
    data dir, and with it a fresh OpenTofu state for every environment.
    """
    return Path(repository.workdir) / "data" if repository.workdir else Path("data")


def open_workspace(
    repo: Path,
    data_dir: Path | None = None,
    store: StoreKind = "git",
    *,
    allowed_signers: Path | None = None,
) -> Workspace:
    try:
        repository = open_repository(repo)
    except NotARepository as e:
        raise WorkspaceError(str(e)) from e
    root = Path(repository.workdir) if repository.workdir else Path(repository.path)
    try:
        signers = AllowedSigners.load(allowed_signers, repository) if allowed_signers is not None else None
    except TrustSetupError as e:
        raise WorkspaceError(str(e)) from e
    return Workspace(
        repo_path=root,
        repo=repository,
        data_dir=(data_dir if data_dir is not None else default_data_dir(repository)).absolute(),
        store_kind=store,
        signers=signers,
    )
