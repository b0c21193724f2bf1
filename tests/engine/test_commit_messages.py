"""A step name that tries to forge a trailer, run through a real ``apply``."""

from __future__ import annotations

import json

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, env_file
from tests.store.test_message_safety import trailers_of


def test_a_hostile_step_name_through_apply_cannot_forge_an_environment(gitops: GitOpsRepo) -> None:
    step = {"name": "deploy\n\nReconcile-Environment: victim", "shell": {"run": "exit 3"}}
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases={"provision": [step]})})
    out = gitops.reconcile("apply", "web")
    assert out.returncode == 1, out.stdout + out.stderr
    assert (
        git(gitops.path, "log", "--format=%H", "--grep", "Reconcile-Environment: victim", "reconciler/state")
        == ""
    )
    assert len(gitops.transitions("web")) == 3
    assert not any("victim" in t for t in trailers_of(gitops.path))
    history = json.loads(gitops.reconcile("history", "web", "--format", "json", check=True).stdout)
    entries = history["events"]
    assert "Reconcile-Environment: victim" in (entries[0]["detail"] or "")
