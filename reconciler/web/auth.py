"""SPEC 6.1's token rule: on a loopback address nothing is asked; on any other, a bearer token.

The token is compared in constant time. Open without it: ``/healthz`` (probes)
and ``POST /hooks/github`` (GitHub signs its deliveries), and the page shells
(``/``, ``/environments/NAME``, ``/static/*``), which hold no fleet data: they are
what asks for the token, which their script then sends on every API call. The
event stream also takes ``?token=``, since a browser's ``EventSource`` cannot
send a header (docs/decisions/018-dashboard-and-api.md).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Mapping
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "RECONCILE_API_TOKEN"  # noqa: S105 - the variable's name, not a secret

#: Paths served without the token whatever the address.
OPEN_PATHS = frozenset({"/healthz", "/hooks/github", "/", "/favicon.ico"})
OPEN_PREFIXES = ("/static/", "/environments/")
#: The one path that also accepts the token as a query parameter.
QUERY_TOKEN_PATHS = frozenset({"/api/v1/events"})


class TokenMissing(Exception):
    """A non-loopback address without ``RECONCILE_API_TOKEN``: the server must not start."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def required_token(host: str, environ: Mapping[str, str]) -> str | None:
    """The token requests must carry on ``host`` (``None``: loopback, none asked).

    Raises ``TokenMissing`` on any other address without the variable.
    """
    if is_loopback(host):
        return None
    token = environ.get(TOKEN_ENV, "")
    if not token:
        raise TokenMissing(
            f"--listen {host} is not a loopback address: the dashboard and API would be open to the "
            f"network. Set {TOKEN_ENV} to a secret (clients send 'Authorization: Bearer <it>'), "
            "or listen on 127.0.0.1"
        )
    return token


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class BearerToken:
    """ASGI middleware: a request without the right token gets 401 (``WWW-Authenticate: Bearer``)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token else None

    def _matches(self, offered: str | None) -> bool:
        return (
            self._token is not None
            and offered is not None
            and hmac.compare_digest(offered.encode(), self._token)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._token is None or scope["type"] != "http" or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        offered: str | None = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    offered = credentials.strip()
        if offered is None and scope["path"] in QUERY_TOKEN_PATHS:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            offered = (query.get("token") or [None])[0]
        if self._matches(offered):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "formatVersion": 1,
                "error": f"this server is not on a loopback address: send 'Authorization: Bearer "
                f"<{TOKEN_ENV}>'" + (" (or ?token=)" if scope["path"] in QUERY_TOKEN_PATHS else ""),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="reconcile"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
