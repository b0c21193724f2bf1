"""``make run``: the main job on the bundled examples, in a scratch copy of this repository.

The first run commits the examples into a fresh repository under ``.scratch/``
(never this repository's own refs or work tree); later runs keep that
repository as the person left it, edits and all. Each run applies it with
``reconcile apply``, starts again the example services a stop left down, and
prints the status table. With ``--daemon`` the daemon then keeps them
converged until Ctrl-C, which stops it and the example services it ran.
``--stop`` (``make stop``) does the same from another terminal; ``--reset``
(``make reset``) stops and removes the scratch copy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONTENT = (
    "environments",
    "blueprints",
    "infra",
    "ansible",
    "examples",
    "reconciler.yaml",
    ".gitignore",
)
STATE_BRANCH = "reconciler/state"
STOP_SCRIPT = "examples/scripts/stop.sh"
LISTENING = re.compile(r"^reconcile daemon: .*?http://(127\.0\.0\.1:\d+)")


def scratch_copy(scratch: Path) -> Path:
    """The scratch repository: made and committed with the examples on the first run, then left alone."""
    target = scratch / "repo"
    if (target / ".git").is_dir():
        print(
            f"keeping your scratch repository as it is (examples are copied only on the first run; "
            f"`make reset` starts again from them): {target}",
            flush=True,
        )
        return target
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(target)], check=True)
    for name in EXAMPLE_CONTENT:
        src, dst = ROOT / name, target / name
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.is_file():
            shutil.copy2(src, dst)
    git = [
        "git",
        "-C",
        str(target),
        "-c",
        "user.name=reconciler example",
        "-c",
        "user.email=example@localhost",
    ]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "examples"], check=True)
    return target


def reconcile(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], check=False).returncode


def recorded_states(repo: Path) -> dict[str, dict[str, Any]]:
    """Every environment's state.json on the state branch (SPEC 4.2), read with plain git."""
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", STATE_BRANCH],
        capture_output=True,
        text=True,
        check=False,
    )
    states: dict[str, dict[str, Any]] = {}
    for name in listing.stdout.split() if listing.returncode == 0 else []:
        shown = subprocess.run(
            ["git", "-C", str(repo), "show", f"{STATE_BRANCH}:{name}/state.json"],
            capture_output=True,
            text=True,
            check=False,
        )
        with contextlib.suppress(ValueError):
            if shown.returncode == 0:
                states[name] = json.loads(shown.stdout)
    return states


def answers(url: str) -> bool:
    """200 from ``url``, an example service on loopback (anything else is not ours to probe)."""
    if not url.startswith("http://127.0.0.1:"):
        return False
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (http on loopback, checked above)
            return bool(response.status == 200)
    except OSError:
        return False


def restart_stopped_services(repo: Path, where: list[str]) -> None:
    """A running environment whose service does not answer (``make stop`` stopped it) runs its run phase."""
    for name, state in sorted(recorded_states(repo).items()):
        url = (state.get("outputs") or {}).get("url")
        if state.get("state") == "running" and isinstance(url, str) and not answers(f"{url}/health"):
            print(f"{name}: {url} does not answer (stopped by a stop?): reconcile run {name}", flush=True)
            reconcile("run", name, *where)


def stop_services(repo: Path, data: Path) -> None:
    """The example services this scratch copy started, stopped by the example's own stop script."""
    for name, state in sorted(recorded_states(repo).items()):
        service_dir = (state.get("outputs") or {}).get("service_dir")
        if not isinstance(service_dir, str) or not Path(service_dir).is_relative_to(data):
            continue
        env = {**os.environ, "RECONCILE_ENVIRONMENT": name, "RECONCILE_OUTPUT_SERVICE_DIR": service_dir}
        done = subprocess.run(
            ["sh", str(repo / STOP_SCRIPT)], env=env, capture_output=True, text=True, check=False
        )
        print(f"{name}: {(done.stdout + done.stderr).strip()}", flush=True)
    print(
        "the state branch still says running: the next `make run` starts the stopped services again",
        flush=True,
    )


def listen_address() -> str:
    """127.0.0.1:8080 (the daemon's default) when free, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8080))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def announce(address: str, repo: Path) -> None:
    """Say where to look once the daemon serves: its dashboard when it has one, else its metrics."""
    base = f"http://{address}"
    dashboard = False
    for _ in range(20):
        try:
            with urllib.request.urlopen(f"{base}/", timeout=2) as response:  # noqa: S310 (the daemon's http)
                dashboard = response.status == 200 and "html" in response.headers.get("Content-Type", "")
                break
        except urllib.error.HTTPError:
            break  # it answers, without a dashboard
        except OSError:
            time.sleep(0.25)
    where = f"dashboard: {base}/" if dashboard else f"metrics: {base}/metrics (no dashboard answered at /)"
    services = [
        f"    curl -s {url}/                # {name}, the service itself"
        for name, state in sorted(recorded_states(repo).items())
        if isinstance(url := (state.get("outputs") or {}).get("url"), str)
    ]
    curl = "\n".join(services) or "    curl -s http://127.0.0.1:18081/        # the service itself"
    try_it = (
        "Open the dashboard, then try, in another terminal, and watch the page:"
        if dashboard
        else "Try, in another terminal:"
    )
    print(
        f"""
{where}

The daemon now keeps these environments converged.
{try_it}

    cd {repo}
    sed -i 's/Hello from staging/Hello again/' environments/staging.yaml
    git commit -qam "new greeting"        # acted on at once: release and run re-run
    git log --oneline {STATE_BRANCH}     # the transitions, as they happen
{curl}
    curl -s {base}/healthz

Ctrl-C (or `make stop`) stops the daemon and the example services.
""",
        flush=True,
    )


def run_daemon(repo: Path, data: Path, where: list[str], pid_file: Path, listen: str | None) -> int:
    argv = [sys.executable, "-m", "reconciler", "daemon", *where, "--listen", listen or listen_address()]
    # Its own process group: a Ctrl-C reaches it once, forwarded below (a second one would mean "at once").
    proc = subprocess.Popen([*argv, "--interval", "30s"], stderr=subprocess.PIPE, text=True, process_group=0)
    pid_file.write_text(f"{proc.pid}\n")

    def pump() -> None:
        assert proc.stderr is not None
        announced = False
        for line in proc.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            found = LISTENING.match(line)
            if found and not announced:
                announced = True
                threading.Thread(target=announce, args=(found.group(1), repo), daemon=True).start()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        # From a terminal the daemon got the same Ctrl-C; from `make stop` or a script it did not.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = proc.wait()
    reader.join(timeout=5)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the services stop; they take a second
    pid_file.unlink(missing_ok=True)
    print(f"\ndaemon stopped (exit {code}); stopping the example services", flush=True)
    stop_services(repo, data)
    return code


def our_daemon(pid_file: Path, repo: Path) -> int | None:
    """The pid of the daemon a `make run` of this scratch copy started, if it is still that process."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"daemon" in cmdline and str(repo).encode() in cmdline else None


def stop(repo: Path, data: Path, pid_file: Path) -> int:
    pid = our_daemon(pid_file, repo)
    if pid is not None:
        print(f"stopping the daemon (pid {pid}); its `make run` stops the example services", flush=True)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    pid_file.unlink(missing_ok=True)
    if repo.is_dir():
        stop_services(repo, data)
    elif pid is None:
        print(f"nothing to stop: no scratch copy at {repo}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch", type=Path, default=ROOT / ".scratch")
    parser.add_argument("--daemon", action="store_true", help="then run the daemon until interrupted")
    parser.add_argument("--stop", action="store_true", help="stop the daemon and the example services")
    parser.add_argument("--reset", action="store_true", help="stop, then remove the scratch copy")
    parser.add_argument(
        "--listen", help="the daemon's HOST:PORT (default 127.0.0.1:8080, else any free port)"
    )
    args = parser.parse_args()
    scratch = args.scratch.resolve()
    repo, data, pid_file = scratch / "repo", scratch / "data", scratch / "daemon.pid"
    if args.stop or args.reset:
        code = stop(repo, data, pid_file)
        if args.reset:
            shutil.rmtree(scratch, ignore_errors=True)
            print(f"removed {scratch}: the next `make run` starts from the bundled examples", flush=True)
        return code
    if (pid := our_daemon(pid_file, repo)) is not None:
        print(f"a daemon of this scratch copy is already running (pid {pid}): `make stop` first", flush=True)
        return 1
    repo = scratch_copy(scratch)
    where = ["--repo", str(repo), "--data-dir", str(data)]
    print(f"scratch repository: {repo}\ndata dir:           {data}\n", flush=True)
    code = reconcile("apply", *where)
    restart_stopped_services(repo, where)
    reconcile("status", *where)
    print(f"\naudit trail: git -C {repo} log {STATE_BRANCH}", flush=True)
    if args.daemon:
        return run_daemon(repo, data, where, pid_file, args.listen)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
