"""What the per-step supervisor costs: ``run_process`` of ``/bin/true`` with it, against a bare Popen.

Prints p50/p95 of both and their difference, the supervisor's startup overhead
per command a step runs (docs/decisions/010-step-supervisor.md). The bare
variant reproduces what ``run_process`` did before the supervisor: a Popen in
its own session with piped output, read to the end.
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

from reconciler.steps import StepContext  # noqa: E402
from reconciler.steps.process import Command, run_process  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "100"))


def bare(cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["/bin/true"],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    proc.stdout.read()
    proc.wait()
    return time.perf_counter() - t0


def supervised(ctx: StepContext, cwd: Path) -> float:
    t0 = time.perf_counter()
    result = run_process(Command(label="true", argv=("/bin/true",), cwd=cwd), ctx)
    assert result.ok, result
    return time.perf_counter() - t0


def summary(label: str, samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[int(len(ordered) * 0.95) - 1] * 1000
    print(f"{label:>11}: p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   ({len(samples)} runs)")
    return p50, p95


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as tmp:
        cwd = Path(tmp)
        ctx = StepContext(
            environment="bench",
            desired_commit="0" * 40,
            checkout=cwd,
            data_dir=cwd,
            vars={},
            outputs={},
            secrets=frozenset(),
            deadline=time.monotonic() + 3600,
        )
        bare_samples, supervised_samples = [], []
        for _ in range(RUNS):  # interleaved, so both see the same machine load
            bare_samples.append(bare(cwd))
            supervised_samples.append(supervised(ctx, cwd))
        b50, b95 = summary("bare Popen", bare_samples)
        s50, s95 = summary("supervised", supervised_samples)
        print(f"   overhead: p50 {s50 - b50:7.1f} ms   p95 {s95 - b95:7.1f} ms")


if __name__ == "__main__":
    main()
