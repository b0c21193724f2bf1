"""uvicorn on a thread of its own, bound before it starts, with the slow-client limits of issue 10.

uvicorn's own settings bound what they can: idle keep-alive connections
(``timeout_keep_alive``), header size (``h11_max_incomplete_event_size``),
concurrent connections (``limit_concurrency``). What they cannot (a request
whose head never ends, one dripped a byte at a time, a body cut short by a
half-close) is handled by ``_GuardedH11``: a read timeout between bytes and a
deadline for the whole request to arrive, both dropped once it has arrived,
so a long answer (an event stream) is never cut off. See
docs/decisions/018-dashboard-and-api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

#: Longest wait for the next bytes of a request before the connection is dropped.
READ_TIMEOUT_SECONDS = 10.0
#: Longest a whole request may take to arrive, however it is dripped.
REQUEST_DEADLINE_SECONDS = 30.0
#: A request head (line and headers) larger than this is refused with 400.
MAX_HEAD_BYTES = 64 * 1024
#: Connections served at once; more get 503 (each SSE client holds one).
MAX_CONNECTIONS = 256
#: How long a stopping server waits for open responses (event streams end by themselves sooner).
SHUTDOWN_GRACE_SECONDS = 2


class _GuardedH11(H11Protocol):
    read_timeout: float = READ_TIMEOUT_SECONDS
    request_deadline: float = REQUEST_DEADLINE_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        self._idle = self._restart(self._idle, self.read_timeout, "no bytes within the read timeout")
        if self._deadline is None:
            self._deadline = self.loop.call_later(
                self.request_deadline, self._cut_off, "the request did not arrive by its deadline"
            )

    def _restart(self, timer: asyncio.TimerHandle | None, delay: float, why: str) -> asyncio.TimerHandle:
        if timer is not None:
            timer.cancel()
        return self.loop.call_later(delay, self._cut_off, why)

    def _disarm(self) -> None:
        for timer in (self._idle, self._deadline):
            if timer is not None:
                timer.cancel()
        self._idle = self._deadline = None

    def _cut_off(self, why: str) -> None:
        logger.info(
            "http client too slow: connection dropped", extra={"client": _client(self), "reason": why}
        )
        self._disarm()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:  # a (next) request is arriving
            self._arm()
        elif self._idle is not None:
            self._idle = self._restart(self._idle, self.read_timeout, "no bytes within the read timeout")
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):  # arrived whole (or the end is known)
            self._disarm()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """A client that half-closes mid-body: its request ends here, short, and is answered (400)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.more_body:
            self._disarm()
            cycle.more_body = False
            cycle.keep_alive = False
            cycle.scope["state"]["body_cut_short"] = True
            cycle.message_event.set()
            return True  # keep the transport open for the answer
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def _client(protocol: H11Protocol) -> str:
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "?"


class WebServer:
    """An ASGI app served by uvicorn on its own thread; ``port`` is the bound one (useful with port 0).

    The socket is bound in the constructor, so a taken port fails at once and
    the caller can print the port before the thread starts. uvicorn installs no
    signal handlers off the main thread: the daemon keeps its SIGTERM handling.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        request_deadline: float = REQUEST_DEADLINE_SECONDS,
        on_stop: threading.Event | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
            self._socket.listen(128)
        except OSError:
            self._socket.close()
            raise
        self._socket.setblocking(False)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        self._stopping = on_stop or threading.Event()
        protocol = type(
            "GuardedH11",
            (_GuardedH11,),
            {"read_timeout": read_timeout, "request_deadline": request_deadline},
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_keep_alive=max(1, round(read_timeout)),
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # event streams end at their next poll
        self._server.should_exit = True
        self._thread.join(timeout=SHUTDOWN_GRACE_SECONDS + 5)
        with contextlib.suppress(OSError):
            self._socket.close()
