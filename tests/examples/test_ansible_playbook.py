"""ansible/configure.yml through real ansible-playbook on localhost, with the extra vars the runner passes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, find_tool, write_vars

ANSIBLE_PLAYBOOK = find_tool("ansible-playbook")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(ANSIBLE_PLAYBOOK is None, reason="ansible-playbook is not installed"),
]


def playbook(tmp_path: Path, extra_vars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    assert ANSIBLE_PLAYBOOK is not None
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "RECONCILE_DESIRED_COMMIT": "c0ffee",
    }
    return subprocess.run(
        [
            ANSIBLE_PLAYBOOK,
            str(ROOT / "ansible" / "configure.yml"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{write_vars(tmp_path / 'vars.json', extra_vars)}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_configure_writes_the_service_configuration(service_dir: Path, tmp_path: Path) -> None:
    result = playbook(
        tmp_path,
        {
            "http_port": "18081",
            "greeting": "Hello from staging",
            "reconcile_environment": "staging",
            "reconcile_outputs": {
                "service_dir": str(service_dir),
                "port": 18081,
                "url": "http://127.0.0.1:18081",
            },
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = json.loads((service_dir / "config" / "service.json").read_text())
    assert config == {
        "environment": "staging",
        "bind": "127.0.0.1",
        "port": 18081,
        "greeting": "Hello from staging",
    }
    log = (service_dir / "deployments.log").read_text().splitlines()
    assert len(log) == 1
    assert log[0].split()[1:] == ["configure", "staging", "c0ffee"]

    # Configuring again rewrites nothing but records the run (a side-effect counter).
    again = playbook(
        tmp_path,
        {
            "http_port": 18081,
            "greeting": "Hello from staging",
            "reconcile_environment": "staging",
            "reconcile_outputs": {"service_dir": str(service_dir)},
        },
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((service_dir / "config" / "service.json").read_text()) == config
    assert len((service_dir / "deployments.log").read_text().splitlines()) == 2


def test_configure_fails_when_provision_did_not_create_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "never-provisioned"
    result = playbook(
        tmp_path,
        {
            "http_port": 18081,
            "reconcile_environment": "staging",
            "reconcile_outputs": {"service_dir": str(missing)},
        },
    )
    assert result.returncode != 0
    assert "was not created by provision" in result.stdout
    assert not missing.exists()


def test_configure_fails_without_outputs(tmp_path: Path) -> None:
    result = playbook(
        tmp_path, {"http_port": 18081, "reconcile_environment": "staging", "reconcile_outputs": {}}
    )
    assert result.returncode != 0
    assert "configure needs reconcile_environment" in result.stdout
