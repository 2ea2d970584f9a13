"""The standalone receiver's HTTP server: uvicorn, with time limits for slow clients.

uvicorn waits forever for the headers of a request, and for a body the app
does not read: a few hundred connections trickling a byte now and then hold
the receiver's sockets and file descriptors indefinitely. The protocol class
built by :func:`time_limited` closes a connection

* whose request headers are not complete ``header_timeout_s`` after the
  connection opened, or after the previous answer on a kept-alive connection
  (with a 408 if part of a request had arrived, silently if nothing had);
* whose request body is not complete ``body_timeout_s`` + :data:`BODY_GRACE_S`
  after its headers. The endpoints that read a body answer 408 at
  ``body_timeout_s`` themselves (that limit holds under the Airflow API server
  too, see ``app.read_body``); the grace leaves them that answer, and this is
  the backstop for bodies no endpoint reads.

Request line and headers are also capped at :data:`MAX_HEADER_BYTES` (431),
which httptools, unlike h11, does not do by itself. ``max_connections`` becomes
uvicorn's ``limit_concurrency``: a request on a connection beyond it gets 503,
which vendors retry.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string

from sms_provider.receiver.config import ReceiverConfig

log = logging.getLogger(__name__)

#: how much longer than ``body_timeout_s`` the server waits before it cuts a body off
BODY_GRACE_S = 1.0
#: request line and headers together (httptools sets no limit of its own; h11's is 16 KiB)
MAX_HEADER_BYTES = 64 * 1024
HTTP_IMPLEMENTATIONS = ("auto", "h11", "httptools")
_HEADERS, _BODY = "headers", "body"


def _answer(status: bytes, text: bytes) -> bytes:
    return (b"HTTP/1.1 %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, len(text), text))


_REQUEST_TIMEOUT = _answer(b"408 Request Timeout", b"request headers not received in time")
_HEADERS_TOO_LARGE = _answer(b"431 Request Header Fields Too Large",
                             b"request line and headers too large")


class _TimeLimits:
    """Mixin over uvicorn's HTTP protocols (h11 and httptools alike).

    Both keep the request being served in ``self.cycle``, a new object once a
    request's headers are complete, whose ``more_body`` turns false once its
    body is: that is all this follows, after each chunk of data.
    """

    header_timeout_s: float
    body_timeout_s: float
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None

    _limit: asyncio.TimerHandle | None = None
    _phase: str | None = None
    _timed_cycle: Any = None
    _received = 0  # bytes received while waiting for the headers

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        waiting = self._phase == _HEADERS
        if waiting:
            self._received += len(data)
        super().data_received(data)  # type: ignore[misc]
        self._follow()
        if (waiting and self._phase == _HEADERS and self._received > MAX_HEADER_BYTES
                and not self.transport.is_closing()):
            self._disarm()
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        cycle = self.cycle
        if cycle is self._timed_cycle and cycle is not None and cycle.response_complete:
            self._await_headers()  # the next request on this connection
        else:
            self._follow()  # a pipelined request took over

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    # --- the timer -------------------------------------------------------------------
    def _follow(self) -> None:
        if self.transport.is_closing():
            self._disarm()
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._timed_cycle:  # new request's headers
            self._timed_cycle = cycle
            if cycle.more_body and not cycle.response_complete:
                self._arm(_BODY, self.body_timeout_s + BODY_GRACE_S)
            else:
                self._disarm()
        elif self._phase == _BODY and (cycle is None or not cycle.more_body):
            self._disarm()

    def _await_headers(self) -> None:
        self._received = 0
        self._arm(_HEADERS, self.header_timeout_s)

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._limit = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._limit is not None:
            self._limit.cancel()
        self._limit, self._phase = None, None

    def _expired(self, phase: str, seconds: float) -> None:
        self._limit, self._phase = None, None
        if self.transport.is_closing():
            return
        if phase == _HEADERS and self._received:
            self.transport.write(_REQUEST_TIMEOUT)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.info("closed the connection from %s: request %s not received within %g s",
                 client, phase, seconds)
        self.transport.close()


def time_limited(base: type[asyncio.Protocol], header_timeout_s: float,
                 body_timeout_s: float) -> type[asyncio.Protocol]:
    """``base`` (a uvicorn HTTP protocol class) enforcing the two limits."""
    return type(f"TimeLimited{base.__name__}", (_TimeLimits, base),
                {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s})


def server_config(app: Any, config: ReceiverConfig, *, host: str, port: int,
                  http: str = "auto", log_level: str = "info", access_log: bool = True,
                  lifespan: str = "auto") -> uvicorn.Config:
    """The uvicorn settings the standalone receiver runs with (limits from ``config``)."""
    if http not in HTTP_IMPLEMENTATIONS:
        raise ValueError(f"http must be one of {', '.join(HTTP_IMPLEMENTATIONS)}")
    base = import_from_string(HTTP_PROTOCOLS[http])
    protocol = time_limited(base, config.header_timeout_s, config.body_timeout_s)
    # uvicorn counts the connection asking among the open ones: +1 lets max_connections in
    return uvicorn.Config(app, host=host, port=port, http=protocol,
                          limit_concurrency=config.max_connections + 1,
                          log_level=log_level, access_log=access_log, lifespan=lifespan)
