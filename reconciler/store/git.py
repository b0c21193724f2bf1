"""The state branch (SPEC section 4.1): observed state and audit trail in the repository itself.

Every transition is one commit on ``ref`` whose tree holds ``<name>/state.json``
for every environment. The ref is written with libgit2 directly, never through
the work tree, the index or HEAD. See docs/state-branch.md and
docs/decisions/002-state-branch-cas.md for the compare-and-swap and durability.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pygit2

from reconciler.domain import AnyEnvironment, FailureContext, StateDocumentError
from reconciler.store.errors import CorruptStateError, LostRace, StoreError
from reconciler.store.events import EventLog, EventQuery
from reconciler.store.lock import holder_label, this_holder
from reconciler.store.loose import DamagedObject, LooseObjects, regular_file_id
from reconciler.store.message import TRANSITION, TransitionMessage
from reconciler.store.model import DEFAULT_STATE_REF, CorruptState, Observed, TransitionRecord
from reconciler.store.objectcache import TipCache
from reconciler.store.recovery import force_unlock
from reconciler.store.roottree import RootTrees

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
_STATE_FILE_NAME = STATE_FILE.encode()
#: Serializes this host's writers; created inside the git dir, released by the kernel if a writer dies.
WRITER_LOCK_FILE = "reconciler-state.lock"
#: How often a commit is rebuilt when the branch moved for *other* environments meanwhile.
MAX_REF_RETRIES = 32
#: A ref lock file (``<ref>.lock``, ``packed-refs.lock``) this old, found while this host's writer
#: lock is held, was left by a writer killed in the middle of an update (git holds one for
#: milliseconds): it is removed, or every later write of the branch would fail.
STALE_REF_LOCK_SECONDS = 10.0


def _load_syncfs() -> ctypes._NamedFuncPointer | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()

#: The largest tree libgit2 keeps parsed in its object cache. Its default (4 KiB) leaves out the
#: state branch's root tree (about 40 bytes per environment), which every read and every commit
#: would otherwise inflate and parse again: 400 KB at 10,000 environments.
TREE_CACHE_LIMIT = 16 * 1024 * 1024

#: ``(name, id of the <name>/ tree)`` -> what ``read_all`` made of that tree.
_Parsed = dict[tuple[str, pygit2.Oid], Observed | CorruptState | None]
#: ``(git dir, ref)`` -> the parses of the tip ``read_all`` saw last, shared by every store on
#: that branch in this process. Ids are content hashes and the values immutable, so an entry
#: never goes stale; each ``read_all`` publishes a new dict and never mutates one.
_PARSED: dict[tuple[str, str], _Parsed] = {}


class _Transition:
    """One ``apply`` waiting to be committed, and what became of it."""

    __slots__ = ("after", "blob_id", "data", "done", "error", "expected_version", "message", "name", "result")

    def __init__(
        self, name: str, expected_version: str | None, after: AnyEnvironment, data: bytes, message: str
    ) -> None:
        self.name = name
        self.expected_version = expected_version
        self.after = after
        self.data = data
        self.message = message
        self.blob_id: pygit2.Oid | None = None
        self.done = False
        self.result: Observed | None = None
        self.error: BaseException | None = None

    def finish(self, *, result: Observed | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True


class GitStore:
    """A ``StateStore`` on a branch of a git repository (bare or not)."""

    def __init__(
        self,
        repo_path: str | os.PathLike[str],
        ref: str = DEFAULT_STATE_REF,
        fsync: bool = True,
        identity: tuple[str, str] = ("reconciler", "reconciler@localhost"),
        *,
        per_file_fsync: bool = False,
    ) -> None:
        """``fsync``: a transition is on disk when ``apply`` returns (see ``_sync``).

        ``per_file_fsync`` makes libgit2 fsync every object and ref file instead
        of one ``syncfs`` barrier (slower; the fallback where ``syncfs`` is missing).
        """
        self._per_file_fsync = fsync and (per_file_fsync or _SYNCFS is None)
        # A process-wide libgit2 setting, read when a repository is opened: set it for
        # every store (a store opened after a per-file one must not inherit its fsyncs).
        pygit2.settings.enable_fsync_gitdir(self._per_file_fsync)
        pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, TREE_CACHE_LIMIT)
        try:
            self._repo = pygit2.Repository(os.fspath(repo_path))
        except (pygit2.GitError, KeyError) as e:
            raise StoreError(f"{repo_path}: not a git repository: {e}") from e
        self.ref = ref
        self.fsync = fsync
        self.identity = identity
        self._writer_lock = Path(self._repo.path) / WRITER_LOCK_FILE
        self._mutex = threading.RLock()
        self._held_fd: int | None = None
        self._cache_key = (os.path.realpath(self._repo.path), ref)
        self._events: EventLog | None = None
        self._root_trees = RootTrees(self._repo, per_file_fsync=self._per_file_fsync)
        self._loose = LooseObjects(self._repo.path)
        #: Starts libgit2's caches of this repository over now and then: old root trees pile up in them.
        self.tip_cache = TipCache()
        #: Transitions waiting for the writer lock; its holder commits them all (``_commit_batch``).
        self._queue: list[_Transition] = []
        self._queue_lock = threading.Lock()

    # -- reading -------------------------------------------------------------------

    def _tip(self) -> pygit2.Commit | None:
        reference = self._repo.references.get(self.ref)
        if reference is None:
            return None
        target = reference.resolve().target
        self.tip_cache.moved(self._repo, target)
        obj = self._repo.get(target)
        if not isinstance(obj, pygit2.Commit):
            raise StoreError(f"{self.ref} does not point at a commit")
        return obj

    def _path(self, name: str) -> str:
        return f"{self.ref}:{name}/{STATE_FILE}"

    def _entry(self, tree: pygit2.Tree, name: str) -> pygit2.Object | None:
        return entry_at(tree, f"{name}/{STATE_FILE}")

    def _parse(self, name: str, obj: pygit2.Object) -> Observed | CorruptState:
        if not isinstance(obj, pygit2.Blob):
            return CorruptState(name, self._path(name), f"{STATE_FILE} is not a file")
        # Read from the object database: ``obj.data`` looks the object up again (issue 11).
        return self._parse_data(name, str(obj.id), self._repo.odb.read(obj.id)[1])

    def _parse_data(self, name: str, blob_id: str, data: bytes) -> Observed | CorruptState:
        try:
            env = AnyEnvironment.from_json(data)
        except StateDocumentError as e:
            return CorruptState(name, self._path(name), str(e))
        except UnicodeDecodeError as e:
            return CorruptState(name, self._path(name), f"not UTF-8 text: {e}")
        if env.name != name:
            return CorruptState(name, self._path(name), f"document names environment '{env.name}'")
        return Observed(env=env, version=blob_id)

    def read(self, name: str) -> Observed | None:
        with self._mutex:
            tip = self._tip()
            obj = None if tip is None else self._entry(tip.tree, name)
            if obj is None:
                return None
            result = self._parse(name, obj)
        if isinstance(result, CorruptState):
            raise CorruptStateError(result)
        return result

    def read_all(self) -> dict[str, Observed | CorruptState]:
        """Every environment on the branch, by name.

        A ``<name>/`` tree's id fixes its ``state.json`` (git ids are content
        hashes), so what was made of it is cached by that id, for every store
        on this branch in the process: after one transition a repeated
        ``read_all`` reads and parses one document, and a corrupt one is still
        reported every time. The cache keeps only the trees of the latest tip.
        """
        with self._mutex:
            tip = self._tip()
            if tip is None:
                _PARSED.pop(self._cache_key, None)
                return {}
            found, _PARSED[self._cache_key] = self._read_tree(tip.tree, _PARSED.get(self._cache_key, {}))
            return found

    def read_lazily(self) -> StateTree:
        """Every environment on the branch, each ``state.json`` read and parsed only when asked for.

        For a caller that already knows what most of them hold by the id of their ``<name>/``
        tree (``StateTree.version``): ``reconcile plan`` with the plans an earlier run kept.
        """
        with self._mutex:
            tip = self._tip()
            entries: dict[str, pygit2.Tree] = {}
            if tip is not None:
                for entry in tip.tree:
                    # Iterating a tree yields its entries as (lazily read) objects, typed by their mode.
                    if entry.name is not None and isinstance(entry, pygit2.Tree):
                        entries[entry.name] = entry
            return StateTree(self, dict(sorted(entries.items())))

    def read_all_at(self, commit_id: str) -> dict[str, Observed | CorruptState]:
        """Every environment as state-branch commit ``commit_id`` recorded it (``status --at``)."""
        with self._mutex:
            commit = self._repo.get(commit_id)
            if not isinstance(commit, pygit2.Commit):
                raise StoreError(f"{commit_id} is not a commit")
            found, _ = self._read_tree(commit.tree, _PARSED.get(self._cache_key, {}))
            return found

    def documents_at(self, commit_id: str) -> dict[str, dict[str, Any] | str]:
        """Every ``state.json`` at state-branch commit ``commit_id`` as plain JSON, by name; an
        unreadable one as the reason. For showing a past moment (``status --at``): parsed with
        ``json`` only, about ten times faster than validating each document."""
        with self._mutex:
            commit = self._repo.get(commit_id)
            if not isinstance(commit, pygit2.Commit):
                raise StoreError(f"{commit_id} is not a commit")
            found: dict[str, dict[str, Any] | str] = {}
            for entry in commit.tree:
                name = entry.name
                if name is None or not isinstance(entry, pygit2.Tree):
                    continue
                blob = entry_at(entry, STATE_FILE)
                if blob is None:
                    continue
                if not isinstance(blob, pygit2.Blob):
                    found[name] = f"{STATE_FILE} is not a file"
                    continue
                try:
                    doc = json.loads(blob.data)
                except (ValueError, UnicodeDecodeError) as e:
                    found[name] = f"not JSON: {e}"
                    continue
                found[name] = doc if isinstance(doc, dict) else "not a JSON object"
            return dict(sorted(found.items()))

    def _read_tree(
        self, tree: pygit2.Tree, previous: _Parsed
    ) -> tuple[dict[str, Observed | CorruptState], _Parsed]:
        parsed: _Parsed = {}
        found: dict[str, Observed | CorruptState] = {}
        for entry in tree:
            name = entry.name
            # Iterating a tree yields its entries as (lazily read) objects, typed by their mode.
            if name is None or not isinstance(entry, pygit2.Tree):
                continue
            key = (name, entry.id)
            result = previous[key] if key in previous else self._read_subtree(entry, name)
            parsed[key] = result
            if result is not None:
                found[name] = result
        return dict(sorted(found.items())), parsed

    def _read_subtree(self, sub: pygit2.Tree, name: str) -> Observed | CorruptState | None:
        """``<name>/state.json`` of the tree ``sub``, parsed; ``None`` when there is none.

        Both objects are read from their loose files when they are the common case
        (``store/loose.py``: ~10 µs less per environment); anything else through libgit2.
        """
        try:
            loose = self._loose.read(str(sub.id), b"tree")
            blob_id = None if loose is None else regular_file_id(loose, _STATE_FILE_NAME)
            data = None if blob_id is None else self._loose.read(blob_id, b"blob")
        except DamagedObject as e:  # reported, never handed to libgit2 (it would loop on it)
            return CorruptState(name, self._path(name), str(e))
        if blob_id is not None and data is not None:
            return self._parse_data(name, blob_id, data)
        obj = entry_at(sub, STATE_FILE)
        return None if obj is None else self._parse(name, obj)

    # -- writing -------------------------------------------------------------------

    def _sync(self, fd: int) -> None:
        """Make everything written so far durable, with one ``syncfs(2)`` of the git dir's filesystem.

        One barrier costs about what libgit2 spends fsyncing a single object
        (it fsyncs each object, its directory and the ref separately).
        """
        if not self.fsync or self._per_file_fsync or _SYNCFS is None:
            return
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise StoreError(f"syncfs of {self._repo.path} failed: {os.strerror(err)}")

    @contextmanager
    def _writers_serialized(self) -> Iterator[int]:
        """One writer at a time on this host; the ref's own CAS still guards against any other."""
        with self._mutex:
            if self._held_fd is not None:  # re-entered by the thread that holds it (the mutex is ours)
                yield self._held_fd
                return
            fd = os.open(self._writer_lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._held_fd = fd
                self._clear_stale_ref_locks()
                yield fd
            finally:
                self._held_fd = None
                os.close(fd)  # closing releases the flock

    def _clear_stale_ref_locks(self) -> None:
        """Remove the ref lock files a killed writer left; wait briefly for a young one to go."""
        git_dir = Path(self._repo.path)
        for path in (git_dir / f"{self.ref}.lock", git_dir / "packed-refs.lock"):
            deadline = time.monotonic() + STALE_REF_LOCK_SECONDS
            while True:
                try:
                    age = time.time() - path.stat().st_mtime
                except FileNotFoundError:
                    break
                if age < STALE_REF_LOCK_SECONDS:
                    if time.monotonic() >= deadline:
                        break  # renewed all along: a live writer, not a dead one's
                    time.sleep(0.05)
                    continue
                logger.warning(
                    "removing a ref lock file left by a writer that died mid-update",
                    extra={"path": str(path), "age_seconds": round(age, 1)},
                )
                path.unlink(missing_ok=True)
                break

    def _tree_with(self, base: pygit2.Tree | None, name: str, blob_id: pygit2.Oid) -> pygit2.Oid:
        repo = self._repo
        existing = None
        key = sys.intern(name)  # pygit2 keeps a reference to a tree's key (``entry_at``)
        if base is not None and key in base:
            sub = repo.get(base[key].id)
            existing = sub if isinstance(sub, pygit2.Tree) else None
        sub_builder = repo.TreeBuilder(existing) if existing is not None else repo.TreeBuilder()
        sub_builder.insert(STATE_FILE, blob_id, pygit2.GIT_FILEMODE_BLOB)
        return self._root_trees.with_directory(None if base is None else base.id, name, sub_builder.write())

    def _move_ref(self, tip: pygit2.Commit | None, commit_id: pygit2.Oid, log: str) -> bool:
        """Compare-and-swap the ref from ``tip`` to ``commit_id``; ``False`` if it had moved."""
        refs = self._repo.references
        try:
            if tip is None:
                self._repo.create_reference_direct(self.ref, commit_id, False, message=log)
                return True
            reference = refs.get(self.ref)
            if reference is None or reference.target != tip.id:
                return False
            # libgit2's set_target writes only if the ref still holds the value read
            # (git_reference_create_matching under the ref's .lock file).
            reference.set_target(commit_id, log)
        except pygit2.AlreadyExistsError:
            return False
        except pygit2.GitError as e:
            text = str(e)
            if "old reference value does not match" in text or "lock" in text:
                return False
            raise StoreError(f"cannot update {self.ref}: {e}") from e
        return True

    def message_for(
        self,
        name: str,
        after: AnyEnvironment,
        *,
        from_state: str,
        desired_commit: str | None,
        detail: str | None,
        actor: str | None = None,
        event: str = TRANSITION,
    ) -> str:
        """The commit message of ``name``'s transition from ``from_state`` to ``after`` (SPEC 4.1)."""
        if after.name != name:
            raise ValueError(f"cannot store environment '{after.name}' under the name '{name}'")
        return TransitionMessage(
            name=name,
            from_state=from_state,
            to_state=after.state_name,
            desired_commit=desired_commit,
            holder=holder_label(this_holder()),
            detail=detail,
            actor=actor,
            event=event,
        ).format()

    def tip_id(self) -> pygit2.Oid | None:
        tip = self._tip()
        return None if tip is None else tip.id

    def build_commit(
        self,
        base: pygit2.Oid | None,
        name: str,
        expected_version: str | None,
        blob_id: pygit2.Oid,
        message: str,
    ) -> pygit2.Oid:
        """Write (without moving any ref) a commit on ``base`` that sets ``name``'s state to ``blob_id``.

        Raises ``LostRace`` when ``name``'s state at ``base`` is not ``expected_version``
        and ``CorruptStateError`` when it cannot be read (it is never overwritten).
        """
        repo = self._repo
        tip = None if base is None else repo.get(base)
        if tip is not None and not isinstance(tip, pygit2.Commit):
            raise StoreError(f"{self.ref} does not point at a commit")
        current = None if tip is None else self._entry(tip.tree, name)
        if current is not None:
            parsed = self._parse(name, current)
            if isinstance(parsed, CorruptState):
                raise CorruptStateError(parsed)
        current_version = None if current is None else str(current.id)
        if current_version != expected_version:
            raise LostRace(
                f"{name}: changed since it was read "
                f"(expected version {expected_version}, found {current_version})"
            )
        tree_id = self._tree_with(None if tip is None else tip.tree, name, blob_id)
        now = datetime.now(UTC)
        signature = pygit2.Signature(*self.identity, int(now.timestamp()), 0)
        parents: list[pygit2.Oid] = [] if tip is None else [tip.id]
        return repo.create_commit(None, signature, signature, message, tree_id, parents)

    def create_blob(self, data: bytes) -> pygit2.Oid:
        return self._repo.create_blob(data)

    @contextmanager
    def writer_lock(self) -> Iterator[int]:
        """Hold this host's writer lock on the branch (re-entrant: ``apply`` inside it does not wait)."""
        with self._writers_serialized() as fd:
            yield fd

    def force_tip(self, target: pygit2.Oid | None, log: str) -> None:
        """Point the branch at ``target`` (or delete it), for a caller holding ``writer_lock``."""
        references = self._repo.references
        if target is None:
            existing = references.get(self.ref)
            if existing is not None:
                existing.delete()
            return
        self._repo.create_reference_direct(self.ref, target, True, message=log)

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
        message = self.message_for(
            name,
            after,
            from_state=from_state,
            desired_commit=desired_commit,
            detail=detail,
            actor=actor,
            event=event,
        )
        request = _Transition(name, expected_version, after, after.to_json().encode(), message)
        with self._queue_lock:
            self._queue.append(request)
        with self._writers_serialized() as lock_fd:
            # Whoever holds the writer lock commits every transition queued meanwhile (group commit):
            # one commit each, on top of one another, made durable by the same two barriers.
            if not request.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit_batch(batch, lock_fd)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _commit_batch(self, batch: list[_Transition], lock_fd: int) -> None:
        """Commit ``batch`` in order, one commit per transition, and move the ref once for them all.

        A transition refused by ``build_commit`` (its environment changed since it was
        read, its state is corrupt) fails alone; the others are committed without it.
        """
        try:
            for request in batch:
                request.blob_id = self._repo.create_blob(request.data)
            pending = list(batch)
            for _ in range(MAX_REF_RETRIES):
                tip = self._tip()
                base = None if tip is None else tip.id
                built: list[_Transition] = []
                for request in pending:
                    assert request.blob_id is not None
                    try:
                        base = self.build_commit(
                            base, request.name, request.expected_version, request.blob_id, request.message
                        )
                    except (StoreError, pygit2.GitError) as e:
                        request.finish(error=e)
                        continue
                    built.append(request)
                if not built:
                    return
                assert base is not None
                # Objects reach the disk before the ref names them, the ref before anyone returns.
                self._sync(lock_fd)
                first = built[0].message.splitlines()[0]
                more = f" (+{len(built) - 1} more)" if len(built) > 1 else ""
                if self._move_ref(tip, base, f"reconcile: {first}{more}"):
                    self._sync(lock_fd)
                    for request in built:
                        assert request.blob_id is not None
                        request.finish(result=Observed(env=request.after, version=str(request.blob_id)))
                    return
                logger.debug("state branch moved under us, rebuilding", extra={"environment": built[0].name})
                pending = built
            for request in pending:
                request.finish(
                    error=LostRace(
                        f"{request.name}: {self.ref} kept moving; gave up after {MAX_REF_RETRIES} attempts"
                    )
                )
        except BaseException as e:
            for request in batch:
                if not request.done:
                    error = e if isinstance(e, Exception) else StoreError(f"interrupted: {e!r}")
                    request.finish(error=error)
            if not isinstance(e, Exception):
                raise
        finally:
            for request in batch:
                if isinstance(request.error, pygit2.GitError):
                    request.error = StoreError(f"cannot write {self._path(request.name)}: {request.error}")

    # -- the audit trail -------------------------------------------------------------

    @property
    def events(self) -> EventLog:
        """The branch as an event log (the one reader of its history)."""
        if self._events is None:
            self._events = EventLog(self._repo, self.ref)
        return self._events

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        query = EventQuery(names=() if name is None else (name,), limit=limit)
        return [event.to_record() for event in self.events.events(query)]

    def failure_before(self, name: str) -> FailureContext | None:
        """The failure ``name`` carried before its latest commit (read from that commit's parent)."""
        newest = self.events.events(EventQuery(names=(name,), limit=1))
        if not newest or newest[0].commit is None:
            return None
        with self._mutex:
            commit = self._repo.get(newest[0].commit)
            if not isinstance(commit, pygit2.Commit) or not commit.parents:
                return None
            obj = self._entry(commit.parents[0].tree, name)
            parsed = None if obj is None else self._parse(name, obj)
            return parsed.env.error_details if isinstance(parsed, Observed) else None

    def unlock(self, name: str, lock_id: UUID) -> Observed:
        return force_unlock(self, name, lock_id)


class StateTree(Mapping[str, Observed | CorruptState]):
    """The ``<name>/`` trees of one tip of the state branch, parsed on first access (``read_lazily``).

    Iterating gives every ``<name>/`` tree; one without a ``state.json`` reads as absent.
    """

    def __init__(self, store: GitStore, entries: dict[str, pygit2.Tree]) -> None:
        self._store = store
        self._entries = entries
        self._parsed: dict[str, Observed | CorruptState | None] = {}

    def version(self, name: str) -> str | None:
        """The id of ``<name>/``'s tree: it fixes what ``state.json`` says (``None``: no such tree)."""
        entry = self._entries.get(name)
        return str(entry.id) if entry is not None else None

    def __getitem__(self, name: str) -> Observed | CorruptState:
        if name in self._parsed:
            found = self._parsed[name]
        else:
            entry = self._entries.get(name)
            with self._store._mutex:
                found = None if entry is None else self._store._read_subtree(entry, name)
            self._parsed[name] = found
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def entry_at(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    """The object at ``path`` under ``tree``; ``None`` only when the tree has no such entry.

    An object the store lacks is an error (``pygit2.GitError``), never an absent entry:
    pygit2's ``NotFoundError`` is also a ``KeyError``, and taking it for "no state" would
    let an environment whose state cannot be read be created a second time.

    The path is interned: pygit2 1.21's ``Tree.__getitem__`` and ``__contains__`` keep a
    reference to the key they are given, so a fresh string per read (70 bytes) was kept
    for good, megabytes per resync at 10,000 environments (decision 027). Interned, each
    distinct path is kept once.
    """
    try:
        return tree[sys.intern(path)]
    except pygit2.GitError:
        raise
    except KeyError:
        return None
