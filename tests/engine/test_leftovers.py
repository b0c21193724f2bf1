"""Steps left behind by a dead reconciler: stopped with it, or found by lock id whatever their data dir."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.domain import Lock, LockHolder
from reconciler.domain.values import utcnow
from reconciler.engine.orphans import kill_orphaned_steps, orphaned_groups, stop_leftovers
from reconciler.store.lock import this_holder
from tests.engine.conftest import GitOpsRepo, env_file

pytestmark = pytest.mark.timeout(120)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


def wait_until(what: str, condition: Callable[[], bool], seconds: float = 10.0) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.02)


Spawn = Callable[..., int]


@pytest.fixture
def detached() -> Iterator[Spawn]:
    """Start a ``sleep`` in its own session, as a dead reconciler's step would be, with the given markers."""
    pids: list[int] = []

    def spawn(environment: str, lock_id: str, data_dir: Path) -> int:
        env = {
            **os.environ,
            "RECONCILE_ENVIRONMENT": environment,
            "RECONCILE_DATA_DIR": str(data_dir / environment),
            "RECONCILE_LOCK_ID": lock_id,
        }
        out = subprocess.run(
            ["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        pid = int(out.stdout)
        pids.append(pid)
        wait_until("the leftover to be in its own session", lambda: os.getpgid(pid) == pid, 5)
        return pid

    yield spawn
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def dead_holder() -> LockHolder:
    """A holder on this host whose process is gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return this_holder().model_copy(update={"pid": gone.pid, "process_started_at": None})


def test_leftovers_under_another_data_dir_are_found_by_lock_id(detached: Spawn, tmp_path: Path) -> None:
    lock_id = str(uuid.uuid4())
    theirs = detached("web", lock_id, tmp_path / "other-clone" / "data")
    earlier_service = detached("web", str(uuid.uuid4()), tmp_path / "other-clone" / "data")
    other_environment = detached("api", lock_id, tmp_path / "other-clone" / "data")

    groups = orphaned_groups("web", lock_id)
    assert os.getpgid(theirs) in groups
    assert os.getpgid(earlier_service) not in groups
    assert os.getpgid(other_environment) not in groups

    assert kill_orphaned_steps("web", lock_id, grace=1.0) == 1
    wait_until("the leftover to be gone", lambda: not alive(theirs), 5)
    assert alive(earlier_service)
    assert alive(other_environment)


def test_a_second_reconciler_with_its_own_data_dir_stops_the_first_ones_leftover(
    detached: Spawn, tmp_path: Path
) -> None:
    now = utcnow()
    lock = Lock(holder=dead_holder(), acquired_at=now, expires_at=now + timedelta(seconds=300))
    leftover = detached("web", str(lock.id), tmp_path / "first-clone" / "data")

    assert stop_leftovers(tmp_path / "second-clone" / "data", "web", lock) == 1
    wait_until("the first reconciler's leftover to be gone", lambda: not alive(leftover), 5)


def test_a_step_of_our_own_is_never_taken_for_a_leftover(tmp_path: Path) -> None:
    """Its group's leader is our child: even its grandchildren, whose parent is not us, are left alone."""
    lock_id = str(uuid.uuid4())
    child_pid = tmp_path / "child.pid"
    env = {**os.environ, "RECONCILE_ENVIRONMENT": "web", "RECONCILE_LOCK_ID": lock_id}
    ours = subprocess.Popen(
        ["sh", "-c", f"sleep 300 & echo $! > {child_pid}; wait"], env=env, start_new_session=True
    )
    try:
        wait_until(
            "its child to start", lambda: child_pid.exists() and child_pid.read_text().strip() != "", 5
        )
        assert orphaned_groups("web", lock_id) == set()
        assert kill_orphaned_steps("web", lock_id, grace=0.5) == 0
        assert ours.poll() is None
        assert alive(int(child_pid.read_text()))
    finally:
        os.killpg(ours.pid, signal.SIGKILL)
        ours.wait()


def test_a_killed_apply_takes_its_running_step_down_at_once(gitops: GitOpsRepo, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    run = f"sleep 300 & echo $$ $! > {pids}; sleep 300"
    gitops.commit({"environments/web.yaml": env_file("web", phases={"provision": [{"shell": {"run": run}}]})})
    apply = subprocess.Popen(gitops.command("apply"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("the step to start", lambda: pids.exists() and len(pids.read_text().split()) == 2, 60)
        shell, child = (int(word) for word in pids.read_text().split())
        apply.kill()  # SIGKILL: no chance to clean up
        apply.wait()
        # Nothing else runs: the step's supervisor alone stops it, child included.
        wait_until("the step to be gone", lambda: not alive(shell), 5)
        wait_until("the step's child to be gone", lambda: not alive(child), 5)
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    assert gitops.state("web")["state"] == "provisioning"  # a stale lock, recovered by the next run
