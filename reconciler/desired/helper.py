"""A forked helper that does part of a one-shot command's cold load on the other core (decision 026).

``reconcile plan`` over thousands of environment files with no plan cache is
CPU-bound in one process. After the package is imported and the config and
blueprints are parsed, the loader forks a child that parses and resolves the
second half of the environment files while the parent does the first half.
The child hands back what it learned as plan-cache entries (documents and
phase hashes keyed by git object ids, decision 017), which the parent checks
and uses exactly as it uses a plan cache a previous run left. So a helper can
only save work, never change a result: if it fails, dies, or sends something
damaged, its entries are missing and the parent computes them itself.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Collection

logger = logging.getLogger(__name__)

#: Below this many files the fork and the hand-over cost more than they save.
MIN_FILES = 2000
#: How long the parent waits for a helper past the point it needs its entries, before doing the work.
PATIENCE_SECONDS = 60.0


class Helper:
    """A child process computing plan-cache entries; ``receive`` reads them once, then reaps it."""

    def __init__(self, pid: int, fd: int, share: frozenset[str]) -> None:
        self.pid = pid
        self.share = share
        self._fd = fd
        self._done = False

    def receive(self) -> bytes | None:
        """The child's payload (``None`` if it failed); waits for it, at most ``PATIENCE_SECONDS``."""
        if self._done:
            return None
        self._done = True
        chunks: list[bytes] = []
        deadline = time.monotonic() + PATIENCE_SECONDS
        complete = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                    logger.debug("load helper %d too slow: doing its share here", self.pid)
                    break
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    complete = True
                    break
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            succeeded = self._reap(kill=not complete)
        payload = b"".join(chunks)
        return payload if complete and succeeded and payload else None

    def cancel(self) -> None:
        """Stop waiting for it: its work is not needed (or no longer wanted)."""
        if not self._done:
            self._done = True
            os.close(self._fd)
            self._reap(kill=True)

    def _reap(self, *, kill: bool) -> bool:
        """Whether the child exited with 0 (it is killed first when it is not done)."""
        try:
            if kill:
                os.kill(self.pid, 9)
            return os.waitpid(self.pid, 0)[1] == 0
        except (ChildProcessError, ProcessLookupError):  # already reaped (a caller's SIGCHLD handling)
            return False


#: ``never``: no helper; ``always``: a helper whenever one is safe, however busy the machine is.
MODE_ENV = "RECONCILE_HELPER"


def can_fork() -> bool:
    """Forking is safe only in a process with one thread (no lock another thread may hold)."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1


def spare_core() -> bool:
    """Whether a second core is likely free: the 1-minute load average leaves at least half of one.

    On a machine whose other cores are busy, a helper only competes with its parent
    and adds the cost of the hand-over.
    """
    mode = os.environ.get(MODE_ENV, "")
    if mode in ("never", "always"):
        return mode == "always"
    try:
        return os.getloadavg()[0] <= (os.cpu_count() or 1) - 0.5
    except OSError:
        return True


def start(share: Collection[str], work: Callable[[], bytes]) -> Helper | None:
    """Fork a child that runs ``work`` and sends its result; ``None`` when no helper can be had."""
    if not can_fork() or not spare_core():
        return None
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers or flushes its streams
        code = 1
        try:
            os.close(read_fd)
            payload = work()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view) :]
            code = 0
        except BaseException:  # noqa: S110 (the parent does the work itself)
            pass
        finally:
            os._exit(code)
    os.close(write_fd)
    return Helper(pid, read_fd, frozenset(share))
