"""Planning 10,000 environments: a cold load, and a load after a one-file commit.

Builds a GitOps repository with pygit2 directly (10,000 environments sharing
four blueprints, and a state branch with a state.json for each), then times,
in one process:

- cold: ``load_snapshot`` with an empty ``ParseCache``, plus reading the state
  branch and ``plan_all`` when the planner is present;
- warm: after a commit changing one environment file, the same with the warm cache;
- baseline: re-parsing every file with ruamel's round-trip loader (what a
  naive loader that keeps positions for error messages would do).

Targets (issue 4): cold at most 5 s, the one-file change at most 100 ms.
Run: ``.venv/bin/python benchmarks/bench_plan.py [--envs N] [--load-only]``
(``--load-only`` skips the state branch and the planner, to time loading alone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pygit2
from ruamel.yaml import YAML

from reconciler.desired.loader import ParseCache, load_snapshot
from reconciler.desired.models import EnvironmentFile

T = TypeVar("T")
BLUEPRINTS = 4
STATE_REF = "refs/heads/reconciler/state"
SIGNATURE = pygit2.Signature("bench", "bench@localhost", 1_700_000_000, 0)


def blueprint(i: int) -> str:
    return f"""\
apiVersion: reconciler/v1
kind: Blueprint
metadata: {{name: bp{i}}}
spec:
  vars: {{http_port: 8000, tier: bp{i}}}
  phases:
    provision: [{{tofu: {{module: infra/vm{i}, vars: {{name: "{{{{ environment.name }}}}"}}}}}}]
    configure: [{{ansible: {{playbook: ansible/site.yml}}}}]
    release: [{{shell: {{run: ./scripts/release.sh}}}}]
    run: [{{shell: {{run: ./scripts/start.sh}}}}]
    destroy: [{{tofu: {{module: infra/vm{i}, action: destroy}}}}]
    check: [{{http: {{url: "http://{{{{ outputs.ip }}}}:{{{{ vars.http_port }}}}/health"}}}}]
"""


def environment(i: int, state: str = "running") -> str:
    depends = f"  dependsOn: [env-{i - 1:05d}]\n" if i % 100 == 1 else ""
    return (
        "apiVersion: reconciler/v1\nkind: Environment\n"
        f"metadata:\n  name: env-{i:05d}\n  labels: {{team: t{i % 7}}}\n"
        f"spec:\n  desiredState: {state}\n  blueprint: bp{i % BLUEPRINTS}\n"
        f"  vars: {{http_port: {8000 + i % 100}, index: {i}}}\n{depends}"
    )


def tree_of(repo: pygit2.Repository, files: dict[str, bytes]) -> pygit2.Oid:
    """A tree holding ``files`` (nested paths), written with TreeBuilders."""
    children: dict[str, dict[str, bytes]] = {}
    builder = repo.TreeBuilder()
    for path, data in files.items():
        head, _, rest = path.partition("/")
        if rest:
            children.setdefault(head, {})[rest] = data
        else:
            mode = pygit2.GIT_FILEMODE_BLOB_EXECUTABLE if path.endswith(".sh") else pygit2.GIT_FILEMODE_BLOB
            builder.insert(path, repo.create_blob(data), mode)
    for name, sub in children.items():
        builder.insert(name, tree_of(repo, sub), pygit2.GIT_FILEMODE_TREE)
    return builder.write()


def build(root: Path, count: int) -> tuple[pygit2.Repository, dict[str, bytes]]:
    repo = pygit2.init_repository(str(root / "gitops.git"), bare=True, initial_head="main")
    files: dict[str, bytes] = {
        "ansible/site.yml": b"- hosts: all\n  tasks: []\n",
        "scripts/release.sh": b"#!/bin/sh\necho release\n",
        "scripts/start.sh": b"#!/bin/sh\necho start\n",
    }
    for i in range(BLUEPRINTS):
        files[f"blueprints/bp{i}.yaml"] = blueprint(i).encode()
        files[f"infra/vm{i}/main.tf"] = f'resource "null_resource" "vm{i}" {{}}\n'.encode()
    for i in range(count):
        files[f"environments/env-{i:05d}.yaml"] = environment(i).encode()
    commit(repo, files, "desired state")
    return repo, files


def commit(repo: pygit2.Repository, files: dict[str, bytes], message: str) -> pygit2.Oid:
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return repo.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, message, tree_of(repo, files), parents)


def write_state(repo: pygit2.Repository, hashes: dict[str, dict[str, str]], commit_sha: str) -> None:
    """``<name>/state.json`` for every environment: running, with the desired phase hashes."""
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    files = {}
    for name, phases in hashes.items():
        document = {
            "schema": 1,
            "name": name,
            "state": "running",
            "desiredCommit": commit_sha,
            "phases": {
                phase: {"hash": h, "completedAt": now} for phase, h in phases.items() if phase != "destroy"
            },
            "outputs": {"ip": "10.0.0.5"},
            "lock": None,
            "failure": None,
            "updatedAt": now,
        }
        files[f"{name}/state.json"] = json.dumps(document).encode()
    tree = tree_of(repo, files)
    repo.create_commit(STATE_REF, SIGNATURE, SIGNATURE, "state", tree, [])


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[T, float]:
    times = []
    result: Any = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--envs", type=int, default=10_000)
    parser.add_argument("--load-only", action="store_true", help="time loading only (no state, no plan)")
    args = parser.parse_args()
    try:
        from reconciler.planner.plan import plan_all
        from reconciler.store.git import GitStore
    except ImportError:  # the planner or the store is not there yet: time loading only
        plan_all = None  # type: ignore[assignment]
    if args.load_only:
        plan_all = None  # type: ignore[assignment]

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        repo, files = build(Path(tmp), args.envs)
        setup = load_snapshot(repo, "main")
        write_state(repo, {n: dict(e.phase_hashes) for n, e in setup.environments.items()}, str(setup.commit))
        print(f"built {args.envs} environments and their state in {time.perf_counter() - started:.1f} s")
        assert not setup.problems, setup.problems[:3]

        def plan(snapshot: Any) -> tuple[float, float, int]:
            if plan_all is None:
                return 0.0, 0.0, 0
            store = GitStore(repo.path, STATE_REF, fsync=False)
            observed_raw, read_s = timed(store.read_all)
            observed = {n: o.env for n, o in observed_raw.items() if hasattr(o, "env")}
            now = datetime.now(UTC)
            plans, plan_s = timed(
                lambda: plan_all(snapshot, observed, now=now, prune=False, lock_stale=lambda lock: False)
            )
            return read_s, plan_s, len(plans)

        cache = ParseCache()
        cold, cold_load = timed(lambda: load_snapshot(repo, "main", cache=cache))
        cold_read, cold_plan, planned = plan(cold)
        assert len(cold.environments) == args.envs

        # One commit changing one environment file.
        files["environments/env-04242.yaml"] = environment(4242, state="destroyed").encode()
        commit(repo, files, "destroy env-04242")
        warm, warm_load = timed(lambda: load_snapshot(repo, "main", cache=cache))
        warm_read, warm_plan, _ = plan(warm)
        assert warm.environments["env-04242"].desired_state == "destroyed"
        # The cache must give what a cold load gives.
        assert warm == load_snapshot(repo, "main")

        # Baseline: every environment file through the round-trip loader and the schema.
        rt = YAML(typ="rt")
        env_files = [data for path, data in files.items() if path.startswith("environments/")]
        _, baseline = timed(lambda: [EnvironmentFile.model_validate(rt.load(d.decode())) for d in env_files])

    print(f"\n{'':34}{'seconds':>10}{'target':>10}")
    print(f"{'cold load (C loader, no cache)':34}{cold_load:10.3f}{'':>10}")
    if plan_all is not None:
        print(f"{'cold: read state branch':34}{cold_read:10.3f}")
        print(f"{'cold: plan_all':34}{cold_plan:10.3f}")
    cold_total = cold_load + cold_read + cold_plan
    print(f"{'cold total':34}{cold_total:10.3f}{5.0:10.1f}")
    print(f"{'one-file change: load (warm)':34}{warm_load:10.3f}")
    if plan_all is not None:
        print(f"{'one-file change: read state':34}{warm_read:10.3f}")
        print(f"{'one-file change: plan_all':34}{warm_plan:10.3f}")
    warm_total = warm_load + warm_read + warm_plan
    print(f"{'one-file change total':34}{warm_total:10.3f}{0.1:10.1f}")
    print(f"{'baseline: round-trip parse all':34}{baseline:10.3f}")
    print(f"\nbaseline / cold load      = {baseline / cold_load:6.1f}x")
    print(f"baseline / warm load      = {baseline / warm_load:6.1f}x")
    print(f"cold load / warm load     = {cold_load / warm_load:6.1f}x")
    if plan_all is None:
        print("loading timed only (--load-only, or the planner is not importable)")
    else:
        print(f"planned {planned} environments")
    ok = cold_total <= 5.0 and warm_total <= 0.1
    print("targets met (cold total <= 5 s, one-file change total <= 100 ms)" if ok else "TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
