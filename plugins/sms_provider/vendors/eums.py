"""EUMS enterprise SMS platform (interface protocol V2.1): send, reports, MO, balance, statistics.

Every call is a key-value request (we POST it form-encoded so that nothing
password-derived lands in URLs or access logs) carrying ``name``, ``seed``
(``yyyyMMddHHmmss``, China time), ``key`` and ``ver``:

* ``key`` = md5(md5(password) + seed [+ data]), both digests lower-case hex.
  Only ``send.do`` signs its ``data``; the gateway refuses a seed more than
  30 minutes away from its own clock (code 106).
* ``ver=1``: ``data`` and the answer are plain JSON.
* ``ver=17``: ``data`` is the hex of AES/ECB/PKCS5(JSON) under the AES key the
  vendor supplies, and the send key is computed over that hex string as sent.
  Answers are hex ciphertext of the JSON, except the errors the gateway gives
  before it knows the account (101, 201, 124), which stay plain JSON.

Reports and replies are consume-once pulls; the platform pushes nothing this
document describes, so there are no push parsers. The paths, codes and limits
are in :mod:`sms_provider.vendors.eums_codes`, the answer parsers in
:mod:`sms_provider.vendors.eums_answers`; this module is the client.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, ClassVar

import requests

from sms_provider.errors import (
    AuthenticationError,
    LimitExceededError,
    PermanentError,
    RateLimitedError,
)
from sms_provider.models import Balance, DailyStatistic, DeliveryReport, InboundMessage, Submission
from sms_provider.vendors.base import (
    OutboundMessage,
    VendorClient,
    message_columns,
)
from sms_provider.vendors.batch_text import plain_digit_numbers
from sms_provider.vendors.clock import china_now, china_stamp
from sms_provider.vendors.codec import aes_encrypt, aes_key_bytes, md5_hex
from sms_provider.vendors.eums_answers import (
    accepted_from_text,
    answer_code,
    answer_object,
    answer_text,
    decode_answer,
    parse_balance,
    parse_inbound,
    parse_reports,
    parse_send_answer,
    parse_statistics,
    raise_for_answer,
)
from sms_provider.vendors.eums_codes import (
    AES,
    BALANCE,
    EMPTY_RESULT,
    MAX_CONTENT_CHARS,
    MO,
    PLAIN,
    PROFILE,
    REFERENCE_FORBIDDEN,
    REFERENCE_MAX,
    REPORT,
    SEND,
    STATISTIC,
    STATISTIC_CALLS,
    STATISTIC_MAX_DAYS,
    STATISTIC_WINDOW_S,
    VENDOR,
)
from sms_provider.vendors.limits import check_content, check_custom_id, same_content
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

_DIGITS = re.compile(r"^\d+$")


class CallWindow:
    """At most ``calls`` per rolling ``window_s`` seconds; refuses instead of waiting.

    Waiting would hold a worker for up to a minute; the caller's retry
    machinery already knows what to do with ``retry_after``.
    """

    def __init__(self, calls: int, window_s: float) -> None:
        self.calls = calls
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, endpoint: str) -> None:
        with self._lock:
            now = time.monotonic()
            while self._times and now - self._times[0] >= self.window_s:
                self._times.popleft()
            if len(self._times) >= self.calls:
                wait = self.window_s - (now - self._times[0])
                raise RateLimitedError(
                    f"at most {self.calls} calls per {self.window_s:.0f} s; "
                    f"next slot in {wait:.1f} s", retry_after=wait, vendor=VENDOR,
                    endpoint=endpoint)
            self._times.append(now)


class EumsClient(VendorClient):
    """Client of the EUMS V2.1 HTTP interface, plain (``ver=1``) or AES (``ver=17``).

    Settings:

    * ``name`` / ``password``: the account; only md5(password) is kept.
    * ``ver`` (1): 17 encrypts ``data`` and answers with ``aes_key`` (16, 24 or
      32 bytes, supplied by the vendor).
    * ``max_batch`` (1000): the document states no maximum of numbers per
      request; 1000 is our conservative limit.
    * ``max_content_chars`` (500, the document's maximum): lower it for
      channels that take less.
    * ``ext`` (None): extension code appended to the sender port, digits only.
    * ``clock_offset_s`` (0): seconds added to this machine's clock when making
      the seed, for hosts whose clock is off (the gateway allows 30 minutes).

    All messages of one request share one content and one custom id (sent as
    ``reference``, at most 50 characters, no ``,`` or ``;``). Mobiles must be
    mainland numbers (``13812345678``); the gateway drops invalid ones.
    Statistics are limited client-side to the documented 3 calls a minute.
    """

    profile: ClassVar[VendorProfile] = PROFILE

    def __init__(self, settings: HttpSettings, *, name: str, password: str, ver: int = PLAIN,
                 aes_key: str | None = None, max_batch: int | None = None,
                 max_content_chars: int = MAX_CONTENT_CHARS, clock_offset_s: float = 0.0,
                 ext: str | None = None) -> None:
        if not name:
            raise AuthenticationError("account name is empty", vendor=VENDOR)
        if not password:
            raise AuthenticationError("password is empty", vendor=VENDOR)
        if ver not in (PLAIN, AES):
            raise PermanentError(f"ver must be {PLAIN} or {AES}, got {ver!r}", vendor=VENDOR)
        if ver == AES:
            if not aes_key:
                raise AuthenticationError("ver=17 needs the aes_key the vendor supplies",
                                          vendor=VENDOR)
            aes_key_bytes(aes_key)  # refuses a bad length, naming only the length
        if not 1 <= max_content_chars <= MAX_CONTENT_CHARS:
            raise LimitExceededError(
                f"max_content_chars must be between 1 and {MAX_CONTENT_CHARS}, "
                f"got {max_content_chars}", vendor=VENDOR)
        if ext is not None and not _DIGITS.match(ext):
            raise LimitExceededError(f"ext must be digits only, got {ext!r}", vendor=VENDOR)
        super().__init__(settings, max_batch=max_batch)
        self.name = name
        self.ver = ver
        self.max_content_chars = max_content_chars
        self.clock_offset_s = float(clock_offset_s)
        self.ext = ext or None
        self._password_md5 = md5_hex(password)
        self._aes_key = aes_key if ver == AES else None
        self._statistic_window = CallWindow(STATISTIC_CALLS, STATISTIC_WINDOW_S)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.http.base_url!r}, name={self.name!r}, "
                f"ver={self.ver})")

    # --- operations --------------------------------------------------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None
             ) -> Sequence[Submission]:
        """One request for the chunk: one content, one reference, numbers comma-joined."""
        if template_id is not None:
            raise PermanentError("EUMS sends plain text; template_id is not supported",
                                 vendor=VENDOR, endpoint=SEND)
        mobiles, content, reference = self._check_send(messages)
        body: dict[str, str] = {"dest": ",".join(mobiles), "content": content}
        if self.ext:
            body["ext"] = self.ext
        if reference is not None:
            body["reference"] = reference
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        if self._aes_key is not None:
            data = aes_encrypt(self._aes_key, data.encode("utf-8")).hex().upper()
        text = answer_text(self._post(SEND, idempotent=False, data=data), SEND, self._aes_key)
        accepted = accepted_from_text(text, mobiles, reference)
        if accepted is not None:
            return accepted
        payload = answer_object(text, SEND)
        raise_for_answer(payload, SEND)
        return parse_send_answer(payload, mobiles, reference)

    def pull_reports(self, limit: int | None = None) -> list[DeliveryReport]:
        """Reports the gateway has not handed out yet (consume-once).

        The gateway decides how many come back; ``limit`` cannot be passed on.
        """
        return parse_reports(self._call(REPORT, idempotent=False, empty_ok=True))

    def pull_inbound(self) -> list[InboundMessage]:
        """Replies not handed out yet (consume-once)."""
        return parse_inbound(self._call(MO, idempotent=False, empty_ok=True))

    def balance(self) -> list[Balance]:
        return parse_balance(self._call(BALANCE, idempotent=True))

    def statistics(self, start: date, end: date) -> list[DailyStatistic]:
        """The gateway's per-day counts for ``start``..``end`` (inclusive, ≤ 31 days)."""
        if end < start:
            raise LimitExceededError(f"end date {end} is before start date {start}",
                                     vendor=VENDOR, endpoint=STATISTIC)
        days = (end - start).days + 1
        if days > STATISTIC_MAX_DAYS:
            raise LimitExceededError(
                f"date window is {days} days, the limit is {STATISTIC_MAX_DAYS}",
                vendor=VENDOR, endpoint=STATISTIC)
        self._statistic_window.take(STATISTIC)
        return parse_statistics(self._call(STATISTIC, idempotent=True, empty_ok=True, extra={
            "start_date": start.strftime("%Y%m%d"), "end_date": end.strftime("%Y%m%d")}))

    # --- plumbing ----------------------------------------------------------
    def _check_send(self, messages: Sequence[OutboundMessage]
                    ) -> tuple[list[str], str, str | None]:
        self.check_batch(messages)
        mobiles, contents, custom_ids = message_columns(messages)
        content = same_content(VENDOR, contents)
        check_content(VENDOR, content, self.max_content_chars, where=" (message 0)")
        if not plain_digit_numbers(mobiles):
            for i, mobile in enumerate(mobiles):
                if not mobile or mobile != mobile.strip() or "," in mobile:
                    raise LimitExceededError(
                        f"message {i}: mobile {mobile!r} is empty or holds a comma or blanks",
                        vendor=VENDOR, endpoint=SEND)
        return mobiles, content, self._reference(custom_ids)

    @staticmethod
    def _reference(custom_ids: list[str | None]) -> str | None:
        reference = custom_ids[0]
        if custom_ids.count(reference) != len(custom_ids):
            i = next(i for i, custom_id in enumerate(custom_ids) if custom_id != reference)
            raise LimitExceededError(
                f"message {i} has custom id {custom_ids[i]!r}, message 0 {reference!r}: "
                "one request carries one reference", vendor=VENDOR, endpoint=SEND)
        check_custom_id(VENDOR, reference, max_len=REFERENCE_MAX, where=" (message 0)")
        if reference is not None and any(c in reference for c in REFERENCE_FORBIDDEN):
            raise LimitExceededError(
                f"custom id {reference!r} (message 0) holds ',' or ';', which the "
                "reference may not contain", vendor=VENDOR, endpoint=SEND)
        return reference

    def _signed(self, data: str = "") -> dict[str, str]:
        now = china_now() + timedelta(seconds=self.clock_offset_s)
        seed = china_stamp(now)
        return {"name": self.name, "seed": seed,
                "key": md5_hex(self._password_md5 + seed + data), "ver": str(self.ver)}

    def _post(self, endpoint: str, *, idempotent: bool, data: str | None = None,
              extra: dict[str, str] | None = None) -> bytes:
        """POST one signed request; the answer's body as it came."""
        form = self._signed(data or "")
        if data is not None:
            form["data"] = data
        form.update(extra or {})
        resp: requests.Response = self.http.request("POST", endpoint, idempotent=idempotent,
                                                    data=form)
        return resp.content

    def _call(self, endpoint: str, *, idempotent: bool, data: str | None = None,
              empty_ok: bool = False, extra: dict[str, str] | None = None
              ) -> dict[str, Any]:
        """POST one signed request and return the decoded answer of a success.

        With ``empty_ok`` a "query result empty" (130) is an answer with no data.
        """
        payload = decode_answer(self._post(endpoint, idempotent=idempotent, data=data,
                                           extra=extra), endpoint, self._aes_key)
        if empty_ok and answer_code(payload, endpoint) == EMPTY_RESULT:
            return {"code": EMPTY_RESULT, "data": []}
        raise_for_answer(payload, endpoint)
        return payload
