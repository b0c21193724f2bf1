"""A real HTTP server on 127.0.0.1 that plays the part of GitHub's REST API the plan comment uses.

Issue comments only (``GET``/``POST /repos/O/R/issues/N/comments``, ``PATCH
/repos/O/R/issues/comments/ID``), with the shapes, status codes, pagination
(``per_page`` up to 100, ``page``) and token check GitHub documents. Every
request is recorded, so a test sees exactly what the action sent.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIST_OR_CREATE = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<number>\d+)/comments$")
UPDATE = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)$")
BOT = {"login": "github-actions[bot]", "type": "Bot"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


@dataclass
class FakeGitHub:
    """The comments of one repository's issues, and the token that may write them."""

    repository: str
    token: str
    read_only_token: str = ""
    """A token that may read but not write, as a pull request from a fork gets: writes answer 403."""
    url: str = ""
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    _next_id: int = 1000

    def add_comment(self, number: int, body: str, user: dict[str, str]) -> dict[str, Any]:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "issue_number": number,
            "body": body,
            "user": dict(user),
            "html_url": f"https://github.example/{self.repository}/pull/{number}#issuecomment-{self._next_id}",
        }
        self.comments.append(comment)
        return comment

    def on(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments if c["issue_number"] == number]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("POST", "PATCH")]


def _handler(github: FakeGitHub, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._answer(400, {"message": "Problems parsing JSON"})
                return
            auth = self.headers.get("Authorization")
            with lock:
                github.requests.append(Request(self.command, url.path, parse_qs(url.query), auth, body))
                tokens = {github.token, github.read_only_token} - {""}
                if auth not in {f"{scheme} {token}" for scheme in ("Bearer", "token") for token in tokens}:
                    self._answer(401, {"message": "Bad credentials"})
                    return
                if self.command != "GET" and github.read_only_token and github.read_only_token in auth:
                    self._answer(403, {"message": "Resource not accessible by integration"})
                    return
                self._route(url.path, parse_qs(url.query), body)

        def _route(self, path: str, query: dict[str, list[str]], body: Any) -> None:
            listing = LIST_OR_CREATE.match(path)
            update = UPDATE.match(path)
            repo = (listing or update).group("repo") if (listing or update) else None
            if repo != github.repository:
                self._answer(404, {"message": "Not Found"})
                return
            if listing and self.command == "GET":
                per_page = min(int(query.get("per_page", ["30"])[0]), 100)
                page = int(query.get("page", ["1"])[0])
                mine = github.on(int(listing.group("number")))
                self._answer(200, mine[(page - 1) * per_page : page * per_page])
            elif listing and self.command == "POST":
                if not isinstance(body, dict) or not isinstance(body.get("body"), str):
                    self._answer(422, {"message": "Validation Failed"})
                    return
                self._answer(201, github.add_comment(int(listing.group("number")), body["body"], BOT))
            elif update and self.command == "PATCH":
                found = [c for c in github.comments if c["id"] == int(update.group("id"))]
                if not found:
                    self._answer(404, {"message": "Not Found"})
                elif found[0]["user"] != BOT:
                    self._answer(403, {"message": "Resource not accessible by integration"})
                elif not isinstance(body, dict) or not isinstance(body.get("body"), str):
                    self._answer(422, {"message": "Validation Failed"})
                else:
                    found[0]["body"] = body["body"]
                    self._answer(200, found[0])
            else:
                self._answer(404, {"message": "Not Found"})

        do_GET = do_POST = do_PATCH = _handle

    return Handler


@contextmanager
def fake_github(repository: str, token: str, read_only_token: str = "") -> Iterator[FakeGitHub]:
    """Serve a ``FakeGitHub`` on a port of its own choosing on 127.0.0.1 until the block ends."""
    github = FakeGitHub(repository=repository, token=token, read_only_token=read_only_token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(github, threading.Lock()))
    github.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield github
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
