"""The environment lock of SPEC section 4.3: who holds it, and when it is stale.

A holder is identified by host, PID and the process's start time, so a PID
the kernel has since reused for another process is not taken for the holder.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from functools import cache

from reconciler.domain import Lock, LockHolder

#: Two start times closer than this are the same process (``btime`` has one-second resolution).
_START_TIME_TOLERANCE_SECONDS = 1.0


@cache
def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (which may contain spaces)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_started_at(pid: int) -> datetime | None:
    """When process ``pid`` started; ``None`` if unknown or gone."""
    fields = _stat_fields(pid)
    boot = _boot_time()
    if fields is None or boot is None or len(fields) < 20:
        return None
    # Field 22 of stat(5) ("starttime", clock ticks since boot) is index 19 after the name.
    return datetime.fromtimestamp(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), UTC)


def process_alive(pid: int, started_at: datetime | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, when given, started at ``started_at``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is not None and fields[0] in ("Z", "X"):
        return False
    if started_at is not None:
        actual = process_started_at(pid)
        if actual is not None and abs((actual - started_at).total_seconds()) > _START_TIME_TOLERANCE_SECONDS:
            return False
    return True


def this_holder() -> LockHolder:
    pid = os.getpid()
    return LockHolder(host=socket.gethostname(), pid=pid, process_started_at=process_started_at(pid))


def holder_label(holder: LockHolder) -> str:
    """``host:pid``, as the ``Reconcile-Holder`` trailer writes it."""
    return f"{holder.host}:{holder.pid}"


def new_lock(timeout_seconds: float, grace_seconds: float, now: datetime) -> Lock:
    """A fresh lock for this process, expiring after the phase timeout plus a grace."""
    return Lock(
        holder=this_holder(),
        acquired_at=now,
        expires_at=now + timedelta(seconds=timeout_seconds + grace_seconds),
    )


def stale_reason(lock: Lock, now: datetime, host: str | None = None) -> str | None:
    """Why ``lock`` is stale, or ``None`` if its holder may still be working."""
    if now >= lock.expires_at:
        return "lock expired"
    here = host if host is not None else socket.gethostname()
    holder = lock.holder
    if holder.host == here and not process_alive(holder.pid, holder.process_started_at):
        return f"holder {holder_label(holder)} is gone"
    return None


def is_stale(lock: Lock, now: datetime, host: str | None = None) -> bool:
    """Expired, or held by a process on this host that is gone (or whose PID was reused)."""
    return stale_reason(lock, now, host) is not None
