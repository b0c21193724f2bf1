"""The per-step supervisor: a step's command never outlives its reconciler, nor its lock.

Run by ``reconciler.steps.process`` as the leader of the step's own session::

    python -I -S supervise.py LIFELINE_FD STATUS_FD DEADLINE GRACE -- ARGV...

It starts ``ARGV`` in its own process group (so the command, its children and
the supervisor are one group) and waits for whichever comes first:

* the command exits: the supervisor exits the same way (same code, or killed by
  the same signal) and leaves alone whatever the command left running in the
  background (a service a ``run`` phase started);
* end of file on ``LIFELINE_FD``: the reconciler holds the only write end of
  that pipe and never writes to it, so EOF means the reconciler process is gone,
  however it died (``kill -9`` included). The group gets SIGTERM, then SIGKILL
  after ``GRACE`` seconds. The pipe exists before this process does, so a
  reconciler dying before the supervisor is set up is seen too;
* the wall clock reaches ``DEADLINE`` (seconds since the epoch, ``-`` for
  none): the lock's expiry minus the grace. The supervisor writes ``expired``
  to ``STATUS_FD`` and kills the group the same way, so a step never runs past
  its lock's expiry even if its reconciler is stuck or cut off.

``STATUS_FD`` also gets ``started PID``, or ``error ERRNO`` when the command
cannot be started (the supervisor then exits 127). The supervisor ignores
SIGTERM: a SIGTERM to the whole group (the reconciler's timeout or cancel)
reaches the command, and the supervisor then exits as the command did.

Deliberately tiny and standalone: it imports only ``os``, ``select``,
``signal``, ``sys`` and ``time``, and is run with ``-I -S`` (no site, no user
paths), because one starts for every command a step runs.
"""

import os
import select
import signal
import sys
import time

#: How often the wall clock and the child are looked at when nothing else wakes us.
_TICK_SECONDS = 1.0
_POLL_SECONDS = 0.02
#: Exit code when the command could not be started (as a shell reports it).
EXIT_NOT_STARTED = 127


def _write(fd: int, message: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost an import per step
        os.write(fd, message.encode() + b"\n")
    except OSError:
        pass


def _others_alive(pgid: int, me: int) -> bool:
    """Whether a live (non-zombie) process other than ``me`` is in group ``pgid``."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            return True
    return False


def _reap(pid: int) -> int | None:
    """The wait status of ``pid`` if it has ended (reaping it), else ``None``."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return signal.SIGKILL  # reaped by somebody else: how it ended is unknown
    return status if done == pid else None


def _stop_group(child: int, grace: float) -> int | None:
    """SIGTERM our whole group (we ignore it), SIGKILL it after ``grace`` if anything is left.

    The SIGKILL takes this process down too, which is fine: it is the last thing left to do.
    """
    me = os.getpid()
    pgid = os.getpgid(0)
    status: int | None = None
    os.killpg(pgid, signal.SIGTERM)
    give_up = time.monotonic() + grace
    while time.monotonic() < give_up:
        if status is None:
            status = _reap(child)
        if not _others_alive(pgid, me):
            return status
        time.sleep(_POLL_SECONDS)
    os.killpg(pgid, signal.SIGKILL)
    return status


def _exit_like(status: int) -> None:
    """Exit the way the command did: its exit code, or death by its signal."""
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else int(signal.SIGKILL)
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        try:
            import resource  # only here: a core dump of this process helps nobody

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, OSError, ValueError):
            pass
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def _lifeline_cut(fd: int) -> bool:
    """Whether the reconciler's end of the lifeline is closed (it never writes to it)."""
    try:
        return os.read(fd, 1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait_status(child: int, status: int | None) -> int:
    """The child's wait status, waiting for it when it is not reaped yet (it is dead or dying)."""
    if status is not None:
        return status
    try:
        return os.waitpid(child, 0)[1]
    except ChildProcessError:
        return signal.SIGKILL  # the wait status of a process killed by SIGKILL


def main(args: list[str]) -> None:
    if len(args) < 6 or args[4] != "--":
        sys.stderr.write("usage: supervise.py LIFELINE_FD STATUS_FD DEADLINE GRACE -- ARGV...\n")
        os._exit(2)
    lifeline, status_fd = int(args[0]), int(args[1])
    deadline = None if args[2] == "-" else float(args[2])
    grace = float(args[3])
    argv = args[5:]
    # Neither pipe may reach the command: the lifeline must close when we do, and so must the status.
    os.set_inheritable(lifeline, False)
    os.set_inheritable(status_fd, False)
    os.set_blocking(lifeline, False)
    # poll, not select: the descriptor numbers are the reconciler's and may exceed FD_SETSIZE.
    poller = select.poll()
    poller.register(lifeline, select.POLLIN)

    # The reconciler may already be gone, or the lock already expired: then nothing starts.
    if poller.poll(0) and _lifeline_cut(lifeline):
        os._exit(EXIT_NOT_STARTED)
    if deadline is not None and time.time() >= deadline:
        _write(status_fd, "expired")
        os._exit(EXIT_NOT_STARTED)
    try:
        # Python ignores SIGPIPE and SIGXFSZ for itself; the command gets them back, as from subprocess.
        child = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as exc:
        _write(status_fd, f"error {exc.errno or 0}")
        os._exit(EXIT_NOT_STARTED)
    # A signal to the whole group is for the command; we end the way it ends.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _write(status_fd, f"started {child}")
    tick_ms = _POLL_SECONDS * 1000
    try:
        poller.register(os.pidfd_open(child), select.POLLIN)
        tick_ms = _TICK_SECONDS * 1000
    except (AttributeError, OSError):
        pass  # no pidfd (old kernel): look at the child every tick instead

    while True:
        timeout = tick_ms
        if deadline is not None:
            timeout = max(0.0, min(timeout, (deadline - time.time()) * 1000))
        ready = {fd for fd, _ in poller.poll(timeout)}
        status = _reap(child)
        if status is not None:
            _exit_like(status)
        if lifeline in ready and _lifeline_cut(lifeline):
            # The reconciler is gone: nobody will read how this ends.
            _stop_group(child, grace)
            os._exit(1)
        if deadline is not None and time.time() >= deadline:
            _write(status_fd, "expired")
            _exit_like(_wait_status(child, _stop_group(child, grace)))


if __name__ == "__main__":
    main(sys.argv[1:])
