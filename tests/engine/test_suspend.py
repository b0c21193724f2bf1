"""``reconcile suspend`` / ``reconcile resume`` as a person types them (SPEC 5, decision 021)."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file
from tests.gitservers import init_bare, serving

pytestmark = pytest.mark.timeout(180)

ME = f"{getpass.getuser()}@{socket.gethostname()}"


def last_message(repo: Path, ref: str = "reconciler/state") -> str:
    return git(repo, "log", "-1", "--format=%B", ref)


def trailers(message: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in message.splitlines() if line.startswith("Reconcile-"))


def runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_suspended_environment_is_left_alone_by_apply_until_resumed(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "environments/web.yaml": env_file("web", phases=counting_phases(log)),
            "environments/db.yaml": env_file("db", phases=counting_phases(log)),
        }
    )
    gitops.reconcile("apply", check=True)
    before = len(runs(log))

    out = gitops.reconcile("suspend", "web", "--reason", "disk full on the host", check=True)

    assert f"web: suspended by {ME} (disk full on the host)" in out.stdout
    commit = trailers(last_message(gitops.path))
    assert commit["Reconcile-Event"] == "suspend"
    assert commit["Reconcile-From"] == commit["Reconcile-To"] == "running"
    assert commit["Reconcile-Actor"] == ME
    assert gitops.state("web")["suspended"] == {
        "by": ME,
        "at": gitops.state("web")["suspended"]["at"],  # type: ignore[index]
        "reason": "disk full on the host",
    }

    # A change to both: only db's is applied.
    gitops.commit(
        {
            "environments/web.yaml": env_file("web", phases=counting_phases(log, {"release": "echo v2"})),
            "environments/db.yaml": env_file("db", phases=counting_phases(log, {"release": "echo v2"})),
        }
    )
    applied = gitops.reconcile("apply")
    assert applied.returncode == 1  # not everything converged: web is held back
    assert runs(log)[before:] == ["release db", "run db"]
    assert f"web: suspended (running): suspended by {ME} at " in applied.stdout
    assert "disk full on the host; nothing is done (release inputs changed)" in applied.stdout

    plan = gitops.reconcile("plan")
    assert "web  running -> running: suspended" in plan.stdout
    assert f"suspended by {ME}" in plan.stdout and "disk full on the host" in plan.stdout
    planned = json.loads(gitops.reconcile("plan", "--format", "json", check=True).stdout)
    web = next(e for e in planned["environments"] if e["name"] == "web")
    assert web["verdict"] == "suspended"
    assert web["suspended"]["by"] == ME and web["suspended"]["reason"] == "disk full on the host"

    status = gitops.reconcile("status", check=True).stdout
    assert f"⏸ suspended by {ME}" in status
    rows = json.loads(gitops.reconcile("status", "--format", "json", check=True).stdout)["environments"]
    assert next(r for r in rows if r["name"] == "web")["suspended"]["source"] == "operator"
    assert next(r for r in rows if r["name"] == "db")["suspended"] is None
    shown = gitops.reconcile("show", "web", check=True).stdout
    assert f"suspended by: {ME}" in shown and "reason: disk full on the host" in shown
    assert "`reconcile resume web` lifts it" in shown
    replayed = gitops.reconcile("status", "--at", "reconciler/state", check=True).stdout
    assert f"⏸ suspended by {ME}" in replayed
    at = json.loads(
        gitops.reconcile("status", "--at", "reconciler/state", "--format", "json", check=True).stdout
    )
    assert next(r for r in at["environments"] if r["name"] == "web")["suspended"]["by"] == ME
    history = gitops.reconcile("history", "--event", "suspend", check=True).stdout
    assert "web: running -> running [suspend]" in history
    assert f"suspended by {ME}: disk full on the host" in history

    resumed = gitops.reconcile("resume", "web", check=True)
    assert f"web: resumed (it was suspended by {ME}: disk full on the host)" in resumed.stdout
    assert trailers(last_message(gitops.path))["Reconcile-Event"] == "resume"
    assert "suspended" not in gitops.state("web")
    gitops.reconcile("apply", check=True)
    assert runs(log)[before + 2 :] == ["release web", "run web"]
    assert "[resume]" in gitops.reconcile("history", "web", "--event", "resume", check=True).stdout


def test_what_cannot_be_suspended_or_resumed_says_why(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log))})

    never = gitops.reconcile("suspend", "web")
    assert never.returncode == 1
    assert "'web' has no recorded state yet" in never.stderr and "spec.suspend: true" in never.stderr

    gitops.reconcile("apply", check=True)
    unknown = gitops.reconcile("suspend", "nope")
    assert unknown.returncode == 1
    assert "unknown environment 'nope'" in unknown.stderr
    assert gitops.reconcile("resume", "nope").returncode == 1

    not_suspended = gitops.reconcile("resume", "web")
    assert not_suspended.returncode == 1
    assert "'web' is not suspended" in not_suspended.stderr

    bad = gitops.reconcile("suspend", "web", "--reason", "two\nlines")
    assert bad.returncode == 2
    assert "--reason must be one line" in bad.stderr

    gitops.reconcile("suspend", "web", check=True)
    commits = len(gitops.transitions("web"))
    again = gitops.reconcile("suspend", "web", "--reason", "other")
    assert again.returncode == 1  # as `retry` on an environment that is not blocked
    assert f"'web' is already suspended by {ME} since " in again.stderr
    assert len(gitops.transitions("web")) == commits, "nothing recorded"
    assert gitops.state("web")["suspended"]["reason"] is None  # type: ignore[index]


def test_a_phase_command_refuses_a_suspended_environment_unless_forced(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log))})
    gitops.reconcile("apply", check=True)
    gitops.reconcile("suspend", "web", "--reason", "hands off", check=True)
    before = runs(log)

    refused = gitops.reconcile("release", "web")

    assert refused.returncode == 1
    assert f"refusing to release 'web': it is suspended by {ME}" in refused.stderr
    assert "--force" in refused.stderr
    assert runs(log) == before

    gitops.reconcile("release", "web", "--force", check=True)
    assert runs(log) == [*before, "release web"]
    assert gitops.state("web")["suspended"]["reason"] == "hands off"  # type: ignore[index]

    # Its file's `suspend: true` is honoured the same way.
    gitops.reconcile("resume", "web", check=True)
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log), suspend=True)})
    by_file = gitops.reconcile("run", "web")
    assert by_file.returncode == 1
    assert "suspended by its file" in by_file.stderr


def test_suspending_an_environment_in_progress_lets_the_phase_finish_and_starts_nothing_more(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    go = tmp_path / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.05; done"
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=counting_phases(log, {"provision": wait}))}
    )
    apply = subprocess.Popen(
        gitops.command("apply"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while gitops.transitions()[-1:] != ["web: created -> provisioning"]:
            assert time.monotonic() < deadline, "the provision phase never started"
            time.sleep(0.05)

        out = gitops.reconcile("suspend", "web", "--reason", "stop after this", check=True)

        assert "its provisioning phase runs on to its end; nothing further starts" in out.stdout
        assert gitops.state("web")["lock"] is not None, "the running phase keeps its lock"
        go.touch()
        stdout, stderr = apply.communicate(timeout=60)
    finally:
        go.touch()
        if apply.poll() is None:
            apply.kill()
            apply.wait()
    assert apply.returncode == 1, stdout + stderr
    assert "web: suspended (provisioned)" in stdout
    state = gitops.state("web")
    assert state["state"] == "provisioned"
    assert state["lock"] is None
    assert state["suspended"]["reason"] == "stop after this"  # type: ignore[index]
    assert runs(log) == ["provision web"]
    assert gitops.transitions("web")[-1] == "web: provisioning -> provisioned"

    gitops.reconcile("resume", "web", check=True)
    gitops.reconcile("apply", check=True)
    assert runs(log) == ["provision web", "configure web", "release web", "run web"]


def test_a_suspended_environment_whose_file_is_deleted_is_not_pruned(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nprune: true\n",
            "environments/web.yaml": env_file("web", phases=counting_phases(log)),
        }
    )
    gitops.reconcile("apply", check=True)
    gitops.reconcile("suspend", "web", "--reason", "keep it", check=True)
    gitops.remove("environments/web.yaml")

    gitops.reconcile("apply")

    assert "destroy web" not in runs(log)
    assert gitops.state("web")["state"] == "running"
    gitops.reconcile("resume", "web", check=True)
    gitops.reconcile("apply", check=True)
    assert runs(log)[-1] == "destroy web"


@pytest.mark.parametrize("transport", ["path", "http"])
def test_with_a_remote_the_suspend_and_resume_commits_reach_it(transport: str, tmp_path: Path) -> None:
    root = tmp_path / "srv"
    root.mkdir()
    origin = init_bare(root / "origin.git")
    log = tmp_path / "effects.log"
    with serving(transport, root) as server:
        first = tmp_path / "first"
        git(tmp_path, "clone", "-q", server.url(origin), str(first))
        (first / "environments").mkdir()
        (first / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
        (first / "environments" / "web.yaml").write_text(env_file("web", phases=counting_phases(log)))
        git(first, "add", "-A")
        git(first, "commit", "-q", "-m", "web")
        git(first, "push", "-q", "origin", "HEAD:refs/heads/main")
        second = tmp_path / "second"
        git(tmp_path, "clone", "-q", server.url(origin), str(second))

        def reconcile(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
            data = tmp_path / f"data-{clone.name}"
            return subprocess.run(
                [sys.executable, "-m", "reconciler", *args, "--repo", str(clone), "--data-dir", str(data)],
                capture_output=True,
                text=True,
                check=False,
            )

        assert reconcile(first, "apply").returncode == 0
        suspended = reconcile(second, "suspend", "web", "--reason", "from the second clone")
        assert suspended.returncode == 0, suspended.stderr
        on_origin = trailers(last_message(origin))
        assert on_origin["Reconcile-Event"] == "suspend" and on_origin["Reconcile-Actor"] == ME

        # The first clone sees it through the remote: its change is not applied.
        (first / "environments" / "web.yaml").write_text(
            env_file("web", phases=counting_phases(log, {"release": "echo v2"}))
        )
        git(first, "commit", "-q", "-am", "release v2")
        git(first, "push", "-q", "origin", "HEAD:refs/heads/main")
        held = reconcile(first, "apply")
        assert held.returncode == 1 and "web: suspended" in held.stdout, held.stdout + held.stderr
        assert runs(log) == ["provision web", "configure web", "release web", "run web"]

        assert reconcile(first, "resume", "web").returncode == 0
        assert trailers(last_message(origin))["Reconcile-Event"] == "resume"
        assert reconcile(second, "apply").returncode == 0
    assert runs(log)[4:] == ["release web", "run web"]
