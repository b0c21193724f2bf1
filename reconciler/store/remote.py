"""The state branch shared through a remote: commit locally, then push; a rejected push is a lost race.

Compare-and-swap is per environment. A push can be rejected because the
remote's state branch moved for *another* environment (another reconciler
committed meanwhile): then the local branch is reset to the remote's and, if
this environment's state there is still the one the caller read, the same
transition is committed again on top and pushed. If it is not, the caller
lost: ``LostRace``, with the local branch already showing the winner's state,
so the re-read decides from it. A transition is only returned once the remote
holds it, so a step never runs on a lock the remote does not know about.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any
from uuid import UUID

import pygit2

from reconciler.domain import AnyEnvironment, FailureContext
from reconciler.store.errors import LostRace, StoreError
from reconciler.store.git import GitStore
from reconciler.store.model import CorruptState, Observed, TransitionRecord
from reconciler.store.recovery import force_unlock

logger = logging.getLogger(__name__)

#: How often a transition is rebuilt on a remote branch that moved for other environments.
MAX_PUSH_RETRIES = 16


class RemoteCredentials(pygit2.RemoteCallbacks):
    """SSH through the agent (the usual setup of a service account); nothing for local or anonymous URLs."""

    def __init__(self) -> None:
        super().__init__()
        self._tries = 0

    def credentials(self, url: str, username_from_url: str | None, allowed_types: int) -> Any:
        self._tries += 1
        if self._tries > 3:
            return None
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            return pygit2.KeypairFromAgent(username_from_url or "git")
        return None


class RemoteStore:
    """A ``StateStore`` whose every transition is on the remote before ``apply`` returns."""

    def __init__(self, local: GitStore, repo_path: str | os.PathLike[str], remote: str) -> None:
        self.local = local
        self.remote_name = remote
        self.ref = local.ref
        try:
            self._repo = pygit2.Repository(os.fspath(repo_path))
        except (pygit2.GitError, KeyError) as e:
            raise StoreError(f"{repo_path}: not a git repository: {e}") from e
        if remote not in self._repo.remotes.names():
            raise StoreError(
                f"{self._repo.path}: no remote named '{remote}' (reconciler.yaml sets remote: {remote})"
            )
        self._tracking = f"refs/remotes/{remote}/{self.ref.removeprefix('refs/heads/')}"
        self._mutex = threading.RLock()

    # -- the remote ----------------------------------------------------------------

    def _remote(self) -> pygit2.Remote:
        return self._repo.remotes[self.remote_name]

    def fetch(self) -> pygit2.Oid | None:
        """Fetch the remote's state branch; return its tip (``None`` if it has none yet)."""
        try:
            self._remote().fetch([f"+{self.ref}:{self._tracking}"], callbacks=RemoteCredentials())
        except pygit2.GitError as e:
            if "couldn't find remote ref" in str(e) or "not found" in str(e).lower():
                return None
            raise StoreError(f"cannot fetch {self.ref} from '{self.remote_name}': {e}") from e
        return self._target(self._tracking)

    def _target(self, ref: str) -> pygit2.Oid | None:
        reference = self._repo.references.get(ref)
        if reference is None:
            return None
        target = reference.resolve().target
        return target if isinstance(target, pygit2.Oid) else None

    def _push(self) -> None:
        self._remote().push([f"{self.ref}:{self.ref}"], callbacks=RemoteCredentials())

    def _local_tip(self) -> pygit2.Oid | None:
        return self._target(self.ref)

    def _set_local(self, target: pygit2.Oid | None) -> None:
        if target is None:
            reference = self._repo.references.get(self.ref)
            if reference is not None:
                reference.delete()
            return
        self._repo.references.create(self.ref, target, force=True)

    def sync(self) -> None:
        """Make the local state branch the remote's: fetch, fast-forward, or push what only we have.

        A local commit the remote does not have and cannot fast-forward to was
        never acknowledged (``apply`` had not returned), so it is dropped.
        """
        with self._mutex:
            remote_tip = self.fetch()
            local_tip = self._local_tip()
            if remote_tip == local_tip:
                return
            if remote_tip is None:
                if local_tip is not None:
                    self._try_push()
                return
            if local_tip is not None and self._repo.descendant_of(local_tip, remote_tip):
                self._try_push()
                return
            if local_tip is not None and not self._repo.descendant_of(remote_tip, local_tip):
                logger.warning("local state branch diverged from the remote's; taking the remote's")
            self._set_local(remote_tip)

    def _try_push(self) -> None:
        try:
            self._push()
        except pygit2.GitError as e:
            logger.warning(
                "could not push the state branch", extra={"remote": self.remote_name, "error": str(e)}
            )

    # -- StateStore ----------------------------------------------------------------

    def read(self, name: str) -> Observed | None:
        return self.local.read(name)

    def read_all(self) -> dict[str, Observed | CorruptState]:
        return self.local.read_all()

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        return self.local.history(name, limit)

    def failure_before(self, name: str) -> FailureContext | None:
        return self.local.failure_before(name)

    def unlock(self, name: str, lock_id: UUID) -> Observed:
        return force_unlock(self, name, lock_id)

    def apply(
        self,
        name: str,
        expected_version: str | None,
        after: AnyEnvironment,
        *,
        from_state: str,
        desired_commit: str | None,
        detail: str | None = None,
    ) -> Observed:
        with self._mutex:
            for _ in range(MAX_PUSH_RETRIES):
                base = self._local_tip()
                result = self.local.apply(
                    name,
                    expected_version,
                    after,
                    from_state=from_state,
                    desired_commit=desired_commit,
                    detail=detail,
                )
                try:
                    self._push()
                    return result
                except pygit2.GitError as e:
                    push_error = e
                # Not acknowledged: the local branch must not claim it.
                self._set_local(base)
                try:
                    remote_tip = self.fetch()
                except StoreError as e:
                    raise StoreError(f"cannot push {self.ref} to '{self.remote_name}': {push_error}") from e
                if remote_tip == base:
                    raise StoreError(
                        f"cannot push {self.ref} to '{self.remote_name}': {push_error}"
                    ) from push_error
                self._set_local(remote_tip)
                now = self.local.read(name)
                version = None if now is None else now.version
                if version != expected_version:
                    raise LostRace(f"{name}: another reconciler moved it first on '{self.remote_name}'")
                logger.debug("remote state branch moved for others; rebuilding", extra={"environment": name})
        raise LostRace(f"{name}: {self.ref} on '{self.remote_name}' kept moving")
