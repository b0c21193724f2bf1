"""Throughput of 1, 2 and 4 sharded daemons over one ``git daemon`` remote (issue 9).

Each run: ``BENCH_ENVS`` environments (default 500) with no-op phases and desired
``running`` (9 transitions each), N daemons on N clones with ``--shard i/N``, all
pushing to one state ref. Prints transitions/s, the ratio to one daemon, and the
bound: every transition is one compare-and-swap push of that one ref, so the
remote serializes them; one push's round trip (``bench_remote.py``) bounds the
fleet, whatever N, and the machine's cores bound the daemons' CPU.
Run: ``python benchmarks/bench_shards.py`` (``BENCH_ENVS``, ``BENCH_DAEMONS=1,2,4``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.daemon.chaos import read_remote
from tests.daemon.kit import Daemons
from tests.gitservers import init_bare, serving

ENVS = int(os.environ.get("BENCH_ENVS", "500"))
COUNTS = [int(n) for n in os.environ.get("BENCH_DAEMONS", "1,2,4").split(",")]


def _env(name: str) -> str:
    return (
        "apiVersion: reconciler/v1\nkind: Environment\n"
        f"metadata: {{name: {name}}}\nspec: {{desiredState: running}}\n"
    )


def _run(count: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "srv"
        root.mkdir()
        bare = init_bare(root / "fleet.git")
        with serving("git", root) as server:
            url = server.url(bare)
            author = tmp / "author"
            subprocess.run(["git", "clone", "-q", url, str(author)], check=True, capture_output=True)
            subprocess.run(["git", "-C", str(author), "checkout", "-q", "-b", "main"], check=True)
            (author / "environments").mkdir()
            (author / "reconciler.yaml").write_text(
                "apiVersion: reconciler/v1\nkind: Config\nbranch: main\nremote: origin\n"
            )
            # The clones start from a branch that names the remote; the fleet comes with the timed push.
            subprocess.run(["git", "-C", str(author), "add", "-A"], check=True)
            subprocess.run(["git", "-C", str(author), "commit", "-q", "-m", "config"], check=True)
            subprocess.run(
                ["git", "-C", str(author), "push", "-q", "origin", "HEAD:refs/heads/main"], check=True
            )
            for i in range(ENVS):
                (author / "environments" / f"env{i:05d}.yaml").write_text(_env(f"env{i:05d}"))
            subprocess.run(["git", "-C", str(author), "add", "-A"], check=True)
            subprocess.run(["git", "-C", str(author), "commit", "-q", "-m", "fleet"], check=True)
            daemons = Daemons(tmp)
            try:
                for i in range(count):
                    clone = tmp / f"host{i}"
                    subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, capture_output=True)
                    daemons.start(clone, "--workers", "4", "--interval", "0.2s", "--shard", f"{i}/{count}")
                began = time.monotonic()
                subprocess.run(
                    ["git", "-C", str(author), "push", "-q", "origin", "HEAD:refs/heads/main"], check=True
                )
                while True:
                    remote = read_remote(bare)
                    done = sum(1 for doc in remote.final.values() if doc["state"] == "running")
                    if done == ENVS:
                        return len(remote.chain), time.monotonic() - began
                    time.sleep(0.5)
            finally:
                daemons.close()


def main() -> None:
    print(f"{ENVS} environments, no-op phases, one git daemon remote on loopback, {os.cpu_count()} cores")
    base = None
    for count in COUNTS:
        transitions, seconds = _run(count)
        rate = transitions / seconds
        base = base or rate
        print(
            f"{count} daemon(s): {transitions} transitions in {seconds:.1f}s "
            f"= {rate:.1f}/s, {rate / base:.2f}x one daemon"
        )
    print("bound: one push round trip per transition on one ref (see bench_remote.py); ideal ratio <= cores")


if __name__ == "__main__":
    main()
