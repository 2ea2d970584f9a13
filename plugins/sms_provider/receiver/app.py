"""The HTTP endpoints vendors push reports and replies to.

=====================================  =========================================
``POST /emay/reports``                 Emay IMS: encrypted body + ``appId`` header
                                       (or plain form from an allowed address)
``POST /emay/{token}/reports``         Emay IMS plain form field ``reports`` (or
                                       encrypted); the token is ours
``PUT  /eims/{token}/reports``         EIMS report pages (≤ 50); the token is ours
``GET  /chuanglan/reports``            Chuanglan status report (query string)
``GET  /chuanglan/mo``                 Chuanglan reply (query string)
``GET  /health``                       503 unless a push could be stored now
=====================================  =========================================

Every request is authenticated, parsed with the vendor's own parser (so a
malformed push is refused with 400 and nothing is kept) and landed durably
(:mod:`sms_provider.receiver.landing`) before the 2xx goes out: a vendor that
got its 2xx never pushes again, so nothing acknowledged may be lost. Refusals:
401 bad credentials (Chuanglan, Emay), 404 unknown URL token (the URL is the
secret: it must look like any other unknown URL), 400 malformed, 408 body too
slow, 413 too big (by ``Content-Length`` before anything is read, or once a
chunked body passes the limit), 503 when the disk refuses the write (the
vendor retries). A refusal that leaves a body unread closes the connection.

Nothing here logs a credential (:mod:`sms_provider.receiver.redaction`); our
own log lines name routes, not URLs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from sms_provider.data.locations import data_location
from sms_provider.data.storage import DataRoot
from sms_provider.errors import AuthenticationError, ProtocolError, SmsError
from sms_provider.receiver.config import ReceiverConfig
from sms_provider.receiver.landing import Lander
from sms_provider.receiver.records import (
    CHUANGLAN_MO,
    CHUANGLAN_REPORT,
    EIMS_PUT,
    EMAY_ENCRYPTED,
    EMAY_FORM,
    LandingRecord,
    form_field,
    is_part,
    parse_record,
)
from sms_provider.receiver.redaction import ScrubSecretsMiddleware, install_log_redaction
from sms_provider.vendors import chuanglan, emay_ims
from sms_provider.vendors.codec import aes_decrypt

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
#: headers the Emay parser needs again at compaction (the appId is not a secret)
EMAY_HEADERS = ("appId", "gzip")


class Refused(Exception):
    """A push we do not keep: the status and a reason safe to log and to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PushReceiver:
    """Authenticate, parse, land: the endpoints' work, free of HTTP framework types."""

    def __init__(self, config: ReceiverConfig, root: DataRoot) -> None:
        self.config = config
        self.lander = Lander(root, durable=config.durable)

    def emay(self, body: bytes, headers: dict[str, str], content_type: str,
             token: str | None = None, client: str | None = None) -> str:
        """Encrypted when an ``appId`` header is sent, else the plain ``reports`` form.

        ``token`` is the secret of the URL the push came to (None on the URL
        without one), ``client`` the TCP peer's address: a plain push proves
        itself with these alone (``EmayImsReceiver.plain_allowed``).
        """
        now = datetime.now(UTC)
        at_url = self.config.emay_for_token(token) if token is not None else None
        if token is not None and at_url is None:
            raise Refused(404, "Not Found")
        app_id = headers.get("appId", "").strip()
        if app_id:
            conn = self.config.emay_for(app_id)
            if conn is None:
                raise Refused(401, "unknown appId")
            if at_url is not None and conn is not at_url:
                raise Refused(401, "appId does not belong to this push URL")
            try:
                aes_decrypt(conn.secret_key, body)
            except ProtocolError:
                raise Refused(401, "body does not decrypt with the appId's key") from None
            kept = {k: headers[k] for k in EMAY_HEADERS if headers.get(k)}
            return self._accept(LandingRecord(conn.conn_id, emay_ims.VENDOR, EMAY_ENCRYPTED,
                                              now, body, headers=kept))
        allowed = self.config.emay_plain_allowed(token, client)
        refusal = Refused(401, "plain push refused: the reports must carry one appId whose "
                               "plain pushes are accepted from this URL and address")
        if not allowed:  # before parsing: an unauthenticated body costs nothing more
            raise refusal
        if content_type.split(";", 1)[0].strip().lower() != FORM_TYPE:
            raise Refused(400, "neither an appId header (encrypted push) nor a form body")
        try:
            reports = emay_ims.parse_push_form(form_field(body, "reports"))
        except SmsError as exc:
            raise Refused(400, str(exc)) from None
        app_ids = {str(r.raw.get("appId") or "").strip() for r in reports}
        conn = self.config.emay_for(app_ids.pop()) if len(app_ids) == 1 else None
        if conn is None or conn not in allowed:
            raise refusal
        return self._accept(LandingRecord(conn.conn_id, emay_ims.VENDOR, EMAY_FORM, now, body,
                                          headers={"appId": conn.app_id}))

    def eims(self, body: bytes, token: str) -> str:
        conn = self.config.eims_for(token)
        if conn is None:
            raise Refused(404, "Not Found")
        return self._accept(LandingRecord(conn.conn_id, "eims", EIMS_PUT,
                                          datetime.now(UTC), body))

    def chuanglan(self, form: str, query: bytes) -> str:
        """``form`` is CHUANGLAN_REPORT or CHUANGLAN_MO; ``query`` the raw query string."""
        now = datetime.now(UTC)
        pairs = parse_query(query)
        given = dict(pairs)
        conn = self.config.chuanglan_for(given.get("receiver", ""), given.get("pswd", ""))
        if conn is None:
            raise Refused(401, "receiver/pswd do not match a configured connection")
        params = tuple((k, v) for k, v in pairs if k not in chuanglan.PUSH_CREDENTIALS)
        return self._accept(LandingRecord(conn.conn_id, chuanglan.VENDOR, form, now,
                                          params=params))

    def _accept(self, record: LandingRecord) -> str:
        """Parse as compaction will, then land; returns the conn_id for the log line."""
        try:
            items = parse_record(record, self.config)
        except AuthenticationError as exc:
            raise Refused(401, str(exc)) from None
        except SmsError as exc:
            raise Refused(400, str(exc)) from None
        part = record.form == CHUANGLAN_MO and any(is_part(m) for m in items)
        try:
            self.lander.land(record, part=part)
        except OSError as exc:
            log.error("landing a %s push for %s failed: %s (errno %s)", record.form,
                      record.conn_id, type(exc).__name__, exc.errno)
            raise Refused(503, "could not store the push; try again") from None
        return record.conn_id


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def parse_query(query: bytes) -> list[tuple[str, str]]:
    """A push's query parameters, or 400: not UTF-8, a broken ``%`` escape, or a
    parameter given twice (which of the two would count is anyone's guess)."""
    if _BAD_ESCAPE.search(query):
        raise Refused(400, "query string has a '%' that is not followed by two hex digits")
    try:
        pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise Refused(400, "query string is not UTF-8") from None
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise Refused(400, f"query parameter {key!r} appears more than once")
        seen.add(key)
    return pairs


def create_app(config: ReceiverConfig, root: DataRoot) -> FastAPI:
    """The receiver as an ASGI app; all its state comes from the two arguments."""
    receiver = PushReceiver(config, root)
    app = FastAPI(title="SMS push receiver", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.receiver = receiver
    app.add_middleware(DeclaredSizeMiddleware, limit=config.max_body_bytes)
    app.add_middleware(ScrubSecretsMiddleware)  # outermost: it also sees the 413s
    install_log_redaction()

    async def handle(request: Request, route: str, work: Callable[..., str],
                     *args: object) -> Response:
        try:
            conn_id = await run_in_threadpool(work, *args)
        except Refused as refused:
            return refuse(request, route, refused)
        log.debug("push landed: %s %s for %s", request.method, route, conn_id)
        return PlainTextResponse("ok")

    async def with_body(request: Request, route: str, work: Callable[..., str],
                        *args: object) -> Response:
        try:
            body = await read_body(request, config.max_body_bytes, config.body_timeout_s)
        except Refused as refused:  # the rest of the body is not read: close
            return refuse(request, route, refused, close=True)
        return await handle(request, route, work, body, *args)

    @app.post("/emay/reports")
    async def emay_reports(request: Request) -> Response:
        return await with_body(request, "/emay/reports", receiver.emay,
                               *_emay_args(request, None))

    @app.post("/emay/{token}/reports")
    async def emay_token_reports(token: str, request: Request) -> Response:
        if config.emay_for_token(token) is None:  # before the body, as for EIMS
            return not_found(request, "POST /emay/***/reports")
        return await with_body(request, "/emay/***/reports", receiver.emay,
                               *_emay_args(request, token))

    @app.put("/eims/{token}/reports")
    async def eims_reports(token: str, request: Request) -> Response:
        if config.eims_for(token) is None:  # before the body: as cheap as an unknown URL
            return not_found(request, "PUT /eims/***/reports")
        return await with_body(request, "/eims/***/reports", receiver.eims, token)

    @app.get("/chuanglan/reports")
    async def chuanglan_reports(request: Request) -> Response:
        return await handle(request, "/chuanglan/reports", receiver.chuanglan,
                            CHUANGLAN_REPORT, request.scope.get("query_string", b""))

    @app.get("/chuanglan/mo")
    async def chuanglan_mo(request: Request) -> Response:
        return await handle(request, "/chuanglan/mo", receiver.chuanglan, CHUANGLAN_MO,
                            request.scope.get("query_string", b""))

    @app.get("/health")
    async def health() -> Response:
        """200 only if a push could be stored now: a probe file written, synced, removed."""
        try:
            await run_in_threadpool(receiver.lander.probe)
        except OSError as exc:
            log.error("health: cannot store pushes in %s: %s (errno %s)", root.uri,
                      exc.strerror or type(exc).__name__, exc.errno)
            return PlainTextResponse("cannot store pushes", status_code=503)
        return PlainTextResponse("ok")

    return app


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _emay_args(request: Request, token: str | None) -> tuple[object, ...]:
    """What ``PushReceiver.emay`` needs besides the body."""
    headers = {name: request.headers.get(name, "") for name in EMAY_HEADERS}
    return (headers, request.headers.get("content-type", ""), token,
            request.client.host if request.client else None)


def refuse(request: Request, route: str, refused: Refused, *, close: bool = False
           ) -> Response:
    log.warning("push refused: %s %s from %s -> %d %s", request.method, route,
                _client(request), refused.status, refused.reason)
    return PlainTextResponse(refused.reason, status_code=refused.status,
                             headers={"Connection": "close"} if close else None)


def not_found(request: Request, route: str) -> Response:
    """An unknown URL token: the answer any unknown URL gets."""
    log.warning("push refused: %s from %s -> 404 unknown token", route, _client(request))
    return JSONResponse({"detail": "Not Found"}, status_code=404)


def app_from_env(root: DataRoot | None = None) -> FastAPI:
    """The app for ``SMS_RECEIVER_CONFIG`` and ``SMS_DATA_ROOT``.

    The data root is read from the same variable and has the same default folder as
    the tasks', so the compaction task finds what this app lands. The Airflow plugin
    mount passes the root as the tasks resolve it (object-store URIs through their
    Airflow connection); standalone, pyarrow resolves a URI itself.
    """
    return create_app(ReceiverConfig.from_env(), root or DataRoot(data_location()))


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body: 413 once it passes ``limit`` bytes (a chunked body has no
    Content-Length to judge by up front), 408 unless it is all there within
    ``timeout_s`` of the endpoint starting to read it (a client trickling a
    byte now and then must not hold a connection and a worker)."""
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, f"body not received within {timeout_s:g} s") from None
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was complete") from None
    return b"".join(chunks)


class DeclaredSizeMiddleware:
    """413 for a declared ``Content-Length`` over the limit, on any route, unread.

    Before routing, so even a route that never reads its body (or no route at
    all) does not leave the server receiving and discarding it.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            declared = next((v for k, v in scope.get("headers", ())
                             if k == b"content-length"), b"")
            if declared.strip().isdigit() and int(declared) > self.limit:
                log.warning("push refused: a %s with a declared body of %d bytes -> 413",
                            scope.get("method"), int(declared))
                response = PlainTextResponse(f"body larger than {self.limit} bytes",
                                             status_code=413, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
