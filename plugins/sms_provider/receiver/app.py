"""The HTTP endpoints vendors push reports and replies to.

=====================================  =========================================
``POST /emay/reports``                 Emay IMS: encrypted body + ``appId`` header,
                                       or the plain form field ``reports``
``PUT  /eims/{token}/reports``         EIMS report pages (≤ 50); the token is ours
``GET  /chuanglan/reports``            Chuanglan status report (query string)
``GET  /chuanglan/mo``                 Chuanglan reply (query string)
``GET  /health``                       liveness, for load balancers
=====================================  =========================================

Every request is authenticated, parsed with the vendor's own parser (so a
malformed push is refused with 400 and nothing is kept) and landed durably
(:mod:`sms_provider.receiver.landing`) before the 2xx goes out: a vendor that
got its 2xx never pushes again, so nothing acknowledged may be lost. Refusals:
401 bad credentials (Chuanglan, Emay), 404 unknown EIMS token (the URL is the
secret: it must look like any other unknown URL), 400 malformed, 413 too big,
503 when the disk refuses the write (the vendor retries).

Nothing here logs a credential: Chuanglan's query string carries ``pswd`` and
the EIMS URL carries the token. Once an endpoint is done, before the response
starts, :class:`ScrubSecretsMiddleware` removes both from the request scope,
which is what access loggers read (uvicorn's, and Airflow's
``HttpAccessLogMiddleware`` around a mounted app); :class:`RedactingFilter` on
``uvicorn.access`` is the second line. Our own log lines name routes, not URLs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from sms_provider.data.storage import DataRoot
from sms_provider.errors import AuthenticationError, ProtocolError, SmsError
from sms_provider.receiver.config import ReceiverConfig
from sms_provider.receiver.landing import (
    CHUANGLAN_MO,
    CHUANGLAN_REPORT,
    EIMS_PUT,
    EMAY_ENCRYPTED,
    EMAY_FORM,
    Lander,
    LandingRecord,
    form_field,
    is_part,
    parse_record,
)
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

    def emay(self, body: bytes, headers: dict[str, str], content_type: str) -> str:
        """Encrypted when an ``appId`` header is sent, else the plain ``reports`` form."""
        now = datetime.now(UTC)
        app_id = headers.get("appId", "").strip()
        if app_id:
            conn = self.config.emay_for(app_id)
            if conn is None:
                raise Refused(401, "unknown appId")
            try:
                aes_decrypt(conn.secret_key, body)
            except ProtocolError:
                raise Refused(401, "body does not decrypt with the appId's key") from None
            kept = {k: headers[k] for k in EMAY_HEADERS if headers.get(k)}
            return self._accept(LandingRecord(conn.conn_id, emay_ims.VENDOR, EMAY_ENCRYPTED,
                                              now, body, headers=kept))
        if content_type.split(";", 1)[0].strip().lower() != FORM_TYPE:
            raise Refused(400, "neither an appId header (encrypted push) nor a form body")
        try:
            reports = emay_ims.parse_push_form(form_field(body, "reports"))
        except SmsError as exc:
            raise Refused(400, str(exc)) from None
        app_ids = {str(r.raw.get("appId") or "").strip() for r in reports}
        conn = self.config.emay_for(app_ids.pop()) if len(app_ids) == 1 else None
        if conn is None or not conn.accept_plain:
            raise Refused(401, "reports do not all carry one configured appId "
                               "accepting plain pushes")
        return self._accept(LandingRecord(conn.conn_id, emay_ims.VENDOR, EMAY_FORM, now, body,
                                          headers={"appId": conn.app_id}))

    def eims(self, token: str, body: bytes) -> str:
        conn = self.config.eims_for(token)
        if conn is None:
            raise Refused(404, "Not Found")
        return self._accept(LandingRecord(conn.conn_id, "eims", EIMS_PUT,
                                          datetime.now(UTC), body))

    def chuanglan(self, form: str, query: bytes) -> str:
        """``form`` is CHUANGLAN_REPORT or CHUANGLAN_MO; ``query`` the raw query string."""
        now = datetime.now(UTC)
        try:
            pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True,
                              encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise Refused(400, "query string is not UTF-8") from None
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


def create_app(config: ReceiverConfig, root: DataRoot) -> FastAPI:
    """The receiver as an ASGI app; all its state comes from the two arguments."""
    receiver = PushReceiver(config, root)
    app = FastAPI(title="SMS push receiver", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.receiver = receiver
    app.add_middleware(ScrubSecretsMiddleware)
    install_log_redaction()

    async def handle(request: Request, route: str, work: Callable[..., str],
                     *args: object) -> Response:
        try:
            conn_id = await run_in_threadpool(work, *args)
        except Refused as refused:
            client = request.client.host if request.client else "-"
            log.warning("push refused: %s %s from %s -> %d %s", request.method, route,
                        client, refused.status, refused.reason)
            return PlainTextResponse(refused.reason, status_code=refused.status)
        log.debug("push landed: %s %s for %s", request.method, route, conn_id)
        return PlainTextResponse("ok")

    @app.post("/emay/reports")
    async def emay_reports(request: Request) -> Response:
        try:
            body = await read_body(request, config.max_body_bytes)
        except Refused as refused:
            return PlainTextResponse(refused.reason, status_code=refused.status)
        headers = {name: request.headers.get(name, "") for name in EMAY_HEADERS}
        return await handle(request, "/emay/reports", receiver.emay, body, headers,
                            request.headers.get("content-type", ""))

    @app.put("/eims/{token}/reports")
    async def eims_reports(token: str, request: Request) -> Response:
        if config.eims_for(token) is None:  # before the body: as cheap as an unknown URL
            client = request.client.host if request.client else "-"
            log.warning("push refused: PUT /eims/***/reports from %s -> 404 unknown token",
                        client)
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        try:
            body = await read_body(request, config.max_body_bytes)
        except Refused as refused:
            return PlainTextResponse(refused.reason, status_code=refused.status)
        return await handle(request, "/eims/***/reports", receiver.eims, token, body)

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
        return PlainTextResponse("ok")

    return app


def app_from_env() -> FastAPI:
    """The app for ``SMS_RECEIVER_CONFIG`` and ``SMS_DATA_ROOT`` (Airflow's plugin mount).

    The data root is resolved exactly as the tasks resolve it (same default folder,
    object-store URIs through their Airflow connection), so the compaction task finds
    what this app lands.
    """
    from sms_provider.runtime import data_root

    return create_app(ReceiverConfig.from_env(), data_root())


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 beyond ``limit`` bytes before it is all read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --- access-log redaction --------------------------------------------------------------
#: whatever follows /eims/ may be the token (also under a mistyped route)
_EIMS_TOKEN = re.compile(r"(/eims/)[^/?]+")
_EIMS_TOKEN_BYTES = re.compile(rb"(/eims/)[^/?]+")
_SECRET_QUERY = re.compile(r"(^|&)(pswd|receiver)=", re.IGNORECASE)
_SECRET_KEYS = frozenset(chuanglan.PUSH_CREDENTIALS)


def scrub_scope(scope: dict[str, Any]) -> None:
    """Mask the EIMS token in the path and the credentials in the query string, in place."""
    path = scope.get("path")
    if isinstance(path, str):
        scope["path"] = _EIMS_TOKEN.sub(r"\1***", path)
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        scope["raw_path"] = _EIMS_TOKEN_BYTES.sub(rb"\1***", raw_path)
    query = scope.get("query_string")
    if isinstance(query, bytes) and query:
        text = query.decode("latin-1")
        if _SECRET_QUERY.search(text):
            pairs = parse_qsl(text, keep_blank_values=True)
            scope["query_string"] = urlencode(
                [(k, "***" if k in _SECRET_KEYS else v) for k, v in pairs]).encode("ascii")


class ScrubSecretsMiddleware:
    """Scrubs the scope when the response starts (the endpoint has read what it needs).

    Access loggers format the scope when the response starts (uvicorn) or after
    the app returns (Airflow's middleware around a mounted app): both see the
    scrubbed one, because Starlette hands the same scope dict down to a mount.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def scrubbing_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                scrub_scope(scope)
            await send(message)

        try:
            await self.app(scope, receive, scrubbing_send)
        finally:
            scrub_scope(scope)


def redact_path(path: str) -> str:
    """A request target safe to log: no EIMS token, no query string with credentials."""
    path, sep, query = path.partition("?")
    path = _EIMS_TOKEN.sub(r"\1***", path)
    if sep and (_SECRET_QUERY.search(query) or "/chuanglan/" in path):
        return f"{path}?[redacted]"
    return f"{path}{sep}{query}"


class RedactingFilter(logging.Filter):
    """Rewrites uvicorn access-log records (client, method, target, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Idempotent: the Airflow API server's access log passes through it too."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
