"""A push that is a compare-and-swap of one remote ref, on every transport.

libgit2 cannot be trusted with this: its local transport (paths, ``file://``)
overwrites the remote ref without checking its old value, and on the network
transports a ref the server refuses is reported only through a callback while
``Remote.push()`` returns normally. The ``git`` CLI's

    git push --porcelain --no-verify --force-with-lease=<ref>:<expected> <remote> <commit>:<ref>

is a compare-and-swap on every transport: the client refuses unless the ref the
remote advertises is ``expected`` (empty: the ref must not exist), and
``receive-pack`` on the other end (local transport included) moves it under its
lock only if it still holds the old value the client sent. See
docs/decisions/011-remote-compare-and-swap.md.

The result of every ref is read from ``--porcelain`` output, never inferred
from the exit code alone, and anything not positively accepted is not a
success. A push whose outcome is unknown (a timeout, a dropped connection) is
reported as such: the caller fetches to learn what the remote holds.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from enum import StrEnum

from reconciler.store.gitcli import last_line, run_git

#: A push that takes longer than this has an unknown outcome (the caller fetches to decide).
PUSH_TIMEOUT_SECONDS = 120.0

#: ``--porcelain`` flags of a ref the remote now holds at the pushed value.
_ACCEPTED_FLAGS = frozenset({" ", "+", "*", "="})


class PushStatus(StrEnum):
    #: The remote's ref moved from the expected value to the pushed commit (or already held it).
    ACCEPTED = "accepted"
    #: The remote refused this ref: stale lease, non-fast-forward, a hook, a failed ref lock.
    REJECTED = "rejected"
    #: No per-ref verdict: the connection, the credentials or the command failed, or it timed out.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PushResult:
    status: PushStatus
    #: What the remote or git said: ``stale info``, ``pre-receive hook declined``, the error text.
    reason: str

    @property
    def accepted(self) -> bool:
        return self.status is PushStatus.ACCEPTED


def parse_porcelain(stdout: str, ref: str) -> PushResult | None:
    """The verdict on ``ref`` in ``git push --porcelain`` output; ``None`` when it has none.

    A ref's line is ``<flag>\\t<from>:<to>\\t<summary>``, the summary ending in
    ``(<reason>)`` for a refused ref; ``!`` is a refusal, ``=`` up to date.
    """
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        flag, refspec, summary = parts[0], parts[1], "\t".join(parts[2:])
        if refspec.rpartition(":")[2] != ref:
            continue
        if flag in _ACCEPTED_FLAGS:
            return PushResult(PushStatus.ACCEPTED, summary.strip())
        reason = summary.strip()
        if reason.endswith(")") and "(" in reason:
            reason = reason[reason.rindex("(") + 1 : -1]
        return PushResult(PushStatus.REJECTED, reason or summary.strip())
    return None


def push_ref(
    git_dir: str,
    remote: str,
    commit: str,
    ref: str,
    expected: str | None,
    *,
    timeout: float = PUSH_TIMEOUT_SECONDS,
) -> PushResult:
    """Move ``remote``'s ``ref`` from ``expected`` (``None``: absent) to ``commit``, or say why not."""
    lease = f"{ref}:{expected or ''}"
    argv = [
        "push",
        "--porcelain",
        "--no-verify",
        f"--force-with-lease={lease}",
        remote,
        f"{commit}:{ref}",
    ]
    try:
        # Never waits on a prompt; git's own words, not a translation of them (``gitcli``).
        done = run_git(git_dir, *argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        return PushResult(PushStatus.UNKNOWN, f"git push timed out after {timeout:g}s")
    except OSError as e:
        return PushResult(PushStatus.UNKNOWN, f"cannot run git: {e}")
    verdict = parse_porcelain(done.stdout, ref)
    if verdict is not None:
        if verdict.accepted and done.returncode != 0:
            # Accepted by the remote yet git failed afterwards: trust only what a fetch shows.
            return PushResult(
                PushStatus.UNKNOWN, last_line(done.stderr) or f"git push exited {done.returncode}"
            )
        return verdict
    return PushResult(PushStatus.UNKNOWN, last_line(done.stderr) or f"git push exited {done.returncode}")
