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

import logging
import threading
import time
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from sms_provider.errors import (
    AmbiguousError,
    PermanentError,
    RateLimitedError,
    RetryableError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpSettings:
    """Per-connection transport settings; defaults are conservative."""

    base_url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    rate_limit: float | None = None  # requests per second, None = unlimited
    pool_size: int = 8


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


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never established."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    inner = getattr(reason, "reason", reason)
    return isinstance(inner, NewConnectionError | ConnectionRefusedError)


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
        self.limiter = RateLimiter(settings.rate_limit)

    def __repr__(self) -> str:
        return f"HttpTransport(vendor={self.vendor!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def request(self, method: str, path: str, *, idempotent: bool,
                params: dict | None = None, data: bytes | str | dict | None = None,
                json_body: object | None = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        """Send one request; raise a taxonomy error for any transport-level failure.

        A 2xx/other response is returned as is: vendor codes are the client's job.
        """
        self.limiter.wait()
        url = self.base_url + path
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
