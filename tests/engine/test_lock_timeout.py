"""``reconcile apply --lock-timeout``: concurrent applies wait for each other's locks, then decide again.

Real git repositories, real ``reconcile`` processes started together; every phase appends a line
to a file, so a phase that ran twice shows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pygit2
import pytest

from reconciler.desired.loader import load_snapshot
from reconciler.engine.apply import reconcile_waiting
from reconciler.engine.clock import FakeClock
from reconciler.engine.reconcile import Engine, Outcome
from reconciler.steps import FakeResult, FakeStepRunner
from reconciler.store import MemoryStore
from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

pytestmark = pytest.mark.timeout(180)

ONCE = ["provision web", "configure web", "release web", "run web"]
HOST = os.uname().nodename


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def plain(text: str) -> str:
    """A usage error's text without the box drawn around it, on one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_transition(gitops: GitOpsRepo, subject: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subject in gitops.transitions():
            return
        time.sleep(0.05)
    raise AssertionError(f"no '{subject}' on the state branch: {gitops.transitions()}")


@pytest.mark.parametrize("count", [2, 4])
def test_concurrent_applies_with_a_lock_timeout_all_converge_and_run_each_phase_once(
    gitops: GitOpsRepo, tmp_path: Path, count: int
) -> None:
    log = tmp_path / "effects.log"
    slow = {"provision": "sleep 1.5", "release": "sleep 1"}
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log, slow))})

    applies = [start(gitops.command("apply", "--lock-timeout", "30s")) for _ in range(count)]
    outputs = [p.communicate(timeout=120) for p in applies]

    for p, (out, errors) in zip(applies, outputs, strict=True):
        assert p.returncode == 0, f"{out}\n{errors}"
        assert "web: converged (running)" in out
    assert lines(log) == ONCE
    assert gitops.state("web")["state"] == "running"
    assert len(gitops.transitions("web")) == 9  # none -> created ... starting -> running, each once
    assert any("waiting up to" in errors for _, errors in outputs)


def test_without_a_lock_timeout_the_loser_names_the_holder_and_fails(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gate = tmp_path / "gate"  # the holder's phase runs until the test opens the gate
    wait = f"while [ ! -e {gate} ]; do sleep 0.05; done"
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=counting_phases(log, {"provision": wait}))}
    )
    holder = start(gitops.command("apply"))
    try:
        wait_for_transition(gitops, "web: created -> provisioning")
        loser = gitops.reconcile("apply")
        assert holder.poll() is None  # the loser did not wait for the phase to end
    finally:
        gate.touch()
        out, errors = holder.communicate(timeout=60)

    assert loser.returncode == 1
    assert f"web: waiting (provisioning): provisioning: locked by {HOST}:{holder.pid}" in loser.stdout
    assert "waited" not in loser.stdout
    assert holder.returncode == 0, f"{out}\n{errors}"
    assert lines(log) == ONCE


def test_a_lock_still_held_after_the_wait_names_the_holder_and_the_wait(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=counting_phases(log, {"provision": "sleep 60"}))}
    )
    holder = subprocess.Popen(
        gitops.command("apply"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_transition(gitops, "web: created -> provisioning")
        began = time.monotonic()
        waited = gitops.reconcile("apply", "--lock-timeout", "1500ms")
        elapsed = time.monotonic() - began
        assert waited.returncode == 1, waited.stdout + waited.stderr
        assert f"locked by {HOST}:{holder.pid}" in waited.stdout
        assert re.search(r"\(waited 1\.[5-9]s for it\)|\(waited [2-9]\.\ds for it\)", waited.stdout)
        assert f"web: locked by {HOST}:{holder.pid}; waiting up to 1." in waited.stderr
        assert elapsed >= 1.5
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()

    # The holder is gone: its lock is stale, recovered at once rather than waited for.
    began = time.monotonic()
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=counting_phases(log))}, "a quick provision"
    )
    recovered = gitops.reconcile("apply", "--lock-timeout", "2m")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert time.monotonic() - began < 60
    assert "waiting up to" not in recovered.stderr
    assert "web: provisioning -> provision_failed" in recovered.stdout
    assert gitops.state("web")["state"] == "running"


@pytest.mark.parametrize("value", ["soon", "-1s", "30 sec", "1d", ""])
def test_a_bad_lock_timeout_is_a_usage_error_saying_what_is_accepted(gitops: GitOpsRepo, value: str) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(Path("/dev/null")))})
    out = gitops.reconcile("apply", "--lock-timeout", value, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert out.returncode == 2
    message = plain(out.stderr)
    assert "--lock-timeout" in message
    assert f"invalid duration '{value}'" in message
    assert "250ms, 30s, 5m, 1h" in message
    assert gitops.transitions() == []  # nothing was acted on


def test_clones_sharing_a_remote_fetch_while_they_wait(tmp_path: Path) -> None:
    """The lock is on the remote's state branch: a waiting clone sees it released only by fetching."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    first = tmp_path / "first"
    git(tmp_path, "clone", "-q", str(origin), str(first))
    log = tmp_path / "effects.log"
    (first / "environments").mkdir()
    (first / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
    (first / "environments" / "web.yaml").write_text(
        env_file("web", phases=counting_phases(log, {"provision": "sleep 1.5", "run": "sleep 1"}))
    )
    git(first, "add", "-A")
    git(first, "commit", "-q", "-m", "web")
    git(first, "push", "-q", "origin", "main")
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(origin), str(second))

    applies = [
        start(GitOpsRepo(clone, tmp_path / f"data-{clone.name}").command("apply", "--lock-timeout", "30s"))
        for clone in (first, second)
    ]
    outputs = [p.communicate(timeout=120) for p in applies]

    for p, (out, errors) in zip(applies, outputs, strict=True):
        assert p.returncode == 0, f"{out}\n{errors}"
        assert "web: converged (running)" in out
    assert lines(log) == ONCE
    assert len(git(origin, "log", "--format=%s", "reconciler/state").splitlines()) == 9


# -- in process: the waiting loop on the engine's seams ---------------------------------------


class FetchingStore(MemoryStore):
    """A memory store with the ``sync`` of a remote-backed one, counting the fetches."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches = 0

    def sync(self) -> None:
        self.fetches += 1


PHASES = {
    p: [{"name": f"{p} step", "shell": {"run": "true"}}] for p in ("provision", "configure", "release", "run")
}


def engines(gitops: GitOpsRepo, delay: float) -> tuple[Engine, Engine, FetchingStore, FakeStepRunner]:
    runner, clock, store = FakeStepRunner(), FakeClock(), FetchingStore()
    runner.script("web", "provision step", FakeResult(delay=delay))
    repo = pygit2.Repository(str(gitops.path))
    holder = Engine(repo=repo, store=store, runner=runner, data_dir=gitops.data, clock=clock)
    waiter = Engine(repo=repo, store=store, runner=runner, data_dir=gitops.data, clock=clock)
    return holder, waiter, store, runner


def hold_while(holder: Engine, store: MemoryStore) -> threading.Thread:
    worker = threading.Thread(target=holder.reconcile, args=(load_snapshot(holder.repo, "HEAD"), "web"))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        observed = store.read("web")
        if observed is not None and observed.env.state_name == "provisioning":
            return worker
        time.sleep(0.01)
    raise AssertionError("the holder never took the lock")


def test_waiting_refreshes_the_store_and_decides_again(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    holder, waiter, store, runner = engines(gitops, delay=1.0)
    worker = hold_while(holder, store)
    seen: list[str] = []
    try:
        result = reconcile_waiting(
            waiter,
            load_snapshot(waiter.repo, "HEAD"),
            "web",
            lock_timeout=30,
            on_wait=lambda name, lock, seconds: seen.append(f"{name} {lock.holder.pid} {seconds:.0f}"),
        )
    finally:
        worker.join()
    assert result.outcome is Outcome.CONVERGED, result
    assert result.locked_by is None
    assert store.fetches >= 1
    assert seen[0] == f"web {os.getpid()} 30"
    assert len([c for c in runner.calls if c.phase == "provision"]) == 1


def test_the_default_does_not_wait_and_a_short_wait_says_how_long(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=PHASES)})
    holder, waiter, store, _ = engines(gitops, delay=2.0)
    worker = hold_while(holder, store)
    try:
        snap = load_snapshot(waiter.repo, "HEAD")
        now = reconcile_waiting(waiter, snap, "web")
        assert now.outcome is Outcome.WAITING
        assert now.locked_by is not None
        assert "waited" not in now.reason
        assert store.fetches == 0
        began = time.monotonic()
        later = reconcile_waiting(waiter, snap, "web", lock_timeout=0.3)
        assert time.monotonic() - began >= 0.3
        assert later.outcome is Outcome.WAITING
        assert later.locked_by == now.locked_by
        assert f"locked by {HOST}:{os.getpid()}" in later.reason
        assert "(waited 0.3s for it)" in later.reason
    finally:
        worker.join()
