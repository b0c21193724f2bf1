"""Real HTTP receivers on 127.0.0.1 for the notification tests.

``Receiver`` records every request; its ``mode`` makes it a GitHub statuses
API (token checked), an HMAC-checking webhook, one that fails its first
deliveries, or one that hangs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_STATUSES = re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/statuses/(?P<sha>[0-9a-f]{40})$")


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    mode: str = "accept"  # accept | github | hmac | flaky | hang
    token: str = ""
    secret: bytes = b""
    fail_first: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer(self.path, dict(self.headers.items()), body)
                if status == 0:
                    receiver._release.wait(120)  # hang until the test ends
                    return
                payload = b'{"ok": true}' if status < 400 else b'{"message": "no"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        status = 200
        if self.mode == "hang":
            status = 0
        elif self.mode == "github":
            if headers.get("Authorization") != f"Bearer {self.token}":
                status = 401
            elif _STATUSES.match(path) is None:
                status = 404
            else:
                status = 201
        elif self.mode == "hmac":
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            given = headers.get("X-Reconcile-Signature-256", "")
            status = 200 if hmac.compare_digest(expected, given) else 401
        with self._lock:
            if self.mode == "flaky" and len(self.deliveries) < self.fail_first:
                status = 503
            self.deliveries.append(Delivery(path, headers, body, status))
        return status

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if 200 <= d.status < 300]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.accepted()

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
