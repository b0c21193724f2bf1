"""What a running daemon pays to notice ``reconcile suspend``/``resume`` (decision 021).

When the state branch moves, the daemon already diffs the two tips' trees to
find the environments that changed (``Daemon._state_moved``); it now also reads
the old and new ``state.json`` of each to see whether ``suspended`` changed
(``daemon/overrides.py``). This prints that cost beside the tree diff it rides
on, for ``--envs`` environments that all moved (a burst of transitions, e.g. a
fetch that brings another daemon's work), once with none and once with 1 % of
them suspended.

Run: ``python benchmarks/bench_suspension_wake.py`` (``--envs N``, ``--repeat N``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import pygit2

from reconciler.daemon.overrides import suspension_changed


def fleet(repo: pygit2.Repository, envs: int, version: int, suspended_every: int | None) -> pygit2.Tree:
    root = repo.TreeBuilder()
    for i in range(envs):
        doc: dict[str, object] = {
            "schema": 1,
            "name": f"env-{i:05d}",
            "state": "running",
            "phases": {},
            "outputs": {},
            "lock": None,
            "failure": None,
            "updatedAt": f"2026-12-05T08:00:{version:02d}Z",
        }
        if suspended_every and i % suspended_every == 0:
            doc["suspended"] = {"by": "ops@console", "at": "2026-12-05T08:00:00Z", "reason": "maintenance"}
        sub = repo.TreeBuilder()
        blob = repo.create_blob(json.dumps(doc, indent=2).encode())
        sub.insert("state.json", blob, pygit2.enums.FileMode.BLOB)
        root.insert(f"env-{i:05d}", sub.write(), pygit2.enums.FileMode.TREE)
    tree = repo[root.write()]
    assert isinstance(tree, pygit2.Tree)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = pygit2.init_repository(tmp, bare=True)
        before = fleet(repo, args.envs, 0, None)
        for label, after in (
            ("none suspended", fleet(repo, args.envs, 1, None)),
            ("1% suspended", fleet(repo, args.envs, 1, 100)),
        ):
            diffs, checks = [], []
            woken = 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                deltas = list(before.diff_to_tree(after).deltas)
                t1 = time.perf_counter()
                woken = len(suspension_changed(repo, deltas))
                t2 = time.perf_counter()
                diffs.append(t1 - t0)
                checks.append(t2 - t1)
            diff, check = statistics.median(diffs), statistics.median(checks)
            print(
                f"{args.envs} environments moved, {label}: tree diff {diff * 1000:.1f} ms (baseline), "
                f"suspension check {check * 1000:.1f} ms ({check / diff:.1f}x; "
                f"{check / args.envs * 1e6:.0f} us per environment), woken {woken}"
            )


if __name__ == "__main__":
    main()
