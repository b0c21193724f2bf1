"""Durable transition commits per second on the state branch, against the git CLI doing the same work.

Each transition is what the engine commits: a new ``<name>/state.json`` blob, its
directory tree, the root tree, a commit with the SPEC's trailers, and a
compare-and-swap update of ``refs/heads/reconciler/state``. Four environments
take turns so the root tree has several entries. Run: ``python benchmarks/bench_store.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.domain import AnyEnvironment, Environment, Phase, utcnow
from reconciler.domain.dispatch import start_phase, succeed_phase
from reconciler.store import GitStore, Observed
from reconciler.store.lock import holder_label, new_lock, this_holder
from reconciler.store.message import TransitionMessage

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
NAMES = ("web", "db", "cache", "queue")
REF = "refs/heads/reconciler/state"


def _next(env: AnyEnvironment) -> AnyEnvironment:
    if env.is_in_progress:
        return succeed_phase(env, phase_hash="h")
    return start_phase(env, Phase.PROVISION, lock=new_lock(60, 30, utcnow()))


def _fresh_repo(root: Path, label: str) -> Path:
    repo = root / label
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _rate(label: str, step: Callable[[int], None]) -> float:
    for i in range(5):  # warm up: create the environments, fill caches
        step(i)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < SECONDS:
        step(count)
        count += 1
    rate = count / elapsed
    print(f"  {label:<44} {rate:8.1f} transitions/s  ({1000 / rate:6.2f} ms each, n={count})")
    return rate


def bench_store(repo: Path, **kwargs: bool) -> Callable[[int], None]:
    store = GitStore(repo, **kwargs)
    current: dict[str, Observed | None] = dict.fromkeys(NAMES)

    def step(i: int) -> None:
        name = NAMES[i % len(NAMES)]
        obs = current[name]
        if obs is None:
            env = Environment.create(name).into_any()
            current[name] = store.apply(name, None, env, from_state="none", desired_commit="c0ffee")
            return
        after = _next(obs.env)
        current[name] = store.apply(
            name, obs.version, after, from_state=obs.env.state_name, desired_commit="c0ffee"
        )

    return step


def bench_cli(repo: Path) -> Callable[[int], None]:
    """What a shell script would do.

    hash-object, mktree (twice), commit-tree, update-ref with the old value (its CAS).
    """
    durable = ["-c", "core.fsync=objects,reference", "-c", "core.fsyncMethod=fsync"]
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "reconciler",
        "GIT_AUTHOR_EMAIL": "reconciler@localhost",
        "GIT_COMMITTER_NAME": "reconciler",
        "GIT_COMMITTER_EMAIL": "reconciler@localhost",
    }

    def git(*args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            ["git", "-C", str(repo), *durable, *args],
            check=True,
            capture_output=True,
            text=True,
            input=stdin,
            env=env,
        )
        return out.stdout.strip()

    envs: dict[str, AnyEnvironment | None] = dict.fromkeys(NAMES)
    tip = [""]
    holder = holder_label(this_holder())

    def step(i: int) -> None:
        name = NAMES[i % len(NAMES)]
        before = envs[name]
        after = Environment.create(name).into_any() if before is None else _next(before)
        envs[name] = after
        blob = git("hash-object", "-w", "--stdin", stdin=after.to_json())
        sub = git("mktree", stdin=f"100644 blob {blob}\tstate.json\n")
        old = tip[0]  # what this writer last committed; update-ref checks it is still the tip
        listing = git("ls-tree", old).splitlines() if old else []
        entries = [e for e in listing if not e.endswith(f"\t{name}")]
        root = git("mktree", stdin="\n".join([*entries, f"040000 tree {sub}\t{name}"]) + "\n")
        message = TransitionMessage(
            name, before.state_name if before else "none", after.state_name, "c0ffee", holder
        ).format()
        parents = ["-p", old] if old else []
        commit = git("commit-tree", root, *parents, "-F", "-", stdin=message)
        git("update-ref", REF, commit, old or "0" * 40)
        tip[0] = commit

    return step


def main() -> None:
    where = tempfile.gettempdir()
    print(f"state-branch transitions, {SECONDS:g} s each, {os.cpu_count()} CPUs, repositories in {where}")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        durable = _rate("GitStore, durable (syncfs barrier)", bench_store(_fresh_repo(root, "a")))
        per_file = _rate(
            "GitStore, durable (libgit2 fsync per file)",
            bench_store(_fresh_repo(root, "b"), per_file_fsync=True),
        )
        cli = _rate("git CLI baseline, durable (core.fsync)", bench_cli(_fresh_repo(root, "c")))
        no_sync = _rate(
            "GitStore, no fsync (reference only)", bench_store(_fresh_repo(root, "d"), fsync=False)
        )
    print()
    print(f"  durable GitStore vs git CLI:              {durable / cli:6.1f}x")
    print(f"  syncfs barrier vs libgit2 per-file fsync: {durable / per_file:6.1f}x")
    print(f"  cost of durability (no fsync / durable):  {no_sync / durable:6.1f}x")
    target = 200.0
    verdict = "meets" if durable >= target else "MISSES"
    print(f"  target >= {target:g} durable transitions/s: {verdict}")


if __name__ == "__main__":
    main()
