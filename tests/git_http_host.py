"""Serve ``git http-backend`` over HTTP on 127.0.0.1: ``python git_http_host.py ROOT PORT``.

A threaded WSGI server that runs the CGI program once per request with the
CGI variables it reads, the way Apache's mod_cgi does. Used by the tests as a
real smart-HTTP git server; it handles the request bodies git sends for
receive-pack and upload-pack (plain or gzip, with a Content-Length or chunked).
"""

from __future__ import annotations

import socketserver
import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

StartResponse = Callable[..., Any]


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        return bytes(stream.read(int(length)))
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                stream.readline()
                break
            chunks.append(stream.read(size))
            stream.readline()
        return b"".join(chunks)
    return b""


def make_app(root: str) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        cgi_env = {
            "GIT_PROJECT_ROOT": root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
            "REMOTE_USER": "tester",
            "SERVER_PROTOCOL": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, capture_output=True, env=cgi_env, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            if key.lower() == "status":
                status = value.strip()
            else:
                headers.append((key.strip(), value.strip()))
        if done.returncode != 0 and not head:
            status = "500 Internal Server Error"
            payload = done.stderr
        start_response(status, headers)
        return [payload]

    return app


class _Threaded(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    root, port = sys.argv[1], int(sys.argv[2])
    server = make_server("127.0.0.1", port, make_app(root), server_class=_Threaded, handler_class=_Quiet)
    server.serve_forever()


if __name__ == "__main__":
    main()
