"""The rows the server keeps between requests follow the state branch, dependents included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file
from tests.web.conftest import Served

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def fleet(gitops: GitOpsRepo, tmp_path: Path) -> GitOpsRepo:
    """``db`` fails while a marker file exists; ``web`` depends on it."""
    marker = tmp_path / "db-broken"
    marker.touch()
    db = counting_phases(tmp_path / "log", {"provision": f"test ! -e {marker}"})
    gitops.commit(
        {
            "environments/db.yaml": env_file("db", "running", phases=db),
            "environments/web.yaml": env_file("web", "running", dependsOn=["db"]),
        }
    )
    gitops.reconcile("apply")
    return gitops


def test_a_state_change_updates_the_environment_and_those_that_depend_on_it(
    fleet: GitOpsRepo, served: Served, tmp_path: Path
) -> None:
    before = {r["name"]: r for r in served.json("/api/v1/environments")["environments"]}
    assert before["db"]["observed"] == "provision_failed"
    assert before["web"]["verdict"] == "waiting"  # on db

    (tmp_path / "db-broken").unlink()
    fleet.reconcile("retry", "db", check=True)  # no backoff: the next apply retries at once
    fleet.reconcile("apply", "db", check=True)  # the state branch moves; the desired state does not

    after = {r["name"]: r for r in served.json("/api/v1/environments")["environments"]}
    assert after["db"]["observed"] == "running"
    assert after["db"]["lastTransition"]["to"] == "running"
    assert after["web"]["verdict"] == "changes"  # its dependency converged: it may go now
    assert served.json("/api/v1/environments")["counts"] == {
        "none": 1,
        "running": 1,
    }  # web never observed yet


def test_a_desired_commit_updates_what_it_concerns_and_leaves_the_rest(
    fleet: GitOpsRepo, served: Served
) -> None:
    before = {r["name"]: r for r in served.json("/api/v1/environments")["environments"]}
    assert before["web"]["desired"] == "running"

    fleet.commit({"environments/web.yaml": env_file("web", "destroyed", dependsOn=["db"])}, "retire web")
    fleet.commit({"environments/cache.yaml": env_file("cache", "running")}, "add cache")

    data = served.json("/api/v1/environments")
    after = {r["name"]: r for r in data["environments"]}
    assert list(after) == ["cache", "db", "web"]
    assert (after["web"]["desired"], after["web"]["verdict"]) == ("destroyed", "converged")  # never created
    assert (after["cache"]["declared"], after["cache"]["observed"]) == (True, None)
    assert after["db"] == before["db"]
    assert data["desiredCommit"] == git(fleet.path, "rev-parse", "HEAD").strip()
