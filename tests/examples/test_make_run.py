"""``make run`` (scripts/run_example.py) as a person uses it: run, edit, Ctrl-C, run again, ``make stop``.

The scratch copy is made first and its ports moved to free ones by a commit,
a person's edit that every later run must keep; then the script runs for real
(terraform, ansible-playbook, the example services, the daemon).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import git

from .conftest import ROOT, find_tool, free_port, http_get, kill_servers, wait_for_status

TOFU = find_tool("tofu", "terraform")
ANSIBLE_PLAYBOOK = find_tool("ansible-playbook")
SCRIPT = ROOT / "scripts" / "run_example.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(TOFU is None, reason="neither tofu nor terraform is on PATH"),
    pytest.mark.skipif(ANSIBLE_PLAYBOOK is None, reason="ansible-playbook is not installed"),
]


def run_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_state() -> tuple[str, str, str]:
    """This checkout's HEAD, its state branch (none) and its work tree, which ``make run`` must never change.

    Not every ref: other worktrees of the same repository move their branches meanwhile."""
    head = git(ROOT, "rev-parse", "HEAD")
    state = git(ROOT, "for-each-ref", "refs/heads/reconciler/", "refs/remotes/origin/reconciler/")
    status = git(ROOT, "status", "--porcelain", "--untracked-files=all")
    return head, state, status


def test_a_second_run_keeps_edits_ctrl_c_and_make_stop_stop_the_services(tmp_path: Path) -> None:
    before = project_state()
    scratch = tmp_path / "scratch"
    repo = run_example().scratch_copy(scratch)
    ports = {"staging": free_port(), "preview": free_port()}
    for name, port in ports.items():
        path = repo / "environments" / f"{name}.yaml"
        text = re.sub(r"http_port: \d+", f"http_port: {port}", path.read_text())
        path.write_text(text.replace(f"Hello from {name}", f"Edited {name}"))
    git(repo, "commit", "-qam", "my ports and greetings")
    (repo / "notes.txt").write_text("uncommitted scratch work\n")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "make-run.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        # make run, with the daemon: the edits are applied, and the address to look at printed.
        with out.open("wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(SCRIPT),
                    "--scratch",
                    str(scratch),
                    "--daemon",
                    "--listen",
                    "127.0.0.1:0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 400
        found = None
        while found is None and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            found = re.search(r"^dashboard: (http://127\.0\.0\.1:\d+/)$", out.read_text(), re.M)
            time.sleep(0.2)
        assert found is not None, out.read_text()
        assert "keeping your scratch repository as it is" in out.read_text()
        status, page = http_get(found.group(1))
        assert status == 200 and "<html" in page.lower()
        assert f"curl -s http://127.0.0.1:{ports['staging']}/" in out.read_text()
        for name, port in ports.items():
            assert wait_for_status(f"http://127.0.0.1:{port}/health", 200, timeout=30) == 200
            assert f"Edited {name}" in http_get(f"http://127.0.0.1:{port}/")[1]

        # Ctrl-C: the daemon stops, and so do the example services.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 0, out.read_text()
        assert "stopping the example services" in out.read_text()
        for port in ports.values():
            with pytest.raises(OSError):
                http_get(f"http://127.0.0.1:{port}/health", timeout=1)

        # A second run (without the daemon) keeps the edits and starts the stopped services again.
        again = subprocess.run(
            [sys.executable, str(SCRIPT), "--scratch", str(scratch)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "keeping your scratch repository as it is" in again.stdout
        assert (repo / "notes.txt").read_text() == "uncommitted scratch work\n"
        assert git(repo, "log", "-1", "--format=%s").strip() == "my ports and greetings"
        for name, port in ports.items():
            assert f"Edited {name}" in http_get(f"http://127.0.0.1:{port}/")[1]

        # make stop: the services are stopped.
        stopped = subprocess.run(
            [sys.executable, str(SCRIPT), "--scratch", str(scratch), "--stop"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "stopped process" in stopped.stdout
        for port in ports.values():
            with pytest.raises(OSError):
                http_get(f"http://127.0.0.1:{port}/health", timeout=1)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for name in ports:
            kill_servers(scratch / "data" / name / "service")
    assert project_state() == before
