"""``validate`` warns for a ``tofu`` module without a remote backend when replicas may share the work."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.desired.backends import hcl_backends, json_backends
from tests.desired.helpers import commit, make_repo, write

runner = CliRunner()

WITH_REMOTE = "apiVersion: reconciler/v1\nkind: Config\nremote: origin\n"
S3 = 'terraform {\n  backend "s3" {\n    bucket = "state"\n    key    = "vm/${terraform.workspace}"\n  }\n}\n'
WARNING = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): warning: (?P<message>.+)$")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (S3, ["s3"]),
        ('terraform {\n  required_version = ">= 1.5"\n  backend "local" {}\n}\n', ["local"]),
        ('terraform {\n  cloud {\n    organization = "acme"\n  }\n}\n', ["cloud"]),
        ('terraform { backend "gcs" { bucket = "b" } }', ["gcs"]),
        ('terraform {\n  required_providers {\n    null = { source = "hashicorp/null" }\n  }\n}\n', []),
        ('# terraform { backend "s3" {} }\n// backend "s3" {}\n/* terraform {\n backend "s3" {} } */\n', []),
        ('resource "null_resource" "vm" {\n  backend "s3" {}\n}\n', []),  # not in a terraform block
        ('locals {\n  doc = <<EOT\nterraform {\n  backend "s3" {}\n}\nEOT\n}\n', []),
        ('locals { s = "terraform { backend \\"s3\\" {} } ${ {a = "}"}.a }" }\nterraform {\n}\n', []),
        ('terraform = {\n  backend = "s3"\n}\n', []),  # an attribute, not a block
        ('terraform {\n  backend "pg" {\n    conn_str = "postgres://db/${lower("X")}"\n  }\n}\n', ["pg"]),
        ('locals {\n  x = [for s in ["a"] : { b = s }]\n}\nterraform {\n  backend "http" {}\n}\n', ["http"]),
    ],
)
def test_hcl_backends(text: str, expected: list[str]) -> None:
    assert hcl_backends(text) == expected


def test_json_backends() -> None:
    assert json_backends('{"terraform": {"backend": {"s3": {"bucket": "b"}}}}') == ["s3"]
    assert json_backends('{"terraform": [{"backend": [{"local": {}}]}]}') == ["local"]
    assert json_backends('{"terraform": {"cloud": {"organization": "acme"}}}') == ["cloud"]
    assert json_backends('{"resource": {}}') == []
    assert json_backends("not json") == []


def _warnings(output: str) -> list[re.Match[str]]:
    return [m for line in output.splitlines() if (m := WARNING.match(line))]


def test_validate_warns_for_a_module_without_a_backend_when_remote_is_set(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"reconciler.yaml": WITH_REMOTE})
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 0, result.output  # a warning, not an error
    found = _warnings(result.stdout)
    assert len(found) == 2, result.stdout  # the blueprint's provision and destroy steps
    assert all(m["path"] == "blueprints/tracker.yaml" for m in found)
    lines = (repo / "blueprints" / "tracker.yaml").read_text().splitlines()
    for m in found:
        line, col = int(m["line"]), int(m["col"])
        assert lines[line - 1][col - 1 :].startswith("infra/vm"), (line, col)  # points at the module
        assert "'infra/vm' declares no backend" in m["message"]
        assert "remote: origin" in m["message"]
    assert "2 warning(s)" in result.stderr and result.stderr.startswith("ok: ")


def test_no_warning_without_remote(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "warning" not in result.stderr


def test_a_remote_backend_in_any_tf_file_of_the_module_silences_it_and_local_does_not(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"reconciler.yaml": WITH_REMOTE})
    commit(repo, {"infra/vm/backend.tf": S3})
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 0 and result.stdout == "", result.output

    commit(repo, {"infra/vm/backend.tf": 'terraform {\n  backend "local" { path = "x.tfstate" }\n}\n'})
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    found = _warnings(result.stdout)
    assert result.exit_code == 0 and len(found) == 2
    assert 'declares only backend "local"' in found[0]["message"]

    # At the commit checked: the first one, without a backend, warns; so does a work tree that deleted it.
    commit(
        repo,
        {"infra/vm/backend.tf": None, "infra/vm/backend.tf.json": '{"terraform": {"backend": {"s3": {}}}}'},
    )
    assert runner.invoke(app, ["validate", "--repo", str(repo)]).stdout == ""
    assert (
        len(_warnings(runner.invoke(app, ["validate", "--repo", str(repo), "--rev", "HEAD~3"]).stdout)) == 2
    )
    write(repo, {"infra/vm/backend.tf.json": None})
    assert len(_warnings(runner.invoke(app, ["validate", "--repo", str(repo), "--worktree"]).stdout)) == 2


def test_an_environments_own_tofu_step_is_warned_in_its_file_and_json_says_warning(tmp_path: Path) -> None:
    own = (
        "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: solo}\nspec:\n"
        "  desiredState: running\n  phases:\n    provision:\n      - tofu:\n          module: ./infra/net\n"
    )
    repo = make_repo(
        tmp_path,
        {
            "reconciler.yaml": WITH_REMOTE,
            "environments/solo.yaml": own,
            "infra/net/main.tf": 'resource "null_resource" "net" {}\n',
            "infra/vm/backend.tf": S3,
        },
    )
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 0
    assert [m.group(0).split(": warning:")[0] for m in _warnings(result.stdout)] == [
        "environments/solo.yaml:9:19"
    ]

    data = json.loads(runner.invoke(app, ["validate", "--repo", str(repo), "--format", "json"]).stdout)
    assert data["valid"] is True
    rows = data["problems"]
    assert [(r["severity"], r["path"], r["environment"]) for r in rows] == [
        ("warning", "environments/solo.yaml", "solo")
    ]


def test_warnings_come_after_errors_and_leave_the_exit_code_to_them(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"reconciler.yaml": WITH_REMOTE, "environments/bad.yaml": "kind: nope\n"})
    result = runner.invoke(app, ["validate", "--repo", str(repo)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("environments/bad.yaml:")
    assert len(_warnings(result.stdout)) == 2
    assert "2 warning(s)" in result.stderr
