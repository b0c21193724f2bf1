"""Push round-trip per transition over git:// and smart HTTP on loopback, beside a plain ``git push``.

For each transport: ``RemoteStore.apply`` of N transitions (each a compare-and-swap push
of one commit, issue 9), and the same number of plain ``git push`` of one new commit
each from a clone, run side by side. Prints ms per push and the ratio.
Run: ``python benchmarks/bench_remote.py`` (``BENCH_PUSHES``, default 40).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.domain import AnyEnvironment, Environment, Phase, utcnow
from reconciler.domain.dispatch import start_phase, succeed_phase
from reconciler.store import GitStore
from reconciler.store.lock import new_lock
from reconciler.store.remote import RemoteStore
from tests.gitservers import init_bare, serving

PUSHES = int(os.environ.get("BENCH_PUSHES", "40"))


def _next(env: AnyEnvironment) -> AnyEnvironment:
    if env.is_in_progress:
        return succeed_phase(env, phase_hash="h")
    return start_phase(env, Phase.PROVISION, lock=new_lock(60, 30, utcnow()))


def _store_pushes(url: str, clone: Path) -> list[float]:
    subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, capture_output=True)
    store = RemoteStore(GitStore(clone, fsync=False), clone, "origin")
    env = Environment.create("web").into_any()
    seen = store.apply("web", None, env, from_state="none", desired_commit=None)
    times = []
    for _ in range(PUSHES):
        after = _next(seen.env)
        began = time.perf_counter()
        seen = store.apply("web", seen.version, after, from_state=seen.env.state_name, desired_commit=None)
        times.append(time.perf_counter() - began)
    return times


def _plain_pushes(url: str, clone: Path) -> list[float]:
    subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, capture_output=True)
    times = []
    for i in range(PUSHES):
        subprocess.run(["git", "-C", str(clone), "commit", "-q", "--allow-empty", "-m", f"c{i}"], check=True)
        began = time.perf_counter()
        subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:refs/heads/plain"], check=True)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    print(f"{PUSHES} pushes per series, loopback, p50 / p90 in ms")
    for transport in ("git", "http"):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "srv"
            root.mkdir()
            bare = init_bare(root / "bench.git")
            with serving(transport, root) as server:
                url = server.url(bare)
                ours = _store_pushes(url, Path(tmp) / "ours")
                plain = _plain_pushes(url, Path(tmp) / "plain")
        o50, p50 = statistics.median(ours), statistics.median(plain)
        o90 = statistics.quantiles(ours, n=10)[-1]
        p90 = statistics.quantiles(plain, n=10)[-1]
        print(
            f"{transport:5} transition (CAS push) {o50 * 1000:7.1f} / {o90 * 1000:7.1f}   "
            f"plain git push {p50 * 1000:7.1f} / {p90 * 1000:7.1f}   ratio p50 {o50 / p50:.2f}x"
        )


if __name__ == "__main__":
    main()
