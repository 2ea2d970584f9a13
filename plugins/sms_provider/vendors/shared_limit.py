"""One rate limit per vendor account across every process and host, held in Redis.

A connection's ``rate_limit`` is the vendor's limit for the *account*, not for
one process: two Celery workers with four shards in flight must together stay
under it. When ``SMS_RATE_LIMIT_URL`` names a Redis database
(``redis://host:6379/0``), every process sending for the same vendor account
books its requests in one schedule there; without it each process keeps its
own :class:`~sms_provider.vendors.transport.RateLimiter`, as on one host.

The schedule is GCRA with a burst of one: each request takes the next free
slot, ``(1 + guard) / rate`` seconds after the previous one, whoever sent it.
The slot is booked by a Lua script that reads Redis's own clock, so the hosts'
clocks need not agree; the caller only sleeps the relative wait it is given.
``guard`` (``SMS_RATE_LIMIT_GUARD_S``, default 0.05 s) absorbs the spread of
the time between a booked slot and the request reaching the vendor (a sleep
that wakes late, a slow connect): with an integer rate the vendor then sees at
most ``rate`` requests in any one-second window as long as that spread stays
under ``guard``.

The same script honours a *pause*: a vendor's own "too fast" answer (HTTP 429,
Emay ``ERROR_OVER_SPEED``, an EUMS or Chuanglan frequency code) seen by any
process records "paused until now + retry_after" for the account, and no
process books a slot before it ends.

Redis unreachable means the limit cannot be kept: :meth:`SharedRateLimiter.wait`
raises a :class:`RetryableError` before anything is sent (never silently
unlimited). The key is the vendor and the account's login, never a password.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from sms_provider.errors import RateLimitedError, RetryableError

log = logging.getLogger(__name__)

ENV_URL = "SMS_RATE_LIMIT_URL"
ENV_GUARD = "SMS_RATE_LIMIT_GUARD_S"
ENV_MAX_WAIT = "SMS_RATE_LIMIT_MAX_WAIT_S"
DEFAULT_GUARD_S = 0.05
#: a booking further away than this is refused with RateLimitedError instead of slept on
DEFAULT_MAX_WAIT_S = 30.0
KEY_PREFIX = "sms_provider:rate"

# Returns {booked, wait}: booked 1 = the slot is ours, sleep `wait` seconds then send;
# 0 = the next slot is more than max_wait away, nothing booked. Floats go back as
# strings: Redis would truncate a Lua number to an integer.
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local start = now
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > start then start = paused end
if interval > 0 then
  local free = tonumber(redis.call('GET', KEYS[1]) or '0')
  if free > start then start = free end
end
local wait = start - now
if wait > tonumber(ARGV[2]) then
  return {0, tostring(wait)}
end
if interval > 0 then
  local keep_ms = math.ceil((start + interval - now) * 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.6f', start + interval), 'PX', keep_ms)
end
return {1, tostring(wait)}
"""

# Moves "paused until" to now + ARGV[1] unless it is already later; returns the wait.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local till = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > current then
  redis.call('SET', KEYS[1], string.format('%.6f', till), 'PX',
             math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
  current = till
end
return tostring(current - now)
"""

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def safe_url(url: str) -> str:
    """The URL without user or password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _redis(url: str):  # -> redis.Redis, imported only where the limit is shared
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            import redis

            # short timeouts: a store that does not answer must fail the send, not hang it
            client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5,
                                          health_check_interval=30)
            _clients[url] = client
        return client


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise ValueError(f"{name} must be a number of seconds, 0 or more, not {text!r}")
    return value


class SharedRateLimiter:
    """The account's schedule and pause in Redis; same ``wait()`` as the local limiter."""

    def __init__(self, url: str, vendor: str, account: str, rate: float | None, *,
                 guard_s: float = DEFAULT_GUARD_S, max_wait_s: float = DEFAULT_MAX_WAIT_S
                 ) -> None:
        self.url = url
        self.vendor = vendor
        self.account = account
        self.rate = rate if rate and rate > 0 else None
        self.interval = (1.0 + guard_s) / self.rate if self.rate else 0.0
        self.max_wait_s = max_wait_s
        self.schedule_key = f"{KEY_PREFIX}:{vendor}:{account}:next"
        self.pause_key = f"{KEY_PREFIX}:{vendor}:{account}:paused"
        self._book = None
        self._pause = None

    def __repr__(self) -> str:
        return (f"SharedRateLimiter(url={safe_url(self.url)!r}, vendor={self.vendor!r}, "
                f"account={self.account!r}, rate={self.rate!r})")

    def _scripts(self):
        if self._book is None:
            client = _redis(self.url)
            self._book = client.register_script(_BOOK)
            self._pause = client.register_script(_PAUSE)
        return self._book, self._pause

    def _unreachable(self, exc: Exception) -> RetryableError:
        return RetryableError(
            f"the shared rate limit store {safe_url(self.url)} ({ENV_URL}) did not answer "
            f"({type(exc).__name__}); nothing was sent, so the limit of the account is "
            "kept: retry once Redis is back", vendor=self.vendor)

    def wait(self) -> None:
        """Book the account's next slot and sleep until it; raise rather than overrun."""
        import redis

        try:
            book, _ = self._scripts()
            booked, wait = book(keys=[self.schedule_key, self.pause_key],
                                args=[repr(self.interval), repr(self.max_wait_s)])
        except redis.RedisError as exc:
            raise self._unreachable(exc) from None
        wait = float(wait)
        if not int(booked):
            raise RateLimitedError(
                f"the account's next request slot is {wait:.1f} s away (a vendor pause "
                f"or other workers' bookings); more than {self.max_wait_s:g} s to wait "
                "in the task", retry_after=wait, vendor=self.vendor)
        if wait > 0:
            time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every process of the account back for ``seconds`` (a vendor said too fast)."""
        import redis

        seconds = max(float(seconds), 0.0)
        if not seconds:
            return
        try:
            _, pause = self._scripts()
            pause(keys=[self.pause_key], args=[repr(seconds)])
        except redis.RedisError as exc:
            # the vendor's own answer is still raised; the next wait() fails closed
            log.warning("%s: could not record the vendor's pause in %s (%s)", self.vendor,
                        safe_url(self.url), type(exc).__name__)
            return
        log.info("%s account %s paused for %.1f s across workers (the vendor said too fast)",
                 self.vendor, self.account, seconds)


def shared_limiter(vendor: str, account: str | None, rate: float | None,
                   env: Mapping[str, str] | None = None) -> SharedRateLimiter | None:
    """The account's shared limiter when ``SMS_RATE_LIMIT_URL`` is set, else None.

    ``account`` None (a client built by hand, without a login in its settings)
    has no key to share and gets None too.
    """
    env = os.environ if env is None else env
    url = env.get(ENV_URL, "").strip()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{ENV_URL} must be a Redis URL (redis://host:6379/0), "
                         f"not {safe_url(url)!r}")
    if not account:
        log.warning("%s: no account in the HTTP settings, so the rate limit is this "
                    "process's only", vendor)
        return None
    return SharedRateLimiter(url, vendor, account, rate,
                             guard_s=_seconds(env, ENV_GUARD, DEFAULT_GUARD_S),
                             max_wait_s=_seconds(env, ENV_MAX_WAIT, DEFAULT_MAX_WAIT_S))
