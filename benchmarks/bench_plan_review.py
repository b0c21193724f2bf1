"""What explaining re-run phases costs ``reconcile plan`` (issue 15, decision 023).

The fleet is ``bench_plan``'s (10,000 environments, four blueprints, a state
branch saying each is running at the desired hashes, applied from the first
commit). Every figure is a real ``reconcile plan --format json`` process, the
median of ``--repeat`` runs with the plan cache warm, beside a baseline run in
the same job: the same plan after a one-file change that explains nothing (an
environment declared destroyed: no phase's inputs changed).

1. one environment's vars change: one phase explained, which loads the applied
   commit's definitions once;
2. ``scripts/release.sh`` changes: every environment's release is explained.

Run: ``python benchmarks/bench_plan_review.py [--envs N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_plan import build, commit, environment, write_state  # noqa: E402
from reconciler.desired.loader import load_snapshot  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def plan(bare: Path) -> tuple[float, dict[str, object]]:
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", "--repo", str(bare), "--format", "json"],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    took = time.perf_counter() - began
    if out.returncode not in (0, 2):
        raise SystemExit(f"plan exited {out.returncode}: {out.stderr[-2000:]}")
    data: dict[str, object] = json.loads(out.stdout)
    return took, data


def median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo, files = build(root, args.envs)
        first = load_snapshot(repo, "main")
        write_state(repo, {n: dict(e.phase_hashes) for n, e in first.environments.items()}, str(first.commit))
        bare = root / "gitops.git"
        plan(bare)  # the plan cache, as the previous run in CI would leave it
        counter = iter(range(10**6))

        def destroyed_one() -> float:
            i = next(counter) % args.envs
            changed = dict(files)
            changed[f"environments/env-{i:05d}.yaml"] = environment(i, state="destroyed").encode()
            commit(repo, changed, "destroy one")
            return plan(bare)[0]

        def vars_of_one() -> float:
            i = next(counter) % args.envs
            changed = dict(files)
            text = environment(i).replace(f"index: {i}}}", f"index: {i}, extra: {next(counter)}}}")
            changed[f"environments/env-{i:05d}.yaml"] = text.encode()
            commit(repo, changed, "one more var")
            took, data = plan(bare)
            explained = [
                a["changedInputs"]
                for e in data["environments"]  # type: ignore[attr-defined]
                for a in e["actions"]
                if a["changedInputs"]
            ]
            assert explained, "nothing explained"
            assert all(c["vars"] == ["extra"] for c in explained), explained
            return took

        def release_of_all() -> float:
            changed = dict(files)
            changed["scripts/release.sh"] = f"#!/bin/sh\necho release {next(counter)}\n".encode()
            commit(repo, changed, "release")
            took, data = plan(bare)
            assert data["changes"] == {"create": 0, "change": args.envs, "destroy": 0, "recreate": 0}
            return took

        base = median(destroyed_one, args.repeat)
        one = median(vars_of_one, args.repeat)
        every = median(release_of_all, args.repeat)
    print(f"reconcile plan --format json, {args.envs} environments, warm cache (median of {args.repeat})")
    print(f"  baseline: one environment destroyed (nothing to explain)   {base:7.2f} s")
    print(f"  one environment's vars changed (1 phase explained)          {one:7.2f} s  {one / base:5.2f}x")
    print(f"  release.sh changed ({args.envs} phases explained)        {every:7.2f} s  {every / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
