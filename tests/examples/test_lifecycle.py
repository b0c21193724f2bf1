"""The webapp blueprint's phases in order, each through its real tool, the way the engine will run them:
provision (terraform) -> configure (ansible) -> release -> run + /health -> destroy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    ROOT,
    find_tool,
    kill_servers,
    pid_alive,
    reconcile_env,
    run_script,
    servers_of,
    wait_for_status,
    write_vars,
)

TOFU = find_tool("tofu", "terraform")
ANSIBLE_PLAYBOOK = find_tool("ansible-playbook")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(TOFU is None, reason="neither tofu nor terraform is on PATH"),
    pytest.mark.skipif(ANSIBLE_PLAYBOOK is None, reason="ansible-playbook is not installed"),
]


def check(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_full_lifecycle_of_an_environment(tmp_path: Path, unused_port: int) -> None:
    assert TOFU is not None
    assert ANSIBLE_PLAYBOOK is not None
    data = tmp_path / "data"
    workdir = data / "staging" / "tofu" / "infra-service"
    service = data / "staging" / "service"
    tool_env = {
        **os.environ,
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
    }
    vars_ = {"http_port": unused_port, "greeting": "Hello from staging"}
    tf_vars = ["-var", "environment=staging", "-var", f"port={unused_port}"]
    try:
        # provision
        shutil.copytree(ROOT / "infra" / "service", workdir)
        check([TOFU, "init", "-input=false", "-no-color"], workdir, tool_env)
        check([TOFU, "apply", "-input=false", "-auto-approve", "-no-color", *tf_vars], workdir, tool_env)
        raw = json.loads(check([TOFU, "output", "-json"], workdir, tool_env))
        outputs = {name: o["value"] for name, o in raw.items() if not o["sensitive"]}
        assert outputs["service_dir"] == str(service)

        # configure
        extra = write_vars(
            tmp_path / "extra.json",
            {**vars_, "reconcile_environment": "staging", "reconcile_outputs": outputs},
        )
        check(
            [
                ANSIBLE_PLAYBOOK,
                str(ROOT / "ansible" / "configure.yml"),
                "-i",
                "localhost,",
                "-c",
                "local",
                "-e",
                f"@{extra}",
            ],
            ROOT,
            tool_env,
        )

        # release, run
        env = reconcile_env("staging", vars_, outputs, commit="ab" * 20, data_dir=data)
        for script in ("release.sh", "start.sh"):
            result = run_script(script, env)
            assert result.returncode == 0, result.stderr
        assert wait_for_status(f"http://127.0.0.1:{unused_port}/health", 200) == 200
        pid = int((service / "run" / "server.pid").read_text())

        # destroy
        result = run_script("stop.sh", env)
        assert result.returncode == 0, result.stderr
        check([TOFU, "destroy", "-input=false", "-auto-approve", "-no-color", *tf_vars], workdir, tool_env)
        assert not service.exists()
        assert not pid_alive(pid)
        assert servers_of(service) == []
    finally:
        kill_servers(service)
