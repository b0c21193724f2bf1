"""release.sh, start.sh and stop.sh with the RECONCILE_* environment a shell step gets:
a real HTTP server on a free loopback port, started and stopped."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import (
    http_get,
    pid_alive,
    reconcile_env,
    run_script,
    servers_of,
    wait_for_status,
)

pytestmark = pytest.mark.timeout(120)

COMMIT = "1234567890abcdef1234567890abcdef12345678"


def env_for(service_dir: Path, port: int, **vars_: object) -> dict[str, str]:
    return reconcile_env(
        "staging",
        {"http_port": port, "greeting": "Hello <staging>", **vars_},
        {"service_dir": service_dir, "port": port},
        commit=COMMIT,
        data_dir=service_dir.parent.parent,
    )


def server_pid(service_dir: Path) -> int:
    return int((service_dir / "run" / "server.pid").read_text())


def test_release_renders_the_site(configured_service_dir: Path, unused_port: int) -> None:
    result = run_script("release.sh", env_for(configured_service_dir, unused_port))
    assert result.returncode == 0, result.stderr
    www = configured_service_dir / "www"
    assert (www / "health").read_text() == "ok\n"
    version = (www / "version.txt").read_text()
    assert "environment=staging\n" in version
    assert f"commit={COMMIT}\n" in version
    index = (www / "index.html").read_text()
    assert "Hello &lt;staging&gt;" in index
    assert COMMIT in index
    assert json.loads((www / "config.json").read_text())["environment"] == "staging"
    assert not [p for p in www.iterdir() if ".tmp." in p.name]


def test_release_refuses_an_unconfigured_service(service_dir: Path, unused_port: int) -> None:
    result = run_script("release.sh", env_for(service_dir, unused_port))
    assert result.returncode != 0
    assert "did configure run?" in result.stderr
    assert not (service_dir / "www" / "health").exists()


def test_start_serves_health_restarts_and_stop_leaves_no_process(
    configured_service_dir: Path, unused_port: int
) -> None:
    d = configured_service_dir
    env = env_for(d, unused_port)
    assert run_script("release.sh", env).returncode == 0

    started = time.monotonic()
    # Output captured through pipes, as the step runner does: if the server kept them open,
    # this would hang until the timeout.
    result = run_script("start.sh", env, timeout=20)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    first = server_pid(d)
    assert pid_alive(first)
    assert wait_for_status(f"http://127.0.0.1:{unused_port}/health", 200) == 200
    status, body = http_get(f"http://127.0.0.1:{unused_port}/version.txt")
    assert status == 200
    assert f"commit={COMMIT}" in body
    assert http_get(f"http://127.0.0.1:{unused_port}/missing")[0] == 404

    # The server is in its own session: not in the step's process group.
    assert Path(f"/proc/{first}/stat").read_text().rsplit(")", 1)[1].split()[3] == str(first)

    # Starting again restarts: a new process, still exactly one.
    again = run_script("start.sh", env, timeout=20)
    assert again.returncode == 0, again.stderr
    second = server_pid(d)
    assert second != first
    assert not pid_alive(first)
    assert servers_of(d) == [second]
    assert wait_for_status(f"http://127.0.0.1:{unused_port}/health", 200) == 200

    stopped = run_script("stop.sh", env)
    assert stopped.returncode == 0, stopped.stderr
    assert not pid_alive(second)
    assert servers_of(d) == []
    assert not (d / "run" / "server.pid").exists()
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{unused_port}/health", timeout=1)

    # Idempotent.
    assert run_script("stop.sh", env).returncode == 0

    runs = [line.split()[1] for line in (d / "deployments.log").read_text().splitlines()]
    assert runs == ["release", "run", "run"]


def test_start_fails_promptly_when_the_port_is_taken(configured_service_dir: Path, unused_port: int) -> None:
    env = env_for(configured_service_dir, unused_port)
    assert run_script("release.sh", env).returncode == 0
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", unused_port))
        blocker.listen()
        started = time.monotonic()
        result = run_script("start.sh", env, timeout=30)
    assert result.returncode != 0
    assert time.monotonic() - started < 10
    assert "exited" in result.stderr
    assert "Address already in use" in result.stderr
    assert servers_of(configured_service_dir) == []
    assert not (configured_service_dir / "run" / "server.pid").exists()


@pytest.mark.parametrize("port", ["", "80", "abc", "70000"])
def test_start_refuses_a_bad_port(configured_service_dir: Path, port: str) -> None:
    env = env_for(configured_service_dir, 0)
    env["RECONCILE_VAR_HTTP_PORT"] = port
    (configured_service_dir / "www" / "health").write_text("ok\n")
    result = run_script("start.sh", env)
    assert result.returncode != 0
    assert "port" in result.stderr.lower()
    assert servers_of(configured_service_dir) == []


def test_stop_without_anything_to_stop(tmp_path: Path) -> None:
    assert run_script("stop.sh", reconcile_env("staging", {}, {})).returncode == 0
    gone = tmp_path / "gone"
    assert run_script("stop.sh", reconcile_env("staging", {}, {"service_dir": gone})).returncode == 0


def test_stop_never_signals_a_process_that_is_not_the_server(service_dir: Path) -> None:
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (service_dir / "run" / "server.pid").write_text(f"{other.pid}\n")
            result = run_script("stop.sh", reconcile_env("staging", {}, {"service_dir": service_dir}))
            assert result.returncode == 0, result.stderr
            assert "stale pid file" in result.stdout
            assert other.poll() is None
            assert not (service_dir / "run" / "server.pid").exists()
        finally:
            other.kill()
