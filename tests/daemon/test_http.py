"""``/healthz``, ``/metrics`` and ``POST /hooks/github`` on a running daemon."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reconciler.daemon.webhook import signature_for
from tests.daemon.kit import Daemons, Server, shell_env, state_is, transitions, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SECRET = "s3cret-for-tests"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()


def _hook(signature: str | None) -> dict[str, str]:
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return headers


def test_webhook_with_wrong_or_missing_signature_is_refused_and_a_correct_one_triggers(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    # No watch and a long interval: only the webhook can wake this daemon.
    daemon = daemons.start(
        server.bare, "--no-watch", "--interval", "10m", env={"RECONCILE_WEBHOOK_SECRET": SECRET}
    )
    server.write("environments/web.yaml", shell_env("web", tmp_path / "log"))
    server.push("add web")

    assert daemon.post("/hooks/github", PUSH, _hook(None))[0] == 403
    status, body = daemon.post("/hooks/github", PUSH, _hook(signature_for("wrong", PUSH)))
    assert status == 403
    assert "does not match" in body
    time.sleep(1.0)
    assert transitions(server.bare) == []

    assert daemon.post("/hooks/github", PUSH, _hook(signature_for(SECRET, PUSH)))[0] == 202
    wait_for("web running", state_is(server.bare, "web", "running"), 20)
    metrics = daemon.get("/metrics")[1]
    assert 'reconcile_webhook_deliveries_total{status="403"} 2' in metrics
    assert 'reconcile_triggers_total{source="webhook"} 1' in metrics


def test_webhook_without_a_configured_secret_is_refused(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    daemon = daemons.start(
        server.bare, "--no-watch", "--interval", "10m", env={"RECONCILE_WEBHOOK_SECRET": ""}
    )
    server.write("environments/web.yaml", shell_env("web", tmp_path / "log"))
    server.push("add web")
    status, body = daemon.post("/hooks/github", PUSH, _hook(signature_for("anything", PUSH)))
    assert status == 503
    assert "RECONCILE_WEBHOOK_SECRET is not set" in body
    time.sleep(1.0)
    assert transitions(server.bare) == []


def test_healthz_and_metrics_answer_with_the_documented_names(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    daemon = daemons.start(server.bare)
    server.write("environments/web.yaml", shell_env("web", tmp_path / "log"))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 20)

    assert daemon.get("/healthz") == (200, "ok\n")
    status, metrics = daemon.get("/metrics")
    assert status == 200
    for line in (
        'reconcile_reconciles_total{result="converged"}',
        'reconcile_transitions_total{phase="provision",result="succeeded"} 1',
        'reconcile_phase_duration_seconds_count{phase="run",result="succeeded"} 1',
        'reconcile_environments{state="running"} 1',
        "reconcile_queue_depth 0",
        "reconcile_last_fetch_success_timestamp_seconds ",
        "# TYPE reconcile_phase_duration_seconds histogram",
    ):
        assert line in metrics, line
    assert daemon.get("/nowhere")[0] == 404


def _converged_count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('reconcile_reconciles_total{result="converged"}'):
            return float(line.split()[-1])
    return 0.0


def test_an_idle_daemon_stays_idle_with_dependent_environments(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    # Regression: two converged environments related by dependsOn woke each other forever.
    daemon = daemons.start(server.bare)
    web = shell_env("web", tmp_path / "log").replace("spec:\n", "spec:\n  dependsOn: [db]\n", 1)
    server.write("environments/db.yaml", shell_env("db", tmp_path / "log"))
    server.write("environments/web.yaml", web)
    server.push("add db and web")
    wait_for("web running", state_is(server.bare, "web", "running"), 30)
    time.sleep(1.0)
    before = _converged_count(daemon.get("/metrics")[1])
    time.sleep(2.0)
    after = _converged_count(daemon.get("/metrics")[1])
    assert after - before <= 2, f"{after - before} reconciles of converged environments while idle"
