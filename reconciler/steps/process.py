"""The one executor every command-running step goes through.

A command runs under a small supervisor (``supervise.py``) that leads the
step's own session, so supervisor, command and children are one process
group: a timeout or a cancellation kills the whole group, children included,
SIGTERM first and SIGKILL after a short grace. The supervisor also kills the
group on its own when this process dies (it holds the read end of a lifeline
pipe whose only write end is ours) and when the wall clock reaches the
phase's lock expiry minus that grace, so a step never outlives its reconciler
nor its lock. Output is read in this thread with a selector, redacted line by
line, streamed to ``ctx.log`` and kept as a bounded tail; nothing is buffered
without bound. When the command exits normally, whatever it left running in
the background (a service started by a ``run`` phase) is left alone: only a
timeout, a cancellation, the reconciler's death or the lock's expiry kill the
group.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.outcome import (
    StepContext,
    exited_summary,
    interrupted_summary,
    lock_expired_summary,
    timed_out_summary,
)
from reconciler.steps.redact import REDACTED, secret_fragments

#: Seconds between SIGTERM and SIGKILL of a step's process group.
TERM_GRACE_SECONDS = 2.0
#: How long to wait for a SIGKILLed group to be gone before giving up on it.
KILL_WAIT_SECONDS = 2.0
#: How long to keep reading after the command exited, for output still in the pipe.
DRAIN_SECONDS = 0.5
TAIL_LINES = 200
TAIL_BYTES = 64 * 1024
#: A line longer than this is cut into pieces, so one endless line cannot exhaust memory.
MAX_LINE_BYTES = 64 * 1024
#: Bound of the silently captured stdout of a non-echoed command (``tofu output -json``).
MAX_CAPTURE_BYTES = 32 * 1024 * 1024
_POLL_SECONDS = 0.05
#: The supervisor every command runs under; run with ``-I -S``, it imports only a few builtin modules.
SUPERVISOR = Path(__file__).with_name("supervise.py")


@dataclass(frozen=True)
class GeneratedFile:
    """A file a command needs (a var file, an inventory), written before it runs.

    Written with ``mode`` (0600 by default: it may hold secrets) and deleted
    after the command unless ``keep``.
    """

    path: Path
    content: str
    mode: int = 0o600
    keep: bool = False


@dataclass(frozen=True)
class Command:
    """A fully built command: what a builder returns and the executor runs.

    ``env`` is added to the reconciler's own environment (``unset_env`` is
    removed from it), so a builder stays a pure function of its inputs.
    """

    label: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    files: tuple[GeneratedFile, ...] = ()
    unset_env: tuple[str, ...] = ()

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        merged = {k: v for k, v in base.items() if k not in self.unset_env}
        merged.update(self.env)
        return merged


class ProcessStatus(StrEnum):
    EXITED = "exited"
    TIMEOUT = "timeout"
    #: The supervisor stopped it: the wall clock reached the lock's expiry (minus the kill grace).
    LOCK_EXPIRED = "lock_expired"
    INTERRUPTED = "interrupted"
    NOT_STARTED = "not_started"


@dataclass(frozen=True)
class ProcessResult:
    status: ProcessStatus
    exit_code: int | None
    #: The redacted tail of the streamed output.
    tail: str
    started_at: datetime
    finished_at: datetime
    elapsed_seconds: float
    #: The raw stdout of a command run with ``echo=False`` (not redacted: parse it, never log it).
    captured: bytes = b""
    #: Why the command could not start (``NOT_STARTED``).
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is ProcessStatus.EXITED and self.exit_code == 0


class OutputTail:
    """The last ``TAIL_LINES`` lines, at most ``TAIL_BYTES`` characters in all."""

    def __init__(self, max_lines: int = TAIL_LINES, max_chars: int = TAIL_BYTES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._max_chars = max_chars

    def append(self, line: str) -> None:
        self._lines.append(line)

    def text(self) -> str:
        kept: list[str] = []
        total = 0
        for line in reversed(self._lines):
            if total + len(line) + 1 > self._max_chars:
                if not kept:
                    kept.append(line[-self._max_chars :])
                break
            kept.append(line)
            total += len(line) + 1
        return "\n".join(reversed(kept))


class _LineSink:
    """Turns chunks of bytes into redacted lines for the log and the tail."""

    def __init__(self, ctx: StepContext, tail: OutputTail) -> None:
        self._fragments = secret_fragments(ctx.secrets)
        self._log = ctx.log
        self._tail = tail
        self._pending = bytearray()

    def feed(self, data: bytes) -> None:
        self._pending.extend(data)
        while True:
            newline = self._pending.find(b"\n")
            if newline < 0:
                if len(self._pending) >= MAX_LINE_BYTES:
                    self._emit(bytes(self._pending[:MAX_LINE_BYTES]))
                    del self._pending[:MAX_LINE_BYTES]
                    continue
                return
            self._emit(bytes(self._pending[:newline]))
            del self._pending[: newline + 1]

    def close(self) -> None:
        if self._pending:
            self._emit(bytes(self._pending))
            self._pending.clear()

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        for fragment in self._fragments:
            if fragment in line:
                line = line.replace(fragment, REDACTED)
        self._tail.append(line)
        if self._log is not None:
            self._log(line)


@contextlib.contextmanager
def generated_files(files: tuple[GeneratedFile, ...]) -> Iterator[None]:
    """Write ``files`` (owner-only when they may hold secrets) and remove them afterwards."""
    written: list[Path] = []
    try:
        for generated in files:
            generated.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(generated.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, generated.mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), generated.mode)
                handle.write(generated.content)
            if not generated.keep:
                written.append(generated.path)
        yield
    finally:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def kill_process_group(proc: subprocess.Popen[bytes], grace: float = TERM_GRACE_SECONDS) -> None:
    """SIGTERM the command's whole process group, SIGKILL it after ``grace`` if anything is left."""
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_for_group(proc, grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: wait (briefly) until the members are really gone.
    _wait_for_group(proc, KILL_WAIT_SECONDS)


def _wait_for_group(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Whether the group of ``proc`` is gone within ``seconds``."""
    give_up = time.monotonic() + seconds
    while True:
        proc.poll()
        if not _group_alive(proc.pid):
            return True
        if time.monotonic() >= give_up:
            return False
        time.sleep(_POLL_SECONDS / 5)


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != "Z" and fields[2] == str(pgid):
            return True
    return False


def process_markers(ctx: StepContext) -> dict[str, str]:
    """Variables every step process carries (its supervisor, tofu and ansible too), so that processes
    a dead reconciler left behind can be found by environment and the phase's lock id."""
    markers = {"RECONCILE_ENVIRONMENT": ctx.environment, "RECONCILE_DATA_DIR": str(ctx.data_dir)}
    if ctx.lock_id is not None:
        markers["RECONCILE_LOCK_ID"] = ctx.lock_id
    return markers


def run_process(
    command: Command,
    ctx: StepContext,
    *,
    echo: bool = True,
    grace: float = TERM_GRACE_SECONDS,
) -> ProcessResult:
    """Run ``command`` to completion, its deadline, or ``ctx.cancel``; never raises for the command.

    With ``echo=False`` stdout is captured raw (bounded) and not logged, for
    machine-readable output that may hold sensitive values; stderr still streams.
    """
    started_at = utcnow()
    t0 = time.monotonic()
    tail = OutputTail()
    sink = _LineSink(ctx, tail)

    def result(
        status: ProcessStatus, exit_code: int | None, captured: bytes = b"", error: str | None = None
    ) -> ProcessResult:
        return ProcessResult(
            status=status,
            exit_code=exit_code,
            tail=tail.text(),
            started_at=started_at,
            finished_at=utcnow(),
            elapsed_seconds=time.monotonic() - t0,
            captured=captured,
            error=error,
        )

    if ctx.cancel is not None and ctx.cancel.is_set():
        return result(ProcessStatus.INTERRUPTED, None)
    if time.monotonic() >= ctx.deadline:
        return result(ProcessStatus.TIMEOUT, None)
    lock_deadline = supervisor_deadline(ctx, grace)
    if lock_deadline is not None and time.time() >= lock_deadline:
        return result(ProcessStatus.LOCK_EXPIRED, None)

    with generated_files(command.files):
        # The lifeline: the supervisor reads, we never write; our end is not inherited by any other
        # child (os.pipe is close-on-exec, Popen closes all but pass_fds), so EOF means we are gone.
        lifeline_r, lifeline_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            try:
                proc = subprocess.Popen(
                    supervised_argv(command.argv, lifeline_r, status_w, lock_deadline, grace),
                    cwd=command.cwd,
                    env={**command.environ(os.environ), **process_markers(ctx)},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT if echo else subprocess.PIPE,
                    start_new_session=True,
                    pass_fds=(lifeline_r, status_w),
                )
            except OSError as exc:
                return result(
                    ProcessStatus.NOT_STARTED, None, error=f"{command.argv[0]}: {exc.strerror or exc}"
                )
            finally:
                os.close(lifeline_r)
                os.close(status_w)
            status = ProcessStatus.EXITED
            captured = bytearray()
            finished = False
            try:
                status = _pump(proc, ctx, sink, captured, echo=echo, grace=grace)
                finished = True
            finally:
                if not finished:
                    kill_process_group(proc, grace)
                for stream in (proc.stdout, proc.stderr):
                    if stream is not None:
                        stream.close()
                proc.wait()
            reported = _read_status(status_r)
        finally:
            os.close(lifeline_w)
            os.close(status_r)
        sink.close()
        if "error" in reported:
            errno = int(reported["error"] or 0)
            return result(ProcessStatus.NOT_STARTED, None, error=f"{command.argv[0]}: {os.strerror(errno)}")
        if status is ProcessStatus.EXITED and "expired" in reported:
            status = ProcessStatus.LOCK_EXPIRED
        return result(status, proc.returncode, captured=bytes(captured))


def supervisor_deadline(ctx: StepContext, grace: float = TERM_GRACE_SECONDS) -> float | None:
    """When (``time.time()``) the supervisor stops the step: the lock's expiry minus the kill grace."""
    if ctx.lock_expires_at is None:
        return None
    return ctx.lock_expires_at.timestamp() - grace


def supervised_argv(
    argv: tuple[str, ...], lifeline: int, status: int, deadline: float | None, grace: float
) -> list[str]:
    """``argv`` run under the supervisor: an interpreter started with ``-I -S`` (no site, no user paths)."""
    return [
        sys.executable,
        "-I",
        "-S",
        str(SUPERVISOR),
        str(lifeline),
        str(status),
        "-" if deadline is None else repr(deadline),
        repr(grace),
        "--",
        *argv,
    ]


def _read_status(fd: int) -> dict[str, str]:
    """What the exited supervisor reported: ``started PID``, ``error ERRNO``, ``expired``, as a dict."""
    os.set_blocking(fd, False)
    raw = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            raw.extend(chunk)
    reported: dict[str, str] = {}
    for line in raw.decode(errors="replace").splitlines():
        word, _, value = line.partition(" ")
        reported[word] = value
    return reported


def _pump(
    proc: subprocess.Popen[bytes],
    ctx: StepContext,
    sink: _LineSink,
    captured: bytearray,
    *,
    echo: bool,
    grace: float,
) -> ProcessStatus:
    status = ProcessStatus.EXITED
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None
    selector.register(proc.stdout, selectors.EVENT_READ, "lines" if echo else "capture")
    if proc.stderr is not None:
        selector.register(proc.stderr, selectors.EVENT_READ, "lines")
    drain_until: float | None = None
    with selector:
        while selector.get_map():
            now = time.monotonic()
            if status is ProcessStatus.EXITED and proc.poll() is None:
                if ctx.cancel is not None and ctx.cancel.is_set():
                    status = ProcessStatus.INTERRUPTED
                    kill_process_group(proc, grace)
                elif now >= ctx.deadline:
                    status = ProcessStatus.TIMEOUT
                    kill_process_group(proc, grace)
                now = time.monotonic()
            if drain_until is None and proc.poll() is not None:
                # The command is gone; a background child may still hold the pipe open.
                drain_until = now + DRAIN_SECONDS
            if drain_until is not None and now >= drain_until:
                break
            for key, _ in selector.select(timeout=_POLL_SECONDS):
                fd = key.fileobj.fileno()  # type: ignore[union-attr]
                data = os.read(fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                elif key.data == "capture":
                    if len(captured) < MAX_CAPTURE_BYTES:
                        captured.extend(data[: MAX_CAPTURE_BYTES - len(captured)])
                else:
                    sink.feed(data)
    # Every pipe is closed but the command may still run (it redirected its own
    # output away): the deadline and cancellation still hold until it exits.
    while status is ProcessStatus.EXITED and proc.poll() is None:
        if ctx.cancel is not None and ctx.cancel.is_set():
            status = ProcessStatus.INTERRUPTED
            kill_process_group(proc, grace)
        elif time.monotonic() >= ctx.deadline:
            status = ProcessStatus.TIMEOUT
            kill_process_group(proc, grace)
        else:
            # Returns as soon as it exits: its pipes often close a moment before it can be reaped.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_POLL_SECONDS)
    return status


def failure_of(result: ProcessResult, label: str) -> tuple[ErrorKind, str] | None:
    """The error kind and summary of a command that did not succeed, ``None`` when it did."""
    if result.status is ProcessStatus.TIMEOUT:
        return ErrorKind.TIMEOUT, timed_out_summary(label, result.elapsed_seconds)
    if result.status is ProcessStatus.LOCK_EXPIRED:
        return ErrorKind.TIMEOUT, lock_expired_summary(label, result.elapsed_seconds)
    if result.status is ProcessStatus.INTERRUPTED:
        return ErrorKind.INTERRUPTED, interrupted_summary(label)
    if result.status is ProcessStatus.NOT_STARTED:
        return ErrorKind.CONFIGURATION, f"{label} could not start: {result.error}"
    if result.exit_code != 0:
        return ErrorKind.COMMAND_FAILED, exited_summary(label, result.exit_code or 0)
    return None


def joined_tail(*tails: str) -> str:
    """One bounded tail from the tails of several commands run in a row."""
    tail = OutputTail()
    for text in tails:
        if text:
            for line in text.split("\n"):
                tail.append(line)
    return tail.text()
