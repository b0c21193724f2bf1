"""infra/service through real OpenTofu/Terraform: apply creates the service directory, destroy removes it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, find_tool

TOFU = find_tool("tofu", "terraform")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(TOFU is None, reason="neither tofu nor terraform is on PATH"),
]


def tf(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert TOFU is not None
    env = {
        **os.environ,
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_INPUT": "0",
    }
    result = subprocess.run(
        [TOFU, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=100, check=False
    )
    assert result.returncode == 0, f"{TOFU} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def module_copy(workdir: Path) -> Path:
    """The module in a per-environment working directory, as the engine lays it out."""
    shutil.copytree(ROOT / "infra" / "service", workdir)
    tf(workdir, "init", "-input=false", "-no-color")
    return workdir


def outputs(workdir: Path) -> dict[str, Any]:
    raw = json.loads(tf(workdir, "output", "-json", "-no-color").stdout)
    assert all(not o["sensitive"] for o in raw.values())
    return {name: o["value"] for name, o in raw.items()}


def test_apply_creates_the_directory_under_the_environment_data_dir_and_destroy_removes_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    workdir = module_copy(data / "staging" / "tofu" / "infra-service")
    # Vars as the engine renders them: templated values are strings.
    (workdir / "reconcile.auto.tfvars.json").write_text(
        json.dumps({"environment": "staging", "port": "18081"})
    )

    tf(workdir, "apply", "-input=false", "-auto-approve", "-no-color")
    out = outputs(workdir)
    service = data / "staging" / "service"
    assert out == {"service_dir": str(service), "port": 18081, "url": "http://127.0.0.1:18081"}
    assert (service / ".reconciler-service").read_text() == "staging\n"
    assert {p.name for p in service.iterdir()} >= {"www", "run", "log"}

    # Re-applying changes nothing and keeps what later phases wrote.
    (service / "www" / "health").write_text("ok\n")
    again = tf(workdir, "apply", "-input=false", "-auto-approve", "-no-color")
    assert "0 added, 0 changed, 0 destroyed" in again.stdout
    assert (service / "www" / "health").exists()

    tf(workdir, "destroy", "-input=false", "-auto-approve", "-no-color")
    assert not service.exists()
    assert (workdir / "terraform.tfstate").exists()
    # Destroying again is a no-op.
    tf(workdir, "destroy", "-input=false", "-auto-approve", "-no-color")


def test_explicit_root_var_and_destroy_reads_the_path_from_state(tmp_path: Path) -> None:
    workdir = module_copy(tmp_path / "work")
    root = tmp_path / "elsewhere" / "svc"
    tf(
        workdir,
        "apply",
        "-input=false",
        "-auto-approve",
        "-no-color",
        "-var",
        "environment=preview",
        "-var",
        "port=18082",
        "-var",
        f"root={root}",
    )
    assert outputs(workdir)["service_dir"] == str(root)
    assert root.is_dir()
    # Destroy with different vars still removes the directory recorded at apply.
    tf(
        workdir,
        "destroy",
        "-input=false",
        "-auto-approve",
        "-no-color",
        "-var",
        "environment=preview",
        "-var",
        "port=18082",
    )
    assert not root.exists()


def test_destroy_leaves_a_directory_it_did_not_create(tmp_path: Path) -> None:
    workdir = module_copy(tmp_path / "data" / "web" / "tofu")
    tf(
        workdir,
        "apply",
        "-input=false",
        "-auto-approve",
        "-no-color",
        "-var",
        "environment=web",
        "-var",
        "port=18083",
    )
    service = Path(outputs(workdir)["service_dir"])
    assert service == tmp_path / "data" / "web" / "service"
    (service / ".reconciler-service").unlink()
    tf(
        workdir,
        "destroy",
        "-input=false",
        "-auto-approve",
        "-no-color",
        "-var",
        "environment=web",
        "-var",
        "port=18083",
    )
    assert service.is_dir()


def test_invalid_port_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    assert TOFU is not None
    workdir = module_copy(tmp_path / "data" / "bad" / "tofu")
    result = subprocess.run(
        [
            TOFU,
            "apply",
            "-input=false",
            "-auto-approve",
            "-no-color",
            "-var",
            "environment=bad",
            "-var",
            "port=80",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode != 0
    assert "port must be an integer between 1024 and 65535" in result.stderr
    assert not (tmp_path / "data" / "bad" / "service").exists()
