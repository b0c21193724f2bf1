"""The plan cache under the git dir: a warm load is a cold load, and a bad cache is only a slower run."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from reconciler.desired import yamlio
from reconciler.desired.loader import ParseCache, load_snapshot
from reconciler.desired.plancache import CACHE_DIR, CACHE_FILE, PlanCache
from reconciler.desired.resolved import DeferredEnvironment
from tests.desired.helpers import commit, env_yaml, make_repo, messages

ROOT = Path(__file__).resolve().parents[2]


def cache_file(repo: Path) -> Path:
    return repo / ".git" / CACHE_DIR / CACHE_FILE


def warm_load(repo: Path, rev: str = "HEAD") -> tuple[object, ParseCache]:
    """A load in a new ``ParseCache`` (a new process, as far as the cache can tell), saved after."""
    repository = pygit2.Repository(str(repo))
    cache = ParseCache.kept_in(repository)
    snapshot = load_snapshot(repository, rev, cache=cache)
    cache.save()
    return snapshot, cache


def cold_load(repo: Path, rev: str = "HEAD") -> object:
    return load_snapshot(pygit2.Repository(str(repo)), rev)


def plan(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", "--repo", str(repo), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_a_warm_load_equals_a_cold_one_through_changes(tmp_path: Path) -> None:
    api = env_yaml("api", extra="  vars: {http_port: 9000}\n").replace(
        "  name: api\n", "  name: api\n  labels: {team: tracker}\n"
    )
    repo = make_repo(tmp_path, {"environments/api.yaml": api})
    first, _ = warm_load(repo)
    assert cache_file(repo).is_file()
    assert first == cold_load(repo)

    again, cache = warm_load(repo)
    assert again == cold_load(repo) == first
    assert again.environments["api"].labels == {"team": "tracker"}  # selectors see them warm too
    assert cache.disk is not None
    # Every file came from the cache: none was read to be parsed.
    assert all(parsed.text is None for parsed in cache.parsed.values())

    # A referenced path changes: the cached provision hash is not reused.
    commit(repo, {"infra/vm/main.tf": 'resource "null_resource" "vm2" {}\n'})
    changed, _ = warm_load(repo)
    assert changed == cold_load(repo)
    assert changed.environments["web"].phase_hashes != first.environments["web"].phase_hashes

    # The blueprint changes, and one environment file.
    commit(
        repo,
        {
            "blueprints/tracker.yaml": (repo / "blueprints/tracker.yaml").read_text().replace("8000", "8080"),
            "environments/db.yaml": env_yaml("db", state="destroyed"),
        },
    )
    later, _ = warm_load(repo)
    assert later == cold_load(repo)
    assert later.environments["db"].desired_state == "destroyed"
    assert later.environments["web"].vars["http_port"] == 8080


def test_problems_from_a_warm_cache_still_name_line_and_column(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    warm_load(repo)
    # The environments' documents are cached; their blueprint disappears, so each is refused.
    commit(repo, {"blueprints/tracker.yaml": None})
    snapshot, _ = warm_load(repo)
    assert snapshot == cold_load(repo)
    assert "environments/web.yaml:7:14: `spec.blueprint`: 'tracker' does not exist" in "\n".join(
        messages(snapshot)
    )


@pytest.mark.parametrize(
    "damage",
    [b"", b"not a cache at all", b"RPC\x02" + b"\0" * 4 + b"garbage", b"RPC\x01" + b"\0" * 32 + b"old", None],
    ids=["empty", "garbage", "bad-checksum", "older-format", "truncated"],
)
def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path: Path, damage: bytes | None) -> None:
    repo = make_repo(tmp_path, {"environments/api.yaml": env_yaml("api")})
    before = plan(repo)
    assert before.returncode == 0, before.stderr
    path = cache_file(repo)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage is None else damage)

    after = plan(repo)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split('"generatedAt"')[0] == before.stdout.split('"generatedAt"')[0]
    assert after.stderr == ""
    assert path.read_bytes()[:4] == b"RPC\x02"
    assert len(path.read_bytes()) == len(good)


def test_a_cached_document_the_schema_now_refuses_is_parsed_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    _, cache = warm_load(repo)
    assert cache.disk is not None
    blob = str(pygit2.Repository(str(repo)).revparse_single("HEAD:environments/web.yaml").id)
    # As if an older version had cached a document this one refuses: the file itself decides.
    cache.disk.forget_document("environment", blob)
    cache.disk.keep_document("environment", blob, {"kind": "Environment", "spec": "nonsense"})
    cache.disk.save()
    snapshot, _ = warm_load(repo)
    assert snapshot == cold_load(repo)
    assert "web" in snapshot.environments


@pytest.mark.parametrize(
    "text",
    [
        "a:\n  b: 1\n  c:\n  - x\n  - {y: 2, z: [3, 4]}\n",
        "spec:\n  blueprint:\n  vars: {k: v}\n",
        "'q': \"v\"\n1: 2\nfalse: x\nlist:\n-   deep: 1\n",
        "k: |\n  text\n  more\nj: >-\n  x\nn: !!str 1\n",
        "a: &x 1\nb: *x\n",
    ],
)
def test_located_positions_are_the_round_trip_loaders(text: str) -> None:
    data = yamlio._round_trip().load(text)
    paths: list[tuple[str | int, ...]] = [("nope",), ("a", "nope", 0)]
    todo: list[tuple[object, tuple[str | int, ...]]] = [(data, ())]
    while todo:
        value, loc = todo.pop()
        paths.append(loc)
        if isinstance(value, dict):
            todo.extend((v, (*loc, k)) for k, v in value.items() if isinstance(k, str | int))
        elif isinstance(value, list):
            todo.extend((v, (*loc, i)) for i, v in enumerate(value))
    for loc in paths:
        for key in (False, True):
            assert yamlio.locate(text, loc, key=key) == yamlio._locate_round_trip(text, loc, key)


def test_labels_survive_a_warm_load(tmp_path: Path) -> None:
    """A warm load dropped ``metadata.labels``: ``plan -l`` then matched nothing, sinks' selectors too."""
    labelled = env_yaml("api").replace("  name: api\n", "  name: api\n  labels: {team: shop}\n")
    repo = make_repo(tmp_path, {"environments/api.yaml": labelled})
    cold, _ = warm_load(repo)
    warm, cache = warm_load(repo)
    assert all(parsed.text is None for parsed in cache.parsed.values())  # it did come from the cache
    assert dict(warm.environments["api"].labels) == dict(cold.environments["api"].labels) == {"team": "shop"}


def test_a_document_marshal_cannot_hold_is_left_out_and_the_others_are_kept(tmp_path: Path) -> None:
    # No document the schemas accept holds a date today; if one did, the cache would still be written.
    cache = PlanCache(tmp_path / CACHE_FILE)
    cache.keep_document("environment", "a" * 40, {"kind": "Environment", "n": 1})
    cache.keep_document("environment", "b" * 40, {"kind": "Environment", "since": datetime.date(2026, 12, 5)})
    cache.save()
    again = PlanCache(tmp_path / CACHE_FILE)
    assert again.document("environment", "a" * 40) == {"kind": "Environment", "n": 1}
    assert again.document("environment", "b" * 40) is None


def test_a_warm_plan_runs_the_schema_only_for_what_it_decides_again(tmp_path: Path) -> None:
    from reconciler.cli.commands_plan import make_report
    from reconciler.planner.report import render_json

    files: dict[str, str | bytes] = {f"environments/env-{i}.yaml": env_yaml(f"env-{i}") for i in range(6)}
    files["environments/env-5.yaml"] = env_yaml("env-5", extra="  dependsOn: [env-4]\n")
    repo = make_repo(tmp_path, files)
    now = datetime.datetime(2026, 12, 5, tzinfo=datetime.UTC)
    make_report(repo, rev=None, base=None, worktree=False, now=now)  # keeps documents, hashes, plans

    warm, _ = warm_load(repo)
    assert all(isinstance(env, DeferredEnvironment) for env in warm.environments.values())
    assert not any(env.built for env in warm.environments.values() if isinstance(env, DeferredEnvironment))
    assert warm.environments["env-5"].depends_on == ("env-4",)  # known without the schema
    assert warm == cold_load(repo)  # built on use, each is what a load without the cache gives

    commit(repo, {"environments/env-2.yaml": env_yaml("env-2", state="destroyed")})
    warm_plan = render_json(make_report(repo, rev=None, base=None, worktree=False, now=now))
    shutil.rmtree(cache_file(repo).parent)
    cold_plan = render_json(make_report(repo, rev=None, base=None, worktree=False, now=now))
    assert warm_plan == cold_plan
    assert '"destroyed"' in warm_plan


def test_a_change_of_a_few_files_in_a_fleet_leaves_the_cache_file_as_it_is(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {f"environments/e{i:03d}.yaml": env_yaml(f"e{i:03d}") for i in range(200)}
    repo = make_repo(tmp_path, files)
    warm_load(repo)
    before = cache_file(repo).read_bytes()

    commit(repo, {"environments/e007.yaml": env_yaml("e007", state="destroyed")})
    snapshot, _ = warm_load(repo)
    assert snapshot == cold_load(repo)
    assert cache_file(repo).read_bytes() == before  # one file of 200: not worth writing 200 for
    again, cache = warm_load(repo)  # that file is parsed again, the others still come from the cache
    assert again == snapshot
    assert [parsed.text is not None for parsed in cache.parsed.values()].count(True) == 1

    commit(repo, {f"environments/e00{i}.yaml": env_yaml(f"e00{i}", state="destroyed") for i in (8, 9)})
    later, _ = warm_load(repo)
    assert later == cold_load(repo)
    assert cache_file(repo).read_bytes() != before  # three changed files are: written
    _, cache = warm_load(repo)
    assert not any(parsed.text is not None for parsed in cache.parsed.values())


def test_a_cache_with_one_byte_changed_is_ignored_and_rewritten(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"environments/api.yaml": env_yaml("api")})
    before = plan(repo)
    path = cache_file(repo)
    good = bytearray(path.read_bytes())
    good[len(good) // 2] ^= 0x01  # what the checksum is for: the file reads, marshal might too
    path.write_bytes(bytes(good))
    after = plan(repo)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split('"generatedAt"')[0] == before.stdout.split('"generatedAt"')[0]
    assert path.read_bytes() != bytes(good)  # rewritten
