"""The daemon as a process: push latency with a fleet, throughput beside ``apply``, memory (issue 11).

Every figure comes from real processes on a bare repository, measured in this one job:

1. **Push -> first transition, 10,000 environments vs 10.** A fleet built with
   pygit2 (``bench_plan``'s helpers), every environment desired ``created`` and
   already ``created`` on the state branch, phases no-op (shell ``true``). Each
   ``git push`` changes one environment's desired state to ``provisioned``; the
   time from the push returning to the state branch's next commit is the
   latency. The same pushes against the same daemon with 10 environments give
   the baseline. Targets: p50 <= 100 ms with 10,000, and within 2x of 10.
2. **Transitions/s, daemon vs ``reconcile apply``** on the same work: ``BENCH_WORK_ENVS``
   environments (default 300) taken from nothing to ``running`` (9 transitions
   each), four workers each. Target: the daemon >= 0.9x apply.
3. **Daemon RSS at 10,000 environments** (``VmRSS`` and the peak ``VmHWM``). Target <= 150 MiB.
4. The ref watch against polling (``--no-watch --interval 1s``), 10 environments: the seed's figure.

Run: ``python benchmarks/bench_daemon.py`` (``BENCH_FLEET=10000``, ``BENCH_PUSHES=20``,
``BENCH_WORK_ENVS=300``; ``--only latency|throughput|watch``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pygit2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_plan import SIGNATURE, tree_of  # noqa: E402
from reconciler.domain import Environment  # noqa: E402
from tests.daemon.kit import DaemonProcess, free_port, make_server, shell_env, transitions  # noqa: E402

FLEET = int(os.environ.get("BENCH_FLEET", "10000"))
SMALL = 10
PUSHES = int(os.environ.get("BENCH_PUSHES", "20"))
WORK_ENVS = int(os.environ.get("BENCH_WORK_ENVS", "300"))
WORKERS = 4
STATE_REF = "refs/heads/reconciler/state"

NOOP_BLUEPRINT = """\
apiVersion: reconciler/v1
kind: Blueprint
metadata: {name: noop}
spec:
  phases:
    provision: [{shell: {run: "true"}}]
    configure: [{shell: {run: "true"}}]
    release: [{shell: {run: "true"}}]
    run: [{shell: {run: "true"}}]
    destroy: [{shell: {run: "true"}}]
"""


def env_file(i: int, state: str = "created") -> bytes:
    # Every hundredth environment depends on the one before it, as in a real fleet.
    depends = f"  dependsOn: [env-{i - 1:05d}]\n" if i % 100 == 1 else ""
    return (
        "apiVersion: reconciler/v1\nkind: Environment\n"
        f"metadata:\n  name: env-{i:05d}\n  labels: {{team: t{i % 7}}}\n"
        f"spec:\n  desiredState: {state}\n  blueprint: noop\n  vars: {{index: {i}}}\n{depends}"
    ).encode()


def build_fleet(root: Path, count: int, desired: str = "created") -> tuple[Path, dict[str, bytes]]:
    """A bare repository with ``count`` environments; with ``desired`` created, a state branch saying so."""
    bare = root / "fleet.git"
    repo = pygit2.init_repository(str(bare), bare=True, initial_head="main")
    files = {
        "reconciler.yaml": b"apiVersion: reconciler/v1\nkind: Config\nbranch: main\n",
        "blueprints/noop.yaml": NOOP_BLUEPRINT.encode(),
    }
    for i in range(count):
        files[f"environments/env-{i:05d}.yaml"] = env_file(i, desired)
    sha = repo.create_commit("refs/heads/main", SIGNATURE, SIGNATURE, "fleet", tree_of(repo, files), [])
    if desired == "created":
        at = datetime.now(UTC)
        states = {
            f"env-{i:05d}/state.json": Environment.create(f"env-{i:05d}", desired_commit=str(sha), at=at)
            .into_any()
            .to_json()
            .encode()
            for i in range(count)
        }
        repo.create_commit(STATE_REF, SIGNATURE, SIGNATURE, "state", tree_of(repo, states), [])
    return bare, files


def start_daemon(root: Path, bare: Path, *extra: str) -> DaemonProcess:
    port = free_port()
    log = root / "daemon.log"
    argv = [
        sys.executable,
        "-m",
        "reconciler",
        "--log-level",
        "warning",
        "daemon",
        "--repo",
        str(bare),
        "--data-dir",
        str(root / "data"),
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--grace",
        "5s",
        *extra,
    ]
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=root)
    daemon = DaemonProcess(bare, root / "data", port, proc, log, argv)
    daemon.wait_healthy(timeout=300)
    return daemon


def metric(daemon: DaemonProcess, name: str) -> float:
    for line in daemon.get("/metrics")[1].splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def wait_idle(daemon: DaemonProcess, timeout: float = 600) -> float:
    """Wait until the daemon's queue is empty (its start-up pass done); return how long that took."""
    began = time.monotonic()
    while metric(daemon, "reconcile_queue_depth") > 0:
        if time.monotonic() - began > timeout:
            raise SystemExit(f"queue not drained within {timeout}s")
        time.sleep(0.25)
    time.sleep(1.0)  # the last few in workers' hands
    return time.monotonic() - began


def state_tip(bare: Path) -> str:
    """The state branch's tip, read from its loose ref file (``""`` while absent or being rewritten)."""
    loose = bare / STATE_REF
    try:
        tip = loose.read_text().strip()
    except FileNotFoundError:
        return ""
    return tip if len(tip) == 40 else ""


def transition_of(repo: pygit2.Repository, tip: str, before: str, name: str) -> bool:
    """Whether a commit after ``before`` up to ``tip`` on the state branch is a transition of ``name``."""
    commit = repo.get(tip)
    while isinstance(commit, pygit2.Commit) and str(commit.id) != before:
        if f"Reconcile-Environment: {name}\n" in commit.message:
            return True
        commit = commit.parents[0] if commit.parents else None
    return False


def wait_converged(repo: pygit2.Repository, name: str, state: str = "provisioned") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sha = state_tip(Path(repo.path))
        tip = repo.get(sha) if sha else None
        if isinstance(tip, pygit2.Commit):
            data = repo[tip.tree[f"{name}/state.json"].id].data
            document = json.loads(data)
            if document["state"] == state and document["lock"] is None:
                time.sleep(0.2)
                return
        time.sleep(0.02)
    raise SystemExit(f"{name} did not reach {state}")


def rss_mib(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()

    def mib(key: str) -> float:
        return int(fields.get(key, "0 kB").split()[0]) / 1024

    return mib("VmRSS"), mib("VmHWM")


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def push_latencies(root: Path, count: int) -> tuple[list[float], float, float, tuple[float, float, float]]:
    """(latencies, build seconds, start-up pass seconds, (rss, peak, rss before the pushes) in MiB)."""
    began = time.monotonic()
    bare, _ = build_fleet(root, count)
    clone = root / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, capture_output=True)
    built = time.monotonic() - began
    daemon = start_daemon(root, bare, "--interval", "30s")
    try:
        start_pass = wait_idle(daemon)
        idle_rss = rss_mib(daemon.proc.pid)[0]
        latencies = []
        changed = [i for i in range(count) if i % 100 not in (0, 1)][:: max(1, count // PUSHES)][:PUSHES]
        repo = pygit2.Repository(str(bare))
        for i in changed:
            name = f"env-{i:05d}"
            (clone / f"environments/{name}.yaml").write_bytes(env_file(i, "provisioned"))
            git("commit", "-q", "-a", "-m", f"provision {name}", cwd=clone)
            before = state_tip(bare)
            subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True)
            pushed = time.monotonic()
            seen = before
            while True:
                tip = state_tip(bare)
                if tip and tip != seen:
                    if transition_of(repo, tip, before, name):
                        break
                    seen = tip
                if time.monotonic() - pushed > 30:
                    raise SystemExit(f"no transition within 30 s of a push ({count} environments)")
                time.sleep(0.001)
            latencies.append(time.monotonic() - pushed)
            wait_converged(repo, name)  # each push meets a quiet daemon
        memory = (*rss_mib(daemon.proc.pid), idle_rss)
        return latencies, built, start_pass, memory
    finally:
        daemon.stop()


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def latency() -> bool:
    print(f"push -> first transition, one environment changed per push, {PUSHES} pushes, {WORKERS} workers")
    results = {}
    for count in (SMALL, FLEET):
        with tempfile.TemporaryDirectory(prefix="bench-daemon-", ignore_cleanup_errors=True) as tmp:
            results[count] = push_latencies(Path(tmp), count)
    small, big = results[SMALL][0], results[FLEET][0]
    for count, (values, built, start_pass, (rss, peak, idle)) in results.items():
        print(
            f"  {count:6d} environments: p50 {statistics.median(values) * 1000:7.1f} ms"
            f"   p95 {quantile(values, 0.95) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
            f"   (built in {built:.1f}s, start-up pass {start_pass:.1f}s,"
            f" RSS {idle:.0f} MiB before the pushes, {rss:.0f} after, peak {peak:.0f})"
        )
    ratio = statistics.median(big) / statistics.median(small)
    print(f"  ratio {FLEET}/{SMALL}: p50 {ratio:4.2f}x   max {max(big) / max(small):4.2f}x")
    p50_ok = statistics.median(big) <= 0.100
    rss = results[FLEET][3][0]
    print(f"  target p50 <= 100 ms at {FLEET}: {'met' if p50_ok else 'MISSED'}")
    print(f"  target p50 within 2x of {SMALL} environments: {'met' if ratio <= 2 else 'MISSED'}")
    print(f"  target RSS <= 150 MiB at {FLEET}: {rss:.0f} MiB, {'met' if rss <= 150 else 'MISSED'}")
    return p50_ok and ratio <= 2 and rss <= 150


def count_running(bare: Path) -> int:
    repo = pygit2.Repository(str(bare))
    ref = repo.references.get(STATE_REF)
    if ref is None:
        return 0
    tree = repo[ref.target].peel(pygit2.Tree)
    documents = (json.loads(repo[tree[f"{entry.name}/state.json"].id].data) for entry in tree)
    return sum(1 for document in documents if document["state"] == "running")


def timed_until(done: Callable[[], bool], timeout: float = 900) -> float:
    began = time.monotonic()
    while not done():
        if time.monotonic() - began > timeout:
            raise SystemExit("the work did not finish in time")
        time.sleep(0.5)
    return time.monotonic() - began


def throughput() -> bool:
    print(f"\ntransitions/s: {WORK_ENVS} environments from nothing to running, {WORKERS} workers")
    with tempfile.TemporaryDirectory(prefix="bench-apply-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        bare, _ = build_fleet(root, WORK_ENVS, desired="running")
        began = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "reconciler", "apply", "--repo", str(bare), "--workers", str(WORKERS)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=root,
        )
        apply_s = time.monotonic() - began
        apply_n = len(transitions(bare))
    with tempfile.TemporaryDirectory(prefix="bench-work-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        server = make_server(root, "apiVersion: reconciler/v1\nkind: Config\nbranch: main\n")
        daemon = start_daemon(root, server.bare, "--interval", "30s")
        try:
            server.write("blueprints/noop.yaml", NOOP_BLUEPRINT)
            for i in range(WORK_ENVS):
                server.write(f"environments/env-{i:05d}.yaml", env_file(i, "running").decode())
            server.push("the fleet")
            daemon_s = timed_until(lambda: count_running(server.bare) == WORK_ENVS)
            daemon_n = len(transitions(server.bare))
        finally:
            daemon.stop()
    apply_rate, daemon_rate = apply_n / apply_s, daemon_n / daemon_s
    ratio = daemon_rate / apply_rate
    print(f"  reconcile apply (process): {apply_n} transitions in {apply_s:6.1f}s = {apply_rate:6.1f}/s")
    print(f"  daemon (push to running):  {daemon_n} transitions in {daemon_s:6.1f}s = {daemon_rate:6.1f}/s")
    print(f"  ratio daemon/apply: {ratio:4.2f}x   target >= 0.9x: {'met' if ratio >= 0.9 else 'MISSED'}")
    return ratio >= 0.9


def watch_vs_poll() -> bool:
    def measure(watch: bool) -> list[float]:
        with tempfile.TemporaryDirectory(prefix="bench-watch-", ignore_cleanup_errors=True) as tmp:
            base = Path(tmp)
            server = make_server(base)
            daemon = start_daemon(base, server.bare, "--interval", "1s", *(() if watch else ("--no-watch",)))
            try:
                latencies = []
                for i in range(PUSHES):
                    before = state_tip(server.bare)
                    server.write(f"environments/env-{i}.yaml", shell_env(f"env-{i}", base / "log"))
                    git("add", "-A", cwd=server.clone)
                    git("commit", "-q", "-m", f"env {i}", cwd=server.clone)
                    subprocess.run(
                        ["git", "-C", str(server.clone), "push", "-q", "origin", "HEAD:refs/heads/main"],
                        check=True,
                    )
                    pushed = time.monotonic()
                    while state_tip(server.bare) == before:
                        if time.monotonic() - pushed > 10:
                            raise SystemExit("no transition within 10 s of a push")
                        time.sleep(0.002)
                    latencies.append(time.monotonic() - pushed)
                    time.sleep(0.2)
                return latencies
            finally:
                daemon.stop()

    watched, polled = measure(watch=True), measure(watch=False)
    w50, p50 = statistics.median(watched), statistics.median(polled)
    print(f"\nthe ref watch vs polling, {SMALL} environments at most, {PUSHES} pushes each")
    print(f"  watch on : p50 {w50 * 1000:7.1f} ms   p95 {quantile(watched, 0.95) * 1000:7.1f} ms")
    p95 = quantile(polled, 0.95)
    print(f"  watch off: p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   (--interval 1s)")
    print(
        f"  ratio (off/on): p50 {p50 / w50:5.1f}x   target p50 <= 200 ms with the watch: "
        f"{'met' if w50 <= 0.2 else 'MISSED'}"
    )
    return w50 <= 0.2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("latency", "throughput", "watch"))
    args = parser.parse_args()
    for key, value in {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }.items():
        os.environ.setdefault(key, value)
    print(f"{os.cpu_count()} cores")
    parts = {"latency": latency, "throughput": throughput, "watch": watch_vs_poll}
    met = [fn() for name, fn in parts.items() if args.only in (None, name)]
    return 0 if all(met) else 1


if __name__ == "__main__":
    raise SystemExit(main())
