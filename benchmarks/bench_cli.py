"""The CLI as a process with a fleet (issue 11): each figure beside a baseline run in the same job.

1. **Cold ``reconcile plan``, 10,000 environments** (no plan cache) against
   PyYAML's C loader (``yaml.CSafeLoader``) parsing the same files in one
   process. Target: at most 2x.
2. **``reconcile plan`` after a one-file change** (the cache the previous run
   left under the git dir) against starting a process and importing the CLI.
   Target: at most 2x.
3. **``reconcile apply`` of 1,000 environments** from nothing to ``running``
   with no-op phases (9 transition commits each) against the same number of
   commits written straight with pygit2 (a ``state.json`` blob, its trees,
   the commit, the ref) and made durable by one ``syncfs`` each: the stricter
   baseline (it has no barrier between objects and ref, so it is cheaper than
   crash-safe). Target: at most 1.3x. libgit2's own per-file fsyncs
   (``enable_fsync_gitdir``), timed on a sample, are printed beside it.

The fleet is ``bench_plan``'s (four blueprints, a state branch saying every
environment is running with the desired hashes). Every CLI run is a real
process; each figure is the median of ``--repeat`` runs.

Every process started here (the measured ``reconcile`` runs and the start +
import baseline alike) reads cached bytecode, as an installed ``reconcile``
does (pip compiles it at install; a plain Python writes it on first import):
``PYTHONDONTWRITEBYTECODE`` is dropped from their environment and
``PYTHONPYCACHEPREFIX`` points into the benchmark's temporary directory, so
nothing is written into the project's work tree. Each figure's command runs
once untimed first, which fills that cache; without it every run would
compile the package's source again (~0.13 s).

Run: ``python benchmarks/bench_cli.py`` (``--envs N``, ``--apply-envs N``,
``--repeat N``, ``--only plan|apply``).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pygit2
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_plan import SIGNATURE, build, commit, environment, tree_of, write_state  # noqa: E402
from reconciler.desired.loader import load_snapshot  # noqa: E402

try:
    from reconciler.desired.plancache import CACHE_DIR
except ImportError:  # a revision without the plan cache (to print the figures before it)
    CACHE_DIR = "reconciler"

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
STATE_REF = "refs/heads/reconciler/state"

NOOP_BLUEPRINT = """\
apiVersion: reconciler/v1
kind: Blueprint
metadata: {name: noop}
spec:
  vars: {tier: noop}
"""


def cache_bytecode(tmp: Path) -> None:
    """The processes started from now on read and write bytecode under ``tmp``, never beside the source."""
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")


def run(*args: str, cwd: Path) -> float:
    """Seconds one ``reconcile`` process takes (exit 0 or 2 = planned)."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args], cwd=cwd, env=ENV, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - began
    if done.returncode not in (0, 2):
        why = done.stderr.decode()[-2000:]
        raise SystemExit(f"reconcile {' '.join(args)} exited {done.returncode}: {why}")
    return elapsed


def median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def ratio_line(label: str, value: float, baseline: float, target: float) -> bool:
    ratio = value / baseline
    ok = ratio <= target
    verdict = "met" if ok else "MISSED"
    print(f"  {label:<48}{value:8.3f} s  baseline {baseline:7.3f} s  {ratio:5.2f}x  <= {target}x: {verdict}")
    return ok


def plan_figures(root: Path, envs: int, repeat: int) -> bool:
    print(f"reconcile plan, {envs} environments (median of {repeat})")
    repo, files = build(root, envs)
    setup = load_snapshot(repo, "main")
    write_state(repo, {n: dict(e.phase_hashes) for n, e in setup.environments.items()}, str(setup.commit))
    bare = root / "gitops.git"
    cache_dir = Path(repo.path) / CACHE_DIR

    def cold() -> float:
        shutil.rmtree(cache_dir, ignore_errors=True)
        return run("plan", "--repo", str(bare), cwd=root)

    cold()  # untimed: fills the bytecode cache
    cold_s = median(cold, repeat)
    texts = [data for path, data in files.items() if path.endswith(".yaml")]

    def pyyaml() -> float:
        began = time.perf_counter()
        for data in texts:
            yaml.load(data, Loader=yaml.CSafeLoader)
        return time.perf_counter() - began

    pyyaml_s = median(pyyaml, repeat)

    # One file changes per run; the cache the previous run left stays.
    run("plan", "--repo", str(bare), cwd=root)
    changes = iter(range(repeat * 2))

    def one_file() -> float:
        i = 1000 + next(changes)
        files[f"environments/env-{i:05d}.yaml"] = environment(i, state="destroyed").encode()
        commit(repo, files, f"destroy env-{i:05d}")
        return run("plan", "--repo", str(bare), cwd=root)

    warm_s = median(one_file, repeat)

    def start() -> float:
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import reconciler.cli, reconciler.cli.commands_plan"],
            cwd=root,
            env=ENV,
            check=True,
        )
        return time.perf_counter() - began

    start()  # untimed, as the runs it is the baseline of
    start_s = median(start, repeat)
    ok = ratio_line("cold plan vs PyYAML CSafeLoader parse", cold_s, pyyaml_s, 2.0)
    ok &= ratio_line("plan after a one-file change vs start + import", warm_s, start_s, 2.0)
    return ok


def apply_fleet(root: Path, count: int) -> Path:
    bare = root / "apply.git"
    repo = pygit2.init_repository(str(bare), bare=True, initial_head="main")
    files = {
        "reconciler.yaml": b"apiVersion: reconciler/v1\nkind: Config\nbranch: main\n",
        "blueprints/noop.yaml": NOOP_BLUEPRINT.encode(),
    }
    for i in range(count):
        files[f"environments/env-{i:05d}.yaml"] = (
            "apiVersion: reconciler/v1\nkind: Environment\n"
            f"metadata: {{name: env-{i:05d}}}\nspec: {{desiredState: running, blueprint: noop}}\n"
        ).encode()
    repo.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, "fleet", tree_of(repo, files), [])
    return bare


def bare_commits(root: Path, names: list[str], count: int, *, per_file: bool) -> float:
    """``count`` commits on one branch, each changing one ``<name>/state.json``, each made durable.

    ``per_file``: libgit2's own durability (``enable_fsync_gitdir``: every object and the ref
    fsynced as written), what "fsync'd commits written straight with pygit2" gives. Otherwise one
    ``syncfs`` after each commit (no barrier between the objects and the ref: not crash-safe, the
    floor for reference).
    """
    pygit2.settings.enable_fsync_gitdir(per_file)
    repo = pygit2.init_repository(str(root / f"baseline-{per_file}.git"), bare=True)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(repo.path, os.O_RDONLY)
    tip: pygit2.Oid | None = None
    tree: pygit2.Tree | None = None
    began = time.perf_counter()
    try:
        for i in range(count):
            name = names[i % len(names)]
            blob = repo.create_blob(f'{{"name": "{name}", "n": {i}}}\n'.encode())
            sub = repo.TreeBuilder()
            sub.insert("state.json", blob, pygit2.GIT_FILEMODE_BLOB)
            top = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
            top.insert(name, sub.write(), pygit2.GIT_FILEMODE_TREE)
            tree_id = top.write()
            tip = repo.create_commit(
                None, SIGNATURE, SIGNATURE, f"{name}: {i}", tree_id, [tip] if tip is not None else []
            )
            if i == 0:
                repo.create_reference(STATE_REF, tip)
            else:
                repo.references[STATE_REF].set_target(tip)
            found = repo.get(tree_id)
            assert isinstance(found, pygit2.Tree)
            tree = found
            if not per_file:
                libc.syncfs(fd)
    finally:
        os.close(fd)
        pygit2.settings.enable_fsync_gitdir(False)
    return time.perf_counter() - began


def apply_figure(root: Path, envs: int) -> bool:
    print(f"reconcile apply, {envs} environments from nothing to running, no-op phases")
    run("apply", "--repo", str(apply_fleet(root / "warm-up", 2)), cwd=root)  # fills the bytecode cache
    bare = apply_fleet(root, envs)
    apply_s = run("apply", "--repo", str(bare), cwd=root)
    repo = pygit2.Repository(str(bare))
    commits = sum(1 for _ in repo.walk(repo.references[STATE_REF].target))
    names = [f"env-{i:05d}" for i in range(envs)]
    floor_s = bare_commits(root, names, commits, per_file=False)
    # libgit2's per-file fsyncs are slow: timed on a sample, scaled to the same count.
    sample = min(commits, 1000)
    per_file_s = bare_commits(root, names, sample, per_file=True) * commits / sample
    print(f"  {commits} transition commits: apply {commits / apply_s:6.1f}/s")
    print(f"  pygit2, one syncfs per commit (no ordering barrier, the floor): {commits / floor_s:6.1f}/s")
    print(f"  pygit2, libgit2's per-file fsync (enable_fsync_gitdir):        {commits / per_file_s:6.1f}/s")
    print(f"  apply vs libgit2 per-file fsync: {apply_s / per_file_s:5.2f}x")
    return ratio_line("apply vs pygit2 commits + syncfs, same count", apply_s, floor_s, 1.3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--apply-envs", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("plan", "apply"))
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        cache_bytecode(Path(tmp))
        if args.only in (None, "plan"):
            ok &= plan_figures(Path(tmp), args.envs, args.repeat)
        if args.only in (None, "apply"):
            ok &= apply_figure(Path(tmp), args.apply_envs)
    print("targets met" if ok else "TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
