"""Step processes left running by a reconciler that died (SIGKILL, OOM, power cut of the process).

Used by the engine before it recovers a stale lock held on this host, so
`reconcile apply` and the daemon alike never retry a phase beside its leftovers.

A step runs in its own session so a timeout can kill its whole group, under a
supervisor that stops the group as soon as its reconciler dies
(``reconciler.steps.supervise``). This is the second belt, for when the
supervisor itself was killed too (``kill -9`` of the whole tree, the OOM
killer): before a stale lock is recovered and the phase retried, its orphans
are killed, or the retry would run the phase twice at once. They are found by
the ``RECONCILE_ENVIRONMENT`` and ``RECONCILE_LOCK_ID`` variables every step
process (its supervisor included) carries, the lock id (a uuid4) naming the
lock of the interrupted phase, so a service an earlier, completed phase
started is never touched. The data dir is not part of the match: a second
reconciler on this host, with its own clone and data dir, stops the first
one's leftovers too. A group whose leader is this process's own child is a
step of ours still running and is never touched, and so is our own group and
any group led by a live process that does not carry the markers (a shell that
started a step which has not yet moved to its own session). Linux only (``/proc``);
elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path

from reconciler.domain import Lock
from reconciler.store.lock import process_alive

logger = logging.getLogger(__name__)


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    found: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key.startswith(b"RECONCILE_"):
            found[key.decode(errors="replace")] = value.decode(errors="replace")
    return found


def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, pgid)`` of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 3 or fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[2])


def orphaned_groups(name: str, lock_id: str) -> set[int]:
    """Process groups running ``name``'s steps for lock ``lock_id``, whatever their data dir, not ours."""
    me = os.getpid()
    own_group = os.getpgrp()
    groups: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return groups
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        env = _environ(pid)
        if not env or env.get("RECONCILE_ENVIRONMENT") != name or env.get("RECONCILE_LOCK_ID") != lock_id:
            continue
        stat = _stat(pid)
        if stat is None:
            continue
        ppid, pgid = stat
        if pgid <= 1 or pgid == own_group:
            continue
        leader = _stat(pgid)
        # A group whose leader is our own child is a step of ours still running: never touch it.
        if ppid == me or (leader is not None and leader[0] == me):
            continue
        # A step leads its own group (its supervisor is the session leader). A marked process in a
        # group led by a live, unmarked process (a shell, make, a CI runner) has not left that
        # group yet: killing the group would kill whoever started it.
        if leader is not None and not _same_phase(pgid, name, lock_id):
            continue
        groups.add(pgid)
    return groups


def _same_phase(pid: int, name: str, lock_id: str) -> bool:
    env = _environ(pid) or {}
    return env.get("RECONCILE_ENVIRONMENT") == name and env.get("RECONCILE_LOCK_ID") == lock_id


def kill_orphaned_steps(name: str, lock_id: str, grace: float = 2.0) -> int:
    """SIGTERM, then SIGKILL, every orphaned step group of ``name``'s lock; return how many there were."""
    groups = orphaned_groups(name, lock_id)
    for pgid in groups:
        logger.warning(
            "killing a step left running by a dead reconciler", extra={"environment": name, "pgid": pgid}
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        if not orphaned_groups(name, lock_id):
            return len(groups)
        time.sleep(0.05)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    return len(groups)


def stop_leftovers(data_dir: Path, name: str, lock: Lock) -> int:
    """Stop what the holder of ``lock`` left running, if that holder was on this host and is gone.

    The one rule every recovery path uses (the engine's stale-lock recovery, the
    daemon's, ``reconcile unlock``): a live holder finds its lock gone and records
    nothing, and a holder on another host cannot be reached from here (its
    supervisors stop its steps by the lock's expiry). ``data_dir`` is not used to
    find them: leftovers are found by lock id whatever data dir they ran under.
    """
    del data_dir  # kept so the callers need not change; see above
    holder = lock.holder
    if holder.host != socket.gethostname() or process_alive(holder.pid, holder.process_started_at):
        return 0
    return kill_orphaned_steps(name, str(lock.id))
