"""``status --at`` and ``history NAME --limit 20`` on a long state branch, beside plain git.

Builds a repository whose state branch has ``BENCH_ENVS`` environments (default
10,000) and ``BENCH_COMMITS`` commits (default 100,000) in the real format
(``<name>/state.json`` documents made by the domain API, messages made by
``TransitionMessage``). The commits are written with ``git fast-import``:
each commit's root tree lists every environment, and libgit2 would write
100,000 loose 10,000-entry trees (tens of GB), where fast-import stores them
as deltas in one pack.

Prints, for each query: this tool in-process and through the CLI, and the
plain-git way to get the same answer. ``BENCH_REPO=DIR`` keeps the generated
repository in DIR and reuses it on the next run (building it takes minutes). Targets: ``status --at`` < 1 s,
``history NAME --limit 20`` < 200 ms. The first query also builds the
event index under the git dir (printed separately: it happens once).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pygit2  # noqa: E402

from reconciler.cli.events_view import Moment, fleet_at  # noqa: E402
from reconciler.domain import Environment, Phase  # noqa: E402
from reconciler.domain.dispatch import start_phase, succeed_phase  # noqa: E402
from reconciler.store import GitStore  # noqa: E402
from reconciler.store.events import EventLog, EventQuery  # noqa: E402
from reconciler.store.lock import new_lock  # noqa: E402
from reconciler.store.message import TransitionMessage  # noqa: E402

ENVS = int(os.environ.get("BENCH_ENVS", "10000"))
COMMITS = int(os.environ.get("BENCH_COMMITS", "100000"))
REF = "refs/heads/reconciler/state"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(seconds=30)
DESIRED = "0123456789abcdef0123456789abcdef01234567"
AUTHORS = ("Ada Lovelace <ada@example.com>", "Bob <bob@example.com>", "ci@build-host")


def _templates() -> list[tuple[str, str, str]]:
    """``(from, to, state.json)`` of one environment's lifecycle, made by the domain API, repeated."""
    at = T0
    env = Environment.create("tmpl-env", desired_commit=DESIRED, at=at).into_any()
    out = [("none", "created", env.to_json())]
    while len(out) < 11:
        for phase in (Phase.PROVISION, Phase.CONFIGURE, Phase.RELEASE, Phase.RUN):
            before = env.state_name
            env = start_phase(env, phase, lock=new_lock(1800, 60, at), desired_commit=DESIRED, at=at)
            out.append((before, env.state_name, env.to_json()))
            before = env.state_name
            env = succeed_phase(env, phase_hash="h" * 64, at=at)
            out.append((before, env.state_name, env.to_json()))
    return out


def _stream(templates: list[tuple[str, str, str]]) -> Iterator[bytes]:
    """A fast-import stream: first every environment is created, then they move round-robin."""
    progress = [0] * ENVS
    cycle = templates[1:9]  # provisioning .. running
    for i in range(COMMITS):
        n = i % ENVS
        name = f"env-{n:05d}"
        if i < ENVS:
            from_state, to_state, doc = templates[0]
        else:
            from_state, to_state, doc = cycle[progress[n] % len(cycle)]
            progress[n] += 1
        doc = doc.replace("tmpl-env", name)
        message = TransitionMessage(
            name=name,
            from_state=from_state,
            to_state=to_state,
            desired_commit=DESIRED,
            holder="bench-host:4242",
            actor=AUTHORS[i % len(AUTHORS)],
        ).format()
        stamp = int((T0 + i * STEP).timestamp())
        data = doc.encode()
        msg = message.encode()
        yield (
            (
                f"commit {REF}\ncommitter reconciler <reconciler@localhost> {stamp} +0000\ndata {len(msg)}\n"
            ).encode()
            + msg
            + f"\nM 100644 inline {name}/state.json\ndata {len(data)}\n".encode()
            + data
            + b"\n"
        )


def build(repo: Path) -> float:
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "init"], check=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "fast-import", "--quiet", "--depth=50"], stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    for chunk in _stream(_templates()):
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    return time.monotonic() - started


def best(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def sh(repo: Path, *args: str) -> Callable[[], object]:
    return lambda: subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def cli(repo: Path, *args: str) -> Callable[[], object]:
    argv = [sys.executable, "-m", "reconciler", *args, "--repo", str(repo), "--format", "json"]

    def run() -> object:
        out = subprocess.run(argv, capture_output=True, cwd=str(repo), text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"reconcile {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    return run


def main() -> None:
    keep = os.environ.get("BENCH_REPO")  # build there once, reuse on the next run
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        repo = Path(keep) if keep else Path(tmp) / "repo"
        if not (repo / ".git").is_dir():
            print(
                f"building {COMMITS:,} commits over {ENVS:,} environments with git fast-import ...",
                flush=True,
            )
            print(f"  built in {build(repo):.1f} s")
        for stale in (repo / ".git" / "reconciler").glob("events-*"):
            stale.unlink()  # measure the index build below
        pygit = pygit2.Repository(str(repo))
        log = EventLog(pygit, REF)
        started = time.perf_counter()
        log.sync()
        print(f"  event index built once in {time.perf_counter() - started:.1f} s ({log.index_path.name})")

        name = f"env-{ENVS // 3:05d}"
        when = T0 + (COMMITS // 2) * STEP + timedelta(seconds=7)
        iso = when.isoformat().replace("+00:00", "Z")
        store = GitStore(repo)

        def status_at() -> object:
            found = log.commit_at(when)
            assert found is not None
            return fleet_at(store, Moment(found, when))

        fleet = status_at()
        assert isinstance(fleet, dict)
        assert len(fleet["environments"]) == ENVS
        rows: list[tuple[str, float, str, float]] = []
        history = best(lambda: log.events(EventQuery(names=(name,), limit=20)))
        plain_history = best(
            sh(repo, "log", "-n", "20", "--format=%H %s", "--grep", f"^Reconcile-Environment: {name}$", REF),
            runs=3,
        )
        rows.append(
            (f"history {name} --limit 20 (in-process)", history, "git log --grep ... -n 20", plain_history)
        )
        rows.append(
            (
                "reconcile history ... (CLI, incl. start-up)",
                best(cli(repo, "history", name, "--limit", "20"), runs=3),
                "same",
                plain_history,
            )
        )
        at = best(status_at, runs=3)

        def plain_status() -> object:
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-list", "-1", f"--before={iso}", REF],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            tree = subprocess.run(
                ["git", "-C", str(repo), "ls-tree", "-r", "--format=%(objectname)", commit],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            return subprocess.run(
                ["git", "-C", str(repo), "cat-file", "--batch"],
                input=tree,
                check=True,
                capture_output=True,
                text=True,
            )

        plain_at = best(plain_status, runs=3)
        rows.append(("status --at (in-process)", at, "git rev-list --before + cat-file --batch", plain_at))
        rows.append(
            (
                "reconcile status --at (CLI, incl. start-up)",
                best(cli(repo, "status", "--at", iso), runs=3),
                "same",
                plain_at,
            )
        )
        width = max(len(r[0]) for r in rows)
        print(f"\n{'query':<{width}}  {'this tool':>10}  {'plain git':>10}  ratio  (plain git command)")
        for label, ours, plain_label, plain in rows:
            ratio = plain / ours
            times = f"{ours * 1000:>8.1f}ms  {plain * 1000:>8.1f}ms  {ratio:5.1f}x"
            print(f"{label:<{width}}  {times}  ({plain_label})")
        print("\ntargets: status --at < 1000 ms, history NAME --limit 20 < 200 ms")


if __name__ == "__main__":
    main()
