"""Latency from ``git push`` returning to the first transition commit on the state branch.

Runs a real daemon twice on a bare repository: with the filesystem watch on
(the default) and off (``--no-watch``, polling every ``--interval 1s``), and
prints p50/p95 of each and the ratio. Target: p50 <= 200 ms with the watch on.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon.kit import Daemons, make_server, shell_env, transitions  # noqa: E402

PUSHES = int(os.environ.get("BENCH_PUSHES", "30"))


def measure(watch: bool) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        base = Path(tmp)
        server = make_server(base)
        daemons = Daemons(base)
        try:
            daemons.start(server.bare, "--interval", "1s", *(() if watch else ("--no-watch",)))
            latencies = []
            for i in range(PUSHES):
                before = len(transitions(server.bare))
                # A new environment each time: its first transition (none -> created) is what we wait for.
                server.write(f"environments/env-{i}.yaml", shell_env(f"env-{i}", base / "log"))
                subprocess.run(["git", "-C", str(server.clone), "add", "-A"], check=True)
                subprocess.run(["git", "-C", str(server.clone), "commit", "-q", "-m", f"env {i}"], check=True)
                subprocess.run(
                    ["git", "-C", str(server.clone), "push", "-q", "origin", "HEAD:refs/heads/main"],
                    check=True,
                )
                pushed = time.monotonic()
                deadline = pushed + 10
                while len(transitions(server.bare)) <= before:
                    if time.monotonic() > deadline:
                        raise SystemExit("no transition within 10 s of a push")
                    time.sleep(0.002)
                latencies.append(time.monotonic() - pushed)
                time.sleep(0.2)  # let the environment converge before the next push
            return latencies
        finally:
            daemons.close()


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def main() -> int:
    for key, value in {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }.items():
        os.environ.setdefault(key, value)
    watched = measure(watch=True)
    polled = measure(watch=False)
    w50, w95 = quantile(watched, 0.5), quantile(watched, 0.95)
    p50, p95 = quantile(polled, 0.5), quantile(polled, 0.95)
    print(f"push -> first transition commit, {PUSHES} pushes each")
    print(f"  watch on : p50 {w50 * 1000:7.1f} ms   p95 {w95 * 1000:7.1f} ms")
    print(f"  watch off: p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   (--no-watch --interval 1s)")
    print(f"  ratio (off/on): p50 {p50 / w50:5.1f}x   p95 {p95 / w95:5.1f}x")
    target = 0.200
    print(f"  target p50 <= {target * 1000:.0f} ms with the watch on: {'met' if w50 <= target else 'MISSED'}")
    return 0 if w50 <= target else 1


if __name__ == "__main__":
    raise SystemExit(main())
