"""Fixtures for the example content: the real tools, on real directories and ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "examples" / "scripts"


def find_tool(*names: str) -> str | None:
    """The first of ``names`` on PATH or beside this interpreter (the venv's bin)."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, ""


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def servers_of(service_dir: Path) -> list[int]:
    """Pids of live processes serving ``service_dir/www``."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True, check=True)
    pids = []
    for line in out.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "http.server" in args and f"{service_dir}/www" in args and pid_alive(int(pid)):
            pids.append(int(pid))
    return pids


def reconcile_env(
    environment: str,
    vars_: Mapping[str, Any],
    outputs: Mapping[str, Any],
    *,
    commit: str = "0" * 40,
    data_dir: Path | None = None,
) -> dict[str, str]:
    """The environment a shell step gets (SPEC section 2.3)."""
    env = dict(os.environ)
    env["RECONCILE_ENVIRONMENT"] = environment
    env["RECONCILE_DESIRED_COMMIT"] = commit
    if data_dir is not None:
        env["RECONCILE_DATA_DIR"] = str(data_dir)
    for name, value in vars_.items():
        env[f"RECONCILE_VAR_{name.upper()}"] = str(value)
    for name, value in outputs.items():
        env[f"RECONCILE_OUTPUT_{name.upper()}"] = str(value)
    return env


def run_script(name: str, env: Mapping[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a script as the blueprint does (``sh examples/scripts/NAME`` from the repository root),
    with stdout and stderr as pipes, as the step runner captures them."""
    return subprocess.run(
        ["/bin/sh", "-c", f"sh examples/scripts/{name}"],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_status(url: str, status: int, timeout: float = 10) -> int | None:
    deadline = time.monotonic() + timeout
    last: int | None = None
    while time.monotonic() < deadline:
        try:
            last, _ = http_get(url, timeout=1)
            if last == status:
                return last
        except OSError:
            last = None
        time.sleep(0.1)
    return last


def write_vars(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(values))
    return path


def kill_servers(service_dir: Path) -> None:
    """Last-resort cleanup: whatever still serves ``service_dir`` is killed."""
    pids = servers_of(service_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def service_dir(tmp_path: Path) -> Iterator[Path]:
    """A provisioned-looking service directory (what infra/service creates); every server started
    on it is stopped afterwards, by stop.sh and then by force."""
    d = tmp_path / "data" / "staging" / "service"
    for sub in ("www", "run", "log"):
        (d / sub).mkdir(parents=True)
    (d / ".reconciler-service").write_text("staging\n")
    yield d
    run_script("stop.sh", reconcile_env("staging", {}, {"service_dir": d}))
    kill_servers(d)


@pytest.fixture
def configured_service_dir(service_dir: Path) -> Path:
    """As after configure: config/service.json present."""
    (service_dir / "config").mkdir()
    (service_dir / "config" / "service.json").write_text(
        json.dumps({"environment": "staging", "bind": "127.0.0.1", "port": 0, "greeting": "hi"})
    )
    return service_dir


@pytest.fixture
def unused_port() -> int:
    return free_port()
