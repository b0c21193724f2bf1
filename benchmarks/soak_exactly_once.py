"""Soak: two daemons on two clones of one served remote, killed with SIGKILL at random (issue 9).

    python benchmarks/soak_exactly_once.py [--kills 40] [--transports path,git,http,ssh]

Prints, per transport, the phase runs, and the phantom runs (a body under a lock
the remote never recorded), overlaps, lost transitions, extra runs and stuck
environments found by tests/daemon/chaos.py. Exit 1 when any is non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.daemon.chaos import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--transports", default="path,git,http,ssh")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep", type=Path, help="run under this directory and keep it (daemon logs, server)"
    )
    args = parser.parse_args()
    bad = False
    for transport in args.transports.split(","):
        if args.keep is not None:
            where = args.keep / transport
            where.mkdir(parents=True, exist_ok=False)
            verdict = run_chaos(where, transport, envs=args.envs, kills=args.kills, seed=args.seed)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                verdict = run_chaos(Path(tmp), transport, envs=args.envs, kills=args.kills, seed=args.seed)
        print(verdict.details(), flush=True)
        bad = bad or not verdict.clean
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
