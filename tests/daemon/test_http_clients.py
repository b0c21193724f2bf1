"""The daemon's HTTP server against clients that stall, drip, lie or vanish: real sockets on loopback.

A half-sent request is dropped after the read timeout, a dripped one at the
request deadline; a client that lies about its body or disconnects costs one
log line at most, never a traceback, and the server keeps answering.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from reconciler.daemon.webhook import HookVerdict
from reconciler.web.app import Endpoints, create_app
from reconciler.web.server import WebServer
from tests.daemon.kit import Daemons, Server, wait_for

pytestmark = pytest.mark.timeout(60)

HOOKED: list[bytes] = []


def _hook(headers: dict[str, str], body: bytes) -> HookVerdict:
    HOOKED.append(body)
    return HookVerdict(202, "queued")


@pytest.fixture
def http() -> Iterator[WebServer]:
    server = WebServer(
        create_app(Endpoints(healthy=lambda: (True, "ok"), metrics=lambda: "m 1\n", hook=_hook)),
        "127.0.0.1",
        0,
        read_timeout=0.5,
        request_deadline=2.0,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed client or a proxy giving up does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _get_healthz(port: int) -> bytes:
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return _read_all(sock)


def test_a_half_sent_request_is_dropped(http: WebServer) -> None:
    with _connect(http.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line

        assert _read_all(sock) == b""  # closed by the server, unanswered

    assert _get_healthz(http.port).startswith(b"HTTP/1.1 200")


def test_an_idle_connection_is_dropped(http: WebServer) -> None:
    with _connect(http.port) as sock:
        assert _read_all(sock) == b""


def test_a_request_dripped_byte_by_byte_is_cut_off_at_the_deadline(http: WebServer) -> None:
    with _connect(http.port) as sock:
        stop = threading.Event()

        def drip() -> None:
            # Each byte within the read timeout: only the whole-request deadline can end this.
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.1):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            assert _read_all(sock) == b""
        finally:
            stop.set()
            dripper.join(timeout=5)


def test_a_body_shorter_than_its_content_length_is_refused_not_passed_on(http: WebServer) -> None:
    HOOKED.clear()
    with _connect(http.port) as sock:
        sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"{}" * 5)
        sock.shutdown(socket.SHUT_WR)  # the client says it is done: 10 bytes of 1000

        response = _read_all(sock)

    assert response.startswith(b"HTTP/1.1 400")
    assert b"body shorter than its Content-Length (10 of 1000 bytes)" in response
    assert HOOKED == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{}",
        b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["lying-content-length", "gone-before-the-response", "gone-before-metrics"],
)
def test_a_client_that_vanishes_leaves_no_traceback(
    http: WebServer,
    request_bytes: bytes,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="reconciler.web")
    for _ in range(20):
        sock = _connect(http.port)
        sock.sendall(request_bytes)
        _reset(sock)
    time.sleep(0.5)  # let the handlers meet the reset

    assert _get_healthz(http.port).startswith(b"HTTP/1.1 200")
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.exc_info]
    assert all("\n" not in r.getMessage() for r in caplog.records)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_daemon_logs_no_traceback_for_clients_that_lie_or_vanish(
    server: Server, daemons: Daemons
) -> None:
    daemon = daemons.start(server.bare)
    for _ in range(10):
        sock = _connect(daemon.port)
        sock.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{}")
        _reset(sock)
        sock = _connect(daemon.port)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        _reset(sock)

    wait_for("the daemon still healthy", lambda: daemon.get("/healthz")[0] == 200, 10)
    time.sleep(0.5)
    output = daemon.output()
    assert "Traceback" not in output
    assert output.count("http client went away") <= 20  # one line per vanished client at most


def test_the_deadline_is_for_the_request_to_arrive_not_for_the_answer() -> None:
    """A request that arrived in time is answered in full, however long the answer takes."""

    def slow_metrics() -> str:
        time.sleep(1.5)
        return "m 1\n"

    server = WebServer(
        create_app(Endpoints(healthy=lambda: (True, "ok"), metrics=slow_metrics, hook=_hook)),
        "127.0.0.1",
        0,
        read_timeout=0.5,
        request_deadline=1.0,
    )
    server.start()
    try:
        with _connect(server.port) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            response = _read_all(sock)
    finally:
        server.stop()
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b"m 1\n")
