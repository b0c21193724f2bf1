"""Drift (SPEC 3.1) end to end with the real tools: ``reconcile check`` finds, records and heals it.

Drift is made by hand the way people make it: ``terraform state rm`` in the
environment's working directory, an edit of a file a playbook wrote, the
removal of what a shell step made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, env_file

TERRAFORM = shutil.which("terraform") or shutil.which("tofu")
ANSIBLE = (Path(sys.executable).parent / "ansible-playbook").exists() or shutil.which("ansible-playbook")
SECRET = "s3cr3t-drift-token-4711"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
needs_terraform = pytest.mark.skipif(TERRAFORM is None, reason="needs terraform or tofu on PATH")
needs_ansible = pytest.mark.skipif(not ANSIBLE, reason="needs ansible-playbook")

MODULE = """\
variable "name" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

resource "terraform_data" "marker" {
  input = var.name
}

resource "terraform_data" "token" {
  input = sha256(var.token)
}

output "marker" {
  value = terraform_data.marker.output
}
"""

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Write the page
      ansible.builtin.copy:
        dest: "{{ reconcile_data_dir }}/page.txt"
        content: "hello from {{ reconcile_environment }}\\n"
        mode: "0644"
"""


def events(gitops: GitOpsRepo, name: str) -> list[tuple[str, str, str]]:
    """``(subject, Reconcile-Event, body)`` of every state-branch commit of ``name``, oldest first."""
    out = git(gitops.path, "log", "--reverse", "--format=%s%x1f%B%x1e", "reconciler/state")
    found = []
    for entry in out.split("\x1e"):
        if "\x1f" not in entry:
            continue
        subject, message = entry.strip("\n").split("\x1f", 1)
        if f"Reconcile-Environment: {name}\n" not in message + "\n":
            continue
        kind = next(
            line.split(": ", 1)[1] for line in message.splitlines() if line.startswith("Reconcile-Event: ")
        )
        found.append((subject, kind, message))
    return found


def workdir(gitops: GitOpsRepo, name: str) -> Path:
    return gitops.data / name / "tofu" / "infra__marker"


def terraform(gitops: GitOpsRepo, name: str, *args: str) -> str:
    assert TERRAFORM is not None
    out = subprocess.run(
        [TERRAFORM, *args], cwd=workdir(gitops, name), capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout


@needs_terraform
def test_tofu_drift_is_found_reported_recorded_once_and_healed(gitops: GitOpsRepo) -> None:
    step = {
        "tofu": {
            "module": "infra/marker",
            "binary": Path(TERRAFORM or "terraform").name,
            "vars": {"name": "{{ environment.name }}", "token": {"fromEnv": "DRIFT_TOKEN"}},
        }
    }
    gitops.commit(
        {
            "infra/marker/main.tf": MODULE,
            "environments/web.yaml": env_file("web", "provisioned", phases={"provision": [step]}),
        }
    )
    env = {"DRIFT_TOKEN": SECRET}
    gitops.reconcile("apply", env=env, check=True)
    converged = len(events(gitops, "web"))

    clean = gitops.reconcile("check", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "web: in sync" in clean.stdout
    assert len(events(gitops, "web")) == converged  # nothing found, nothing written

    terraform(gitops, "web", "state", "rm", "terraform_data.marker")
    found = gitops.reconcile("check", env=env)
    assert found.returncode == 2, found.stdout + found.stderr
    assert "web: drifted" in found.stdout
    assert "provision" in found.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in found.stdout
    subject, kind, message = events(gitops, "web")[-1]
    assert (subject, kind) == ("web: provisioned -> provisioned", "drift")
    assert "| Phase: provision" in message
    assert "| Summary: Plan: 1 to add, 0 to change, 0 to destroy." in message
    drift = gitops.state("web")["drift"]
    assert isinstance(drift, dict)
    assert drift["status"] == "drifted"
    assert drift["phase"] == "provision"
    assert drift["summary"] == "Plan: 1 to add, 0 to change, 0 to destroy."
    assert drift["checkedAt"] == drift["since"]
    # A plain check only reports: the resource is still gone.
    assert "terraform_data.marker" not in terraform(gitops, "web", "state", "list")

    again = gitops.reconcile("check", "web", "--format", "json", env=env)
    assert again.returncode == 2
    report = json.loads(again.stdout)
    assert report["formatVersion"] == 1
    assert report["environments"][0]["found"] == "drifted"
    assert report["environments"][0]["drift"]["since"] == drift["since"]
    assert len(events(gitops, "web")) == converged + 1  # the same drift again writes nothing

    status = gitops.reconcile("status", "--format", "json", check=True)
    row = json.loads(status.stdout)["environments"][0]
    assert row["drift"]["status"] == "drifted"
    assert row["drift"]["summary"] == "Plan: 1 to add, 0 to change, 0 to destroy."
    table = gitops.reconcile("status", check=True)
    assert "drifted" in table.stdout
    show = gitops.reconcile("show", "web", check=True)
    assert '"status": "drifted"' in show.stdout
    history = gitops.reconcile("history", "web", "--event", "drift", check=True)
    assert "drift" in history.stdout
    assert "Plan: 1 to add" in history.stdout

    healed = gitops.reconcile("check", "--heal", env=env)
    assert healed.returncode == 2, healed.stdout + healed.stderr  # drift was found (and healed)
    assert "web: provisioned -> provisioning" in healed.stdout
    assert "healed" in healed.stdout
    assert "terraform_data.marker" in terraform(gitops, "web", "state", "list")
    log = events(gitops, "web")
    assert [(s, k) for s, k, _ in log[-3:]] == [
        ("web: provisioned -> provisioning", "transition"),
        ("web: provisioning -> provisioned", "transition"),
        ("web: provisioned -> provisioned", "in-sync"),
    ]
    assert "| Healing drift: drifted at provision step" in log[-3][2]
    assert "Reconcile-Actor: reconciler" not in log[-3][2]  # a person ran check --heal
    assert gitops.state("web")["drift"]["status"] == "in_sync"  # type: ignore[index]

    after = gitops.reconcile("check", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert len(events(gitops, "web")) == len(log)

    # The secret was handed to terraform again for every plan and is nowhere on disk or the branch.
    for path in gitops.data.rglob("*"):
        if path.is_file() and path.name != "terraform.tfstate" and "terraform.tfstate" not in path.name:
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in git(gitops.path, "log", "-p", "reconciler/state")


@needs_ansible
def test_an_edited_file_a_playbook_wrote_is_drift_with_its_diff_and_is_healed(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {
            "ansible/page.yml": PLAYBOOK,
            "environments/web.yaml": env_file(
                "web", "configured", phases={"configure": [{"ansible": {"playbook": "ansible/page.yml"}}]}
            ),
        }
    )
    gitops.reconcile("apply", check=True)
    page = gitops.data / "web" / "page.txt"
    assert page.read_text() == "hello from web\n"
    assert gitops.reconcile("check").returncode == 0

    page.write_text("edited by hand\n")
    found = gitops.reconcile("check")
    assert found.returncode == 2, found.stdout + found.stderr
    assert "1 task would change: 'Write the page' on localhost" in found.stdout
    assert page.read_text() == "edited by hand\n"  # --check changed nothing
    drift = gitops.state("web")["drift"]
    assert isinstance(drift, dict)
    assert (drift["status"], drift["phase"]) == ("drifted", "configure")
    traces = sorted((gitops.data / "web" / "traces").glob("*-drift.log"))
    assert len(traces) == 1
    trace = traces[0].read_text()
    assert "-edited by hand" in trace
    assert "+hello from web" in trace
    assert str(traces[0].name) in events(gitops, "web")[-1][2]

    healed = gitops.reconcile("check", "--heal")
    assert healed.returncode == 2, healed.stdout + healed.stderr
    assert page.read_text() == "hello from web\n"
    assert gitops.state("web")["drift"]["status"] == "in_sync"  # type: ignore[index]
    assert gitops.reconcile("check").returncode == 0


def _shell_env(name: str, **spec: object) -> str:
    marker = "$RECONCILE_DATA_DIR/marker"
    return env_file(
        name,
        "provisioned",
        phases={
            "provision": [
                {"name": "marker", "shell": {"run": f"touch {marker}", "check": f"test -e {marker}"}}
            ]
        },
        **spec,
    )


def test_a_shell_check_finds_drift_heal_false_and_suspend_report_it_and_leave_it(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {
            "environments/web.yaml": _shell_env("web"),
            "environments/keep.yaml": _shell_env("keep", drift={"detect": True, "heal": False}),
            "environments/frozen.yaml": _shell_env("frozen"),
            "environments/blind.yaml": _shell_env("blind", drift={"detect": False}),
            "environments/held.yaml": _shell_env("held"),
        }
    )
    gitops.reconcile("apply", check=True)
    gitops.reconcile("suspend", "held", "--reason", "disk swap", check=True)
    text = (
        (gitops.path / "environments/frozen.yaml")
        .read_text()
        .replace('"desiredState": "provisioned"', '"desiredState": "provisioned",\n    "suspend": true')
    )
    gitops.commit({"environments/frozen.yaml": text}, "suspend frozen")
    for name in ("web", "keep", "frozen", "blind", "held"):
        (gitops.data / name / "marker").unlink()

    found = gitops.reconcile("check", "--heal")
    assert found.returncode == 2, found.stdout + found.stderr
    lines = dict(
        line.split(": ", 1) for line in found.stdout.splitlines() if ": " in line and "->" not in line
    )
    assert lines["web"].startswith("drifted: drifted at provision step marker: check exited 1")
    assert "healed" in lines["web"]
    assert "spec.drift.heal is false" in lines["keep"]
    assert "suspended by its file (spec.suspend: true), not healed" in lines["frozen"]
    assert "disk swap, not healed" in lines["held"]  # an operator's `reconcile suspend`
    assert lines["blind"].startswith("nothing to check")  # detect: false and no check steps
    assert (gitops.data / "web" / "marker").exists()
    for name in ("keep", "frozen", "held"):
        assert not (gitops.data / name / "marker").exists()
        assert gitops.state(name)["state"] == "provisioned"
        assert gitops.state(name)["drift"]["status"] == "drifted"  # type: ignore[index]
        assert [k for _, k, _ in events(gitops, name)][-1] == "drift"
    assert "drift" not in gitops.state("blind")


def test_check_selects_by_label_and_refuses_a_bad_selector(gitops: GitOpsRepo) -> None:
    web = json.loads(_shell_env("web"))
    web["metadata"]["labels"] = {"team": "web"}
    gitops.commit({"environments/web.yaml": json.dumps(web), "environments/db.yaml": _shell_env("db")})
    gitops.reconcile("apply", check=True)
    (gitops.data / "db" / "marker").unlink()

    only_web = gitops.reconcile("check", "-l", "team=web")
    assert only_web.returncode == 0, only_web.stdout + only_web.stderr
    assert only_web.stdout.strip() == "web: in sync"
    everything = gitops.reconcile("check")
    assert everything.returncode == 2
    assert "db: drifted" in everything.stdout

    bad = gitops.reconcile("check", "-l", "team")
    assert bad.returncode == 2
    assert "key=value" in bad.stderr
    unknown = gitops.reconcile("check", "nope")
    assert unknown.returncode == 1
    assert "unknown environment" in unknown.stderr
