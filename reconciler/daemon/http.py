"""``/healthz``, ``/metrics`` and ``/hooks/github`` on the standard library's threading HTTP server.

Why this stack: docs/decisions/007-daemon-server-stack.md (three small
endpoints, no new dependency, one thread per request is plenty here).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reconciler.daemon.webhook import HookVerdict

logger = logging.getLogger(__name__)

#: A push event payload is small; anything bigger is refused unread.
MAX_BODY_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Endpoints:
    healthy: Callable[[], tuple[bool, str]]
    metrics: Callable[[], str]
    hook: Callable[[dict[str, str], bytes], HookVerdict]


class _Handler(BaseHTTPRequestHandler):
    server_version = "reconcile"
    endpoints: Endpoints

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
        headers = {k.lower(): v for k, v in self.headers.items()}
        verdict = self.endpoints.hook(headers, body)
        self._send(verdict.status, verdict.message + "\n")

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http: " + format, *args)


class HttpEndpoints:
    """The server, on its own thread; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, host: str, port: int, endpoints: Endpoints) -> None:
        handler = type("Handler", (_Handler,), {"endpoints": endpoints})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
