"""Real git servers on 127.0.0.1 for the tests: ``git daemon``, ``git http-backend`` and ``sshd``.

Each serves the bare repositories under one root directory. The HTTP server
is a small threaded WSGI host (``tests/git_http_host.py``) that runs ``git
http-backend`` as a CGI program per request, as Apache or nginx would, in a
process of its own. The SSH server is OpenSSH's ``sshd`` with a host key and
an authorized client key made for the test, as a git host's ssh access is;
while it serves, ``GIT_SSH_COMMAND`` names that key and the host's key, as a
service account's ``~/.ssh`` would. All run ``receive-pack`` with the
repositories' hooks, so a ``pre-receive`` hook refuses a push exactly as on a
real server.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
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

TRANSPORTS = ("path", "file", "git", "http", "ssh")

#: Where Debian's openssh-server puts the daemon (``.ci/run`` installs it); sshd must be run by absolute path.
SSHD = shutil.which("sshd") or next(
    (path for path in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(path).exists()), None
)


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
        if self.transport == "ssh":
            return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}{bare.resolve()}"
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


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def start_sshd(root: Path) -> tuple[GitServer, str]:
    """sshd on 127.0.0.1 letting this user in with a key made here; and the ssh command that uses it."""
    if SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        import pytest

        pytest.skip(
            "the ssh transport needs OpenSSH's sshd, ssh and ssh-keygen (apt-get install openssh-server)"
        )
    keys = root / "ssh"
    keys.mkdir()
    host_public = _keygen(keys / "host_key")
    (keys / "authorized_keys").write_text(_keygen(keys / "client_key") + "\n")
    port = free_port()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_public}\n")
    (keys / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host_key'}\n"
        f"PidFile {keys / 'sshd.pid'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"PermitRootLogin prohibit-password\nAllowUsers {getpass.getuser()}\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation directory
    log = (root / "sshd.log").open("ab")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(keys / "sshd_config")], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    _wait_listening(port, proc, "sshd")
    command = shlex.join(
        [
            "ssh",
            "-i", str(keys / "client_key"),
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={keys / 'known_hosts'}",
            "-F", "/dev/null",
        ]
    )  # fmt: skip
    return GitServer("ssh", root, port, proc), command


@contextlib.contextmanager
def serving(transport: str, root: Path) -> Iterator[GitServer]:
    """A server of ``transport`` for the bare repositories under ``root`` (local ones need none)."""
    root.mkdir(parents=True, exist_ok=True)
    ssh_command: str | None = None
    if transport == "git":
        server = start_git_daemon(root)
    elif transport == "http":
        server = start_http_backend(root)
    elif transport == "ssh":
        server, ssh_command = start_sshd(root)
    elif transport in ("path", "file"):
        server = GitServer(transport, root, None, None)
    else:
        raise ValueError(f"unknown transport {transport!r}")
    before = os.environ.get("GIT_SSH_COMMAND")
    if ssh_command is not None:
        os.environ["GIT_SSH_COMMAND"] = ssh_command  # every git of the test, and the processes it starts
    try:
        yield server
    finally:
        if ssh_command is not None:
            if before is None:
                os.environ.pop("GIT_SSH_COMMAND", None)
            else:
                os.environ["GIT_SSH_COMMAND"] = before
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
