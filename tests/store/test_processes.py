"""Real processes against real stores: the lock holds across processes, nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.domain import ErrorKind, utcnow
from reconciler.domain.dispatch import succeed_phase
from reconciler.store import GitStore, is_stale, recover_stale
from tests.conftest import git
from tests.store.kit import created, open_store

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 8


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=50)
    assert proc.returncode == 0, err
    return out.strip()


@pytest.fixture(params=["git", "file"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file:{tmp_path / 'data'}"
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return f"git:{repo}"


@pytest.mark.timeout(60)
def test_eight_processes_racing_for_one_lock_one_wins_each_round(spec: str, tmp_path: Path) -> None:
    store = open_store(spec)
    store.apply("web", None, created("web"), from_state="none", desired_commit=None)
    for round_ in range(3):
        go = tmp_path / f"go-{round_}"
        procs = [_spawn("race", spec, "web", str(go)) for _ in range(WORKERS)]
        # every worker has read the same state before the start signal
        while len(list(tmp_path.glob(f"{go.name}.ready.*"))) < WORKERS:
            time.sleep(0.01)
        go.touch()
        results = sorted(_finish(p) for p in procs)
        assert results == ["lost"] * (WORKERS - 1) + ["won"], results
        current = store.read("web")
        assert current is not None
        assert current.env.state_name == "provisioning"
        store.apply(
            "web", current.version, succeed_phase(current.env), from_state="provisioning", desired_commit=None
        )
    assert [r.to_state for r in store.history("web")] == ["provisioned", "provisioning"] * 3 + ["created"]


@pytest.mark.timeout(60)
def test_eight_processes_driving_lifecycles_leave_a_linear_complete_branch(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    cycles = 3
    names = [f"env-{i}" for i in range(WORKERS)]
    procs = [_spawn("lifecycle", f"git:{repo}", name, str(cycles)) for name in names]
    per_env = 1 + cycles * 10 + (cycles - 1)
    assert [_finish(p) for p in procs] == [f"done {per_env}"] * WORKERS

    ref = "reconciler/state"
    assert int(git(repo, "rev-list", "--count", ref)) == per_env * WORKERS
    assert git(repo, "rev-list", "--min-parents=2", ref) == ""  # linear: no merges
    assert len(git(repo, "rev-list", "--max-parents=0", ref).split()) == 1  # one root
    for name in names:
        grep = git(repo, "rev-list", "--count", f"--grep=Reconcile-Environment: {name}$", ref)
        assert int(grep) == per_env
    git(repo, "fsck", "--strict")
    store = GitStore(repo)
    assert {n: o.env.state_name for n, o in store.read_all().items()} == dict.fromkeys(names, "destroyed")
    assert len(store.history()) == per_env * WORKERS
    assert git(repo, "status", "--porcelain") == ""  # the work tree was never touched


@pytest.mark.timeout(60)
def test_a_killed_holder_leaves_a_stale_lock_that_recovery_ends_as_interrupted(spec: str) -> None:
    store = open_store(spec)
    store.apply("web", None, created("web"), from_state="none", desired_commit=None)
    holder = _spawn("hold", spec, "web")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"

    held = store.read("web")
    assert held is not None
    assert held.env.lock is not None
    assert held.env.lock.holder.pid == holder.pid
    assert not is_stale(held.env.lock, utcnow())
    assert recover_stale(store, utcnow()) == []  # a live holder is left alone

    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    assert holder.stdout.read() == ""
    holder.stdout.close()
    assert holder.stderr is not None
    holder.stderr.close()

    assert is_stale(held.env.lock, utcnow())
    assert recover_stale(store, utcnow()) == ["web"]
    web = store.read("web")
    assert web is not None
    assert web.env.state_name == "provision_failed"
    assert web.env.lock is None
    details = web.env.error_details
    assert details is not None
    assert details.error_kind is ErrorKind.INTERRUPTED
    assert f":{holder.pid} is gone" in details.error_summary
    assert store.history("web", limit=1)[0].to_state == "provision_failed"


def test_lock_is_not_stale_before_expiry_but_stale_after(tmp_path: Path) -> None:
    from reconciler.store import new_lock

    lock = new_lock(10, 5, utcnow())
    assert not is_stale(lock, utcnow())
    assert is_stale(lock, utcnow() + timedelta(seconds=16))
    # another host's holder is never judged by our process table, only by expiry
    assert not is_stale(lock, utcnow(), host="elsewhere")
