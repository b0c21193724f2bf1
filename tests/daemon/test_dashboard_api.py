"""The daemon serves the dashboard's API on --listen: the fleet as it converges, and its events live."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.daemon.kit import Daemons, Server, shell_env, state_is, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_the_daemon_serves_the_fleet_and_streams_its_transitions(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    daemon = daemons.start(server.bare)
    seen: list[tuple[str, str]] = []
    listening = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", daemon.url("/api/v1/events"), timeout=httpx.Timeout(60, read=60)) as stream:
            for line in stream.iter_lines():
                if line.startswith("retry:"):
                    listening.set()
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:"))
                    seen.append((event["environment"], event["to"]))
                    if event["to"] == "running":
                        return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert listening.wait(10)
    server.write("environments/web.yaml", shell_env("web", tmp_path / "log"))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 30)
    reader.join(timeout=10)

    assert seen[0] == ("web", "created")
    assert seen[-1] == ("web", "running")
    assert len(seen) == 9
    status, body = daemon.get("/api/v1/environments")
    assert status == 200
    fleet = json.loads(body)
    assert fleet["counts"] == {"running": 1}
    assert fleet["environments"][0]["converged"] is True
    status, page = daemon.get("/")
    assert status == 200
    assert "<html" in page.lower()
