"""Request/response types and the threaded HTTP server the vendor handlers plug into.

The standard library server is used on purpose: faults such as "accept the
request, then drop the connection without answering" need direct control of
the socket, which ASGI servers deliberately hide.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def form(self) -> dict[str, str]:
        """Body parsed as application/x-www-form-urlencoded (last value wins)."""
        return _flatten(parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def params(self) -> dict[str, str]:
        """Query string and form body together, as GET-or-POST vendors read them."""
        merged = dict(self.query)
        ctype = self.header("content-type", "") or ""
        if self.body and "json" not in ctype:
            merged.update(self.form())
        return merged

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=utf-8"

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None
             ) -> SimResponse:
        return cls(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"),
                   dict(headers or {}))

    @classmethod
    def text(cls, text: str, status: int = 200) -> SimResponse:
        return cls(status, text.encode("utf-8"), {}, "text/plain;charset=utf-8")


def _flatten(parsed: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in parsed.items()}


class DropConnection(Exception):
    """Raised by a handler to close the socket without writing any response."""


Dispatcher = Callable[[SimRequest], SimResponse]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: with Nagle on, every keep-alive
    # answer would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "sms-simulator/1"
    dispatcher: Dispatcher  # set on the subclass the server builds

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = SimRequest(
            method=self.command,
            path=split.path,
            query=_flatten(parse_qs(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            resp = self.dispatcher(req)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception:  # a simulator bug must not kill the server thread
            log.exception("simulator handler failed for %s %s", req.method, req.path)
            resp = SimResponse.text("internal simulator error", 500)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if resp.body:
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True


def make_server(host: str, port: int, dispatcher: Dispatcher) -> SimHTTPServer:
    handler = type("SimHandler", (_Handler,), {"dispatcher": staticmethod(dispatcher)})
    return SimHTTPServer((host, port), handler)
