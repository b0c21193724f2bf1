"""SPEC 4.2: an output that holds a ``fromEnv`` secret is stored as ``[REDACTED]`` on the state branch."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, env_file

BINARY = shutil.which("tofu") or shutil.which("terraform")
pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(BINARY is None, reason="neither tofu nor terraform is on PATH"),
]

SECRET = "hunter2-Zq81"

MODULE = """\
variable "password" {
  type = string
}

output "dsn" {
  value = "postgres://app:${var.password}@db:5432/app"
}

output "host" {
  value = "db"
}
"""


def test_a_tofu_output_echoing_a_secret_is_redacted_on_the_state_branch(gitops: GitOpsRepo) -> None:
    phases = {
        "provision": [
            {
                "name": "database",
                "tofu": {"module": "infra/db", "vars": {"password": {"fromEnv": "DB_PASSWORD"}}},
            }
        ],
        # A later phase still gets the output, redacted, never the secret through it.
        "configure": [{"shell": {"run": 'test "$RECONCILE_OUTPUT_DSN" = "[REDACTED]"'}}],
    }
    gitops.commit(
        {
            "infra/db/main.tf": MODULE,
            "environments/web.yaml": env_file("web", "configured", phases=phases),
        }
    )

    gitops.reconcile("apply", env={"DB_PASSWORD": SECRET}, check=True)

    state = json.loads(git(gitops.path, "show", "reconciler/state:web/state.json"))
    assert state["state"] == "configured"
    assert state["outputs"] == {"dsn": "[REDACTED]", "host": "db"}
    assert SECRET not in git(gitops.path, "log", "-p", "--all")
    logs = "".join(p.read_text() for p in (gitops.data / "web").rglob("*.log"))
    assert SECRET not in logs
