"""``reconcile apply`` end to end with shell steps: real git, real processes, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

pytestmark = pytest.mark.timeout(120)

FORWARD = [
    "web: none -> created",
    "web: created -> provisioning",
    "web: provisioning -> provisioned",
    "web: provisioned -> configuring",
    "web: configuring -> configured",
    "web: configured -> releasing",
    "web: releasing -> released",
    "web: released -> starting",
    "web: starting -> running",
]


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_apply_takes_an_environment_to_running_then_destroyed(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log))})

    out = gitops.reconcile("apply", check=True)

    assert gitops.transitions() == FORWARD
    assert lines(log) == ["provision web", "configure web", "release web", "run web"]
    assert "web: converged (running)" in out.stdout
    state = gitops.state("web")
    assert state["state"] == "running" and state["lock"] is None
    assert set(state["phases"]) == {"provision", "configure", "release", "run"}  # type: ignore[arg-type]

    # A second apply with nothing changed does nothing and writes nothing.
    gitops.reconcile("apply", check=True)
    assert len(gitops.transitions()) == len(FORWARD)

    gitops.commit({"environments/web.yaml": env_file("web", "destroyed", phases=counting_phases(log))})
    gitops.reconcile("apply", check=True)
    assert gitops.transitions()[-2:] == ["web: running -> destroying", "web: destroying -> destroyed"]
    assert lines(log)[-1] == "destroy web"


def test_a_release_change_reruns_only_release_and_run(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "scripts/release.sh": "echo v1\n",
            "environments/web.yaml": env_file(
                "web", phases=counting_phases(log, {"release": "sh scripts/release.sh"})
            ),
        }
    )
    gitops.reconcile("apply", check=True)
    assert lines(log) == ["provision web", "configure web", "release web", "run web"]

    gitops.commit({"scripts/release.sh": "echo v2\n"})
    gitops.reconcile("apply", check=True)

    assert lines(log)[4:] == ["release web", "run web"]
    assert gitops.transitions()[-4:] == [
        "web: running -> releasing",
        "web: releasing -> released",
        "web: released -> starting",
        "web: starting -> running",
    ]


@pytest.mark.parametrize("phase", ["provision", "configure", "release", "run"])
def test_a_failing_phase_is_recorded_and_a_fixing_commit_converges(
    gitops: GitOpsRepo, tmp_path: Path, phase: str
) -> None:
    log = tmp_path / "effects.log"
    broken = counting_phases(log, {phase: "echo 'boom: disk on fire' >&2; exit 3"})
    gitops.commit({"environments/web.yaml": env_file("web", phases=broken)})

    out = gitops.reconcile("apply")

    assert out.returncode == 1
    state = gitops.state("web")
    assert state["state"] == f"{phase}_failed"
    failure = state["failure"]
    assert isinstance(failure, dict)
    assert failure["phase"] == phase
    assert failure["errorKind"] == "command_failed"
    assert failure["failedStep"] == f"{phase} step"
    assert failure["attempt"] == 1
    trace = Path(str(failure["traceFile"]))
    assert trace.is_file()
    text = trace.read_text()
    assert str(failure["traceId"]) in text and "boom: disk on fire" in text and "ERROR CHAIN" in text
    in_progress = {
        "provision": "provisioning",
        "configure": "configuring",
        "release": "releasing",
        "run": "starting",
    }
    assert gitops.transitions()[-1] == f"web: {in_progress[phase]} -> {phase}_failed"

    # The next apply with the same inputs waits out the backoff: nothing runs.
    before = lines(log)
    assert gitops.reconcile("apply").returncode == 1
    assert lines(log) == before

    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(log))})
    gitops.reconcile("apply", check=True)
    assert gitops.state("web")["state"] == "running"


def test_protected_environment_is_never_destroyed(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit({"environments/db.yaml": env_file("db", phases=counting_phases(log), protected=True)})
    gitops.reconcile("apply", check=True)
    gitops.commit(
        {"environments/db.yaml": env_file("db", "destroyed", phases=counting_phases(log), protected=True)}
    )

    out = gitops.reconcile("apply", "--format", "json")

    (result,) = [json.loads(line) for line in out.stdout.splitlines()]  # no transition: only its result
    assert result["event"] == "result" and result["outcome"] == "protected"
    assert gitops.state("db")["state"] == "running"
    assert "destroy db" not in lines(log)
    assert gitops.reconcile("destroy", "db").returncode == 1


def test_a_secret_from_the_environment_is_never_written(gitops: GitOpsRepo, tmp_path: Path) -> None:
    secret = "s3cr3t-VALUE-8841"
    phases = {
        "provision": [
            {
                "shell": {
                    "run": 'echo "token is $TOKEN"; echo "$TOKEN" >&2',
                    "env": {"TOKEN": {"fromEnv": "APP_TOKEN"}},
                }
            }
        ],
        "configure": [
            {"shell": {"run": 'echo "again $TOKEN"; exit 1', "env": {"TOKEN": {"fromEnv": "APP_TOKEN"}}}}
        ],
    }
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=phases, vars={"password": {"fromEnv": "APP_TOKEN"}})}
    )

    out = gitops.reconcile("--log-level", "debug", "apply", env={"APP_TOKEN": secret})

    assert out.returncode == 1
    assert gitops.state("web")["state"] == "configure_failed"
    assert secret not in out.stdout + out.stderr
    from tests.conftest import git

    history = git(gitops.path, "log", "-p", "--format=%B", "reconciler/state")
    assert "configure_failed" in history and secret not in history
    for path in gitops.data.rglob("*"):
        if path.is_file() and "checkouts" not in path.parts:
            assert secret.encode() not in path.read_bytes(), path


def test_dependencies_converge_first(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "environments/app.yaml": env_file("app", phases=counting_phases(log), dependsOn=["db"]),
            "environments/db.yaml": env_file("db", phases=counting_phases(log)),
        }
    )
    gitops.reconcile("apply", "--workers", "4", check=True)
    runs = lines(log)
    assert runs.index("run db") < runs.index("provision app")


def test_a_step_past_the_phase_timeout_is_killed_with_its_children(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    phases = {"provision": [{"shell": {"run": f"sleep 300 & echo $! > {pidfile}; sleep 300"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases, timeoutSeconds=2)})

    out = gitops.reconcile("apply")

    assert out.returncode == 1
    state = gitops.state("web")
    failure = state["failure"]
    assert isinstance(failure, dict)
    assert state["state"] == "provision_failed"
    assert failure["errorKind"] == "timeout"
    child = int(pidfile.read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_retry_resets_attempts_and_show_suggests_it(gitops: GitOpsRepo, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    phases = {"provision": [{"shell": {"run": f"test -f {flag}"}}]}
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases=phases, retry={"limit": 0, "backoffSeconds": 3600})}
    )
    assert gitops.reconcile("apply").returncode == 1
    status = json.loads(gitops.reconcile("status", "--format", "json").stdout)["environments"]
    assert status[0]["verdict"] == "blocked" and status[0]["converged"] is False
    assert status[0]["failure"]["errorKind"] == "command_failed" and status[0]["failure"]["attempt"] == 1
    shown = gitops.reconcile("show", "web").stdout
    assert "reconcile retry web" in shown

    flag.write_text("")  # the cause was outside the repository
    gitops.reconcile("retry", "web", check=True)
    gitops.reconcile("apply", check=True)
    assert gitops.state("web")["state"] == "running"
    history = gitops.reconcile("history", "web", "--limit", "3", "--format", "json", check=True).stdout
    assert [h["to"] for h in json.loads(history)["events"]] == ["running", "starting", "released"]


def test_destroy_goes_dependents_first(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "environments/app.yaml": env_file("app", phases=counting_phases(log), dependsOn=["db"]),
            "environments/db.yaml": env_file("db", phases=counting_phases(log)),
        }
    )
    gitops.reconcile("apply", check=True)
    gitops.commit(
        {
            "environments/app.yaml": env_file(
                "app", "destroyed", phases=counting_phases(log), dependsOn=["db"]
            ),
            "environments/db.yaml": env_file("db", "destroyed", phases=counting_phases(log)),
        }
    )
    gitops.reconcile("apply", check=True)
    runs = lines(log)
    assert runs.index("destroy app") < runs.index("destroy db")


def test_prune_destroys_a_deleted_environment_with_its_last_definition(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(
        {
            "reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nprune: true\n",
            "environments/web.yaml": env_file("web", phases=counting_phases(log)),
            "environments/db.yaml": env_file("db", phases=counting_phases(log), protected=True),
        }
    )
    gitops.reconcile("apply", check=True)
    gitops.remove("environments/web.yaml")
    gitops.remove("environments/db.yaml")

    plan = gitops.reconcile("plan", "--format", "json", check=True).stdout
    verdicts = {e["name"]: e["verdict"] for e in json.loads(plan)["environments"]}
    assert verdicts == {"db": "protected", "web": "changes"}

    out = gitops.reconcile("apply")

    assert out.returncode == 1  # db stays, protected: not converged
    assert "Traceback" not in out.stderr
    assert gitops.state("web")["state"] == "destroyed"
    assert lines(log)[-1] == "destroy web"  # the destroy steps of the definition last applied
    assert gitops.state("db")["state"] == "running"
    assert "destroy db" not in lines(log)
    assert gitops.reconcile("destroy", "db").returncode == 1


def test_trace_path_is_relative_to_where_the_reconciler_runs(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {"environments/web.yaml": env_file("web", phases={"provision": [{"shell": {"run": "exit 1"}}]})}
    )
    subprocess.run(
        [sys.executable, "-m", "reconciler", "apply"], cwd=gitops.path, capture_output=True, check=False
    )
    failure = gitops.state("web")["failure"]
    assert isinstance(failure, dict)
    trace = str(failure["traceFile"])
    assert trace.startswith("data/web/traces/")
    assert trace.endswith("-provision.log")
    assert (gitops.path / trace).is_file()


def test_every_phase_run_keeps_its_whole_output_in_a_log(gitops: GitOpsRepo) -> None:
    phases = {"release": [{"shell": {"run": "for i in 1 2 3; do echo release line $i; done"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    gitops.reconcile("apply", check=True)
    logs = sorted((gitops.data / "web" / "logs").glob("*-release.log"))
    assert len(logs) == 1
    assert logs[0].read_text().splitlines() == ["release line 1", "release line 2", "release line 3"]


def test_a_ref_lock_left_by_a_writer_killed_mid_update_is_cleared(gitops: GitOpsRepo, tmp_path: Path) -> None:
    """``kill -9`` during a ref update leaves ``<ref>.lock``: the next reconciler must still write."""
    log = tmp_path / "effects.log"
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(log))})
    gitops.reconcile("apply", check=True)
    stale = gitops.path / ".git" / "refs" / "heads" / "reconciler" / "state.lock"
    stale.write_text("0" * 40 + "\n")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    gitops.commit({"environments/web.yaml": env_file("web", "configured", phases=counting_phases(log))})

    out = gitops.reconcile("apply")

    assert out.returncode == 0, out.stderr
    assert "removing a ref lock file left by a writer that died mid-update" in out.stderr
    assert not stale.exists()
    assert gitops.state("web")["state"] == "configured"
    assert lines(log) == ["provision web", "configure web"]
