"""SPEC 5: the imperative phase commands respect ``dependsOn`` unless told ``--ignore-dependencies``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

pytestmark = pytest.mark.timeout(180)


def _files(log: Path, db: str, web: str) -> dict[str, str]:
    return {
        "environments/db.yaml": env_file("db", db, phases=counting_phases(log)),
        "environments/web.yaml": env_file("web", web, phases=counting_phases(log), dependsOn=["db"]),
    }


def test_destroy_is_refused_while_a_dependent_is_alive(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(_files(log, "running", "running"))
    gitops.reconcile("apply", check=True)

    refused = gitops.reconcile("destroy", "db")

    assert refused.returncode == 1
    assert "refusing to destroy 'db': web depends on it and is running (destroy web first)" in refused.stderr
    assert "--ignore-dependencies" in refused.stderr
    assert gitops.state("db")["state"] == "running"
    assert "destroy db" not in log.read_text()

    # In the right order it goes through: web first, then db.
    gitops.reconcile("destroy", "web", check=True)
    gitops.reconcile("destroy", "db", check=True)
    assert log.read_text().splitlines()[-2:] == ["destroy web", "destroy db"]
    assert gitops.state("db")["state"] == "destroyed"


def test_destroy_with_ignore_dependencies_goes_ahead(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(_files(log, "running", "running"))
    gitops.reconcile("apply", check=True)

    gitops.reconcile("destroy", "db", "--ignore-dependencies", check=True)

    assert gitops.state("db")["state"] == "destroyed"
    assert gitops.state("web")["state"] == "running"


def test_provision_is_refused_while_a_dependency_is_not_provisioned(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(_files(log, "created", "created"))
    gitops.reconcile("apply", check=True)

    refused = gitops.reconcile("provision", "web")

    assert refused.returncode == 1
    assert (
        "refusing to provision 'web': it depends on db, which has not completed provision (it is created)"
        in (refused.stderr)
    )
    assert gitops.state("web")["state"] == "created"
    assert not log.exists()

    # Once db is provisioned, web may be.
    gitops.reconcile("provision", "db", check=True)
    gitops.reconcile("provision", "web", check=True)
    assert log.read_text().splitlines() == ["provision db", "provision web"]


def test_provision_with_ignore_dependencies_goes_ahead(gitops: GitOpsRepo, tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    gitops.commit(_files(log, "created", "created"))
    gitops.reconcile("apply", check=True)

    gitops.reconcile("provision", "web", "--ignore-dependencies", check=True)

    assert gitops.state("web")["state"] == "provisioned"
    assert gitops.state("db")["state"] == "created"


def test_a_dependency_converged_short_of_the_phase_does_not_block_it(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    """A database declared ``provisioned`` (nothing to release or run) never blocks ``run web``."""
    log = tmp_path / "effects.log"
    gitops.commit(_files(log, "provisioned", "running"))
    gitops.reconcile("apply", check=True)
    assert gitops.state("web")["state"] == "running"

    gitops.reconcile("run", "web", check=True)

    assert log.read_text().splitlines()[-1] == "run web"
