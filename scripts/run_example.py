"""``make run``: the main job on the bundled examples, in a scratch copy of this repository.

The examples are committed into a fresh repository under ``.scratch/`` (never
this repository's own refs or work tree), applied with ``reconcile apply``, and
the status table printed. With ``--daemon`` the daemon then keeps them
converged until interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
from pathlib import Path

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


def scratch_copy(scratch: Path) -> Path:
    """A git repository holding the example content, committed as a user would.

    Made on the first run; on later runs the examples are copied over again and
    committed only if they changed, so the state branch (and what is running)
    carries on from the last run.
    """
    target = scratch / "repo"
    if not (target / ".git").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(target)], check=True)
    for name in EXAMPLE_CONTENT:
        src, dst = ROOT / name, target / name
        if dst.is_dir():
            shutil.rmtree(dst)
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.is_file():
            shutil.copy2(src, dst)
    identity = ["-c", "user.name=reconciler example", "-c", "user.email=example@localhost"]
    git = ["git", "-C", str(target), *identity]
    subprocess.run([*git, "add", "-A"], check=True)
    unchanged = subprocess.run([*git, "diff", "--cached", "--quiet"], check=False).returncode == 0
    has_head = subprocess.run([*git, "rev-parse", "-q", "--verify", "HEAD"], capture_output=True, check=False)
    if not unchanged or has_head.returncode != 0:
        subprocess.run([*git, "commit", "-q", "-m", "examples"], check=True)
    return target


def reconcile(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], check=False).returncode


def listen_address() -> str:
    """127.0.0.1:8080 (the daemon's default) when free, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8080))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def run_daemon(repo: Path, where: list[str]) -> int:
    listen = listen_address()
    print(
        f"""
The daemon now keeps these environments converged. Its dashboard:

    http://{listen}/

Open it, then try, in another terminal, and watch the page:

    cd {repo}
    sed -i 's/Hello from staging/Hello again/' environments/staging.yaml
    git commit -qam "new greeting"        # acted on at once: release and run re-run
    git log --oneline reconciler/state     # the transitions, as they happen
    curl -s http://127.0.0.1:18081/        # the service itself
    curl -s http://{listen}/metrics        # Prometheus metrics; /healthz for liveness

Stop it with Ctrl-C (running phases finish within the grace period).
""",
        flush=True,
    )
    try:
        return reconcile("daemon", *where, "--listen", listen, "--interval", "30s")
    except KeyboardInterrupt:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch", type=Path, default=ROOT / ".scratch")
    parser.add_argument("--daemon", action="store_true", help="then run the daemon until interrupted")
    args = parser.parse_args()
    scratch = args.scratch.resolve()
    repo = scratch_copy(scratch)
    data = scratch / "data"
    where = ["--repo", str(repo), "--data-dir", str(data)]
    print(f"scratch repository: {repo}\ndata dir:           {data}\n", flush=True)
    code = reconcile("apply", *where)
    reconcile("status", *where)
    print(f"\naudit trail: git -C {repo} log reconciler/state", flush=True)
    if args.daemon:
        return run_daemon(repo, where)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
