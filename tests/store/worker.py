"""A helper process for the multi-process store tests: ``python -m tests.store.worker CMD ...``.

Commands (each prints one result line on stdout):
  race SPEC NAME GO_FILE       read NAME, wait for GO_FILE, try to take its provision lock: won | lost
  lifecycle SPEC NAME CYCLES   drive NAME created -> ... -> running -> destroyed CYCLES times: done N
  hold SPEC NAME               take NAME's provision lock, print "locked", sleep until killed
  filelock PATH SECONDS        hold a FileLock on PATH for SECONDS: "locked", then "released"
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from reconciler.domain import FORWARD_PHASES, Phase, utcnow
from reconciler.domain.dispatch import recreate, start_phase, succeed_phase
from reconciler.store import FileLock, LostRace, Observed, StateStore
from reconciler.store.lock import new_lock
from tests.store.kit import created, open_store


def _step(store: StateStore, obs: Observed | None, name: str, phase: Phase | None) -> Observed:
    """One transition, retried from a fresh read only if the branch refuses it (it must not here)."""
    if obs is None:
        return store.apply(name, None, created(name), from_state="none", desired_commit="c0ffee")
    env = obs.env
    if phase is None:
        after = recreate(env, desired_commit="c0ffee")
    elif env.is_in_progress:
        after = succeed_phase(env, phase_hash=f"h-{phase}")
    else:
        after = start_phase(env, phase, lock=new_lock(60, 30, utcnow()), desired_commit="c0ffee")
    return store.apply(name, obs.version, after, from_state=env.state_name, desired_commit="c0ffee")


def lifecycle(store: StateStore, name: str, cycles: int) -> int:
    count = 0
    obs = _step(store, None, name, None)
    count += 1
    for cycle in range(cycles):
        if cycle:
            obs = _step(store, obs, name, None)
            count += 1
        for phase in (*FORWARD_PHASES, Phase.DESTROY):
            obs = _step(store, obs, name, phase)  # start
            obs = _step(store, obs, name, phase)  # succeed
            count += 2
    return count


def main(argv: list[str]) -> None:
    cmd = argv[0]
    if cmd == "race":
        store, name, go = open_store(argv[1]), argv[2], Path(argv[3])
        obs = store.read(name)
        assert obs is not None
        Path(f"{go}.ready.{os.getpid()}").touch()
        while not go.exists():
            time.sleep(0.001)
        after = start_phase(obs.env, Phase.PROVISION, lock=new_lock(60, 30, utcnow()))
        try:
            store.apply(name, obs.version, after, from_state=obs.env.state_name, desired_commit=None)
        except LostRace:
            print("lost", flush=True)
        else:
            print("won", flush=True)
    elif cmd == "lifecycle":
        print("done", lifecycle(open_store(argv[1]), argv[2], int(argv[3])), flush=True)
    elif cmd == "hold":
        store, name = open_store(argv[1]), argv[2]
        obs = store.read(name)
        assert obs is not None
        _step(store, obs, name, Phase.PROVISION)
        print("locked", flush=True)
        time.sleep(600)
    elif cmd == "filelock":
        with FileLock(argv[1]):
            print("locked", flush=True)
            time.sleep(float(argv[2]))
        print("released", flush=True)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
