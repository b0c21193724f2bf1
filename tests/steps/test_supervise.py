"""The per-step supervisor, through real processes: a step never outlives its reconciler nor its lock.

A "reconciler" here is a small Python script run with subprocess that starts a
shell step through ``run_process`` from a worker thread (as the daemon does);
the test then kills or freezes it and looks at ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps import LocalStepRunner
from reconciler.steps.process import SUPERVISOR, Command, ProcessStatus, run_process
from tests.steps.conftest import ContextFactory, step

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
LOCK_ID = "0b6f3f4e-5d1c-4c8e-9a53-3f1f6d1e2a77"
runner = LocalStepRunner()

#: The reconciler-like parent: runs one shell step from a worker thread, prints how it ended.
PARENT = textwrap.dedent(
    """
    import json, sys, threading, time
    from datetime import datetime, timedelta, timezone
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from reconciler.steps.outcome import StepContext
    from reconciler.steps.process import Command, run_process

    script, workdir, lock_seconds = sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
    ctx = StepContext(
        environment="web", desired_commit="c0ffee", checkout=workdir, data_dir=workdir,
        vars={}, outputs={}, secrets=frozenset(), deadline=time.monotonic() + 300,
        lock_id=sys.argv[5],
        lock_expires_at=datetime.now(timezone.utc) + timedelta(seconds=lock_seconds),
    )
    ended = []
    worker = threading.Thread(
        target=lambda: ended.append(run_process(Command("shell", ("/bin/sh", "-c", script), workdir), ctx))
    )
    worker.start()
    worker.join()
    result = ended[0]
    print(json.dumps({"status": str(result.status), "exit_code": result.exit_code}), flush=True)
    time.sleep(300)  # a reconciler that lives on after its step (killed by the test)
    """
)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet is not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def wait_until(what: str, condition: Callable[[], bool], seconds: float = 10.0) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.02)


def read_pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()] if path.exists() else []


@pytest.fixture
def reconciler(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the reconciler-like parent on a script; everything it started is killed afterwards."""
    started: list[subprocess.Popen[str]] = []
    parent_script = tmp_path / "parent.py"
    parent_script.write_text(PARENT)

    def start(script: str, *, lock_seconds: float = 300.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(parent_script),
                str(ROOT),
                script,
                str(tmp_path),
                str(lock_seconds),
                LOCK_ID,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_reconciler_takes_its_step_and_the_steps_children_down(
    reconciler: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    parent = reconciler(f"sleep 300 & echo $$ $! $PPID > {pids}; sleep 300")
    wait_until("the step and its child to start", lambda: len(read_pids(pids)) == 3)
    shell, grandchild, supervisor = read_pids(pids)
    try:
        assert alive(shell)
        assert alive(grandchild)
        assert parent_of(supervisor) == parent.pid

        parent.kill()  # SIGKILL: the reconciler gets no chance to clean up
        parent.wait()

        wait_until("the step's shell to be gone", lambda: not alive(shell), 5)
        wait_until("the step's child to be gone", lambda: not alive(grandchild), 5)
        wait_until("the supervisor to be gone", lambda: not alive(supervisor), 5)
    finally:
        kill_all([shell, grandchild, supervisor])


def test_a_step_whose_children_ignore_sigterm_is_killed_when_its_reconciler_dies(
    reconciler: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    parent = reconciler(f"trap '' TERM; sleep 300 & echo $$ $! > {pids}; sleep 300")
    wait_until("the step to start", lambda: len(read_pids(pids)) == 2)
    members = read_pids(pids)
    try:
        parent.kill()
        parent.wait()
        for pid in members:
            wait_until(f"{pid} to be gone after SIGTERM and then SIGKILL", lambda pid=pid: not alive(pid), 10)
    finally:
        kill_all(members)


def test_a_stuck_reconciler_still_has_its_step_stopped_at_the_locks_expiry(
    reconciler: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    """A reconciler that cannot act (frozen here with SIGSTOP) never has a step running past its lock."""
    pids = tmp_path / "pids"
    # The supervisor stops the step TERM_GRACE_SECONDS (2 s) before the lock expires: 1 s from now.
    parent = reconciler(f"sleep 300 & echo $$ $! > {pids}; sleep 300", lock_seconds=3.0)
    wait_until("the step to start", lambda: len(read_pids(pids)) == 2)
    members = read_pids(pids)
    try:
        parent.send_signal(signal.SIGSTOP)
        for pid in members:
            wait_until(f"{pid} to be stopped at the lock's expiry", lambda pid=pid: not alive(pid), 10)
        assert alive(parent.pid), "the reconciler itself is only stuck, not dead"
        parent.send_signal(signal.SIGCONT)
        assert parent.stdout is not None
        ended = json.loads(parent.stdout.readline())
        assert ended["status"] == "lock_expired"
    finally:
        parent.send_signal(signal.SIGCONT)
        kill_all(members)


def test_a_background_service_outlives_the_reconciler_once_its_step_succeeded(
    reconciler: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    """A ``run`` phase's service is left alone: the supervisor is done when the step's command exits."""
    pid_file = tmp_path / "service.pid"
    parent = reconciler(f"nohup sleep 300 >/dev/null 2>&1 & echo $! > {pid_file}", lock_seconds=3.0)
    assert parent.stdout is not None
    ended = json.loads(parent.stdout.readline())
    service = read_pids(pid_file)[0]
    try:
        assert ended == {"status": "exited", "exit_code": 0}
        parent.kill()
        parent.wait()
        time.sleep(2.0)  # past the lock's expiry (3 s after the start), and time for any killer to act
        assert alive(service)
    finally:
        kill_all([service])


def test_a_step_still_running_at_its_locks_expiry_is_stopped_and_reported(
    make_ctx: ContextFactory, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    ctx = make_ctx(lock_id=LOCK_ID, lock_expires_at=utcnow() + timedelta(seconds=3))
    outcome = runner.run(
        step({"shell": {"run": f"sleep 300 & echo $$ $! > {pids}; echo working; sleep 300"}}), ctx
    )
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert "reached its lock's expiry" in outcome.summary
    assert outcome.summary.startswith("shell ")
    assert outcome.output_tail == "working"
    for pid in read_pids(pids):
        wait_until(f"{pid} to be gone", lambda pid=pid: not alive(pid), 5)


def test_a_step_whose_lock_has_already_expired_never_starts(make_ctx: ContextFactory, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ctx = make_ctx(lock_id=LOCK_ID, lock_expires_at=utcnow() - timedelta(seconds=1))
    outcome = runner.run(step({"shell": {"run": f"touch {marker}"}}), ctx)
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert "reached its lock's expiry" in outcome.summary
    assert not marker.exists()


def test_the_phase_timeout_still_comes_first_when_it_is_earlier(make_ctx: ContextFactory) -> None:
    ctx = make_ctx(timeout=1.0, lock_expires_at=utcnow() + timedelta(seconds=300))
    outcome = runner.run(step({"shell": {"run": "sleep 300"}}), ctx)
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert outcome.summary.startswith("shell timed out after 1.")


def test_the_supervisor_carries_the_markers_that_find_leftovers(
    make_ctx: ContextFactory, data_dir: Path
) -> None:
    script = (
        "tr '\\0' '\\n' < /proc/$PPID/environ | grep '^RECONCILE_' | sort; tr '\\0' ' ' < /proc/$PPID/cmdline"
    )
    outcome = runner.run(step({"shell": {"run": script}}), make_ctx(lock_id=LOCK_ID))
    assert outcome.ok, outcome.summary
    lines = outcome.output_tail.splitlines()
    assert f"RECONCILE_LOCK_ID={LOCK_ID}" in lines
    assert "RECONCILE_ENVIRONMENT=web" in lines
    assert f"RECONCILE_DATA_DIR={data_dir}" in lines
    assert str(SUPERVISOR) in lines[-1].split()


def test_exit_codes_and_signals_come_through_the_supervisor(make_ctx: ContextFactory) -> None:
    failed = runner.run(step({"shell": {"run": "exit 7"}}), make_ctx())
    assert (failed.exit_code, failed.summary) == (7, "shell exited 7")
    killed = runner.run(step({"shell": {"run": "kill -USR1 $$"}}), make_ctx())
    assert killed.error_kind is ErrorKind.COMMAND_FAILED
    assert killed.exit_code == -signal.SIGUSR1
    assert killed.summary == f"shell was killed by signal {int(signal.SIGUSR1)}"


def test_a_command_that_cannot_start_is_reported_as_before(make_ctx: ContextFactory, tmp_path: Path) -> None:
    missing = run_process(
        Command(label="tool", argv=(str(tmp_path / "no-such-tool"),), cwd=tmp_path), make_ctx()
    )
    assert missing.status is ProcessStatus.NOT_STARTED
    assert missing.error == f"{tmp_path / 'no-such-tool'}: No such file or directory"
    not_on_path = run_process(Command(label="tool", argv=("no-such-tool-on-path",), cwd=tmp_path), make_ctx())
    assert not_on_path.status is ProcessStatus.NOT_STARTED
    assert not_on_path.error == "no-such-tool-on-path: No such file or directory"
