"""A forked helper that does part of a one-shot command's cold load on the other core (decisions 026, 031).

``reconcile plan`` over thousands of environment files with no plan cache is
CPU-bound in one process. After the package is imported and the config and
blueprints are parsed, the loader forks a child that parses and resolves the
second half of the environment files while the parent does the first half.
The child hands back what it learned as plan-cache entries (documents and
phase hashes keyed by git object ids, decision 017), which the parent checks
and uses exactly as it uses a plan cache a previous run left. So a helper can
only save work, never change a result: if it fails, dies, or sends something
damaged, its entries are missing and the parent computes them itself.
For ``plan`` the child then decides its half's plans and sends them as a second
message, taken as kept plans (decision 031): the same rule holds for them.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Collection

logger = logging.getLogger(__name__)

#: Below this many files the fork and the hand-over cost more than they save.
MIN_FILES = 2000
#: How long the parent waits for a helper past the point it needs its entries, before doing the work.
PATIENCE_SECONDS = 60.0


class Helper:
    """A child process computing plan-cache entries; each ``receive`` takes its next message.

    The child writes each message into a file shared with the parent (in memory where the system
    has ``memfd_create``) and says on a pipe only where it is, so it never waits for the parent to
    read: it goes on with its next stage while the parent is still busy with its own half.
    """

    def __init__(self, pid: int, fd: int, data: int, share: frozenset[str], messages: int = 1) -> None:
        self.pid = pid
        self.share = share
        self._fd = fd
        self._data = data
        self._pending = b""
        self._left = messages
        self._done = False

    @property
    def more(self) -> bool:
        """Whether a message is still to come (the child is not known to be done or gone)."""
        return not self._done and self._left > 0

    def receive(self) -> bytes | None:
        """The child's next message (``None`` if it failed); waits for it, at most ``PATIENCE_SECONDS``."""
        if not self.more:
            return None
        deadline = time.monotonic() + PATIENCE_SECONDS
        while len(self._pending) < _NOTICE.size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                logger.debug("load helper %d too slow: doing its share here", self.pid)
                self._close(kill=True)
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:  # it ended (or died) before saying this message was written
                self._close(kill=True)
                return None
            self._pending += chunk
        offset, size = _NOTICE.unpack(self._pending[: _NOTICE.size])
        self._pending = self._pending[_NOTICE.size :]
        self._left -= 1
        try:
            payload = os.pread(self._data, size, offset) if size else b""
        except OSError:
            payload = b""
        if self._left == 0:
            self._close(kill=False)
        return payload if len(payload) == size and payload else None

    def cancel(self) -> None:
        """Stop waiting for it: its work is not needed (or no longer wanted)."""
        self._close(kill=True)

    def _close(self, *, kill: bool) -> None:
        if self._done:
            return
        self._done = True
        os.close(self._fd)
        os.close(self._data)
        self._reap(kill=kill)

    def _reap(self, *, kill: bool) -> bool:
        """Whether the child exited with 0 (it is killed first when it is not done)."""
        try:
            if kill:
                os.kill(self.pid, 9)
            return os.waitpid(self.pid, 0)[1] == 0
        except (ChildProcessError, ProcessLookupError):  # already reaped (a caller's SIGCHLD handling)
            return False


#: On the pipe, per message: where the child wrote it in the shared file, and its size.
_NOTICE = struct.Struct("<QQ")


#: ``never``: no helper; ``always``: a helper whenever one is safe, however busy the machine is.
MODE_ENV = "RECONCILE_HELPER"


def can_fork() -> bool:
    """Forking is safe only in a process with one thread (no lock another thread may hold)."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1


def spare_core() -> bool:
    """Whether a second core is likely free: nothing else runs now, or the last minute left room.

    On a machine whose other cores are busy, a helper only competes with its parent
    and adds the cost of the hand-over. The 1-minute load average alone also counts
    what just ended (the previous ``plan`` and its helper, run back to back in CI), so
    the tasks runnable at this moment are asked first.
    """
    mode = os.environ.get(MODE_ENV, "")
    if mode in ("never", "always"):
        return mode == "always"
    cores = os.cpu_count() or 1
    others = running_besides_us()
    if others is not None and others <= cores - 2:
        return True
    try:
        return os.getloadavg()[0] <= cores - 0.5
    except OSError:
        return True


def running_besides_us() -> int | None:
    """How many other tasks are runnable right now (the least of three looks), if the system says."""
    seen: list[int] = []
    for _ in range(3):
        try:
            with open("/proc/loadavg", "rb") as f:
                running = int(f.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return None
        seen.append(running - 1)  # this process is one of them
        time.sleep(0.0005)
    return max(0, min(seen))


def start(
    share: Collection[str], work: Callable[[], bytes], then: Callable[[], bytes] | None = None
) -> Helper | None:
    """Fork a child that runs ``work`` and sends its result, then (if given) ``then`` and sends that.

    ``None`` when no helper can be had.
    """
    if not can_fork() or not spare_core():
        return None
    try:
        data = _shared_file()
    except OSError:
        return None
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        os.close(data)
        return None
    try:
        pid = os.fork()
    except OSError:
        for fd in (read_fd, write_fd, data):
            os.close(fd)
        return None
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers or flushes its streams
        code = 1
        try:
            os.close(read_fd)
            offset = 0
            for stage in (work, then):
                if stage is None:
                    continue
                payload = stage()
                view = memoryview(payload)
                written = 0
                while written < len(view):
                    written += os.pwrite(data, view[written:], offset + written)
                notice = memoryview(_NOTICE.pack(offset, len(payload)))
                while notice:
                    notice = notice[os.write(write_fd, notice) :]
                offset += len(payload)
            code = 0
        except BaseException:  # noqa: S110 (the parent does the work itself)
            pass
        finally:
            os._exit(code)
    os.close(write_fd)
    return Helper(pid, read_fd, data, frozenset(share), messages=2 if then is not None else 1)


def _shared_file() -> int:
    """A file both processes reach through one descriptor: in memory, or an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("reconcile-helper", os.MFD_CLOEXEC)
        except OSError:
            pass
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (its descriptor outlives the object)
    fd = os.dup(handle.fileno())
    handle.close()
    return fd
