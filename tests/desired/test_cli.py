"""``reconcile validate``, ``schema`` and ``init`` as a user runs them: output and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pygit2
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.desired.loader import load_snapshot
from tests.conftest import git
from tests.desired.helpers import commit, make_repo

runner = CliRunner()


def test_validate_exits_0_on_a_valid_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_validate_exits_1_and_prints_each_problem(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path,
        {"environments/bad.yaml": "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: other}\n"},
    )
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines == ["environments/bad.yaml:1:1: missing required field `spec`"]


def test_validate_json_lists_problems(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"environments/bad.yaml": "[\n"})
    result = runner.invoke(app, ["validate", "--repo", str(repo), "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["formatVersion"] == 1 and data["valid"] is False and data["invalidEnvironments"] == ["bad"]
    rows = data["problems"]
    assert rows[0]["path"] == "environments/bad.yaml"
    assert rows[0]["environment"] == "bad"
    assert rows[0]["line"] >= 1


def test_validate_rev_and_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    commit(repo, {"environments/web.yaml": "kind: nope\n"})
    assert runner.invoke(app, ["validate", "--repo", str(repo)]).exit_code == 1
    assert runner.invoke(app, ["validate", "--repo", str(repo), "--rev", "HEAD~1"]).exit_code == 0
    (repo / "environments" / "web.yaml").unlink()
    assert runner.invoke(app, ["validate", "--repo", str(repo), "--worktree"]).exit_code == 0


def test_validate_unknown_revision_and_not_a_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    result = runner.invoke(app, ["validate", "--repo", str(repo), "--rev", "nope"])
    assert result.exit_code == 1
    assert "does not name a commit" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["validate", "--repo", str(empty)]).exit_code == 1


def test_validate_usage_error_exits_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["validate", "--format", "yaml"]).exit_code == 2


def test_schema_is_json_schema_with_yaml_field_names() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"])
    spec = schema["$defs"]["EnvironmentSpec"]["properties"]
    assert "desiredState" in spec
    assert "dependsOn" in spec


def test_init_scaffolds_a_repository_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / ".git").is_dir()
    assert "data/" in (target / ".gitignore").read_text()
    assert os.access(target / "scripts" / "phase.sh", os.X_OK)
    assert runner.invoke(app, ["validate", "--repo", str(target), "--worktree"]).exit_code == 0
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "scaffold")
    assert runner.invoke(app, ["validate", "--repo", str(target)]).exit_code == 0
    snapshot = load_snapshot(pygit2.Repository(str(target)))
    example = snapshot.environments["example"]
    assert example.steps("run")[0].shell is not None
    # The scaffold's schema line points at a schema file that exists.
    first = (target / "environments" / "example.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../.reconciler/environment.schema.json"
    assert json.loads((target / ".reconciler" / "environment.schema.json").read_text())["title"]


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "existing"
    target.mkdir()
    (target / "reconciler.yaml").write_text("mine\n")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.stderr
    assert (target / "reconciler.yaml").read_text() == "mine\n"
    assert not (target / "environments").exists()


def test_init_in_an_existing_repository_does_not_reinitialise(tmp_path: Path) -> None:
    target = tmp_path / "repo"
    target.mkdir()
    git(target, "init", "-q", "-b", "trunk")
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0
    assert "initialized" not in result.stdout
    assert git(target, "symbolic-ref", "HEAD").strip() == "refs/heads/trunk"


def test_validate_names_a_yml_file_that_would_be_ignored(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"environments/web.yml": "apiVersion: reconciler/v1\n"})
    for args in (["validate", "--repo", str(repo)], ["validate", "--worktree", "--repo", str(repo)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert result.stdout.splitlines() == [
            "environments/web.yml:1:1: this file is ignored: only `.yaml` files are read; "
            "rename it to web.yaml"
        ]
