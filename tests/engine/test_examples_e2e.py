"""The bundled examples through the real tools: terraform, ansible-playbook, a real HTTP service."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.engine.conftest import GitOpsRepo

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which("terraform") is None and shutil.which("tofu") is None, reason="needs tofu or terraform"
    ),
    pytest.mark.skipif(
        shutil.which("ansible-playbook") is None
        and not (Path(sys.executable).parent / "ansible-playbook").exists(),
        reason="needs ansible-playbook",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_yaml(name: str, port: int, desired: str = "running", depends: str = "") -> str:
    deps = f"  dependsOn: [{depends}]\n" if depends else ""
    return (
        "apiVersion: reconciler/v1\nkind: Environment\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  desiredState: {desired}\n  blueprint: webapp\n{deps}"
        f"  vars: {{http_port: {port}, greeting: hello {name}}}\n"
    )


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            status: int = response.status
            return status
    except OSError:
        return 0


def test_examples_reach_running_then_destroyed(gitops: GitOpsRepo) -> None:
    for name in ("blueprints", "infra", "ansible", "examples"):
        shutil.copytree(ROOT / name, gitops.path / name)
    port = free_port()
    gitops.commit({"environments/staging.yaml": env_yaml("staging", port)}, "examples")
    try:
        out = gitops.reconcile("apply", check=True)
        assert "staging: converged (running)" in out.stdout
        assert health(port) == 200
        assert gitops.transitions("staging") == [
            "staging: none -> created",
            "staging: created -> provisioning",
            "staging: provisioning -> provisioned",
            "staging: provisioned -> configuring",
            "staging: configuring -> configured",
            "staging: configured -> releasing",
            "staging: releasing -> released",
            "staging: released -> starting",
            "staging: starting -> running",
        ]
        state = gitops.state("staging")
        outputs = state["outputs"]
        assert isinstance(outputs, dict)
        service_dir = Path(outputs["service_dir"])
        assert service_dir.is_dir()
        assert (gitops.data / "staging" / "tofu").is_dir()  # OpenTofu state persists in the data dir

        status = json.loads(gitops.reconcile("status", "--format", "json", check=True).stdout)["environments"]
        assert status[0]["converged"] is True and status[0]["verdict"] == "converged"
    finally:
        gitops.commit({"environments/staging.yaml": env_yaml("staging", port, "destroyed")}, "destroy")
        gitops.reconcile("apply", check=True)
    assert gitops.transitions("staging")[-2:] == [
        "staging: running -> destroying",
        "staging: destroying -> destroyed",
    ]
    assert health(port) == 0
    assert not service_dir.exists()
