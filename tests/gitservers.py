"""Real git servers on 127.0.0.1 for the tests: ``git daemon`` (git://) and ``git http-backend`` (smart HTTP).

Each serves the bare repositories under one root directory. The HTTP server
is a small threaded WSGI host (``tests/git_http_host.py``) that runs ``git
http-backend`` as a CGI program per request, as Apache or nginx would, in a
process of its own. Both run ``receive-pack`` with the repositories' hooks, so
a ``pre-receive`` hook refuses a push exactly as on a real server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: A pre-receive hook that refuses every update of the state branch.
REFUSE_STATE_BRANCH = """#!/bin/sh
while read old new ref; do
  if [ "$ref" = "refs/heads/reconciler/state" ]; then
    echo "state branch updates are not allowed here" >&2
    exit 1
  fi
done
exit 0
"""

TRANSPORTS = ("path", "file", "git", "http")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


@dataclass
class GitServer:
    """One server process and how to name a repository under its root."""

    transport: str
    root: Path
    port: int | None
    proc: subprocess.Popen[bytes] | None

    def url(self, bare: Path) -> str:
        rel = bare.resolve().relative_to(self.root.resolve())
        if self.transport == "git":
            return f"git://127.0.0.1:{self.port}/{rel}"
        if self.transport == "http":
            return f"http://127.0.0.1:{self.port}/{rel}"
        if self.transport == "file":
            return bare.resolve().as_uri()
        return str(bare.resolve())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_git_daemon(root: Path) -> GitServer:
    port = free_port()
    log = (root / "git-daemon.log").open("ab")
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={root}",
            str(root),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    _wait_listening(port, proc, "git daemon")
    return GitServer("git", root, port, proc)


def start_http_backend(root: Path) -> GitServer:
    port = free_port()
    log = (root / "git-http.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "git_http_host.py"), str(root), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    _wait_listening(port, proc, "git http-backend host")
    return GitServer("http", root, port, proc)


@contextlib.contextmanager
def serving(transport: str, root: Path) -> Iterator[GitServer]:
    """A server of ``transport`` for the bare repositories under ``root`` (local ones need none)."""
    root.mkdir(parents=True, exist_ok=True)
    if transport == "git":
        server = start_git_daemon(root)
    elif transport == "http":
        server = start_http_backend(root)
    elif transport in ("path", "file"):
        server = GitServer(transport, root, None, None)
    else:
        raise ValueError(f"unknown transport {transport!r}")
    try:
        yield server
    finally:
        server.stop()


def init_bare(path: Path) -> Path:
    """A bare repository that accepts pushes over every transport (``http.receivepack``)."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "--git-dir", str(path), "config", "http.receivepack", "true"], check=True)
    return path


def install_hook(bare: Path, name: str, script: str) -> None:
    hook = bare / "hooks" / name
    hook.write_text(script)
    os.chmod(hook, 0o755)
