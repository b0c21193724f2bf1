"""The ASGI application: the dashboard pages, the JSON API, the event stream, and the daemon's
``/healthz``, ``/metrics`` and ``POST /hooks/github`` (SPEC 6, 6.1).

Read-only: the webhook is the one endpoint that does anything, and it only
wakes the daemon's fetch. Served by the daemon and by ``reconcile serve``
(``server.py``); docs/decisions/018-dashboard-and-api.md says why Starlette.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.web import api
from reconciler.web.auth import BearerToken
from reconciler.web.fleet import FleetSource, FleetView
from reconciler.web.openapi import document
from reconciler.web.sse import events_endpoint

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: A push event payload is small; anything bigger is refused unread.
MAX_BODY_BYTES = 25 * 1024 * 1024
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Sent with every response: nothing but this server's own files may run or load in its pages.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>reconcile</title></head>
<body><h1>reconcile</h1>
<p>The dashboard pages are not installed in this build. The API is:
<a href="/api/v1/environments">/api/v1/environments</a>,
<a href="/api/openapi.json">/api/openapi.json</a>.</p></body></html>
"""


class HookAnswer(Protocol):
    """What the daemon's webhook handler returns (``daemon.webhook.HookVerdict``)."""

    @property
    def status(self) -> int: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class Endpoints:
    healthy: Callable[[], tuple[bool, str]]
    metrics: Callable[[], str]
    #: ``None``: no webhook here (``reconcile serve`` does not reconcile).
    hook: Callable[[dict[str, str], bytes], HookAnswer] | None = None
    #: ``None``: no dashboard nor API, only the three daemon endpoints.
    fleet: FleetSource | None = None


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _healthz(endpoints: Endpoints, request: Request) -> Response:
    ok, why = endpoints.healthy()
    return PlainTextResponse(why + "\n", 200 if ok else 503)


def _metrics(endpoints: Endpoints, request: Request) -> Response:
    return Response(endpoints.metrics(), media_type=METRICS_CONTENT_TYPE)


def _hook_get(request: Request) -> Response:
    return PlainTextResponse("POST a GitHub push event here\n", 405, headers={"Allow": "POST"})


async def _hook(endpoints: Endpoints, request: Request) -> Response:
    if endpoints.hook is None:
        return PlainTextResponse(
            "reconcile serve does not reconcile: point the webhook at `reconcile daemon`\n", 503
        )
    hook = endpoints.hook
    declared = request.headers.get("content-length")
    length: int | None = None
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            return PlainTextResponse("bad Content-Length\n", 400)
        if length < 0:
            return PlainTextResponse("bad Content-Length\n", 400)
        if length > MAX_BODY_BYTES:
            return PlainTextResponse("payload too large\n", 413, headers={"Connection": "close"})
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return PlainTextResponse("payload too large\n", 413, headers={"Connection": "close"})
    except ClientDisconnect:
        logger.info("http client went away", extra={"client": request.client.host if request.client else "?"})
        return Response(status_code=400)  # nobody is there to read it
    if length is not None and len(body) < length:
        return PlainTextResponse(
            f"body shorter than its Content-Length ({len(body)} of {length} bytes)\n",
            400,
            headers={"Connection": "close"},
        )
    headers = {k.lower(): v for k, v in request.headers.items()}
    verdict = await run_in_threadpool(hook, headers, bytes(body))
    return PlainTextResponse(verdict.message + "\n", verdict.status)


def _page(name: str, request: Request) -> Response:
    path = STATIC_DIR / name
    headers = {"Cache-Control": "no-cache"}
    if path.is_file():
        return FileResponse(path, media_type="text/html; charset=utf-8", headers=headers)
    return HTMLResponse(_PLACEHOLDER, headers=headers)


def _openapi(request: Request) -> Response:
    return JSONResponse(document())


def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if request.url.path.startswith("/api/"):
        return api.error(status, f"no such endpoint: {request.url.path} (see /api/openapi.json)")
    if status == 405:
        return PlainTextResponse("method not allowed: this server is read-only\n", 405)
    return PlainTextResponse(
        "not found: try /, /api/v1/environments, /healthz, /metrics or POST /hooks/github\n", status
    )


def _safe(
    handler: Callable[[FleetView, Request], Response], view: FleetView
) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        try:
            return handler(view, request)
        except Exception as e:  # a store or git failure: the error, not a traceback, reaches the client
            logger.exception("api request failed", extra={"path": request.url.path})
            return api.error(500, f"{type(e).__name__}: {e}")

    return endpoint


def create_app(
    endpoints: Endpoints, *, token: str | None = None, stopping: threading.Event | None = None
) -> ASGIApp:
    """The application; ``token``: the bearer token every non-open path needs (``None`` on loopback)."""
    stop = stopping or threading.Event()
    routes: list[BaseRoute] = [
        Route("/healthz", partial(_healthz, endpoints), methods=["GET"]),
        Route("/metrics", partial(_metrics, endpoints), methods=["GET"]),
        Route("/hooks/github", partial(_hook, endpoints), methods=["POST"]),
        Route("/hooks/github", _hook_get, methods=["GET"]),
    ]
    if endpoints.fleet is not None:
        view = FleetView(endpoints.fleet)
        source = endpoints.fleet
        routes += [
            Route("/", partial(_page, "index.html"), methods=["GET"]),
            Route("/environments/{name}", partial(_page, "environment.html"), methods=["GET"]),
            Route("/api/openapi.json", _openapi, methods=["GET"]),
            Route("/api/v1/environments", _safe(api.list_environments, view), methods=["GET"]),
            Route("/api/v1/environments/{name}", _safe(api.get_environment, view), methods=["GET"]),
            Route("/api/v1/environments/{name}/history", _safe(api.get_history, view), methods=["GET"]),
            Route("/api/v1/events", partial(_events, source, stop), methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
        ]
    app: Any = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_found})
    return SecurityHeaders(BearerToken(app, token))


async def _events(source: FleetSource, stopping: threading.Event, request: Request) -> Response:
    return events_endpoint(source, stopping, request)
