"""Engine throughput: environments with no-op phases taken to ``running``.

Prints transitions per second through the whole engine (plan, lock, steps,
commit) with N workers, beside the store's raw commit rate for the same number
of transitions written directly, and the engine's overhead per transition.

    python benchmarks/bench_engine.py [--envs 1000] [--workers 8]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import pygit2

from reconciler.desired.loader import load_snapshot
from reconciler.domain import Environment, Phase
from reconciler.domain.dispatch import start_phase, succeed_phase
from reconciler.engine.apply import apply_environments
from reconciler.engine.reconcile import Engine
from reconciler.steps import LocalStepRunner
from reconciler.store import GitStore

ENV = """apiVersion: reconciler/v1
kind: Environment
metadata: {{name: {name}}}
spec: {{desiredState: running}}
"""


def make_repo(root: Path, count: int) -> Path:
    repo = root / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "environments").mkdir()
    for i in range(count):
        name = f"env-{i:05d}"
        (repo / "environments" / f"{name}.yaml").write_text(ENV.format(name=name))
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "envs"],
        check=True,
    )
    return repo


def engine_run(root: Path, count: int, workers: int) -> tuple[int, float]:
    repo_path = make_repo(root / "engine", count)
    repo = pygit2.Repository(str(repo_path))
    snapshot = load_snapshot(repo, "HEAD")
    store = GitStore(repo_path)
    engine = Engine(repo=repo, store=store, runner=LocalStepRunner(), data_dir=root / "engine-data")
    started = time.perf_counter()
    results = apply_environments(engine, snapshot, workers=workers)
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return sum(len(r.transitions) for r in results), elapsed


def store_run(root: Path, count: int) -> tuple[int, float]:
    """The same transitions written straight to the store: the floor the engine stands on."""
    repo_path = make_repo(root / "store", 1)
    store = GitStore(repo_path)
    transitions = 0
    started = time.perf_counter()
    for i in range(count):
        name = f"env-{i:05d}"
        env = Environment.create(name).into_any()
        obs = store.apply(name, None, env, from_state="none", desired_commit=None)
        transitions += 1
        for phase in (Phase.PROVISION, Phase.CONFIGURE, Phase.RELEASE, Phase.RUN):
            for step in (start_phase, succeed_phase):
                after = (
                    step(obs.env, phase) if step is start_phase else succeed_phase(obs.env, phase_hash="h")
                )
                obs = store.apply(
                    name, obs.version, after, from_state=obs.env.state_name, desired_commit=None
                )
                transitions += 1
    return transitions, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw_n, raw_s = store_run(root, args.envs)
        eng_n, eng_s = engine_run(root, args.envs, args.workers)
    raw_rate, eng_rate = raw_n / raw_s, eng_n / eng_s
    print(f"environments:            {args.envs} (no-op phases, {args.workers} workers)")
    print(f"store, direct:           {raw_n} transitions in {raw_s:.2f}s = {raw_rate:.0f}/s")
    print(f"engine, apply:           {eng_n} transitions in {eng_s:.2f}s = {eng_rate:.0f}/s")
    print(f"engine / store rate:     {eng_rate / raw_rate:.2f}x")
    print(f"engine overhead:         {(eng_s / eng_n - raw_s / raw_n) * 1000:.2f} ms per transition")


if __name__ == "__main__":
    main()
