"""One HTTP session per client, and the mapping of transport failures onto the taxonomy.

The question that matters for every failure is *did the request reach the
vendor?*  A refused or timed-out connect never left this machine: retryable.
Anything after the request was written (read timeout, a dropped connection,
a 500 from a proxy) may have been acted on: ambiguous for a call with side
effects, retryable for a pure read.

Exception texts from requests/urllib3 contain the full URL, and some vendors
(EIMS, Chuanglan) put the password in the query string, so no text of theirs
is ever copied into ours: messages name the method and path only.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from sms_provider.errors import (
    AmbiguousError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)
from sms_provider.vendors.shared_limit import SharedRateLimiter, shared_limiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpSettings:
    """Per-connection transport settings; defaults are conservative."""

    base_url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    rate_limit: float | None = None  # requests per second, None = unlimited
    pool_size: int = 8
    #: the login the vendor counts ``rate_limit`` against: the key of the limit shared
    #: across processes (``shared_limit``); never a password
    account: str | None = None


class RateLimiter:
    """Thread-safe spacing of requests to at most ``rate`` per second."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)

    def pause(self, seconds: float) -> None:
        """A vendor's "too fast": this process's callers already back off by its hint."""


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never established."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return isinstance(inner, NewConnectionError | ConnectionRefusedError)


# --- form bodies ---------------------------------------------------------------------
# requests encodes a dict body with urllib's quote_plus, which handles every byte in a
# Python call: for a send of a thousand numbers that costs more than the rest of the
# request. These produce the very same text with bytes.replace and one regex pass.

_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_PERCENT = [b"%%%02X" % byte for byte in range(256)]
#: ASCII that quote_plus escapes; "%" goes first, on its own, and " " last (as "+")
_ASCII_ESCAPES = tuple((bytes([byte]), _PERCENT[byte]) for byte in range(0x80)
                       if byte not in _ALWAYS_SAFE and byte not in b"% ")
_NON_ASCII_BYTES = re.compile(rb"[\x80-\xff]+")
_FORM_ESCAPE = "sms-provider-form-escape"


def _escape_run(match: re.Match[bytes]) -> bytes:
    return b"".join([_PERCENT[byte] for byte in match.group()])


def _escape_non_ascii(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a run of non-ASCII characters as its percent-escaped UTF-8.

    The ASCII encoder finds the runs in C, so only those cost a Python call.
    """
    if not isinstance(error, UnicodeEncodeError):
        raise error
    utf8 = error.object[error.start:error.end].encode("utf-8")
    return "".join([f"%{byte:02X}" for byte in utf8]), error.end


codecs.register_error(_FORM_ESCAPE, _escape_non_ascii)


def quote_form(value: str | bytes) -> str:
    """``urllib.parse.quote_plus(value)``: UTF-8, spaces as ``+``, all else but
    letters, digits and ``_.-~`` percent-escaped."""
    if isinstance(value, str):
        if value.isascii() and value.isalnum():
            return value  # names, keys, digests and stamps: nothing to escape
        data = value.replace("%", "%25").encode("ascii", _FORM_ESCAPE)
    else:
        data = bytes(value).replace(b"%", b"%25")
        if not data.isascii():
            data = _NON_ASCII_BYTES.sub(_escape_run, data)
    for raw, escaped in _ASCII_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data.replace(b" ", b"+").decode("ascii")


def form_body(fields: Mapping[str, Any]) -> str:
    """An ``application/x-www-form-urlencoded`` body, as requests makes one of ``fields``.

    A list or tuple value gives the key once per item; ``None`` leaves the
    key (or item) out; other values are sent as ``str(value)``.
    """
    pairs = []
    for key, values in fields.items():
        for value in values if isinstance(values, list | tuple) else (values,):
            if value is None:
                continue
            if not isinstance(value, str | bytes):
                value = str(value)
            pairs.append(f"{quote_form(key)}={quote_form(value)}")
    return "&".join(pairs)


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


# --- no password in urllib3's debug lines -------------------------------------------

_SECRET_QUERY_VALUE = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)[^&#\s\"']*")


class _RedactQueryPasswords(logging.Filter):
    """Blank the password of a query string in urllib3's log records.

    urllib3 logs every request line at DEBUG, query string included, and EIMS
    takes its password in the query of its GET calls, as its document demands.
    Airflow masks registered secrets in task logs; this library also runs
    outside Airflow (the simulator, scripts, notebooks), where nothing would.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_SECRET_QUERY_VALUE.sub(r"\1***", arg) if isinstance(arg, str)
                                else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET_QUERY_VALUE.sub(r"\1***", record.msg)
        return True


_REDACT = _RedactQueryPasswords()
for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_REDACT)  # filters sit on the logger that logs


class HttpTransport:
    """Keep-alive session plus failure classification for one vendor connection."""

    def __init__(self, vendor: str, settings: HttpSettings) -> None:
        self.vendor = vendor
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.pool_size,
                              max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._read_environment_once()
        self.limiter: RateLimiter | SharedRateLimiter = (
            shared_limiter(vendor, settings.account, settings.rate_limit)
            or RateLimiter(settings.rate_limit))

    def _read_environment_once(self) -> None:
        """Take proxies, CA bundle and .netrc from the environment now, not per request.

        requests scans ``os.environ`` for proxy settings on every request, which
        costs more than the rest of our per-request work; the environment of a
        task does not change between its requests.
        """
        session = self.session
        found = session.merge_environment_settings(self.base_url, {}, None, None, None)
        session.proxies.update(found["proxies"])
        session.verify = found["verify"]
        session.auth = requests.utils.get_netrc_auth(self.base_url)
        session.trust_env = False

    def __repr__(self) -> str:
        return f"HttpTransport(vendor={self.vendor!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, *, idempotent: bool,
                params: dict | None = None, data: bytes | str | Mapping[str, Any] | None = None,
                json_body: object | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        """Send one request; raise a taxonomy error for any transport-level failure.

        A 2xx/other response is returned as is: vendor codes are the client's job.
        """
        self.limiter.wait()
        url = self.base_url + path
        if isinstance(data, Mapping):
            data = form_body(data)
            headers = {"Content-Type": FORM_CONTENT_TYPE, **(headers or {})}
        started = time.monotonic()
        try:
            resp = self.session.request(
                method, url, params=params, data=data, json=json_body, headers=headers,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout))
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise RetryableError(f"could not connect for {method} {path}",
                                     vendor=self.vendor, endpoint=path) from None
            cls = RetryableError if idempotent else AmbiguousError
            raise cls(f"connection lost after {method} {path} was sent "
                      f"({type(exc).__name__})", vendor=self.vendor, endpoint=path) from None
        except requests.Timeout:
            cls = RetryableError if idempotent else AmbiguousError
            raise cls(f"no answer within {self.settings.read_timeout}s to {method} {path}",
                      vendor=self.vendor, endpoint=path) from None
        except requests.RequestException as exc:
            cls = RetryableError if idempotent else AmbiguousError
            raise cls(f"{type(exc).__name__} during {method} {path}",
                      vendor=self.vendor, endpoint=path) from None
        log.debug("%s %s %s -> %s in %.3fs", self.vendor, method, path, resp.status_code,
                  time.monotonic() - started)
        self._raise_for_http_status(resp, method, path, idempotent)
        return resp

    def _raise_for_http_status(self, resp: requests.Response, method: str, path: str,
                               idempotent: bool) -> None:
        status = resp.status_code
        if status < 400:
            return
        code = str(status)
        if status == 429:
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            raise RateLimitedError(f"HTTP 429 for {method} {path}", retry_after=retry_after,
                                   vendor=self.vendor, code=code, endpoint=path)
        if status == 503:
            # 503 is the server saying it did not take the request on.
            raise RetryableError(f"HTTP 503 for {method} {path}", vendor=self.vendor,
                                 code=code, endpoint=path)
        if status >= 500:
            cls = RetryableError if idempotent else AmbiguousError
            raise cls(f"HTTP {status} for {method} {path}", vendor=self.vendor, code=code,
                      endpoint=path)
        raise PermanentError(f"HTTP {status} for {method} {path}", vendor=self.vendor,
                             code=code, endpoint=path)


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0
