"""Reconcile many environments at once, dependencies first.

An environment starts once every environment it depends on (among those
being applied) has finished its turn; independent ones run in parallel on a
pool of workers. A failure ends only that environment's part of the run.

An environment another live reconciler holds the lock of is waited for up to
``lock_timeout`` seconds (``apply --lock-timeout``): the state store is looked
at again (fetched, with a remote) until the lock is released, goes stale or the
time is up, and the environment is then decided again from what is observed,
so one that the other reconciler converged meanwhile is converged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Protocol, runtime_checkable

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.domain import Lock
from reconciler.engine.reconcile import Engine, ReconcileResult
from reconciler.store import CorruptStateError, StoreError
from reconciler.store.lock import holder_label, is_stale

logger = logging.getLogger(__name__)

#: While waiting for a lock, the store is looked at again after this long, then twice as long each
#: time up to ``LOCK_POLL_MAX_SECONDS`` (with a remote every look is a fetch).
LOCK_POLL_FIRST_SECONDS = 0.1
LOCK_POLL_MAX_SECONDS = 1.0

#: ``(environment, lock, seconds it will be waited for at most)``: a wait for another reconciler began.
WaitCallback = Callable[[str, Lock, float], None]


@runtime_checkable
class _Fetching(Protocol):
    """A store whose reads show a local copy that ``sync`` brings up to date (``RemoteStore``)."""

    def sync(self) -> None: ...


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


def _refresh(engine: Engine) -> None:
    """Let the store see what other reconcilers committed: with a remote, fetch its state branch."""
    store = engine.store
    if isinstance(store, _Fetching):
        try:
            store.sync()
        except StoreError as e:
            logger.warning("cannot fetch the state branch while waiting for a lock", extra={"error": str(e)})


def _released(engine: Engine, name: str, lock: Lock) -> bool:
    """Whether ``lock`` no longer keeps ``name`` from moving: gone, replaced, or stale."""
    try:
        observed = engine.store.read(name)
    except CorruptStateError:
        return True  # deciding again reports it
    current = observed.env.lock if observed is not None else None
    return current is None or current.id != lock.id or is_stale(current, engine.clock.now())


def _wait_for_release(engine: Engine, name: str, lock: Lock, deadline: float) -> None:
    """Return once ``lock`` is released (as the refreshed store shows it), at ``deadline``, or on cancel."""
    interval = LOCK_POLL_FIRST_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or engine.cancel.wait(min(interval, remaining)):
            _refresh(engine)
            return
        interval = min(interval * 2, LOCK_POLL_MAX_SECONDS)
        _refresh(engine)
        if _released(engine, name, lock):
            return


def reconcile_waiting(
    engine: Engine,
    snapshot: DesiredSnapshot,
    name: str,
    *,
    lock_timeout: float = 0.0,
    on_wait: WaitCallback | None = None,
) -> ReconcileResult:
    """``engine.reconcile``, waiting up to ``lock_timeout`` seconds for another live reconciler's lock.

    After each wait (the lock released, or the time up) the environment is
    decided again from the refreshed observed state. A stale lock is never
    waited for: the engine recovers it. Still locked at the end, the result
    says by whom and how long it was waited for.
    """
    result = engine.reconcile(snapshot, name)
    if result.locked_by is None or lock_timeout <= 0:
        return result
    started = time.monotonic()
    deadline = started + lock_timeout
    transitions = list(result.transitions)
    announced: set[str] = set()
    while result.locked_by is not None and not engine.cancel.is_set():
        lock = result.locked_by
        if time.monotonic() >= deadline:
            break
        if on_wait is not None and str(lock.id) not in announced:
            announced.add(str(lock.id))
            on_wait(name, lock, max(0.0, deadline - time.monotonic()))
        logger.info(
            "waiting for another reconciler's lock",
            extra={"environment": name, "holder": holder_label(lock.holder), "lock_id": str(lock.id)},
        )
        _wait_for_release(engine, name, lock, deadline)
        if engine.cancel.is_set():
            break
        result = engine.reconcile(snapshot, name)
        transitions.extend(result.transitions)
    result = replace(result, transitions=tuple(transitions))
    if result.locked_by is not None:
        waited = time.monotonic() - started
        result = replace(result, reason=f"{result.reason} (waited {waited:.1f}s for it)")
    return result


def apply_environments(
    engine: Engine,
    snapshot: DesiredSnapshot,
    names: Iterable[str] | None = None,
    *,
    workers: int = 4,
    lock_timeout: float = 0.0,
    on_wait: WaitCallback | None = None,
    on_result: Callable[[ReconcileResult], None] | None = None,
) -> list[ReconcileResult]:
    """Reconcile ``names`` (default: every known environment), dependencies first.

    ``lock_timeout``: how long each environment waits for another live
    reconciler's lock before it is reported as waiting (``reconcile_waiting``).
    ``on_result`` hears each environment's result as soon as its part ends.
    """
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
                future = pool.submit(
                    reconcile_waiting, engine, snapshot, name, lock_timeout=lock_timeout, on_wait=on_wait
                )
                running[future] = name
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                results[name] = future.result()
                if on_result is not None:
                    on_result(results[name])
    return [results[n] for n in chosen]
