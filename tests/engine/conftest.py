"""GitOps repositories for engine tests, built with the git CLI as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

from tests.conftest import git

STATE_REF = "refs/heads/reconciler/state"


def env_file(
    name: str, desired: str = "running", phases: Mapping[str, object] | None = None, **spec: object
) -> str:
    body: dict[str, object] = {"desiredState": desired, **spec}
    if phases is not None:
        body["phases"] = phases
    doc = {"apiVersion": "reconciler/v1", "kind": "Environment", "metadata": {"name": name}, "spec": body}
    return json.dumps(doc, indent=2)  # JSON is YAML


def counting_phases(log: Path, extra: Mapping[str, str] | None = None) -> dict[str, object]:
    """Every phase appends '<phase> <env>' to ``log``: the side-effect counter."""
    phases: dict[str, object] = {}
    for phase in ("provision", "configure", "release", "run", "destroy"):
        cmd = f'echo "{phase} $RECONCILE_ENVIRONMENT" >> {log}'
        if extra and phase in extra:
            cmd += f" && {extra[phase]}"
        phases[phase] = [{"name": f"{phase} step", "shell": {"run": cmd}}]
    return phases


@dataclass
class GitOpsRepo:
    path: Path
    data: Path

    def write(self, files: Mapping[str, str]) -> None:
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))

    def commit(self, files: Mapping[str, str], message: str = "change") -> str:
        self.write(files)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD").strip()

    def remove(self, rel: str, message: str = "remove") -> None:
        git(self.path, "rm", "-q", rel)
        git(self.path, "commit", "-q", "-m", message)

    def reconcile(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``reconcile`` command against this repository."""
        full_env = {**os.environ, **(env or {})}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                *args,
                "--repo",
                str(self.path),
                # plan and validate read no local data
                *([] if {"plan", "validate"} & set(args) else ["--data-dir", str(self.data)]),
            ],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=600,
            check=False,
        )
        if check and out.returncode != 0:
            raise AssertionError(
                f"reconcile {' '.join(args)} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
            )
        return out

    def command(self, *args: str) -> list[str]:
        """The argv of ``reconcile ARGS`` on this repository, for tests that start it in the background."""
        return [
            sys.executable,
            "-m",
            "reconciler",
            *args,
            "--repo",
            str(self.path),
            "--data-dir",
            str(self.data),
        ]

    def transitions(self, name: str | None = None) -> list[str]:
        """Subjects of the state branch, oldest first, via the git CLI (none before the branch exists)."""
        if STATE_REF not in pygit2.Repository(str(self.path)).references:
            return []
        args = ["log", "--reverse", "--format=%s", "reconciler/state"]
        if name:
            args += ["--grep", f"Reconcile-Environment: {name}$"]
        return [line for line in git(self.path, *args).splitlines() if line]

    def state(self, name: str) -> dict[str, object]:
        repo = pygit2.Repository(str(self.path))
        commit = repo.references[STATE_REF].peel(pygit2.Commit)
        blob = repo[(commit.tree / name / "state.json").id]
        assert isinstance(blob, pygit2.Blob)
        result: dict[str, object] = json.loads(blob.data)
        return result


@pytest.fixture
def gitops(tmp_path: Path) -> GitOpsRepo:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = GitOpsRepo(path=path, data=tmp_path / "data")
    repo.commit(
        {"reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\n", ".gitignore": "data/\n"}, "init"
    )
    return repo
