"""``reconcile plan`` with the plans an earlier run kept: always the plan a run from nothing makes."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.desired.plancache import CACHE_DIR, CACHE_FILE, PlanCache
from reconciler.domain import Configuring, Destroyed, Phase, ReleaseFailed, Running
from tests.conftest import git

from .gitops import GitOps, environment, failed, held_lock


@pytest.fixture
def gitops(tmp_path: Path) -> GitOps:
    path = tmp_path / "gitops"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = GitOps(path)
    repo.write("scripts/release.sh", "#!/bin/sh\necho release\n")
    repo.write("environments/database.yaml", environment("database"))
    repo.write("environments/web.yaml", environment("web", dependsOn=["database"]))
    repo.write("environments/cache.yaml", environment("cache"))
    repo.write("environments/old.yaml", environment("old"))
    repo.commit("four environments")
    return repo


def plans(repo: GitOps) -> dict[str, object]:
    result = repo.plan("--format", "json")
    assert result.returncode in (0, 2), result.stderr
    return {env["name"]: env for env in json.loads(result.stdout)["environments"]}


def cold_plans(repo: GitOps) -> dict[str, object]:
    """The plan of a run that finds no plan cache (one run's cache set aside, then put back)."""
    cache = repo.path / ".git" / CACHE_DIR
    aside = repo.path.parent / "cache-aside"
    shutil.move(cache, aside)
    try:
        return plans(repo)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.move(aside, cache)


def assert_warm_is_cold(repo: GitOps) -> dict[str, object]:
    warm = plans(repo)
    assert warm == cold_plans(repo)
    return warm


def test_kept_plans_follow_every_change_of_state_or_file(gitops: GitOps) -> None:
    first = assert_warm_is_cold(gitops)
    assert first["web"]["verdict"] == "waiting"  # type: ignore[index]
    assert (gitops.path / ".git" / CACHE_DIR / CACHE_FILE).is_file()

    # Observed state moves, desired does not: the database converges, web may start.
    gitops.observe("database", Running, hashes=gitops.hashes("database"))
    after = assert_warm_is_cold(gitops)
    assert after["database"]["verdict"] == "converged"  # type: ignore[index]
    assert after["web"]["verdict"] == "changes"  # type: ignore[index]

    # A failure in backoff, a held lock, a destroyed one: each planned from what it is now.
    gitops.observe(
        "cache",
        ReleaseFailed,
        hashes=gitops.hashes("cache"),
        failure=failed(Phase.RELEASE, attempt=1, phase_hash=None, ago=timedelta(seconds=1)),
    )
    gitops.observe("web", Configuring, hashes=gitops.hashes("web"), lock=held_lock())
    gitops.observe("old", Destroyed)
    after = assert_warm_is_cold(gitops)
    assert after["cache"]["verdict"] == "waiting"  # type: ignore[index]
    assert "backing off" in after["cache"]["reason"]  # type: ignore[index]
    assert "locked by" in after["web"]["reason"]  # type: ignore[index]

    # One file changes, another goes (prune off: left alone), the state stays.
    gitops.write("environments/cache.yaml", environment("cache", desired="destroyed"))
    (gitops.path / "environments/old.yaml").unlink()
    gitops.commit("destroy cache, drop old")
    after = assert_warm_is_cold(gitops)
    assert after["cache"]["desired"] == "destroyed"  # type: ignore[index]
    assert after["old"]["verdict"] == "converged"  # type: ignore[index]

    # prune decides plans of environments without a file: a change of reconciler.yaml alone.
    gitops.write("reconciler.yaml", "apiVersion: reconciler/v1\nkind: Config\nprune: true\n")
    gitops.observe("old", Running)
    gitops.commit("prune")
    after = assert_warm_is_cold(gitops)
    assert after["old"]["actions"][0]["phase"] == "destroy"  # type: ignore[index]


def test_a_kept_plan_that_makes_no_sense_is_decided_again(gitops: GitOps) -> None:
    gitops.observe("database", Running, hashes=gitops.hashes("database"))
    plans(gitops)
    cache = PlanCache.for_repository(gitops.path / ".git")
    kept = cache.plan("database")
    assert isinstance(kept, tuple)
    # The same key with a plan that cannot be read, and a plan under a key that matches nothing.
    cache.keep_plan("database", (kept[0], ("no-such-verdict", (), "x", None, None, 1)))
    cache.keep_plan("web", ("not a key", ("changes", (), "x", None, None, 1)))
    cache.save()
    assert assert_warm_is_cold(gitops)["database"]["verdict"] == "converged"  # type: ignore[index]
