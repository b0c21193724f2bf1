"""The state commands a person types: show, unlock, the imperative phases, history, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

pytestmark = pytest.mark.timeout(120)


def test_imperative_phase_runs_now_through_the_state_branch(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log))})
    gitops.reconcile("apply", check=True)

    out = gitops.reconcile("release", "web", check=True)

    assert "web: running -> releasing" in out.stdout
    assert gitops.transitions()[-2:] == ["web: running -> releasing", "web: releasing -> released"]
    assert log.read_text().splitlines()[-1] == "release web"
    refused = gitops.reconcile("release", "nope")
    assert refused.returncode == 1
    assert "no environment file for 'nope'" in refused.stderr


def test_show_prints_state_failure_trace_and_next_step(gitops: GitOpsRepo) -> None:
    phases = {"provision": [{"name": "make vm", "shell": {"run": "echo nope >&2; exit 4"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    gitops.reconcile("apply")

    text = gitops.reconcile("show", "web", check=True).stdout

    assert "Environment 'web' is in state: provision_failed (failed at: shell exited 4)" in text
    assert "failed step: make vm" in text
    assert "trace: " in text
    assert "next step:" in text
    shown = json.loads(gitops.reconcile("show", "web", "--format", "json", check=True).stdout)
    assert shown["state"]["failure"]["errorKind"] == "command_failed"
    assert gitops.reconcile("show", "missing").returncode == 1


def test_unlock_needs_the_right_lock_id(gitops: GitOpsRepo, tmp_path: Path) -> None:
    phases = {"provision": [{"shell": {"run": "sleep 60"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    cmd = gitops.command("apply")
    holder = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if gitops.transitions()[-1:] == ["web: created -> provisioning"]:
                break
            time.sleep(0.1)
        state = gitops.state("web")
        lock = state["lock"]
        assert isinstance(lock, dict)
        status = json.loads(gitops.reconcile("status", "--format", "json", check=True).stdout)["environments"]
        shown_lock = status[0]["lock"]
        assert shown_lock["id"] == lock["id"] and shown_lock["holder"]["host"] == os.uname().nodename
        assert shown_lock["holder"]["pid"] == lock["holder"]["pid"] and shown_lock["stale"] is False
        assert shown_lock["expiresAt"] == lock["expiresAt"]
        table = gitops.reconcile("status", check=True).stdout
        assert f"{os.uname().nodename}:{shown_lock['holder']['pid']} until" in table

        wrong = gitops.reconcile("unlock", "web", "--lock-id", "00000000-0000-4000-8000-000000000000")
        assert wrong.returncode == 1
        assert gitops.state("web")["state"] == "provisioning"

        gitops.reconcile("unlock", "web", "--lock-id", str(lock["id"]), check=True)
        after = gitops.state("web")
        failure = after["failure"]
        assert isinstance(failure, dict)
        assert after["state"] == "provision_failed"
        assert failure["errorKind"] == "interrupted"
        unlocked = git(
            gitops.path, "log", "-1", "--format=%(trailers:key=Reconcile-Event,valueonly)", "reconciler/state"
        )
        assert unlocked.strip() == "unlock"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    # The holder lost its lock: its late result is not recorded over the unlock.
    assert gitops.state("web")["state"] == "provision_failed"


def test_history_reads_the_state_branch_newest_first(gitops: GitOpsRepo, tmp_path: Path) -> None:
    gitops.commit(
        {"environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(tmp_path / "l"))}
    )
    gitops.reconcile("apply", check=True)
    out = gitops.reconcile("history", "web", check=True).stdout.splitlines()
    text = [line for line in out if not line.startswith(" ")]  # indented lines are commit details
    assert text[0].endswith("web: provisioning -> provisioned")
    assert text[-1].endswith("web: none -> created")
    newest = json.loads(gitops.reconcile("history", "--limit", "1", "--format", "json", check=True).stdout)
    assert newest["formatVersion"] == 1 and len(newest["events"]) == 1


def test_bad_file_is_reported_and_others_still_converge(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "environments/good.yaml": env_file("good", phases=counting_phases(log)),
            "environments/bad.yaml": "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: bad}\n"
            "spec: {desiredState: runing}\n",
        }
    )
    out = gitops.reconcile("apply")
    assert out.returncode == 1
    assert "environments/bad.yaml:4:" in out.stderr
    assert gitops.state("good")["state"] == "running"
    assert gitops.transitions("bad") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_apply_interrupts_its_phase_and_leaves_nothing_running(
    gitops: GitOpsRepo, tmp_path: Path, sig: signal.Signals
) -> None:
    pidfile = tmp_path / "step.pid"
    phases = {"provision": [{"shell": {"run": f"echo $$ > {pidfile}; sleep 60"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    cmd = gitops.command("apply")
    apply = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    step = int(pidfile.read_text())

    apply.send_signal(sig)
    _, stderr = apply.communicate(timeout=30)

    assert apply.returncode == 1
    assert "stopping the running phases" in stderr
    state = gitops.state("web")
    failure = state["failure"]
    assert isinstance(failure, dict)
    assert state["state"] == "provision_failed"
    assert failure["errorKind"] == "interrupted"
    assert state["lock"] is None
    assert not Path(f"/proc/{step}").exists() or Path(f"/proc/{step}/stat").read_text().split()[2] == "Z"


def test_problems_on_stderr_stay_one_line_each(gitops: GitOpsRepo) -> None:
    long_name = "a-long-environment-name-that-pushes-the-line-past-80-columns"
    gitops.commit({f"environments/{long_name}.yaml": "apiVersion: reconciler/v1\nkind: Environment\n"})
    out = gitops.reconcile("apply")
    line = next(line for line in out.stderr.splitlines() if line.startswith("environments/"))
    assert line.startswith(f"environments/{long_name}.yaml:1:1: ")
    assert "`metadata`" in line


def test_guidance_names_what_to_do(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(log))})
    gitops.reconcile("apply", check=True)

    refused = gitops.reconcile("run", "web")
    assert refused.returncode == 1
    assert "cannot run 'web' from state 'provisioned': run may start from released, running, run_failed" in (
        refused.stderr
    )

    gitops.commit({"environments/web.yaml": "apiVersion: reconciler/v1\nkind: Environment\n"})
    shown = gitops.reconcile("show", "web", check=True).stdout
    assert "next step: its file is invalid and is left alone until fixed: environments/web.yaml:" in shown


def test_before_the_first_commit_validate_says_what_to_do(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "nothing is committed yet" in out.stderr
    assert "--worktree" in out.stderr


def kill_with_its_supervisor(apply: subprocess.Popen[str] | subprocess.Popen[bytes], supervisor: int) -> None:
    """SIGKILL a reconciler and its step's supervisor at once (the OOM killer, ``kill -9`` of both).

    Its supervisor alone stops a step when only the reconciler dies; without it the step lives
    on in its own session, and the next reconciler must find and stop it. Frozen first, so the
    reconciler cannot see its supervisor die and record the step's end itself.
    """
    apply.send_signal(signal.SIGSTOP)
    os.kill(supervisor, signal.SIGKILL)
    apply.kill()
    apply.wait()


def test_after_a_killed_apply_the_next_one_stops_the_leftover_step_first(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    supervisor = tmp_path / "supervisor.pid"
    first_run = tmp_path / "first-run"
    # The first run's step outlives any start-up of the second apply, however loaded the machine;
    # the second's ends at once.
    nap = f"if [ -e {first_run} ]; then sleep 0.1; else touch {first_run}; sleep 120; fi"
    run = f'echo $PPID > {supervisor}; echo "start $$" >> {log}; {nap}; echo "end $$" >> {log}'
    gitops.commit({"environments/web.yaml": env_file("web", phases={"provision": [{"shell": {"run": run}}]})})
    first = subprocess.Popen(gitops.command("apply"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_with_its_supervisor(first, int(supervisor.read_text()))
    leftover = int(log.read_text().split()[1])

    gitops.reconcile("apply", check=True)

    lines = log.read_text().splitlines()
    second = int(lines[-1].split()[1])
    assert lines == [f"start {leftover}", f"start {second}", f"end {second}"]  # never ran side by side
    assert (
        not Path(f"/proc/{leftover}").exists() or Path(f"/proc/{leftover}/stat").read_text().split()[2] == "Z"
    )
    subjects = gitops.transitions()
    assert subjects.index("web: provisioning -> provision_failed") < subjects.index(
        "web: provision_failed -> provisioning"
    )
    assert gitops.state("web")["state"] == "running"


def test_status_and_show_say_when_a_lock_is_stale(gitops: GitOpsRepo, tmp_path: Path) -> None:
    supervisor = tmp_path / "supervisor.pid"
    phases = {"provision": [{"shell": {"run": f"echo $PPID > {supervisor}; sleep 30"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    first = subprocess.Popen(gitops.command("apply"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (supervisor.exists() and supervisor.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_with_its_supervisor(first, int(supervisor.read_text()))

    status = json.loads(gitops.reconcile("status", "--format", "json", check=True).stdout)["environments"]
    assert status[0]["lock"]["stale"] is True and status[0]["lock"]["staleReason"].startswith("holder ")
    assert "(stale: holder" in gitops.reconcile("status", check=True).stdout
    shown = gitops.reconcile("show", "web", check=True).stdout
    assert "the lock is stale" in shown
    assert "the next `reconcile apply web`" in shown

    lock = gitops.state("web")["lock"]
    assert isinstance(lock, dict)
    unlocked = gitops.reconcile("unlock", "web", "--lock-id", str(lock["id"]), check=True)
    assert "stopped 1 process group(s) the holder left running" in unlocked.stdout
