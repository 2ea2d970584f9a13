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
document describes, so there are no push parsers here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, ClassVar

import msgspec
import requests

from sms_provider.errors import (
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
    RateLimitedError,
    VendorError,
)
from sms_provider.models import (
    AcceptedBatch,
    Balance,
    DailyStatistic,
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Submission,
    SubmissionStatus,
)
from sms_provider.vendors import profiles
from sms_provider.vendors.base import (
    OutboundMessage,
    VendorClient,
    message_columns,
)
from sms_provider.vendors.clock import china_now, china_stamp, parse_china
from sms_provider.vendors.codec import aes_decrypt, aes_encrypt, aes_key_bytes, md5_hex
from sms_provider.vendors.codes import CodeTable, normalise_state, raise_for_code
from sms_provider.vendors.limits import check_content, check_custom_id, same_content
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

PROFILE = profiles.EUMS
VENDOR = PROFILE.conn_type

PATH_PREFIX = "/eums/sms/utf8/json/"
SEND = PATH_PREFIX + "send.do"
REPORT = PATH_PREFIX + "report.do"
MO = PATH_PREFIX + "mo.do"
BALANCE = PATH_PREFIX + "balance.do"
STATISTIC = PATH_PREFIX + "statistic_app.do"

PLAIN, AES = 1, 17
#: The document names no maximum of numbers per request: a conservative default.
MAX_RECIPIENTS = PROFILE.limits.batch
MAX_CONTENT_CHARS = PROFILE.limits.content_chars
REFERENCE_MAX = PROFILE.limits.custom_id_chars
REFERENCE_FORBIDDEN = (",", ";")
STATISTIC_MAX_DAYS = PROFILE.limits.statistics_days
STATISTIC_CALLS = PROFILE.limits.statistics_calls
STATISTIC_WINDOW_S = PROFILE.limits.statistics_window_s
#: The document gives 131 no back-off hint; a third of the one-minute window.
TOO_FREQUENT_RETRY_AFTER_S = 20.0
OK = 0
EMPTY_RESULT = 130

_CLOCK = ("seed refused: this machine's clock is more than 30 minutes away from the "
          "gateway's; check the clock (or set clock_offset_s)")

#: Every code of the document's table (101..999); anything else becomes VendorError.
CODES: CodeTable = {
    "101": (AuthenticationError, "account name missing (缺少name参数)"),
    "102": (PermanentError, "seed missing (缺少seed参数)"),
    "103": (PermanentError, "key missing (缺少key参数)"),
    "104": (PermanentError, "dest missing or unusable: no valid number, or more numbers "
                            "than the gateway takes (缺少dest参数)"),
    "105": (PermanentError, "content missing (缺少content参数)"),
    "106": (AuthenticationError, _CLOCK + " (seed错误)"),
    "107": (AuthenticationError, "key wrong: check the password (key错误)"),
    "108": (PermanentError, "ext (extension code) wrong (ext错误)"),
    "109": (LimitExceededError, "content too long (内容超长)"),
    "110": (PermanentError, "template not registered (模板未备案)"),
    "111": (PermanentError, "content carries no 【signature】 (无签名)"),
    "112": (PermanentError, "pk_total missing (缺少pk_total参数)"),
    "113": (PermanentError, "signature not allowed (签名不合法)"),
    "114": (PermanentError, "scheduled time malformed (定时时间格式错误)"),
    "115": (PermanentError, "scheduled time out of range (定时时间范围错误)"),
    "116": (PermanentError, "plain HTTP not supported: use HTTPS (不支持HTTP)"),
    "121": (AuthenticationError, "decryption failed: check aes_key (解密失败密钥问题)"),
    "122": (PermanentError, "decryption failed: numbers (解密失败号码问题)"),
    "123": (PermanentError, "decryption failed: content (解密失败内容问题)"),
    "124": (AuthenticationError, "protocol version (ver) not supported for this account "
                                 "(版本号不支持)"),
    "125": (PermanentError, "data is empty (DATA内容空)"),
    "126": (PermanentError, "decryption failed: data malformed (解密失败-DATA问题)"),
    "127": (PermanentError, "start date wrong (起始日期错误)"),
    "128": (PermanentError, "end date wrong (结束日期错误)"),
    "129": (LimitExceededError, "date window wrong or longer than 31 days (起止日期范围错误)"),
    "130": (PermanentError, "query result empty (查询结果空)"),
    "131": (RateLimitedError, "queried too often (查询过于频繁)"),
    "201": (AuthenticationError, "no such account (无对应账户)"),
    "202": (AuthenticationError, "account suspended (账户暂停)"),
    "203": (AuthenticationError, "account deleted (账户删除)"),
    "204": (AuthenticationError, "client IP not registered for the account (账户IP没备案)"),
    "205": (InsufficientBalanceError, "account has no balance (账户无余额)"),
    "206": (AuthenticationError, "password wrong (密码错误)"),
    "301": (PermanentError, "no such product (无对应产品)"),
    "302": (PermanentError, "product suspended (产品暂停)"),
    "303": (PermanentError, "product deleted (产品删除)"),
    "304": (PermanentError, "product outside its service hours (产品不在服务时间)"),
    "305": (PermanentError, "no matching channel (无匹配通道)"),
    "306": (PermanentError, "channel suspended (通道暂停)"),
    "307": (PermanentError, "channel deleted (通道已删除)"),
    "308": (PermanentError, "channel outside its service hours (通道不在服务时间)"),
    "309": (PermanentError, "SMS service not provided (未提供短信服务)"),
    "401": (PermanentError, "content contains a blocked word (屏蔽词)"),
    "999": (VendorError, "other error (其他错误)"),
}

#: Report states; everything else (UNDELIV, EXPIRED, REJECTD, DELETED, MK:xxxx,
#: ID:xxxx, ...) is a gateway or carrier failure.
REPORT_STATES: dict[str, DeliveryStatus] = {
    "DELIVRD": DeliveryStatus.DELIVERED,
    "UNKNOWN": DeliveryStatus.UNKNOWN,
    "ACCEPTD": DeliveryStatus.PENDING,
    "ENROUTE": DeliveryStatus.PENDING,
}
STATE_DESCRIPTIONS = {
    "DELIVRD": "delivered",
    "UNKNOWN": "state unknown",
    "ACCEPTD": "accepted, not yet delivered",
    "ENROUTE": "on its way",
    "UNDELIV": "undeliverable",
    "EXPIRED": "expired before delivery",
    "REJECTD": "rejected by the carrier",
    "DELETED": "deleted",
}

#: MO ``msg_fmt`` values (the SMPP/CMPP data codings) -> Python codec.
MSG_FORMATS = {0: "ascii", 8: "utf-16-be", 15: "gbk"}

_DIGITS = re.compile(r"^\d+$")


# --- answers: pure functions, so canned bodies can be checked too -----------
def decode_answer(body: bytes, endpoint: str, aes_key: str | None = None) -> dict[str, Any]:
    """The JSON object of an answer, plain or (with ``aes_key``) hex AES ciphertext."""
    return answer_object(answer_text(body, endpoint, aes_key), endpoint)


def answer_text(body: bytes, endpoint: str, aes_key: str | None = None) -> str:
    """The answer's JSON text, decrypted where it came as hex AES ciphertext.

    A body starting with ``{`` is plain whatever the version: the gateway
    answers its pre-account errors in clear text.
    """
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _protocol("answer is not UTF-8 text", endpoint) from None
    if not text:
        raise _protocol("answer is empty", endpoint)
    if not text.startswith("{"):
        if aes_key is None:
            raise _protocol("answer is not a JSON object", endpoint)
        text = _decrypt_hex(text, aes_key, endpoint)
    return text


def answer_object(text: str, endpoint: str) -> dict[str, Any]:
    """The answer text parsed, which must be a JSON object."""
    try:
        payload = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise _protocol("answer is not valid JSON", endpoint) from None
    if not isinstance(payload, dict):
        raise _protocol(f"answer is a JSON {type(payload).__name__}, not an object", endpoint)
    return payload


def _decrypt_hex(text: str, aes_key: str, endpoint: str) -> str:
    try:
        cipher = bytes.fromhex(text)
    except ValueError:
        raise _protocol("answer is neither JSON nor hex ciphertext", endpoint) from None
    try:
        plain = aes_decrypt(aes_key, cipher)
        return plain.decode("utf-8")
    except (ProtocolError, UnicodeDecodeError):
        raise _protocol("answer could not be decrypted with the configured aes_key "
                        "(wrong key or corrupted body)", endpoint) from None


def answer_code(payload: dict[str, Any], endpoint: str) -> int:
    """The answer's ``code`` as an int (some gateways quote it)."""
    code = payload.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(code, str) and _DIGITS.match(code.strip()):
        return int(code.strip())
    raise _protocol(f"answer has no usable code (got {type(code).__name__})", endpoint)


def raise_for_answer(payload: dict[str, Any], endpoint: str) -> None:
    """Raise the taxonomy error for a non-zero code."""
    code = answer_code(payload, endpoint)
    if code != OK:
        raise_for_code(VENDOR, CODES, code, endpoint, retry_after=TOO_FREQUENT_RETRY_AFTER_S)


def parse_send_answer(payload: dict[str, Any], mobiles: Sequence[str],
                      reference: str | None) -> Sequence[Submission]:
    """One Submission per requested recipient, in request order.

    The gateway lists only the valid numbers it took: a number it left out was
    refused as invalid; a number sent twice but listed once was sent once.
    """
    entries = _data_list(payload, SEND)
    listed: dict[str, deque[tuple[str, int]]] = {}
    for i, entry in enumerate(entries):
        mobile = _text(entry, "dest_number", SEND, i)
        listed.setdefault(mobile, deque()).append(
            (_text(entry, "message_id", SEND, i), _count(entry, "charge_item", SEND, i)))
    out = []
    for mobile in mobiles:
        taken = listed.get(mobile)
        if taken:
            message_id, items = taken.popleft()
            out.append(Submission(mobile, message_id, reference, items))
        else:
            out.append(_rejected(mobile, reference, duplicate=taken is not None))
    extra = sorted(m for m, left in listed.items() if left)
    if extra:
        raise _protocol(f"answer lists {len(extra)} number(s) that were not requested "
                        "(or more often than requested)", SEND)
    return out


class _Taken(msgspec.Struct, gc=False):
    """One entry of a send answer, as the gateway lists the numbers it took."""

    dest_number: str
    message_id: str
    charge_item: int


class _SendAnswer(msgspec.Struct, gc=False):
    code: int
    data: list[_Taken]


#: typed decoding of the usual send answer: no dict per entry, and (gc=False) nothing
#: for the garbage collector to walk; anything else fails it and takes the general path
_SEND_ANSWER = msgspec.json.Decoder(_SendAnswer)
#: the ASCII characters ``str.strip`` removes
_ASCII_BLANKS = bytes(c for c in range(128) if chr(c).isspace())


def _blank_in(text: str) -> bool:
    """Whether ``text`` holds whitespace (non-ASCII text counts as if it did): one C
    pass over the bytes, several times faster than a regular expression's search."""
    if not text.isascii():
        return True
    raw = text.encode("ascii")
    return len(raw.translate(None, _ASCII_BLANKS)) != len(raw)


_DEST, _MESSAGE_ID, _CHARGE_ITEM = (attrgetter("dest_number"), attrgetter("message_id"),
                                    attrgetter("charge_item"))


def accepted_from_text(text: str, mobiles: Sequence[str], reference: str | None
                       ) -> AcceptedBatch | None:
    """The usual send answer read straight from its text: code 0, every number taken,
    in request order, each with a message id and one or more charge items.

    A send answer's thousand entries cost more to parse into dicts than the
    rest of the request's handling; typed decoding makes no dict at all. For
    any other answer (an error code, a number left out, a quoted count) None,
    and the caller parses it the general way, which names what is wrong.
    """
    try:
        answer = _SEND_ANSWER.decode(text)
    except msgspec.DecodeError:  # the validation errors included
        return None
    entries = answer.data
    if answer.code != OK or len(entries) != len(mobiles):
        return None
    dests = list(map(_DEST, entries))
    if dests != (mobiles if isinstance(mobiles, list) else list(mobiles)):
        return None
    message_ids = list(map(_MESSAGE_ID, entries))
    if "" in message_ids or _blank_in("".join(message_ids)):  # the general path strips
        return None
    items = list(map(_CHARGE_ITEM, entries))
    if min(items, default=1) < 1:
        return None
    return AcceptedBatch(dests, message_ids, reference, items)


def _rejected(mobile: str, reference: str | None, *, duplicate: bool) -> Submission:
    if duplicate:
        return Submission(mobile, None, reference, 0, "duplicate_number",
                          SubmissionStatus.REJECTED,
                          "number repeated in the request; the gateway sent it fewer times")
    return Submission(mobile, None, reference, 0, "invalid_number", SubmissionStatus.REJECTED,
                      "the gateway left this number out of its answer: not a valid mobile")


def parse_reports(payload: dict[str, Any]) -> list[DeliveryReport]:
    """Reports of a ``report.do`` answer; ``reference`` becomes the custom id."""
    out = []
    for i, entry in enumerate(_data_list(payload, REPORT)):
        raw_state = _text(entry, "report_status", REPORT, i)
        reference = entry.get("reference")
        out.append(DeliveryReport(
            message_id=_text(entry, "message_id", REPORT, i),
            mobile=_text(entry, "dest_number", REPORT, i),
            raw_state=raw_state,
            status=normalise_state(REPORT_STATES, raw_state, DeliveryStatus.FAILED),
            custom_id=str(reference) if reference not in (None, "") else None,
            description=_state_description(raw_state),
            report_time=parse_china(_opt_str(entry.get("report_time"))),
            raw=entry,
        ))
    return out


def _state_description(raw_state: str) -> str:
    known = STATE_DESCRIPTIONS.get(raw_state)
    if known:
        return known
    return f"failed, gateway or carrier state {raw_state}"


def parse_inbound(payload: dict[str, Any]) -> list[InboundMessage]:
    """Replies of a ``mo.do`` answer.

    ``content`` wins when present; an empty one is rebuilt from
    ``binary_content`` (base64) by ``msg_fmt``. A body that cannot be decoded
    leaves ``content`` empty rather than losing the reply: ``raw`` keeps it.
    """
    out = []
    for i, entry in enumerate(_data_list(payload, MO)):
        reference = entry.get("reference")
        out.append(InboundMessage(
            mobile=_text(entry, "src", MO, i),
            content=_mo_content(entry),
            received_at=parse_china(_opt_str(entry.get("receive_time"))),
            destination=_opt_str(entry.get("dest")) or "",
            reference=str(reference) if reference not in (None, "") else None,
            raw=entry,
        ))
    return out


def _mo_content(entry: dict[str, Any]) -> str:
    content = entry.get("content")
    if isinstance(content, str) and content:
        return content
    return decode_binary_content(entry.get("binary_content"), entry.get("msg_fmt")) or ""


def decode_binary_content(binary: object, msg_fmt: object) -> str | None:
    """Text of a base64 ``binary_content`` in coding ``msg_fmt``; None when undecodable."""
    if not isinstance(binary, str) or not binary:
        return None
    try:
        # The document's examples all use 8 (UCS-2); a missing msg_fmt is read as 8.
        codec = MSG_FORMATS[8 if msg_fmt in (None, "") else int(str(msg_fmt))]
        return base64.b64decode(binary, validate=True).decode(codec)
    except (KeyError, ValueError, binascii.Error, UnicodeDecodeError):
        return None


def parse_balance(payload: dict[str, Any]) -> list[Balance]:
    return [Balance(Decimal(_count(payload, "balance_item", BALANCE, None, signed=True)),
                    unit="items")]


def parse_statistics(payload: dict[str, Any]) -> list[DailyStatistic]:
    out = []
    for i, entry in enumerate(_data_list(payload, STATISTIC)):
        day_text = _text(entry, "date", STATISTIC, i)
        try:
            day = datetime.strptime(day_text, "%Y%m%d").date()
        except ValueError:
            raise _protocol(f"entry {i}: date {day_text!r} is not YYYYMMDD", STATISTIC) from None
        out.append(DailyStatistic(
            day=day,
            submitted=_count(entry, "submit", STATISTIC, i),
            delivered=_count(entry, "delivrd", STATISTIC, i),
            failed=_count(entry, "undeliv", STATISTIC, i),
            unknown=_count(entry, "unknown", STATISTIC, i),
        ))
    return out


def _data_list(payload: dict[str, Any], endpoint: str) -> list[dict[str, Any]]:
    data = payload.get("data")
    if not isinstance(data, list):
        raise _protocol(f"answer has no data list (got {type(data).__name__})", endpoint)
    if set(map(type, data)) - {dict}:  # JSON objects all: one pass at C speed
        for i, entry in enumerate(data):
            if not isinstance(entry, dict):
                raise _protocol(f"data entry {i} is a {type(entry).__name__}, not an object",
                                endpoint)
    return data


def _text(entry: dict[str, Any], key: str, endpoint: str, index: int | None) -> str:
    value = entry.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _protocol(f"{_where(index)}{key} is missing or empty", endpoint)
    return value.strip()


def _count(entry: dict[str, Any], key: str, endpoint: str, index: int | None,
           *, signed: bool = False) -> int:
    value = entry.get(key)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or (value < 0 and not signed):
        raise _protocol(f"{_where(index)}{key} is not a whole number", endpoint)
    return value


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _where(index: int | None) -> str:
    return "" if index is None else f"data entry {index}: "


def _protocol(message: str, endpoint: str) -> ProtocolError:
    return ProtocolError(message, vendor=VENDOR, endpoint=endpoint)


def _plain_digit_numbers(mobiles: list[str]) -> bool:
    """True when every number is non-empty ASCII digits: the usual chunk, checked at
    C speed; any other chunk gets the per-number check that names the culprit."""
    if "" in mobiles:
        return False
    try:
        joined = ",".join(mobiles)
    except TypeError:  # a number that is not a string
        return False
    # as bytes: str.isdigit looks each character up in the Unicode tables
    return (joined.count(",") == len(mobiles) - 1 and joined.isascii()
            and joined.encode("ascii").replace(b",", b"").isdigit())


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
        if not _plain_digit_numbers(mobiles):
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
