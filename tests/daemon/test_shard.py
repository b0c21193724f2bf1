"""``reconcile daemon --shard I/N`` (SPEC section 8): the hashing rule, the gate, and daemons sharing work."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pygit2
import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.daemon import Daemon, DaemonSettings
from reconciler.daemon.shard import EVERYTHING, Shard, parse_shard, shard_of
from reconciler.daemon.workqueue import WorkQueue
from tests.daemon.kit import (
    ROOT,
    Daemons,
    Server,
    assert_no_overlap,
    make_server,
    read_log,
    runs,
    shell_env,
    state_is,
    state_of,
    transitions,
    wait_for,
)

pytestmark = pytest.mark.timeout(30)


def independent_shard(name: str, count: int) -> int:
    """SPEC section 8 spelled out again: first 8 bytes of SHA-256, big-endian, modulo N."""
    first8 = hashlib.sha256(name.encode("utf-8")).digest()[:8]
    value = 0
    for byte in first8:
        value = value * 256 + byte
    return value % count


# sha256("web") starts 4b5e57f6eb2f42b9, sha256("db") 7bdc25d1694ef984, sha256("alpha") 8ed3f6ad685b959e.
PINNED = [
    ("web", 2, 1),
    ("web", 3, 0),
    ("web", 7, 6),
    ("db", 2, 0),
    ("db", 3, 1),
    ("alpha", 3, 2),
    ("beta", 7, 3),
    ("staging", 1, 0),
]


@pytest.mark.parametrize(("name", "count", "expected"), PINNED)
def test_shard_of_pins_known_values(name: str, count: int, expected: int) -> None:
    assert independent_shard(name, count) == expected  # the table itself is right
    assert shard_of(name, count) == expected


def test_shard_of_agrees_with_the_rule_for_many_names_and_counts() -> None:
    names = [f"env-{i}" for i in range(200)] + ["a" * 63, "z9", "ünïcode"]
    for count in (1, 2, 3, 5, 16, 65536):
        for name in names:
            assert shard_of(name, count) == independent_shard(name, count)
    # Every shard of a few gets some of 200 names: the rule spreads them.
    assert {shard_of(n, 4) for n in names} == {0, 1, 2, 3}


def test_each_name_is_owned_by_exactly_one_of_n_shards() -> None:
    for count in (1, 2, 3, 8):
        shards = [Shard(i, count) for i in range(count)]
        for name in ("web", "db", "alpha", "beta", "gamma", "staging"):
            assert sum(s.owns(name) for s in shards) == 1
    assert EVERYTHING.owns("anything") and str(EVERYTHING) == "0/1"


@pytest.mark.parametrize(
    ("text", "index", "count"), [("0/1", 0, 1), ("2/3", 2, 3), (" 1/2 ", 1, 2), ("07/10", 7, 10)]
)
def test_parse_shard(text: str, index: int, count: int) -> None:
    assert parse_shard(text) == Shard(index, count)


@pytest.mark.parametrize(
    "text", ["3/2", "2/2", "x/2", "0/0", "-1/2", "1", "", "1/2/3", "1/-2", "0/65537", "1.0/2"]
)
def test_bad_shards_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected I/N .* e\.g\. 0/3, 1/3, 2/3"):
        parse_shard(text)
    with pytest.raises(ValueError):
        shard_of("web", 0)


@pytest.mark.parametrize("value", ["3/2", "x/2", "0/0", "-1/2"])
def test_a_bad_shard_is_a_usage_error_naming_the_option(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(app, ["daemon", "--repo", str(tmp_path), "--shard", value])
    assert result.exit_code == 2, result.output
    text = " ".join(re.sub(r"[─│╭╮╰╯]", " ", result.output).split())
    assert "'--shard'" in text
    assert f"invalid shard '{value}'" in text
    assert "expected I/N" in text


def test_the_queue_refuses_names_it_does_not_accept_on_every_way_in() -> None:
    shard = Shard(0, 2)
    q = WorkQueue(accept=shard.owns)
    q.add("web")  # shard 1
    q.add_at("web", time.monotonic())
    q.add("db")  # shard 0
    q.add_at("alpha", time.monotonic())  # shard 0
    assert not q.accepts("web") and q.accepts("db")
    got = {q.get(), q.get()}
    assert got == {"db", "alpha"}
    assert q.depth() == 0 and q.scheduled() == 0


def _gitops(tmp_path: Path, names: list[str]) -> Path:
    server = make_server(tmp_path)
    for name in names:
        server.write(f"environments/{name}.yaml", shell_env(name, tmp_path / "log"))
    server.push("environments")
    return server.bare


def _drain(daemon: Daemon) -> set[str]:
    queue: WorkQueue = daemon._queue
    found = set()
    while queue.depth():
        name = queue.get()
        assert name is not None
        found.add(name)
        queue.done(name)
    return found


def test_a_sharded_daemon_queues_only_its_environments_on_every_trigger(tmp_path: Path) -> None:
    names = ["web", "db", "alpha", "beta", "gamma", "staging"]
    repo = _gitops(tmp_path, names)
    for index in (0, 1):
        settings = DaemonSettings(
            repo=repo, data_dir=tmp_path / f"data-{index}", listen=None, watch=False, shard=Shard(index, 2)
        )
        daemon = Daemon(settings)
        assert daemon.refresh("start", force=True)
        mine = {n for n in names if shard_of(n, 2) == index}
        assert _drain(daemon) == mine
        daemon._enqueue_all(check=True)  # the resync path
        assert _drain(daemon) == mine
        assert daemon._checks_wanted <= mine
        for name in names:  # a dependency that converged wakes only what is this shard's
            daemon._queue.add(name)
        assert _drain(daemon) == mine
        exposition = daemon.metrics.registry.exposition()
        assert f'reconcile_shard_info{{count="2",index="{index}"}} 1' in exposition
    unsharded = Daemon(DaemonSettings(repo=repo, data_dir=tmp_path / "data-any", listen=None, watch=False))
    unsharded.refresh("start", force=True)
    assert _drain(unsharded) == set(names)
    assert 'reconcile_shard_info{count="1",index="0"} 1' in unsharded.metrics.registry.exposition()


# -- daemons as processes ------------------------------------------------------------------


def _holders(repo: Path, ref: str = "refs/heads/reconciler/state") -> list[tuple[str, str]]:
    """``(environment, Reconcile-Holder)`` of every transition on the state branch."""
    r = pygit2.Repository(str(repo))
    found: list[tuple[str, str]] = []
    commit: Any = r.get(r.references[ref].target)
    while commit is not None:
        trailers = dict(
            line.split(": ", 1) for line in commit.message.splitlines() if line.startswith("Reconcile-")
        )
        if trailers.get("Reconcile-Event", "transition") == "transition" and "Reconcile-Holder" in trailers:
            found.append((trailers["Reconcile-Environment"], trailers["Reconcile-Holder"]))
        commit = commit.parents[0] if commit.parents else None
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_sharded_daemons_split_the_work_and_depends_on_crosses_shards(
    daemons: Daemons, tmp_path: Path
) -> None:
    # web (shard 1 of 2) depends on db (shard 0 of 2): web's daemon only reads db's state.
    assert (shard_of("db", 2), shard_of("web", 2), shard_of("alpha", 2), shard_of("beta", 2)) == (0, 1, 0, 1)
    log = tmp_path / "side-effects.log"
    server = make_server(tmp_path, "apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
    started = []
    for index in (0, 1):
        clone = tmp_path / f"host{index}"
        subprocess.run(["git", "clone", "-q", str(server.bare), str(clone)], check=True, capture_output=True)
        started.append(daemons.start(clone, "--shard", f"{index}/2", "--interval", "0.3s"))
    for daemon, index in zip(started, (0, 1), strict=True):
        assert f"shard {index}/2" in daemon.output()
        assert f'reconcile_shard_info{{count="2",index="{index}"}} 1' in daemon.get("/metrics")[1]

    web = shell_env("web", log).replace("spec:\n", "spec:\n  dependsOn: [db]\n", 1)
    server.write("environments/web.yaml", web)
    server.write("environments/db.yaml", shell_env("db", log, slow="run", pause=1.5))
    server.write("environments/alpha.yaml", shell_env("alpha", log))
    server.write("environments/beta.yaml", shell_env("beta", log))
    server.push("four environments on two shards")
    for name in ("db", "web", "alpha", "beta"):
        wait_for(f"{name} running", state_is(server.bare, name, "running"), 60)

    pids = {0: started[0].proc.pid, 1: started[1].proc.pid}
    for name, holder in _holders(server.bare):
        assert holder.endswith(f":{pids[shard_of(name, 2)]}"), (name, holder, pids)
    phases = ("provision", "configure", "release-v1", "run")
    assert sorted(runs(log)) == sorted(f"{n} {p}" for n in ("db", "web", "alpha", "beta") for p in phases)
    assert_no_overlap(log)
    lines = read_log(log)
    db_ran = max(x.at for x in lines if x.env == "db" and x.phase == "run" and x.event == "end")
    web_began = min(x.at for x in lines if x.env == "web" and x.event == "start")
    assert web_began >= db_ran, "web started before its dependency on the other shard converged"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_sharded_daemon_recovers_only_its_own_stale_locks(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    for name in ("db", "web"):  # db: shard 0 of 2, web: shard 1
        server.write(f"environments/{name}.yaml", shell_env(name, log, slow="provision", pause=60))
    server.push("two slow environments")
    data = tmp_path / "data"
    workers = ("--workers", "2")
    apply = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            "--repo",
            str(server.bare),
            "--data-dir",
            str(data),
            *workers,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        for name in ("db", "web"):
            wait_for(
                f"{name} provisioning", lambda n=name: (tmp_path / f"side-effects.log.{n}.pid").exists(), 30
            )
    finally:
        apply.send_signal(signal.SIGKILL)
        apply.wait(timeout=10)
    web_lock = state_of(server.bare, "web")["lock"]  # type: ignore[index]
    assert web_lock is not None  # held by a dead process on this host: stale

    daemons.start(server.bare, "--shard", "0/2", "--resync", "0.3s", data_dir=data)
    interrupted = ("db", "provisioning", "provision_failed")
    wait_for("db recovered", lambda: interrupted in transitions(server.bare), 30)
    time.sleep(1.5)  # several resyncs, each recovering stale locks of shard 0 only
    web = state_of(server.bare, "web")
    assert web is not None
    assert web["state"] == "provisioning" and web["lock"] == web_lock


def test_a_move_of_the_state_branch_wakes_this_shards_dependents_of_what_changed(tmp_path: Path) -> None:
    # web (shard 1 of 2) depends on db (shard 0): db converging elsewhere wakes web, and only on shard 1.
    server = make_server(tmp_path)
    web = shell_env("web", tmp_path / "log").replace("spec:\n", "spec:\n  dependsOn: [db]\n", 1)
    server.write("environments/web.yaml", web)
    server.write("environments/db.yaml", shell_env("db", tmp_path / "log"))
    server.write("environments/alpha.yaml", shell_env("alpha", tmp_path / "log"))
    server.push("web depends on db")
    sharded = []
    for index in (0, 1):
        settings = DaemonSettings(
            repo=server.bare, data_dir=tmp_path / f"d{index}", listen=None, watch=False, shard=Shard(index, 2)
        )
        daemon = Daemon(settings)
        daemon.refresh("start", force=True)
        _drain(daemon)
        daemon._state_moved()  # the first look only notes the tip (there is no state branch yet)
        sharded.append(daemon)

    other = ["apply", "db", "--repo", str(server.bare), "--data-dir", str(tmp_path / "elsewhere")]
    assert CliRunner().invoke(app, other).exit_code == 0
    for daemon in sharded:
        daemon._state_moved()
    assert _drain(sharded[1]) == {"web"}
    assert _drain(sharded[0]) == set()  # db is shard 0's but someone else converged it: nothing to do
    for daemon in sharded:
        daemon._state_moved()  # nothing moved since
        assert _drain(daemon) == set()
