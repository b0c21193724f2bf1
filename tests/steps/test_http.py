"""HTTP steps against a real server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.domain.values import ErrorKind
from reconciler.steps import LocalStepRunner
from tests.steps.conftest import ContextFactory, step

runner = LocalStepRunner()


class Health:
    """What the server answers: ``status`` until ``healthy_at`` (monotonic), then 200."""

    def __init__(self, status: int = 200, healthy_after: float | None = None) -> None:
        self.status = status
        self.healthy_at = None if healthy_after is None else time.monotonic() + healthy_after
        self.requests = 0


@pytest.fixture
def server() -> Iterator[tuple[str, Health]]:
    health = Health()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            health.requests += 1
            status = health.status
            if health.healthy_at is not None and time.monotonic() >= health.healthy_at:
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health", health
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_healthy_service_passes_at_once(make_ctx: ContextFactory, server: tuple[str, Health]) -> None:
    url, health = server
    outcome = runner.run(step({"http": {"url": url}}), make_ctx())
    assert outcome.ok
    assert outcome.summary == f"GET {url}: got 200"
    assert outcome.step == f"http {url}"
    assert health.requests == 1


def test_a_wrong_status_until_the_timeout_is_a_failed_health_check(
    make_ctx: ContextFactory, server: tuple[str, Health]
) -> None:
    url, health = server
    health.status = 503
    outcome = runner.run(step({"http": {"url": url, "timeoutSeconds": 1.2}}), make_ctx())
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.HEALTH_CHECK
    assert outcome.summary.startswith(f"GET {url}: got 503, expected 200 (after 1.")
    assert 2 <= health.requests <= 5


def test_a_service_that_turns_healthy_passes(make_ctx: ContextFactory, server: tuple[str, Health]) -> None:
    url, health = server
    health.status = 502
    health.healthy_at = time.monotonic() + 1.0
    outcome = runner.run(step({"http": {"url": url, "timeoutSeconds": 10}}), make_ctx())
    assert outcome.ok, outcome.summary
    assert 1.0 <= outcome.duration_seconds < 3
    assert health.requests >= 2


def test_the_expected_status_may_be_anything(make_ctx: ContextFactory, server: tuple[str, Health]) -> None:
    url, health = server
    health.status = 404
    assert runner.run(step({"http": {"url": url, "expectStatus": 404}}), make_ctx()).ok


def test_a_refused_connection_is_reported(make_ctx: ContextFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    outcome = runner.run(step({"http": {"url": url, "timeoutSeconds": 0.6}}), make_ctx())
    assert outcome.error_kind is ErrorKind.HEALTH_CHECK
    assert outcome.summary.startswith(f"GET {url}: ")
    assert "refused" in outcome.summary.lower()
    assert "expected 200" in outcome.summary


def test_the_phase_deadline_cuts_a_check_short_as_a_timeout(
    make_ctx: ContextFactory, server: tuple[str, Health]
) -> None:
    url, health = server
    health.status = 503
    outcome = runner.run(step({"http": {"url": url, "timeoutSeconds": 30}}), make_ctx(timeout=0.8))
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert outcome.duration_seconds < 3


def test_cancel_interrupts_polling(make_ctx: ContextFactory, server: tuple[str, Health]) -> None:
    url, health = server
    health.status = 503
    cancel = threading.Event()
    timer = threading.Timer(0.4, cancel.set)
    timer.start()
    try:
        outcome = runner.run(step({"http": {"url": url, "timeoutSeconds": 30}}), make_ctx(cancel=cancel))
    finally:
        timer.cancel()
    assert outcome.error_kind is ErrorKind.INTERRUPTED
    assert outcome.duration_seconds < 3


def test_a_secret_in_the_url_is_redacted(make_ctx: ContextFactory, server: tuple[str, Health]) -> None:
    url, health = server
    health.status = 500
    lines: list[str] = []
    outcome = runner.run(
        step({"http": {"url": f"{url}?token=sekr1t", "timeoutSeconds": 0.3}}),
        make_ctx(secrets=frozenset({"sekr1t"}), log=lines.append),
    )
    assert not outcome.ok
    assert "sekr1t" not in outcome.summary + outcome.step + "".join(outcome.error_chain)
    assert lines
    assert all("sekr1t" not in line for line in lines)


def test_a_file_url_is_refused(make_ctx: ContextFactory) -> None:
    outcome = runner.run(step({"http": {"url": "file:///etc/passwd"}}), make_ctx())
    assert outcome.error_kind is ErrorKind.CONFIGURATION
