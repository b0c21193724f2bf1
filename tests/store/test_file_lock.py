"""The seed's file-lock cases, with real processes where the seed used a helper binary."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reconciler.store import FileLock, InvalidLockFile, LockTimeout
from reconciler.store.file import lock_path_for

ROOT = Path(__file__).resolve().parents[2]


def _holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.store.worker", "filelock", str(path), str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _reap(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=30)
    return out.strip()


def test_lock_path_naming() -> None:
    assert lock_path_for(Path("d/test.json")) == Path("d/test.json.lock")
    assert lock_path_for(Path("d/no_extension")) == Path("d/no_extension.lock")
    assert FileLock(Path("d/state.json")).path == Path("d/state.json.lock")


def test_lock_file_holds_our_pid_and_goes_on_release(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    with FileLock(target) as lock:
        assert lock.path.read_text() == str(os.getpid())
    assert not lock.path.exists()


def test_stale_pid_is_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    lock_path_for(target).write_text("999999")
    started = time.monotonic()
    with FileLock(target, timeout=5):
        assert lock_path_for(target).read_text() == str(os.getpid())
    assert time.monotonic() - started < 1  # removed and retried at once, no waiting


def test_non_numeric_lock_contents_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    lock_path_for(target).write_text("not-a-number")
    with pytest.raises(InvalidLockFile) as caught, FileLock(target, timeout=5):
        pass
    message = str(caught.value)
    assert "invalid lock file" in message
    assert "not-a-number" in message
    assert "\nTip: " in message
    assert lock_path_for(target).read_text() == "not-a-number"  # left for a person to judge


@pytest.mark.timeout(60)
def test_times_out_while_another_process_holds_it(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    holder = _holder(target, 5)
    started = time.monotonic()
    with pytest.raises(LockTimeout) as caught, FileLock(target, timeout=0.2):
        pass
    waited = time.monotonic() - started
    assert 0.2 <= waited < 1.0
    assert caught.value.holder_pid == holder.pid
    assert f"held by process {holder.pid}" in str(caught.value)
    assert "\nTip: " in str(caught.value)
    holder.kill()
    holder.wait(timeout=10)
    assert holder.stdout is not None
    holder.stdout.close()


def test_acquired_once_the_holder_releases_it(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    holder = FileLock(target)
    holder.acquire()
    releaser = threading.Timer(0.3, holder.release)
    releaser.start()
    started = time.monotonic()
    with FileLock(target, timeout=5):
        waited = time.monotonic() - started
    releaser.join()
    assert 0.25 <= waited < 1.5


@pytest.mark.timeout(60)
def test_acquired_after_a_child_process_releases_it(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    child = _holder(target, 0.3)
    started = time.monotonic()
    with FileLock(target, timeout=10) as lock:
        assert lock.path.read_text() == str(os.getpid())
    assert time.monotonic() - started >= 0.2
    assert _reap(child) == "released"


@pytest.mark.timeout(60)
def test_a_killed_childs_lock_is_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    child = _holder(target, 60)
    child.kill()
    child.wait(timeout=10)
    assert child.stdout is not None
    child.stdout.close()
    assert lock_path_for(target).read_text() == str(child.pid)
    with FileLock(target, timeout=2):
        assert lock_path_for(target).read_text() == str(os.getpid())


@pytest.mark.timeout(60)
def test_processes_competing_each_get_it_alone(tmp_path: Path) -> None:
    """Eight processes each hold the lock for 0.2 s: the holds never overlap."""
    target = tmp_path / "state.json"
    log = tmp_path / "holds.log"
    script = (
        "import os, sys, time\n"
        "from reconciler.store import FileLock\n"
        "with FileLock(sys.argv[1], timeout=30):\n"
        "    with open(sys.argv[2], 'a') as f: f.write(f'in {os.getpid()}\\n'); f.flush()\n"
        "    time.sleep(0.2)\n"
        "    with open(sys.argv[2], 'a') as f: f.write(f'out {os.getpid()}\\n'); f.flush()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(target), str(log)], cwd=ROOT) for _ in range(8)
    ]
    for p in procs:
        assert p.wait(timeout=50) == 0
    events = log.read_text().split("\n")[:-1]
    assert len(events) == 16
    for enter, leave in zip(events[::2], events[1::2], strict=True):
        assert enter.startswith("in ")
        assert leave == "out " + enter.removeprefix("in ")
    assert not lock_path_for(target).exists()
