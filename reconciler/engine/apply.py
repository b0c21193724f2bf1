"""Reconcile many environments at once, dependencies first.

An environment starts once every environment it depends on (among those
being applied) has finished its turn; independent ones run in parallel on a
pool of workers. A failure ends only that environment's part of the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine.reconcile import Engine, ReconcileResult


class UnknownEnvironment(LookupError):
    """A name given on the command line has no file and no recorded state."""


def targets(engine: Engine, snapshot: DesiredSnapshot, names: Iterable[str] | None) -> list[str]:
    """Every environment to consider: declared now, or observed before (for prune and reporting)."""
    known = set(snapshot.names) | set(engine.store.read_all())
    if not names:
        return sorted(known)
    wanted = list(dict.fromkeys(names))
    missing = [n for n in wanted if n not in known]
    if missing:
        raise UnknownEnvironment(
            f"unknown environment(s): {', '.join(missing)} (known: {', '.join(sorted(known)) or 'none'})"
        )
    return wanted


def _going_away(snapshot: DesiredSnapshot, name: str) -> bool:
    desired = snapshot.environments.get(name)
    return desired is None or str(desired.desired_state) == "destroyed"


def run_after(snapshot: DesiredSnapshot, chosen: list[str]) -> dict[str, set[str]]:
    """For each environment, the ones whose turn must end before its own.

    Coming up, an environment goes after what it depends on; going away, after
    what depends on it (a database is destroyed after the web that uses it).
    """
    chosen_set = set(chosen)
    deps = {
        n: {d for d in snapshot.environments[n].depends_on if d in chosen_set}
        if n in snapshot.environments
        else set()
        for n in chosen
    }
    after: dict[str, set[str]] = {n: set() for n in chosen}
    for n in chosen:
        for d in deps[n]:
            if _going_away(snapshot, d):
                if _going_away(snapshot, n):
                    after[d].add(n)
            else:
                after[n].add(d)
    return after


def apply_environments(
    engine: Engine, snapshot: DesiredSnapshot, names: Iterable[str] | None = None, *, workers: int = 4
) -> list[ReconcileResult]:
    chosen = targets(engine, snapshot, names)
    after = run_after(snapshot, chosen)
    results: dict[str, ReconcileResult] = {}
    pending = list(chosen)
    running: dict[Future[ReconcileResult], str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="reconcile") as pool:
        while pending or running:
            ready = [n for n in pending if after[n] <= results.keys()]
            if not ready and not running:
                ready = pending[:]  # unreachable with a validated snapshot (no cycles); never deadlock
            for name in ready:
                pending.remove(name)
                running[pool.submit(engine.reconcile, snapshot, name)] = name
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                results[name] = future.result()
    return [results[n] for n in chosen]
