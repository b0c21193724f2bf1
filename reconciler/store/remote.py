"""The state branch shared through a remote: a transition counts once the remote's ref holds it.

Every transition is built on the tip last seen of the remote's state branch
and pushed as a compare-and-swap of that ref (``store.push``: the ``git``
CLI's ``--force-with-lease``, atomic on every transport). The local branch
only ever moves to commits the remote has accepted, so it is a cache of the
remote's and never claims a transition the remote does not hold.

Compare-and-swap is per environment. When the remote's ref moved meanwhile,
the local branch takes the remote's tip and, if this environment's state
there is still the one the caller read, the same transition is rebuilt on top
and pushed again; if it is not, the caller lost (``LostRace``) and re-reads.
A push the remote refuses although nothing moved (a hook, permissions) is a
``PushRefused``: the transition did not happen, so no step runs under it.
A push with no verdict (a timeout, a dropped connection) is decided by a
fetch: the remote holds the commit, or it does not.

Fetches are ``git fetch`` too (``store.gitcli``): the same transports,
credentials and host keys as the pushes, and git checks that what it fetched
is complete. A store can still hold a commit without its trees or blobs (a
``git clone`` of a path that copied the objects while a push was writing them,
a copy interrupted half way, a fetch by libgit2, which trusts any commit it
already has): any read that meets a missing object fetches the whole branch
again (``git fetch --refetch``) before it is retried once. A missing object
is never taken for an absent environment.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

import pygit2

from reconciler.domain import AnyEnvironment, FailureContext
from reconciler.store.errors import LostRace, PushRefused, StoreError
from reconciler.store.git import STATE_FILE, GitStore, entry_at
from reconciler.store.gitcli import FetchError, last_line, run_git
from reconciler.store.gitcli import fetch as git_fetch
from reconciler.store.message import TRANSITION
from reconciler.store.model import CorruptState, Observed, TransitionRecord
from reconciler.store.push import PushResult, PushStatus, push_ref
from reconciler.store.recovery import force_unlock

logger = logging.getLogger(__name__)

#: How often a transition is rebuilt on a remote branch that moved for other environments.
MAX_PUSH_RETRIES = 16

#: A repair fetch (the whole state branch again) that takes longer than this failed.
REFETCH_TIMEOUT_SECONDS = 600.0

_T = TypeVar("_T")


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
            git_fetch(self._repo.path, self.remote_name, (f"+{self.ref}:{self._tracking}",))
        except FetchError as e:
            if self._remote_lacks_branch(str(e)):
                return None
            raise StoreError(f"cannot fetch {self.ref} from '{self.remote_name}': {e}") from e
        return self._target(self._tracking)

    def _remote_lacks_branch(self, error: str) -> bool:
        """Did the fetch fail because the remote has no state branch (and for no other reason)?"""
        if "couldn't find remote ref" in error:
            return True
        try:
            # --exit-code: 2 when the remote answered and has no such ref.
            listed = run_git(
                self._repo.path, "ls-remote", "--exit-code", self.remote_name, self.ref, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return listed.returncode == 2

    def _refetch(self) -> pygit2.Oid | None:
        """Fetch the whole state branch again, every object of it, whatever this store holds."""
        refspec = f"+{self.ref}:{self._tracking}"
        try:
            done = run_git(
                self._repo.path,
                "fetch",
                "--quiet",
                "--refetch",
                "--no-write-fetch-head",
                "--no-auto-gc",
                self.remote_name,
                refspec,
                timeout=REFETCH_TIMEOUT_SECONDS,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StoreError(f"cannot fetch {self.ref} from '{self.remote_name}' again: {e}") from e
        if done.returncode != 0:
            raise StoreError(
                f"{self._repo.path}: objects of the state branch are missing and fetching it again failed "
                f"({last_line(done.stderr) or f'git fetch exited {done.returncode}'}); "
                f"run `git fetch --refetch {self.remote_name} {refspec}` (git 2.36 or later) "
                "or clone the repository again"
            )
        return self._target(self._tracking)

    def _repaired(self, read: Callable[[], _T]) -> _T:
        """``read()``; if it meets an object this store lacks, fetch the branch again and retry once."""
        try:
            return read()
        except pygit2.GitError as e:
            if not _is_missing_object(e):
                raise
            with self._mutex, self.local.writer_lock():
                logger.warning(
                    "an object of the state branch is missing here; fetching it again",
                    extra={"remote": self.remote_name, "error": str(e)},
                )
                self._refetch()
        return read()

    def _target(self, ref: str) -> pygit2.Oid | None:
        reference = self._repo.references.get(ref)
        if reference is None:
            return None
        target = reference.resolve().target
        return target if isinstance(target, pygit2.Oid) else None

    def _acknowledge(self, commit: pygit2.Oid) -> None:
        """The remote holds ``commit``: the local branch and the tracking ref show it."""
        self.local.force_tip(commit, "reconcile: acknowledged by the remote")
        self._repo.references.create(self._tracking, commit, force=True)

    def _publish(self, commit: pygit2.Oid, expected: pygit2.Oid | None) -> PushResult:
        return push_ref(
            self._repo.path,
            self.remote_name,
            str(commit),
            self.ref,
            None if expected is None else str(expected),
        )

    def sync(self) -> None:
        """Make the local state branch the remote's.

        The local branch is ahead of the remote's only when it was written
        before ``remote`` was set (or by an older version that committed before
        pushing): then it is published, as a compare-and-swap like any other.
        Anything else the remote does not have is dropped for the remote's.
        """
        with self._mutex, self.local.writer_lock():
            remote_tip = self.fetch()
            local_tip = self.local.tip_id()
            if remote_tip == local_tip:
                return
            if local_tip is not None and (
                remote_tip is None or self._repo.descendant_of(local_tip, remote_tip)
            ):
                result = self._publish(local_tip, remote_tip)
                if result.accepted:
                    self._acknowledge(local_tip)
                else:
                    logger.warning(
                        "could not publish the local state branch",
                        extra={"remote": self.remote_name, "error": result.reason},
                    )
                return
            if remote_tip is None:
                return
            if local_tip is not None and not self._repo.descendant_of(remote_tip, local_tip):
                logger.warning("local state branch diverged from the remote's; taking the remote's")
            self.local.force_tip(remote_tip, "reconcile: the remote's state branch")

    # -- StateStore ----------------------------------------------------------------

    def read(self, name: str) -> Observed | None:
        return self._repaired(lambda: self.local.read(name))

    def read_all(self) -> dict[str, Observed | CorruptState]:
        return self._repaired(self.local.read_all)

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        return self._repaired(lambda: self.local.history(name, limit))

    def failure_before(self, name: str) -> FailureContext | None:
        return self._repaired(lambda: self.local.failure_before(name))

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
        actor: str | None = None,
        event: str = TRANSITION,
    ) -> Observed:
        local = self.local
        message = local.message_for(
            name,
            after,
            from_state=from_state,
            desired_commit=desired_commit,
            detail=detail,
            actor=actor,
            event=event,
        )
        try:
            with self._mutex, local.writer_lock():
                blob_id = local.create_blob(after.to_json().encode())
                transient = 0
                refetched = False
                for attempt in range(MAX_PUSH_RETRIES):
                    base = local.tip_id()
                    try:
                        commit = local.build_commit(base, name, expected_version, blob_id, message)
                    except pygit2.GitError as e:
                        # The state this transition is checked against cannot be read here: never
                        # decide without it. Fetch every object again, then check it again.
                        if refetched or not _is_missing_object(e):
                            raise
                        logger.warning(
                            "an object of the state branch is missing here; fetching it again",
                            extra={"environment": name, "remote": self.remote_name, "error": str(e)},
                        )
                        self._refetch()
                        refetched = True
                        continue
                    except LostRace as e:
                        if attempt == 0:
                            raise
                        raise LostRace(
                            f"{name}: another reconciler moved it first on '{self.remote_name}'"
                        ) from e
                    result = self._publish(commit, base)
                    if result.accepted:
                        self._acknowledge(commit)
                        return Observed(env=after, version=str(blob_id))
                    remote_tip = self._fetch_after(result)
                    if remote_tip is not None and self._holds(remote_tip, commit):
                        # The push went through although its verdict was lost.
                        self._acknowledge(remote_tip)
                        if self._version_at(remote_tip, name) != str(blob_id):
                            raise LostRace(f"{name}: moved on '{self.remote_name}' since this transition")
                        return Observed(env=after, version=str(blob_id))
                    if remote_tip == base:
                        # Nothing moved, so this was no race: the remote refused it, or never answered.
                        if (
                            result.status is PushStatus.REJECTED
                            and _is_transient(result.reason)
                            and transient < 3
                        ):
                            transient += 1
                            time.sleep(0.05 * transient)
                            continue
                        raise PushRefused(
                            f"'{self.remote_name}' did not take the transition '{message.splitlines()[0]}' "
                            f"on {self.ref}: {result.reason}"
                        )
                    local.force_tip(remote_tip, "reconcile: the remote's state branch")
                    logger.debug("remote state branch moved; rebuilding", extra={"environment": name})
        except pygit2.GitError as e:
            raise StoreError(f"cannot write {name}'s state for '{self.remote_name}': {e}") from e
        raise LostRace(f"{name}: {self.ref} on '{self.remote_name}' kept moving")

    def _fetch_after(self, result: PushResult) -> pygit2.Oid | None:
        try:
            return self.fetch()
        except StoreError as e:
            raise StoreError(f"cannot push {self.ref} to '{self.remote_name}': {result.reason}") from e

    def _holds(self, tip: pygit2.Oid, commit: pygit2.Oid) -> bool:
        return tip == commit or self._repo.descendant_of(tip, commit)

    def _version_at(self, tip: pygit2.Oid, name: str) -> str | None:
        commit = self._repo.get(tip)
        if not isinstance(commit, pygit2.Commit):
            return None
        entry = entry_at(commit.tree, f"{name}/{STATE_FILE}")
        return None if entry is None else str(entry.id)


def _is_missing_object(error: pygit2.GitError) -> bool:
    """libgit2 could not find an object (as opposed to a ref, a lock, a transport)."""
    return isinstance(error, pygit2.NotFoundError) or "object not found" in str(error)


def _is_transient(reason: str) -> bool:
    """A refusal that says another push held the ref's lock at that moment."""
    text = reason.lower()
    return "lock" in text or "failed to update ref" in text
