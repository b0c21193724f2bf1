"""No ``fromEnv`` secret reaches a response: outputs built from one, a failing step that prints one."""

from __future__ import annotations

import shutil

import httpx
import pytest

from tests.engine.conftest import GitOpsRepo, env_file
from tests.web.conftest import serve

BINARY = shutil.which("tofu") or shutil.which("terraform")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(BINARY is None, reason="neither tofu nor terraform is on PATH"),
]

SECRET = "hunter2-Zq81-web"

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


def test_no_response_carries_a_from_env_secret(gitops: GitOpsRepo) -> None:
    phases = {
        "provision": [
            {
                "name": "database",
                "tofu": {"module": "infra/db", "vars": {"password": {"fromEnv": "DB_PASSWORD"}}},
            }
        ],
        "configure": [
            {
                "name": "leaky step",
                "shell": {
                    "run": 'echo "connecting with $PW"; exit 1',
                    "env": {"PW": {"fromEnv": "DB_PASSWORD"}},
                },
            }
        ],
    }
    gitops.commit(
        {"infra/db/main.tf": MODULE, "environments/web.yaml": env_file("web", "configured", phases=phases)}
    )
    gitops.reconcile("apply", env={"DB_PASSWORD": SECRET})
    server = serve(gitops)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            responses = [
                client.get(path)
                for path in (
                    "/api/v1/environments",
                    "/api/v1/environments/web",
                    "/api/v1/environments/web/history",
                )
            ]
    finally:
        server.stop()

    for response in responses:
        assert response.status_code == 200
        assert SECRET not in response.text
    web = responses[1].json()["environment"]
    assert web["outputs"] == {"dsn": "[REDACTED]", "host": "db"}
    assert web["failure"]["failedStep"] == "leaky step"
    assert "connecting with" in web["failure"]["trace"]["content"]  # the trace is shown, the secret is not
