"""The dashboard's API at 10,000 environments (issue 12), beside a baseline run in the same process.

The fleet is ``bench_plan``'s (four blueprints, labels ``team: t0..t6``, a
state branch saying every environment is running with the desired hashes),
served by the real app on a real uvicorn on loopback and asked with httpx:

1. **first page** (``/api/v1/environments``, 100 rows): cold (the first
   request: desired state loaded, state branch read, every environment
   planned), warm (the rows kept for this state-branch tip), after a new
   state-branch commit (what a dashboard asks when the event stream says
   something changed), and after a push changing one environment file;
2. **the full list** (``?limit=10000``) warm;
3. **a selector** (``?selector=team=t3``) warm;
4. **one environment** (``/api/v1/environments/NAME``).

Baseline: reading every ``state.json`` of the state tree with pygit2 and
``json.loads`` alone, the least any server of this fleet must do once per
state-branch commit. Each figure is the median of ``--repeat`` runs.

Run: ``python benchmarks/bench_dashboard.py`` (``--envs N``, ``--repeat N``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pygit2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_plan import SIGNATURE, STATE_REF, build, commit, environment, write_state  # noqa: E402
from reconciler.desired.loader import load_snapshot  # noqa: E402
from reconciler.engine.workspace import open_workspace  # noqa: E402
from reconciler.web.app import Endpoints, create_app  # noqa: E402
from reconciler.web.branches import StateBranchFleet  # noqa: E402
from reconciler.web.server import WebServer  # noqa: E402


def median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def read_state_tree(repo: pygit2.Repository) -> int:
    """The baseline: every ``<name>/state.json`` blob of the state branch's tip, parsed."""
    tree = repo.references[STATE_REF].peel(pygit2.Commit).tree
    count = 0
    for entry in tree:
        sub = repo[entry.id]
        assert isinstance(sub, pygit2.Tree)
        blob = repo[sub["state.json"].id]
        assert isinstance(blob, pygit2.Blob)
        json.loads(blob.data)
        count += 1
    return count


def touch_state(repo: pygit2.Repository, n: int) -> None:
    """One more state-branch commit (a transition's worth: one environment's state.json changes)."""
    tip = repo.references[STATE_REF].peel(pygit2.Commit)
    sub_tree = tip.tree / "env-00042"
    blob = repo[sub_tree["state.json"].id]
    assert isinstance(blob, pygit2.Blob)
    doc = json.loads(blob.data)
    doc["updatedAt"] = f"2026-11-28T10:{n % 60:02d}:00Z"
    sub = repo.TreeBuilder(sub_tree)
    sub.insert("state.json", repo.create_blob(json.dumps(doc).encode()), pygit2.GIT_FILEMODE_BLOB)
    top = repo.TreeBuilder(tip.tree)
    top.insert("env-00042", sub.write(), pygit2.GIT_FILEMODE_TREE)
    repo.create_commit(STATE_REF, SIGNATURE, SIGNATURE, f"touch {n}", top.write(), [tip.id])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        repo, files = build(Path(tmp), args.envs)
        setup = load_snapshot(repo, "main")
        write_state(repo, {n: dict(e.phase_hashes) for n, e in setup.environments.items()}, str(setup.commit))
        print(f"built {args.envs} environments and their state in {time.perf_counter() - started:.1f} s")

        workspace = open_workspace(Path(repo.path), Path(tmp) / "data")
        fleet = StateBranchFleet(workspace)
        server = WebServer(
            create_app(Endpoints(healthy=lambda: (True, "ok"), metrics=str, fleet=fleet)), "127.0.0.1", 0
        )
        server.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=300) as client:

                def get(path: str) -> dict[str, object]:
                    response = client.get(path)
                    assert response.status_code == 200, response.text
                    data: dict[str, object] = response.json()
                    return data

                t0 = time.perf_counter()
                first = get("/api/v1/environments")
                cold = time.perf_counter() - t0
                assert first["total"] == args.envs, first["total"]
                warm = median(lambda: get("/api/v1/environments"), args.repeat)
                commits = iter(range(1_000_000))

                def after_commit() -> float:
                    touch_state(repo, next(commits))  # not timed: the commit is the writer's cost
                    started = time.perf_counter()
                    get("/api/v1/environments")
                    return time.perf_counter() - started

                moved = statistics.median(after_commit() for _ in range(args.repeat))
                pushes = iter(range(1, 1_000_000))

                def after_push() -> float:
                    i = next(pushes)
                    files[f"environments/env-{i:05d}.yaml"] = environment(i, state="destroyed").encode()
                    commit(repo, files, f"destroy env-{i:05d}")
                    started = time.perf_counter()
                    data = get("/api/v1/environments")
                    elapsed = time.perf_counter() - started
                    assert data["desiredCommit"] == str(repo.references["refs/heads/main"].target)
                    return elapsed

                pushed = statistics.median(after_push() for _ in range(args.repeat))
                full = median(lambda: get(f"/api/v1/environments?limit={args.envs}"), args.repeat)
                selected = median(lambda: get("/api/v1/environments?selector=team=t3"), args.repeat)
                one = median(lambda: get(f"/api/v1/environments/env-{args.envs // 2:05d}"), args.repeat)
        finally:
            server.stop()
        baseline = median(lambda: read_state_tree(repo), args.repeat)

    print(f"\n{'':44}{'seconds':>10}{'x baseline':>12}")
    print(f"{'baseline: read the state tree (pygit2)':44}{baseline:10.3f}{1.0:12.1f}")
    for label, value in (
        ("first page, cold (first request)", cold),
        ("first page, warm (same state tip)", warm),
        ("first page after a state commit", moved),
        ("first page after a push (one file)", pushed),
        (f"full list ({args.envs} rows), warm", full),
        ("selector team=t3, warm", selected),
        ("one environment", one),
    ):
        print(f"{label:44}{value:10.3f}{value / baseline:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
