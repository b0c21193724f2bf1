"""Temporary GitOps repositories built with the git CLI, as a user would."""

from __future__ import annotations

from pathlib import Path

import pygit2

from reconciler.desired.loader import load_snapshot
from reconciler.desired.resolved import DesiredSnapshot
from tests.conftest import git

BLUEPRINT = """\
apiVersion: reconciler/v1
kind: Blueprint
metadata: {name: tracker}
spec:
  vars: {http_port: 8000, region: eu}
  phases:
    provision: [{tofu: {module: infra/vm, vars: {name: "{{ environment.name }}"}}}]
    configure: [{ansible: {playbook: ansible/site.yml}}]
    release: [{shell: {run: ./scripts/release.sh}}]
    run: [{shell: {run: ./scripts/start.sh}}]
    destroy: [{tofu: {module: infra/vm, action: destroy}}]
    check: [{http: {url: "http://{{ outputs.ip }}:{{ vars.http_port }}/health"}}]
"""


def env_yaml(name: str, *, state: str = "running", extra: str = "") -> str:
    return (
        "apiVersion: reconciler/v1\nkind: Environment\n"
        f"metadata:\n  name: {name}\nspec:\n  desiredState: {state}\n  blueprint: tracker\n{extra}"
    )


BASE_FILES: dict[str, str | bytes] = {
    "blueprints/tracker.yaml": BLUEPRINT,
    "environments/web.yaml": env_yaml("web"),
    "environments/db.yaml": env_yaml("db"),
    "infra/vm/main.tf": 'resource "null_resource" "vm" {}\n',
    "ansible/site.yml": "- hosts: all\n  tasks: []\n",
    "scripts/release.sh": "#!/bin/sh\necho release\n",
    "scripts/start.sh": "#!/bin/sh\necho start\n",
}


def write(repo: Path, files: dict[str, str | bytes | None]) -> None:
    for path, content in files.items():
        target = repo / path
        if content is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def commit(repo: Path, files: dict[str, str | bytes | None], message: str = "change") -> str:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def make_repo(tmp_path: Path, files: dict[str, str | bytes] | None = None, *, base: bool = True) -> Path:
    repo = tmp_path / "gitops"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, {**(BASE_FILES if base else {}), **(files or {})}, "initial")
    return repo


def load(repo: Path, rev: str = "HEAD") -> DesiredSnapshot:
    return load_snapshot(pygit2.Repository(str(repo)), rev)


def messages(snapshot: DesiredSnapshot) -> list[str]:
    return [str(p) for p in snapshot.problems]
