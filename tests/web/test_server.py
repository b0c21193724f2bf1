"""The event stream, the token rule, the OpenAPI document and the pages, over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from reconciler.web.app import Endpoints, create_app
from reconciler.web.openapi import document
from tests.engine.conftest import GitOpsRepo
from tests.web.conftest import Served, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _read_events(
    url: str, headers: dict[str, str], found: list[dict[str, Any]], ready: threading.Event
) -> None:
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=30)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("retry:"):
                ready.set()
            elif line.startswith(("event:", "id:", "data:")):
                key, _, value = line.partition(":")
                event[key] = value.strip()
            elif line == "" and "data" in event:
                found.append(event)
                event = {}
                if len(found) >= 2:
                    return


def test_the_event_stream_sends_each_new_state_branch_commit(fleet: GitOpsRepo, served: Served) -> None:
    found: list[dict[str, Any]] = []
    ready = threading.Event()
    reader = threading.Thread(
        target=_read_events, args=(f"{served.url}/api/v1/events", {}, found, ready), daemon=True
    )
    reader.start()
    assert ready.wait(10)
    fleet.commit(
        {
            "environments/web.yaml": fleet.path.joinpath("environments/web.yaml")
            .read_text()
            .replace('"running"', '"destroyed"')
        }
    )

    fleet.reconcile("apply", "web", check=True)

    reader.join(timeout=20)
    assert [(e["event"], json.loads(e["data"])["to"]) for e in found] == [
        ("transition", "destroying"),
        ("transition", "destroyed"),
    ]
    data = json.loads(found[1]["data"])
    assert data["formatVersion"] == 1
    assert (data["environment"], data["from"]) == ("web", "destroying")
    assert found[1]["id"] == data["commit"]  # a reconnecting EventSource resumes after it
    history = served.json("/api/v1/environments/web/history?limit=1")["events"]
    assert history[0]["commit"] == data["commit"]


def test_a_reconnecting_stream_resumes_after_its_last_event(fleet: GitOpsRepo, served: Served) -> None:
    before = served.json("/api/v1/environments")["stateCommit"]
    fleet.commit(
        {
            "environments/web.yaml": fleet.path.joinpath("environments/web.yaml")
            .read_text()
            .replace('"running"', '"destroyed"')
        }
    )
    fleet.reconcile("apply", "web", check=True)  # while no client was listening
    found: list[dict[str, Any]] = []

    _read_events(f"{served.url}/api/v1/events", {"Last-Event-ID": before}, found, threading.Event())

    assert [json.loads(e["data"])["to"] for e in found] == ["destroying", "destroyed"]


def test_openapi_describes_every_route_the_app_serves(fleet: GitOpsRepo, served: Served) -> None:
    described = served.json("/api/openapi.json")
    app: Any = create_app(Endpoints(healthy=lambda: (True, "ok"), metrics=str, fleet=object()))  # type: ignore[arg-type]
    while not hasattr(app, "routes"):
        app = app.app  # through the middlewares
    paths = {r.path for r in app.routes if isinstance(r, Route)} | {
        f"{r.path}/{{path}}" for r in app.routes if isinstance(r, Mount)
    }

    assert described["openapi"].startswith("3.")
    assert paths == set(described["paths"])
    for spec_path in (
        "/api/v1/environments",
        "/api/v1/environments/{name}",
        "/api/v1/environments/{name}/history",
        "/api/v1/events",
    ):
        assert spec_path in described["paths"]
    assert described == document()


def test_pages_are_served_with_a_strict_content_security_policy(served: Served) -> None:
    for path in ("/", "/environments/web"):
        response = served.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        assert response.headers["x-content-type-options"] == "nosniff"
    assert served.get("/static/no-such-file.js").status_code == 404
    assert served.get("/api/v1/environments").headers["x-content-type-options"] == "nosniff"


def test_on_a_non_loopback_address_every_endpoint_but_healthz_and_the_webhook_needs_the_token(
    fleet: GitOpsRepo,
) -> None:
    server = serve(fleet, host="0.0.0.0", token="right-token-42")
    base = f"http://127.0.0.1:{server.port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for path in ("/api/v1/environments", "/api/v1/environments/web", "/api/openapi.json", "/metrics"):
                refused = client.get(path)
                assert refused.status_code == 401, path
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert client.get(path, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
                assert client.get(path, headers={"Authorization": "Bearer right-token-42"}).status_code == 200
            assert client.get("/healthz").status_code == 200
            assert (
                client.post("/hooks/github", content=b"{}").status_code == 503
            )  # serve: no webhook, no token asked
            assert client.get("/api/v1/environments?token=right-token-42").status_code == 401  # header only
            with client.stream("GET", "/api/v1/events?token=right-token-42") as stream:
                assert stream.status_code == 200  # EventSource cannot send a header
            assert client.get("/api/v1/events?token=wrong").status_code == 401
    finally:
        server.stop()


def _reconcile(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("command", ["serve", "daemon"])
def test_a_non_loopback_address_without_a_token_is_refused_at_start(gitops: GitOpsRepo, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILE_API_TOKEN"}
    proc = _reconcile(
        command, "--repo", str(gitops.path), "--data-dir", str(gitops.data), "--listen", "0.0.0.0:0", env=env
    )

    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 2, out
    assert "RECONCILE_API_TOKEN" in out
    assert "0.0.0.0 is not a loopback address" in out


def test_reconcile_serve_shows_the_state_branch_without_reconciling(
    fleet: GitOpsRepo, tmp_path: Path
) -> None:
    before = fleet.transitions()
    fleet.commit(
        {
            "environments/web.yaml": fleet.path.joinpath("environments/web.yaml")
            .read_text()
            .replace('"running"', '"destroyed"')
        }
    )
    proc = _reconcile(
        "serve",
        "--repo",
        str(fleet.path),
        "--data-dir",
        str(fleet.data),
        "--listen",
        "127.0.0.1:0",
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        with httpx.Client(base_url=f"http://127.0.0.1:{match.group(1)}", timeout=10) as client:
            rows = {r["name"]: r for r in client.get("/api/v1/environments").json()["environments"]}
            time.sleep(1.0)  # a daemon would have started destroying by now
        assert (rows["web"]["observed"], rows["web"]["desired"], rows["web"]["converged"]) == (
            "running",
            "destroyed",
            False,
        )
        assert rows["web"]["verdict"] == "changes"
        assert fleet.transitions() == before
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
