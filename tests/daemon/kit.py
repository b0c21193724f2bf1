"""A bare repository as the server, clones as users' checkouts, daemons as real subprocesses."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2

from tests.conftest import git

STATE_REF = "refs/heads/reconciler/state"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shell_env(
    name: str,
    log: Path,
    *,
    desired: str = "running",
    release: str = "v1",
    slow: str | None = None,
    pause: float = 0.0,
    phases: tuple[str, ...] = ("provision", "configure", "release", "run"),
    check: str | None = None,
) -> str:
    """An environment whose every phase appends ``<env> <phase> start|end <time> <pid>`` to ``log``.

    ``release`` goes into the release phase's command, so changing it changes only that
    phase's inputs. The ``slow`` phase sleeps ``pause`` seconds and writes its shell's pid
    to ``<log>.<env>.pid``; a SIGTERM ends it with a ``killed`` line instead of ``end``.
    """
    lines = [
        "apiVersion: reconciler/v1",
        "kind: Environment",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  desiredState: {desired}",
        "  vars:",
        f"    log: {json.dumps(str(log))}",
        f"    pidfile: {json.dumps(f'{log}.{name}.pid')}",
        "  retry: {limit: 3, backoffSeconds: 1}",
        "  timeoutSeconds: 120",
        "  phases:",
    ]
    for phase in (*phases, "destroy"):
        tag = f"{phase}-{release}" if phase == "release" else phase
        note = f'echo "{name} {tag} EVENT $(date +%s.%N) $$" >> "$RECONCILE_VAR_LOG"'
        run = note.replace("EVENT", "start")
        if phase == slow:
            # Its own output goes to a file: an orphan's stdout is a pipe nobody reads (SIGPIPE).
            run = (
                'exec 2>> "$RECONCILE_VAR_LOG.err"; '
                f"trap '{note.replace('EVENT', 'killed')}; exit 143' TERM; "
                'echo $$ > "$RECONCILE_VAR_PIDFILE"; '
                f"{run}; sleep {pause} & wait $!"
            )
        run = f"{run}; {note.replace('EVENT', 'end')}"
        lines.append(f"    {phase}: [{{shell: {{run: {json.dumps(run)}}}}}]")
    if check is not None:
        lines.append(f"    check: [{{shell: {{run: {json.dumps(check)}}}, reapply: release}}]")
    return "\n".join(lines) + "\n"


@dataclass
class LogLine:
    env: str
    phase: str
    event: str
    at: float
    pid: int


def read_log(log: Path) -> list[LogLine]:
    if not log.exists():
        return []
    found = []
    for raw in log.read_text().splitlines():
        parts = raw.split()
        if len(parts) == 5:
            found.append(LogLine(parts[0], parts[1], parts[2], float(parts[3]), int(parts[4])))
    return found


def runs(log: Path, env: str | None = None) -> list[str]:
    """The phases that started, in order (``web provision``...)."""
    return [
        f"{x.env} {x.phase}" for x in read_log(log) if x.event == "start" and (env is None or x.env == env)
    ]


def assert_no_overlap(log: Path) -> None:
    """No two runs of one environment's phases were ever in flight at once."""
    open_runs: dict[tuple[str, int], float] = {}
    intervals: dict[str, list[tuple[float, float, str]]] = {}
    lines = read_log(log)
    for x in lines:
        if x.event == "start":
            open_runs[(x.env, x.pid)] = x.at
        elif x.event in ("end", "killed"):
            start = open_runs.pop((x.env, x.pid))
            intervals.setdefault(x.env, []).append((start, x.at, x.phase))
    for (env, _pid), start in open_runs.items():  # killed before its end: it ran until at least now
        intervals.setdefault(env, []).append((start, time.time(), "unfinished"))
    for env, spans in intervals.items():
        spans.sort()
        for (s1, e1, p1), (s2, _e2, p2) in itertools.pairwise(spans):
            assert s2 >= e1, f"{env}: {p2} started at {s2} while {p1} ran ({s1}..{e1})"


@dataclass
class Server:
    """A bare repository as the git server and one clone to push from."""

    bare: Path
    clone: Path

    def write(self, rel: str, text: str) -> None:
        path = self.clone / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def remove(self, rel: str) -> None:
        git(self.clone, "rm", "-q", rel)

    def push(self, message: str = "change") -> None:
        git(self.clone, "add", "-A")
        git(self.clone, "commit", "-q", "--allow-empty", "-m", message)
        git(self.clone, "push", "-q", "origin", "HEAD:refs/heads/main")


def make_server(tmp: Path, config: str | None = None) -> Server:
    bare = tmp / "server.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    clone = tmp / "checkout"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, capture_output=True)
    git(clone, "checkout", "-q", "-b", "main")
    server = Server(bare, clone)
    server.write("reconciler.yaml", config or "apiVersion: reconciler/v1\nkind: Config\n")
    server.push("initial")
    return server


def transitions(repo: Path, ref: str = STATE_REF) -> list[tuple[str, str, str]]:
    """``(environment, from, to)`` of every commit on the state branch, oldest first."""
    r = pygit2.Repository(str(repo))
    reference = r.references.get(ref)
    if reference is None:
        return []
    found = []
    commit: Any = r.get(reference.target)
    while commit is not None:
        trailers = dict(
            line.split(": ", 1)
            for line in commit.message.splitlines()
            if line.startswith("Reconcile-") and ": " in line
        )
        if "Reconcile-Environment" in trailers:
            found.append(
                (trailers["Reconcile-Environment"], trailers["Reconcile-From"], trailers["Reconcile-To"])
            )
        commit = commit.parents[0] if commit.parents else None
    return list(reversed(found))


def state_of(repo: Path, name: str, ref: str = STATE_REF) -> dict[str, Any] | None:
    r = pygit2.Repository(str(repo))
    reference = r.references.get(ref)
    if reference is None:
        return None
    tree = r.get(reference.target).tree  # type: ignore[union-attr]
    try:
        blob = tree[f"{name}/state.json"]
    except KeyError:
        return None
    return json.loads(blob.data)  # type: ignore[no-any-return]


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 30.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def state_is(repo: Path, name: str, state: str) -> Callable[[], bool]:
    def check() -> bool:
        doc = state_of(repo, name)
        return doc is not None and doc["state"] == state and doc.get("lock") is None

    return check


_LISTENING = re.compile(r"^reconcile daemon: .*; http://127\.0\.0\.1:(\d+) ", re.MULTILINE)


@dataclass
class DaemonProcess:
    repo: Path
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_file: Path
    args: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(self.url(path), data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_listening(self, timeout: float = 30.0) -> int:
        """The port the daemon bound, from its start-up line (``--listen 127.0.0.1:0``)."""
        found: list[int] = []

        def bound() -> bool:
            match = _LISTENING.search(self.output())
            if match is not None:
                found.append(int(match.group(1)))
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            return False

        wait_for("the daemon's start-up line", bound, timeout)
        return found[0]

    def wait_healthy(self, timeout: float = 20.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False

        wait_for("the daemon's /healthz", up, timeout)

    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


class Daemons:
    """Starts daemons and kills whatever is left when the test ends."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[DaemonProcess] = []

    def start(
        self,
        repo: Path,
        *args: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        log_level: str | None = "info",
    ) -> DaemonProcess:
        data = data_dir or self.tmp / f"data-{len(self.started)}"
        log_file = self.tmp / f"daemon-{len(self.started)}.log"
        argv = [
            sys.executable,
            "-m",
            "reconciler",
            *(["--log-level", log_level] if log_level else []),
            "daemon",
            "--repo",
            str(repo),
            "--data-dir",
            str(data),
            "--listen",
            "127.0.0.1:0",  # the port is the daemon's to choose: a freed one may be taken by another
            "--interval",
            "1s",
            "--grace",
            "5s",
            *args,
        ]
        environ = {**os.environ, **(env or {})}
        environ.setdefault("PYTHONPATH", str(ROOT))
        with log_file.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=self.tmp)
        daemon = DaemonProcess(repo, data, 0, proc, log_file, argv)
        self.started.append(daemon)
        daemon.port = daemon.wait_listening()
        daemon.wait_healthy()
        return daemon

    def close(self) -> None:
        for d in self.started:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait(timeout=10)
