"""Keeping the receiver's secrets out of access logs.

Two push URLs carry a secret in the path (``/eims/<token>/reports`` and the Emay
plain-push ``/emay/<token>/reports``) and Chuanglan's query string carries
``receiver``/``pswd``. A vendor, a scanner or a typo can send them in any case
(``/EIMS/…``), percent-encoded (``/eims%2F…``, ``p%73wd=``) or under a route that
does not exist, and the access log writes whatever came. So masking does not
depend on the route matching:

* in a path, every segment after a vendor prefix segment (``eims``, ``emay``, any
  case, percent-encoded or not) is masked unless it is a route word
  (``reports``); ``%2F`` and ``\\`` count as separators;
* in a query string, the value of every parameter whose decoded key is a
  credential (any case) is masked; the log filter drops a Chuanglan query
  string altogether.

:class:`ScrubSecretsMiddleware` rewrites the request scope once the endpoint
is done (access loggers read the scope: uvicorn's, and Airflow's around a
mounted app); :class:`RedactingFilter` on ``uvicorn.access`` is the second line,
for the requests the app never sees (e.g. uvicorn's own 503 when over the
connection limit).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote, unquote_plus

from sms_provider.vendors import chuanglan

#: path segments after which any segment may be a secret token
VENDOR_PREFIXES = frozenset({"eims", "emay"})
#: segments after a vendor prefix that are part of a route, never a secret
ROUTE_WORDS = frozenset({"reports"})
MASK = "***"
_SEPARATORS = re.compile(r"(/|\\|%2[fF]|%5[cC])")
_SECRET_KEYS = frozenset(k.lower() for k in chuanglan.PUSH_CREDENTIALS)


def _plain(segment: str) -> str:
    return unquote(segment, errors="replace").strip().lower()


def mask_path(path: str) -> str:
    """``path`` with every segment after a vendor prefix masked, route words aside."""
    if not path:
        return path
    pieces = _SEPARATORS.split(path)  # segments at even indices, separators between
    masking = False
    for i in range(0, len(pieces), 2):
        segment = pieces[i]
        if not segment:
            continue
        plain = _plain(segment)
        if masking and plain not in ROUTE_WORDS:
            pieces[i] = MASK
        elif plain in VENDOR_PREFIXES:
            masking = True
    return "".join(pieces)


def _secret_key(raw_key: str) -> bool:
    return unquote_plus(raw_key, errors="replace").strip().lower() in _SECRET_KEYS


def mask_query(query: str) -> str:
    """``query`` with the value of every credential parameter masked, the rest as sent."""
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        key, sep, _ = pair.partition("=")
        if _secret_key(key):
            pairs[i] = f"{key}={MASK}" if sep else key
    return "&".join(pairs)


def has_secret_query(query: str) -> bool:
    return any(_secret_key(pair.partition("=")[0]) for pair in query.split("&"))


def scrub_scope(scope: dict[str, Any]) -> None:
    """Mask tokens in the path and credentials in the query string, in place."""
    path = scope.get("path")
    if isinstance(path, str):
        scope["path"] = mask_path(path)
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        scope["raw_path"] = mask_path(raw_path.decode("latin-1")).encode("latin-1")
    query = scope.get("query_string")
    if isinstance(query, bytes) and query:
        text = query.decode("latin-1")
        if has_secret_query(text):
            scope["query_string"] = mask_query(text).encode("latin-1")


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


def redact_path(target: str) -> str:
    """A request target safe to log: no token, no query string with credentials."""
    path, sep, query = target.partition("?")
    path = mask_path(path)
    if sep and (has_secret_query(query)
                or any(_plain(s) == "chuanglan" for s in _SEPARATORS.split(path))):
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
