"""A cold load of many files forks a helper for half of them (decision 026): same result, or no help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pygit2
import pytest

from reconciler.desired import helper, loader
from reconciler.desired.loader import ParseCache, load_snapshot
from reconciler.desired.plancache import PlanCache
from reconciler.desired.resolved import DeferredEnvironment, DesiredSnapshot
from tests.desired.helpers import env_yaml, make_repo

ROOT = Path(__file__).resolve().parents[2]
#: The environment files: twelve here, and the two of the base repository.
NAMES = sorted(["db", "web", *(f"env-{i:02d}" for i in range(12))])
FILES = len(NAMES)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    files: dict[str, str | bytes] = {
        f"environments/env-{i:02d}.yaml": env_yaml(f"env-{i:02d}", extra=f"  vars: {{index: {i}}}\n")
        for i in range(12)
    }
    # A refusal in the helper's half: it must come out exactly as when the parent finds it.
    files["environments/env-10.yaml"] = env_yaml("env-10", extra="  vars: {index: [1, 2}\n")
    files["environments/env-11.yaml"] = env_yaml("env-11", extra="  dependsOn: [env-00, nowhere]\n")
    return make_repo(tmp_path, files)


@pytest.fixture
def parsed_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Environment files this process parsed (a helper's parses happen in the child)."""
    seen: list[str] = []
    real = loader._parse

    def spy(data: bytes, model: type) -> object:
        if b"kind: Environment" in data:
            seen.append(data.decode().split("name: ", 1)[1].split("\n", 1)[0])
        return real(data, model)

    monkeypatch.setattr(loader, "_parse", spy)
    monkeypatch.setattr(helper, "MIN_FILES", 4)
    monkeypatch.setenv(helper.MODE_ENV, "always")  # however busy the machine running the tests is
    return seen


def load(repo: Path) -> DesiredSnapshot:
    repository = pygit2.Repository(str(repo))
    cache = ParseCache.kept_in(repository)
    snapshot = load_snapshot(repository, "HEAD", cache=cache)
    cache.save()
    return snapshot


def plain(snapshot: DesiredSnapshot) -> object:
    return (
        {n: (dict(e.phase_hashes), dict(e.vars), e.blob_id) for n, e in snapshot.environments.items()},
        [str(p) for p in snapshot.problems],
    )


def test_the_helper_loads_half_and_the_result_is_a_load_without_it(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert helper.can_fork()
    absorbed: list[int] = []
    real_absorb = PlanCache._absorb

    def absorb(self: PlanCache) -> None:
        absorbed.append(len(self._sections))
        real_absorb(self)

    monkeypatch.setattr(PlanCache, "_absorb", absorb)
    helped = load(fleet)
    assert absorbed == []  # the helper's section went into the cache file unread
    # Its half, and the one file of the helper's half that is refused (refusals are never kept).
    assert parsed_here == [*NAMES[: FILES // 2], "env-10"]
    # The helper's environments are deferred from what it sent: its documents are read (from the
    # section it sent, kept whole in the cache file) only when one is built.
    web = helped.environments["web"]
    assert isinstance(web, DeferredEnvironment)
    assert not web.built
    assert web.vars["http_port"] == 8000
    assert web.built
    assert absorbed == [1]  # read once, for the first environment built
    # The same load in one process (a fresh cache, no helper):
    parsed_here.clear()
    alone = load_snapshot(pygit2.Repository(str(fleet)), "HEAD")
    assert len(parsed_here) == FILES
    assert plain(helped) == plain(alone)
    assert any("env-10.yaml:8" in p for p in plain(helped)[1])
    assert any("'nowhere'" in p for p in plain(helped)[1])


def _failing(how: Callable[[], bytes]) -> Callable[..., helper.Helper | None]:
    real = helper.start

    def start(share: object, work: Callable[[], bytes], then: object = None) -> helper.Helper | None:
        return real(share, how)  # type: ignore[arg-type]

    return start


@pytest.mark.parametrize(
    "how",
    [
        lambda: os._exit(3),  # dies
        lambda: b"\x00garbage",  # sends what is not a plan cache's entries
        lambda: b"",  # sends nothing
    ],
    ids=["dies", "garbage", "nothing"],
)
def test_a_helper_that_fails_costs_only_its_help(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch, how: Callable[[], bytes]
) -> None:
    monkeypatch.setattr(helper, "start", _failing(how))
    helped = load(fleet)
    assert len(parsed_here) == FILES  # the parent did the helper's half itself
    assert plain(helped) == plain(load_snapshot(pygit2.Repository(str(fleet)), "HEAD"))


def test_a_helper_too_slow_is_killed_and_its_half_loaded_here(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang() -> bytes:
        import time

        time.sleep(60)
        return b""

    monkeypatch.setattr(helper, "PATIENCE_SECONDS", 0.5)
    monkeypatch.setattr(helper, "start", _failing(hang))
    helped = load(fleet)
    assert len(parsed_here) == FILES
    assert plain(helped) == plain(load_snapshot(pygit2.Repository(str(fleet)), "HEAD"))


def test_plan_as_a_process_says_the_same_with_and_without_a_helper(fleet: Path) -> None:
    def plan(mode: str) -> str:
        code = (
            "import sys; from reconciler.desired import helper; helper.MIN_FILES = 4; "
            "from reconciler.cli import main; "
            "sys.argv = ['reconcile', 'plan', '--repo', sys.argv[1], '--format', 'json']; main()"
        )
        shutil.rmtree(fleet / ".git" / "reconciler", ignore_errors=True)
        done = subprocess.run(
            [sys.executable, "-c", code, str(fleet)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT), helper.MODE_ENV: mode},
            timeout=120,
        )
        assert done.returncode == 1, done.stderr  # env-10 and env-11 are refused
        return "\n".join(line for line in done.stdout.splitlines() if "generatedAt" not in line)

    assert plan("always") == plan("never")


def test_no_helper_when_told_so(fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(helper.MODE_ENV, "never")
    load(fleet)
    assert len(parsed_here) == FILES


def _write_state(repo: Path, snapshot: DesiredSnapshot) -> None:
    """A state branch saying every valid environment is running with its desired phase hashes."""
    repository = pygit2.Repository(str(repo))
    root = repository.TreeBuilder()
    for name, env in snapshot.environments.items():
        document = {
            "schema": 1,
            "name": name,
            "state": "running",
            "desiredCommit": snapshot.commit,
            "phases": {
                str(p): {"hash": h, "completedAt": "2026-11-28T10:00:00Z"}
                for p, h in env.phase_hashes.items()
                if str(p) != "destroy"
            },
            "outputs": {},
            "lock": None,
            "failure": None,
            "updatedAt": "2026-11-28T10:00:00Z",
        }
        sub = repository.TreeBuilder()
        blob = repository.create_blob(json.dumps(document).encode())
        sub.insert("state.json", blob, pygit2.GIT_FILEMODE_BLOB)
        root.insert(name, sub.write(), pygit2.GIT_FILEMODE_TREE)
    who = pygit2.Signature("test", "test@localhost")
    repository.create_commit("refs/heads/reconciler/state", who, who, "state", root.write(), [])


def test_the_plan_helper_decides_half_and_the_plan_is_the_same(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.cli.commands_plan import make_report
    from reconciler.planner.report import render_json

    _write_state(fleet, load_snapshot(pygit2.Repository(str(fleet)), "HEAD"))
    reads = state_reads_here(monkeypatch)

    def plan() -> str:
        shutil.rmtree(fleet / ".git" / "reconciler", ignore_errors=True)
        now = datetime(2026, 12, 1, tzinfo=UTC)
        report = make_report(fleet, rev=None, base=None, worktree=False, now=now)
        return render_json(report)

    helped = plan()
    # The helper's half was decided there: its states were read by the helper, not here.
    assert sorted(reads) == NAMES[: FILES // 2]
    reads.clear()
    monkeypatch.setattr(helper, "MIN_FILES", 10**9)
    alone = plan()
    assert len(reads) == FILES - 2  # env-10 and env-11 are refused: they have no state
    assert helped == alone
    assert '"converged"' in helped


def test_a_warm_plan_cache_forks_no_helper(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    real = helper.start

    def start(
        share: object, work: Callable[[], bytes], then: Callable[[], bytes] | None = None
    ) -> helper.Helper | None:
        started.append(share)
        return real(share, work, then)  # type: ignore[arg-type]

    monkeypatch.setattr(helper, "start", start)
    first = load(fleet)
    assert len(started) == 1
    parsed_here.clear()
    again = load(fleet)  # the cache the first load left: only the refused file is parsed again
    assert len(started) == 1
    assert parsed_here == ["env-10"]
    assert plain(again) == plain(first)


def state_reads_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Environments whose ``state.json`` this process reads from now on (a helper's are the child's)."""
    from reconciler.store.git import GitStore

    reads: list[str] = []
    real_read = GitStore._read_subtree

    def spy(self: GitStore, sub: pygit2.Tree, name: str) -> object:
        reads.append(name)
        return real_read(self, sub, name)

    monkeypatch.setattr(GitStore, "_read_subtree", spy)
    return reads


def _cold_plan(fleet: Path) -> str:
    from reconciler.cli.commands_plan import make_report
    from reconciler.planner.report import render_json

    shutil.rmtree(fleet / ".git" / "reconciler", ignore_errors=True)
    report = make_report(fleet, rev=None, base=None, worktree=False, now=datetime(2026, 12, 1, tzinfo=UTC))
    return render_json(report)


def test_one_helper_loads_and_then_decides_its_half(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_state(fleet, load_snapshot(pygit2.Repository(str(fleet)), "HEAD"))
    started: list[bool] = []
    real_start = helper.start

    def start(
        share: object, work: Callable[[], bytes], then: Callable[[], bytes] | None = None
    ) -> helper.Helper | None:
        started.append(then is not None)
        return real_start(share, work, then)  # type: ignore[arg-type]

    monkeypatch.setattr(helper, "start", start)
    reads = state_reads_here(monkeypatch)
    helped = _cold_plan(fleet)
    assert started == [True]  # one fork: the load's helper went on to plan its half
    assert sorted(reads) == NAMES[: FILES // 2]
    monkeypatch.setattr(helper, "MIN_FILES", 10**9)
    assert helped == _cold_plan(fleet)


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_a_helper_failing_after_its_load_costs_only_its_plans(
    fleet: Path, parsed_here: list[str], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _write_state(fleet, load_snapshot(pygit2.Repository(str(fleet)), "HEAD"))
    parsed_here.clear()
    real_start = helper.start

    def fail() -> bytes:
        if how == "dies":
            os._exit(3)
        raise RuntimeError("the plans went wrong")

    def start(
        share: object, work: Callable[[], bytes], then: Callable[[], bytes] | None = None
    ) -> helper.Helper | None:
        return real_start(share, work, fail if then is not None else None)  # type: ignore[arg-type]

    monkeypatch.setattr(helper, "start", start)
    reads = state_reads_here(monkeypatch)
    helped = _cold_plan(fleet)
    assert parsed_here == [*NAMES[: FILES // 2], "env-10"]  # its load was used ...
    assert len(reads) == FILES - 2  # ... and its half's plans were decided here
    monkeypatch.setattr(helper, "MIN_FILES", 10**9)
    assert helped == _cold_plan(fleet)


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="needs /proc/loadavg (Linux)")
def test_a_process_running_now_counts_as_a_busy_core() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)  # it is scheduled
        assert (helper.running_besides_us() or 0) >= 1
    finally:
        spinner.kill()
        spinner.wait()
