"""The file store (``--store file``, the seed's): state in the data dir, one lock file per environment.

``<data>/<name>/state.json`` is replaced atomically (temp file, fsync, rename,
fsync of the directory) under ``state.json.lock``, which holds the writer's
PID; each transition also appends one line to ``<data>/<name>/history.jsonl``
so the audit trail survives without git.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import UUID

from reconciler.domain import AnyEnvironment, FailureContext, StateDocumentError, format_timestamp
from reconciler.store.errors import CorruptStateError, InvalidLockFile, LockTimeout, LostRace, StoreError
from reconciler.store.lock import holder_label, process_alive, this_holder
from reconciler.store.message import RECONCILER_ACTOR, TRANSITION
from reconciler.store.model import CorruptState, Observed, TransitionRecord
from reconciler.store.recovery import force_unlock

STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
DEFAULT_LOCK_TIMEOUT_SECONDS = 10.0
LOCK_POLL_SECONDS = 0.1
#: An empty lock file is another writer between its create and its write.
_WRITE_RACE_SLEEP_SECONDS = 0.005


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_path_for(path: Path) -> Path:
    """``test.json`` -> ``test.json.lock``; ``no_extension`` -> ``no_extension.lock``."""
    return path.with_name(path.name + ".lock")


class FileLock:
    """An exclusive lock beside ``path``, holding this process's PID; not re-entrant.

    A lock whose PID is dead is stale and removed. Use it as a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
        poll: float = LOCK_POLL_SECONDS,
    ) -> None:
        self.path = lock_path_for(Path(path))
        self.timeout = timeout
        self.poll = poll
        self._held_inode: int | None = None

    @property
    def held(self) -> bool:
        return self._held_inode is not None

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, str(os.getpid()).encode())
            os.fsync(fd)
            self._held_inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        return True

    def _remove_if_stale(self, pid: int) -> None:
        """Remove the lock file if it still is the dead ``pid``'s (another waiter may have replaced it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                return
            content = os.pread(fd, 64, 0).decode("utf-8", "replace").strip()
            if same_file and content == str(pid):
                os.unlink(self.path)
        finally:
            os.close(fd)

    def acquire(self) -> None:
        if self.held:
            raise StoreError(f"{self.path}: already held by this object (the lock is not re-entrant)")
        deadline = time.monotonic() + self.timeout
        while True:
            if self._try_create():
                return
            try:
                content = self.path.read_text(encoding="utf-8", errors="replace").strip()
            except FileNotFoundError:
                continue  # released between our create and our read
            if content == "":
                time.sleep(_WRITE_RACE_SLEEP_SECONDS)
            elif not content.isdecimal():
                raise InvalidLockFile(
                    f"invalid lock file {self.path}: expected a process id, found {content[:40]!r}\n"
                    f"Tip: make sure no reconciler is running, then delete {self.path}."
                )
            elif not process_alive(int(content)):
                self._remove_if_stale(int(content))
                continue  # stale: retry at once
            else:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"timed out after {self.timeout:g}s waiting for {self.path}, "
                        f"held by process {content}\n"
                        f"Tip: wait for process {content} to finish, or stop it if it hangs.",
                        holder_pid=int(content),
                    )
                time.sleep(self.poll)
            if time.monotonic() >= deadline + self.timeout:
                raise LockTimeout(f"gave up on {self.path}: it never held a PID", holder_pid=0)

    def release(self) -> None:
        if self._held_inode is None:
            return
        try:
            if os.stat(self.path).st_ino == self._held_inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            self._held_inode = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileStore:
    """A ``StateStore`` in plain files under the data dir."""

    def __init__(
        self, data_dir: str | os.PathLike[str], lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    ) -> None:
        self.data_dir = Path(data_dir)
        self.lock_timeout = lock_timeout
        self._mutex = threading.RLock()

    def _state_path(self, name: str) -> Path:
        return self.data_dir / name / STATE_FILE

    def _load(self, name: str) -> Observed | CorruptState | None:
        path = self._state_path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            return CorruptState(name, str(path), f"cannot read: {e.strerror}")
        try:
            env = AnyEnvironment.from_json(data)
        except StateDocumentError as e:
            return CorruptState(name, str(path), str(e))
        except UnicodeDecodeError as e:
            return CorruptState(name, str(path), f"not UTF-8 text: {e}")
        if env.name != name:
            return CorruptState(name, str(path), f"document names environment '{env.name}'")
        return Observed(env=env, version=_version(data))

    def read(self, name: str) -> Observed | None:
        result = self._load(name)
        if isinstance(result, CorruptState):
            raise CorruptStateError(result)
        return result

    def read_all(self) -> dict[str, Observed | CorruptState]:
        if not self.data_dir.is_dir():
            return {}
        found: dict[str, Observed | CorruptState] = {}
        for child in sorted(self.data_dir.iterdir()):
            if child.is_dir() and (child / STATE_FILE).exists():
                result = self._load(child.name)
                if result is not None:
                    found[child.name] = result
        return found

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
        if after.name != name:
            raise ValueError(f"cannot store environment '{after.name}' under the name '{name}'")
        data = after.to_json().encode()
        directory = self.data_dir / name
        try:
            with self._mutex:
                if not directory.is_dir():
                    directory.mkdir(parents=True, exist_ok=True)
                    fsync_dir(directory.parent)
                with FileLock(directory / STATE_FILE, timeout=self.lock_timeout):
                    current = self._load(name)
                    if isinstance(current, CorruptState):
                        raise CorruptStateError(current)
                    current_version = None if current is None else current.version
                    if current_version != expected_version:
                        raise LostRace(
                            f"{name}: changed since it was read "
                            f"(expected version {expected_version}, found {current_version})"
                        )
                    atomic_write(directory / STATE_FILE, data)
                    before = None if current is None else current.env.error_details
                    self._append_history(
                        name,
                        from_state=from_state,
                        after=after,
                        desired_commit=desired_commit,
                        detail=detail,
                        before=before,
                        actor=actor or RECONCILER_ACTOR,
                        event=event,
                    )
        except OSError as e:
            raise StoreError(f"cannot write {directory / STATE_FILE}: {e}") from e
        return Observed(env=after, version=_version(data))

    def _append_history(
        self,
        name: str,
        *,
        from_state: str,
        after: AnyEnvironment,
        desired_commit: str | None,
        detail: str | None,
        before: FailureContext | None,
        actor: str,
        event: str,
    ) -> None:
        line: dict[str, Any] = {
            "name": name,
            "from": from_state,
            "to": after.state_name,
            "desiredCommit": desired_commit,
            "holder": holder_label(this_holder()),
            "detail": detail,
            "actor": actor,
            "event": event,
            "at": format_timestamp(datetime.now(UTC)),
            "failureBefore": None if before is None else before.model_dump(mode="json", by_alias=True),
        }
        path = self.data_dir / name / HISTORY_FILE
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _history_lines(self, name: str) -> list[dict[str, Any]]:
        path = self.data_dir / name / HISTORY_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines: list[dict[str, Any]] = []
        for raw in text.splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue  # a torn last line from a crash mid-append
        return lines

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        if name is not None:
            names = [name]
        elif self.data_dir.is_dir():
            names = sorted(p.name for p in self.data_dir.iterdir() if (p / HISTORY_FILE).exists())
        else:
            names = []
        keyed: list[tuple[datetime, int, TransitionRecord]] = []
        for n in names:
            for index, line in enumerate(self._history_lines(n)):
                record = TransitionRecord(
                    name=line["name"],
                    from_state=line["from"],
                    to_state=line["to"],
                    desired_commit=line.get("desiredCommit"),
                    holder=line.get("holder", ""),
                    detail=line.get("detail"),
                    at=datetime.fromisoformat(line["at"]),
                    commit_id=None,
                    actor=line.get("actor"),
                    event=line.get("event", TRANSITION),
                )
                keyed.append((record.at, index, record))
        keyed.sort(key=lambda k: (k[0], k[1]), reverse=True)
        records = [r for _, _, r in keyed]
        return records if limit is None else records[:limit]

    def failure_before(self, name: str) -> FailureContext | None:
        lines = self._history_lines(name)
        if not lines or lines[-1].get("failureBefore") is None:
            return None
        return FailureContext.model_validate(lines[-1]["failureBefore"])

    def unlock(self, name: str, lock_id: UUID) -> Observed:
        return force_unlock(self, name, lock_id)


__all__ = ["FileLock", "FileStore", "atomic_write", "lock_path_for"]
