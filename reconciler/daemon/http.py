"""``/healthz``, ``/metrics`` and ``/hooks/github`` on the standard library's threading HTTP server.

Why this stack: docs/decisions/007-daemon-server-stack.md (three small
endpoints, no new dependency, one thread per request is plenty here).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.daemon.webhook import HookVerdict

logger = logging.getLogger(__name__)

#: A push event payload is small; anything bigger is refused unread.
MAX_BODY_BYTES = 25 * 1024 * 1024
#: Longest wait for the next bytes of a request (or for a client to take a response's) before the
#: connection is dropped: an idle or half-sent request never holds a thread for long.
READ_TIMEOUT_SECONDS = 10.0
#: Longest a whole request may take to arrive, however it is dripped: a client sending one byte
#: every few seconds (each read within the timeout) is cut off here.
REQUEST_DEADLINE_SECONDS = 30.0

#: What a client that goes away, lies about its body or stalls makes the socket raise: its problem,
#: worth one log line, never a traceback.
CLIENT_ERRORS = (ConnectionError, TimeoutError)


@dataclass(frozen=True)
class Endpoints:
    healthy: Callable[[], tuple[bool, str]]
    metrics: Callable[[], str]
    hook: Callable[[dict[str, str], bytes], HookVerdict]


class _Handler(BaseHTTPRequestHandler):
    server_version = "reconcile"
    endpoints: Endpoints
    #: The socket timeout of every read and write (``StreamRequestHandler`` applies it).
    timeout = READ_TIMEOUT_SECONDS
    request_deadline: float = REQUEST_DEADLINE_SECONDS

    def setup(self) -> None:
        super().setup()
        self._deadline = threading.Timer(self.request_deadline, self._cut_off)
        self._deadline.daemon = True
        self._deadline.start()

    def finish(self) -> None:
        self._deadline.cancel()
        with contextlib.suppress(*CLIENT_ERRORS):
            super().finish()

    def _cut_off(self) -> None:
        """The request took too long to arrive: the pending read fails and the connection closes."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed and self.command != "POST":
            self._deadline.cancel()  # arrived; a long answer (a stream) is not cut off
        return parsed

    def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok, why = self.endpoints.healthy()
            self._send(200 if ok else 503, why + "\n")
        elif path == "/metrics":
            self._send(200, self.endpoints.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/hooks/github":
            self._send(405, "POST a GitHub push event here\n")
        else:
            self._send(404, "not found: try /healthz, /metrics or POST /hooks/github\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/hooks/github":
            self._send(404, "not found: POST only to /hooks/github\n")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            self._send(400, "bad Content-Length\n")
            return
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(413, "payload too large\n")
            return
        body = self.rfile.read(length)
        self._deadline.cancel()
        if len(body) < length:
            self.close_connection = True
            self._send(400, f"body shorter than its Content-Length ({len(body)} of {length} bytes)\n")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        verdict = self.endpoints.hook(headers, body)
        self._send(verdict.status, verdict.message + "\n")

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client's disconnect or stall is one line; anything else is a bug, with its traceback.

        (The standard library prints every error's traceback to stderr.)
        """
        error = sys.exc_info()[1]
        if isinstance(error, CLIENT_ERRORS):
            logger.info("http client went away", extra={"client": client_address[0], "error": repr(error)})
            return
        logger.exception("http handler failed", extra={"client": client_address[0]})


class HttpEndpoints:
    """The server, on its own thread; ``port`` is the bound one (useful with port 0)."""

    def __init__(
        self,
        host: str,
        port: int,
        endpoints: Endpoints,
        *,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        request_deadline: float = REQUEST_DEADLINE_SECONDS,
    ) -> None:
        handler = type(
            "Handler",
            (_Handler,),
            {"endpoints": endpoints, "timeout": read_timeout, "request_deadline": request_deadline},
        )
        self._server = _Server((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
