"""``--format json`` everywhere: ``formatVersion`` at the top, plain values, errors as JSON (SPEC 5)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _doc(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict) and next(iter(data)) == "formatVersion" and data["formatVersion"] == 1
    return data


def _walk(value: object) -> list[str]:
    """Every string in a JSON document."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk(v)]
    return [value] if isinstance(value, str) else []


def test_every_read_command_prints_one_versioned_document(gitops: GitOpsRepo, tmp_path: Path) -> None:
    phases = counting_phases(tmp_path / "effects.log")
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    gitops.reconcile("apply", check=True)

    for args in (
        ("status",),
        ("status", "web"),
        ("show", "web"),
        ("history",),
        ("plan",),
        ("validate",),
        ("log", "web"),
        ("log", "web", "--runs"),
    ):
        out = gitops.reconcile(*args, "--format", "json", check=True)
        data = _doc(out.stdout)
        for text in _walk(data):
            assert not text.startswith("no: "), (args, text)  # a display string would read like this
    status = _doc(gitops.reconcile("status", "--format", "json", check=True).stdout)
    row = status["environments"][0]
    assert row["name"] == "web" and row["observed"] == "running" and row["desired"] == "running"
    assert row["converged"] is True and row["verdict"] == "converged" and row["lock"] is None
    assert row["lastTransition"]["from"] == "starting" and row["lastTransition"]["to"] == "running"
    assert RFC3339.match(row["lastTransition"]["at"]) and RFC3339.match(row["updatedAt"])
    shown = _doc(gitops.reconcile("show", "web", "--format", "json", check=True).stdout)
    assert shown["name"] == "web" and shown["state"]["state"] == "running" and shown["lock"] is None
    log = _doc(gitops.reconcile("log", "web", "--format", "json", check=True).stdout)
    assert log["run"]["phase"] == "run" and "run web" in (tmp_path / "effects.log").read_text()
    version = _doc(
        subprocess.run(
            [sys.executable, "-m", "reconciler", "version", "--format", "json", "--repo", str(gitops.path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    assert re.match(r"^\d+\.\d+", version["version"])


def test_a_held_lock_is_an_object_with_its_holder_times_and_staleness(gitops: GitOpsRepo) -> None:
    phases = {"provision": [{"shell": {"run": "sleep 30"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    holder = subprocess.Popen(
        gitops.command("apply"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while gitops.transitions()[-1:] != ["web: created -> provisioning"] and time.monotonic() < deadline:
            time.sleep(0.1)
        row = _doc(gitops.reconcile("status", "web", "--format", "json", check=True).stdout)["environments"][
            0
        ]
        lock = row["lock"]
        recorded = gitops.state("web")["lock"]
        assert isinstance(recorded, dict)
        assert row["converged"] is False and row["verdict"] == "waiting" and row["observed"] == "provisioning"
        assert lock["id"] == recorded["id"] and lock["holder"]["host"] == os.uname().nodename
        assert lock["holder"]["pid"] == recorded["holder"]["pid"] and isinstance(lock["holder"]["pid"], int)
        assert lock["acquiredAt"] == recorded["acquiredAt"] and RFC3339.match(lock["expiresAt"])
        assert lock["stale"] is False and lock["staleReason"] is None
        shown = _doc(gitops.reconcile("show", "web", "--format", "json", check=True).stdout)
        assert shown["lock"] == lock
    finally:
        os.killpg(holder.pid, 15)
        holder.wait(timeout=60)


def test_a_blocked_failure_is_a_verdict_name_and_the_failure_of_state_json(gitops: GitOpsRepo) -> None:
    phases = {"provision": [{"name": "make vm", "shell": {"run": "exit 3"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases, retry={"limit": 0})})
    assert gitops.reconcile("apply").returncode == 1
    row = _doc(gitops.reconcile("status", "--format", "json", check=True).stdout)["environments"][0]
    assert row["verdict"] == "blocked" and row["converged"] is False
    failure = row["failure"]
    assert failure == gitops.state("web")["failure"]
    assert failure["failedStep"] == "make vm" and failure["errorKind"] == "command_failed"
    assert failure["attempt"] == 1 and isinstance(failure["executionDurationSeconds"], float)
    text = gitops.reconcile("status", check=True).stdout
    assert "no: blocked" in text and "make vm: shell exited 3 (attempt 1)" in text


def test_errors_are_json_on_stderr_with_the_same_exit_codes(gitops: GitOpsRepo, tmp_path: Path) -> None:
    gitops.commit({"environments/web.yaml": env_file("web")})
    cases = [
        (("status", "nope"), 1, "not_found", "unknown environment 'nope'"),
        (("show", "nope"), 1, "not_found", "unknown environment 'nope'"),
        (("history", "--since", "yesterday"), 2, "usage", "is not an RFC 3339 time"),
        (("status", "-l", "team"), 2, "usage", "key=value"),
        (("plan", "--rev", "no-such-rev"), 1, "error", "no-such-rev"),
        (("status", "--workers", "2"), 2, "usage", "No such option"),
    ]
    for args, code, kind, said in cases:
        out = gitops.reconcile(*args, "--format", "json")
        assert out.returncode == code, (args, out.stderr)
        assert out.stdout == "", args
        error = _doc(out.stderr)["error"]
        assert error["kind"] == kind and said in error["message"], (args, error)
        text = gitops.reconcile(*args)
        assert text.returncode == code and "error" in text.stderr.lower() and not text.stderr.startswith("{")
    outside = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "validate",
            "--repo",
            str(tmp_path / "none"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        outside.returncode == 1
        and "not a git repository (nor is any parent" in _doc(outside.stderr)["error"]["message"]
    )


def test_validate_json_lists_every_problem_under_a_verdict(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web"), "environments/bad.yaml": "kind: nope\n"})
    out = gitops.reconcile("validate", "--format", "json")
    assert out.returncode == 1
    data = _doc(out.stdout)
    assert data["valid"] is False and data["environments"] == 1 and data["invalidEnvironments"] == ["bad"]
    assert {p["path"] for p in data["problems"]} == {"environments/bad.yaml"}
    assert all(isinstance(p["line"], int) and p["severity"] == "error" for p in data["problems"])


def test_no_color_and_NO_COLOR_leave_no_escape_codes(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": env_file("web")})
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    coloured = gitops.reconcile("status", "nope", env=forced)
    assert "\x1b[" in coloured.stderr  # the control: rich colours "error:" when forced
    for args, env in (((), {**forced, "NO_COLOR": "1"}), (("--no-color",), forced)):
        out = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "status", "nope", "--repo", str(gitops.path)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=120,
            check=False,
        )
        assert out.returncode == 1 and "unknown environment 'nope'" in out.stderr
        assert "\x1b[" not in out.stderr, args


def test_validate_reports_every_problem_of_a_file_in_one_run(gitops: GitOpsRepo) -> None:
    """A wrong name, a path escape and an unknown dependsOn took three rounds of fix-and-validate."""
    gitops.commit(
        {
            "environments/web.yaml": """\
                apiVersion: reconciler/v1
                kind: Environment
                metadata:
                  name: webby
                spec:
                  desiredState: running
                  dependsOn: [nothere]
                  phases:
                    provision:
                      - shell: {run: echo hi, cwd: ../outside}
                    run:
                      - ansible: {playbook: /etc/passwd}
                """
        }
    )
    out = gitops.reconcile("validate")
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        "environments/web.yaml:4:9: `metadata.name` is 'webby' but the file is web.yaml; "
        "the name must equal the file stem 'web'",
        "environments/web.yaml:7:15: `spec.dependsOn[0]`: no environment named 'nothere'; "
        "expected the name of a file in environments/ (e.g. none)",
        "environments/web.yaml:10:36: `shell.cwd`: '../outside' leads outside the repository; "
        "give a path inside it; expected a path inside the repository",
        "environments/web.yaml:12:29: `ansible.playbook`: '/etc/passwd' is absolute; "
        "give a path relative to the repository root; expected a path inside the repository",
    ]
    assert "4 problem(s)" in out.stderr and "1 environment(s) will be left alone" in out.stderr
    data = _doc(gitops.reconcile("validate", "--format", "json").stdout)
    assert [(p["line"], p["environment"]) for p in data["problems"]] == [
        (4, "web"),
        (7, "web"),
        (10, "web"),
        (12, "web"),
    ]
    # Nothing of it is acted on: apply leaves the environment alone and says why.
    applied = gitops.reconcile("apply")
    assert "environments/web.yaml:4:9" in applied.stderr and gitops.transitions() == []
