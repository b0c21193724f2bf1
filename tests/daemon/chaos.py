"""Daemons on clones of one served remote, killed with SIGKILL at random: what ran, what the remote says.

Used by ``tests/daemon/test_exactly_once.py`` (a bounded run per transport)
and ``benchmarks/soak_exactly_once.py`` (the long soak). Every phase body
appends ``<env> <phase> start|end|killed <time> <pid> <lock id>`` to one log,
so each run can be matched with the lock the remote recorded for it.

The verdicts:
- **phantom**: a body ran under a lock id the remote's state branch never
  recorded for that environment in that phase's in-progress state;
- **overlap**: two bodies of one environment in flight at once;
- **lost**: a gap in an environment's chain of transitions on the remote
  (a commit whose From is not the previous commit's To);
- **extra runs**: a phase started more often than once per change of its
  inputs plus once per `interrupted` failure the remote recorded for it;
- **stuck**: not converged within a bound well below the locks' expiry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2

from tests.conftest import git
from tests.daemon.kit import STATE_REF, DaemonProcess, Daemons
from tests.gitservers import GitServer, init_bare, serving

PHASES = ("provision", "configure", "release", "run")
IN_PROGRESS = {
    "provision": "provisioning",
    "configure": "configuring",
    "release": "releasing",
    "run": "starting",
}
#: Longer than any convergence here and far below a lock's expiry (timeoutSeconds 600 + grace).
CONVERGE_SECONDS = 90.0


def chaos_env(name: str, log: Path, release: str, pause: float) -> str:
    """An environment whose phase bodies log their lock id and take ``pause`` seconds."""
    lines = [
        "apiVersion: reconciler/v1",
        "kind: Environment",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  desiredState: running",
        "  vars:",
        f"    log: {json.dumps(str(log))}",
        "  retry: {limit: 5, backoffSeconds: 1}",
        "  timeoutSeconds: 600",
        "  phases:",
    ]
    for phase in PHASES:
        tag = f"{phase}-{release}" if phase == "release" else phase
        note = f'echo "{name} {tag} EVENT $(date +%s.%N) $$ $RECONCILE_LOCK_ID" >> "$RECONCILE_VAR_LOG"'
        # Output to a file: once its reconciler is gone, a step's stdout and stderr are pipes
        # nobody reads, and the shell's first write there (SIGPIPE) would end it before its trap.
        run = (
            'exec >> "$RECONCILE_VAR_LOG.out" 2>&1; '
            f"trap '{note.replace('EVENT', 'killed')}; exit 143' TERM; "
            f"{note.replace('EVENT', 'start')}; sleep {pause} & wait $!; {note.replace('EVENT', 'end')}"
        )
        lines.append(f"    {phase}: [{{shell: {{run: {json.dumps(run)}}}}}]")
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    env: str
    phase: str
    tag: str
    event: str
    at: float
    pid: int
    lock_id: str


def read_runs(log: Path) -> list[Run]:
    found = []
    if not log.exists():
        return found
    for raw in log.read_text().splitlines():
        parts = raw.split()
        if len(parts) == 6:
            env, tag, event, at, pid, lock_id = parts
            found.append(Run(env, tag.split("-")[0], tag, event, float(at), int(pid), lock_id))
    return found


@dataclass
class RemoteRecord:
    """What the remote's state branch holds, oldest commit first."""

    #: ``(env, in-progress state, lock id)`` of every lock it ever recorded.
    locks: set[tuple[str, str, str]] = field(default_factory=set)
    #: ``(env, from, to)`` per commit.
    chain: list[tuple[str, str, str]] = field(default_factory=list)
    #: ``(env, phase)`` -> how many times it ended ``interrupted``.
    interrupted: Counter[tuple[str, str]] = field(default_factory=Counter)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_remote(bare: Path) -> RemoteRecord:
    repo = pygit2.Repository(str(bare))
    record = RemoteRecord()
    reference = repo.references.get(STATE_REF)
    if reference is None:
        return record
    commits = []
    commit: Any = repo.get(reference.target)
    while commit is not None:
        commits.append(commit)
        commit = commit.parents[0] if commit.parents else None
    for commit in reversed(commits):
        trailers = dict(
            line.split(": ", 1)
            for line in commit.message.splitlines()
            if line.startswith("Reconcile-") and ": " in line
        )
        name = trailers.get("Reconcile-Environment")
        if name is None:
            continue
        record.chain.append((name, trailers["Reconcile-From"], trailers["Reconcile-To"]))
        doc = json.loads(commit.tree[f"{name}/state.json"].data)
        if doc.get("lock"):
            record.locks.add((name, doc["state"], doc["lock"]["id"]))
        failure = doc.get("failure") or {}
        if (
            doc["state"].endswith("_failed")
            and failure.get("errorKind") == "interrupted"
            and trailers["Reconcile-From"] != trailers["Reconcile-To"]
        ):
            record.interrupted[(name, failure.get("phase", ""))] += 1
        record.final[name] = doc
    return record


@dataclass
class Verdict:
    transport: str
    kills: int
    runs: int
    phantoms: list[str]
    overlaps: list[str]
    lost: list[str]
    extra_runs: list[str]
    stuck: list[str]
    seconds: float

    @property
    def clean(self) -> bool:
        return not (self.phantoms or self.overlaps or self.lost or self.extra_runs or self.stuck)

    def summary(self) -> str:
        return (
            f"{self.transport}: {self.kills} kills, {self.runs} phase runs in {self.seconds:.0f}s: "
            f"phantom {len(self.phantoms)}, overlaps {len(self.overlaps)}, lost {len(self.lost)}, "
            f"extra runs {len(self.extra_runs)}, stuck {len(self.stuck)}"
        )

    def details(self) -> str:
        parts = [self.summary()]
        for label, items in (
            ("phantom", self.phantoms),
            ("overlap", self.overlaps),
            ("lost", self.lost),
            ("extra", self.extra_runs),
            ("stuck", self.stuck),
        ):
            parts.extend(f"  {label}: {item}" for item in items[:10])
        return "\n".join(parts)


def judge(
    transport: str, kills: int, log: Path, bare: Path, names: list[str], releases: list[str], seconds: float
) -> Verdict:
    runs = read_runs(log)
    remote = read_remote(bare)
    phantoms = [
        f"{r.env} {r.tag} ran under lock {r.lock_id}, which the remote never recorded"
        for r in runs
        if r.event == "start" and (r.env, IN_PROGRESS[r.phase], r.lock_id) not in remote.locks
    ]
    overlaps = []
    by_env: dict[str, list[tuple[float, float, str]]] = {}
    opened: dict[tuple[str, int], Run] = {}
    for r in runs:
        if r.event == "start":
            opened[(r.env, r.pid)] = r
        elif (r.env, r.pid) in opened:
            start = opened.pop((r.env, r.pid))
            by_env.setdefault(r.env, []).append((start.at, r.at, r.tag))
    for (env, _pid), start in opened.items():
        by_env.setdefault(env, []).append((start.at, time.time(), f"{start.tag} (never ended)"))
    for env, spans in by_env.items():
        spans.sort()
        for (s1, e1, t1), (s2, _e2, t2) in itertools.pairwise(spans):
            if s2 < e1:
                overlaps.append(f"{env}: {t2} started at {s2:.3f} while {t1} ran ({s1:.3f}..{e1:.3f})")
    lost = []
    last: dict[str, str] = {}
    for env, frm, to in remote.chain:
        if env in last and last[env] != frm:
            lost.append(f"{env}: a commit goes {frm} -> {to} after {last[env]}")
        last[env] = to
    starts = Counter((r.env, r.phase) for r in runs if r.event == "start")
    extra = []
    for (env, phase), count in starts.items():
        allowed = (len(releases) if phase in ("release", "run") else 1) + remote.interrupted[(env, phase)]
        if count > allowed:
            extra.append(f"{env} {phase}: {count} runs, at most {allowed} allowed")
    stuck = [
        f"{n}: {remote.final.get(n, {}).get('state')} lock={remote.final.get(n, {}).get('lock')}"
        for n in names
        if remote.final.get(n, {}).get("state") != "running" or remote.final.get(n, {}).get("lock")
    ]
    started = sum(1 for r in runs if r.event == "start")
    return Verdict(transport, kills, started, phantoms, overlaps, lost, extra, stuck, seconds)


def _converged(bare: Path, names: list[str], log: Path, release: str) -> bool:
    remote = read_remote(bare)
    done = {r.env for r in read_runs(log) if r.tag == f"release-{release}" and r.event == "end"}
    return all(
        remote.final.get(n, {}).get("state") == "running"
        and not remote.final.get(n, {}).get("lock")
        and n in done
        for n in names
    )


def run_chaos(
    tmp: Path,
    transport: str,
    *,
    daemons: int = 2,
    envs: int = 4,
    kills: int = 8,
    pause: float = 0.3,
    seed: int | None = None,
    shards: bool = False,
) -> Verdict:
    """Push releases while killing a random daemon with SIGKILL ``kills`` times (each restarted at once)."""
    rng = random.Random(seed)
    began = time.monotonic()
    root = tmp / "srv"
    root.mkdir(parents=True, exist_ok=True)
    bare = init_bare(root / "fleet.git")
    log = tmp / "bodies.log"
    names = [f"env{i}" for i in range(envs)]
    started = Daemons(tmp)
    with serving(transport, root) as server:
        author = _seed(server, bare, tmp / "author", names, log, "v0", pause)
        releases = ["v0"]
        procs: list[DaemonProcess] = []
        for i in range(daemons):
            procs.append(_start(started, server, bare, tmp, i, daemons if shards else None))
        try:
            done = 0
            version = 0
            while done < kills:
                if rng.random() < 0.35:
                    version += 1
                    release = f"v{version}"
                    releases.append(release)
                    _push_release(author, names, log, release, pause)
                time.sleep(rng.uniform(0.2, 1.2))
                victim = rng.randrange(len(procs))
                procs[victim].proc.kill()
                procs[victim].proc.wait(timeout=10)
                done += 1
                procs[victim] = _start(started, server, bare, tmp, victim, daemons if shards else None)
            deadline = time.monotonic() + CONVERGE_SECONDS
            while time.monotonic() < deadline and not _converged(bare, names, log, releases[-1]):
                time.sleep(0.2)
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    p.stop(timeout=20)
            started.close()
    return judge(transport, kills, log, bare, names, releases, time.monotonic() - began)


def _seed(
    server: GitServer, bare: Path, dest: Path, names: list[str], log: Path, release: str, pause: float
) -> Path:
    subprocess.run(["git", "clone", "-q", server.url(bare), str(dest)], check=True, capture_output=True)
    git(dest, "checkout", "-q", "-b", "main")
    (dest / "reconciler.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Config\nbranch: main\nremote: origin\n"
    )
    _push_release(dest, names, log, release, pause)
    return dest


def _push_release(author: Path, names: list[str], log: Path, release: str, pause: float) -> None:
    (author / "environments").mkdir(exist_ok=True)
    for name in names:
        (author / "environments" / f"{name}.yaml").write_text(chaos_env(name, log, release, pause))
    git(author, "add", "-A")
    git(author, "commit", "-q", "-m", f"release {release}")
    git(author, "push", "-q", "origin", "HEAD:refs/heads/main")


def _start(
    started: Daemons, server: GitServer, bare: Path, tmp: Path, index: int, shard_count: int | None
) -> DaemonProcess:
    clone = tmp / f"host{index}"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", server.url(bare), str(clone)], check=True, capture_output=True)
    args = ["--workers", "2", "--interval", "0.3s", "--resync", "1s"]
    if shard_count is not None:
        args += ["--shard", f"{index}/{shard_count}"]
    return started.start(clone, *args, data_dir=tmp / f"data-host{index}")
