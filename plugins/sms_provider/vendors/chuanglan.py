"""Client for the Chuanglan-style ``HttpBatchSendSM`` platform.

The platform answers in plain text lines, not JSON: ``resptime,status`` and,
after an accepted send with ``needstatus=true``, one msgid for the whole
request. Reports are only ever pushed (a GET per report to our URL), so a
report is matched to its recipient by *msgid + mobile*; that is why one
request must not name a number twice.

The password travels in the POST body, never in a URL, because URLs end up in
proxy and access logs.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from sms_provider.errors import (
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
    RateLimitedError,
    RetryableError,
)
from sms_provider.models import (
    AcceptedBatch,
    Balance,
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Submission,
)
from sms_provider.segments import charge_items
from sms_provider.vendors import profiles
from sms_provider.vendors.base import OutboundMessage, VendorClient, message_columns
from sms_provider.vendors.batch_text import digit_numbers
from sms_provider.vendors.clock import CHINA_TZ
from sms_provider.vendors.codes import CodeTable, normalise_state, raise_for_code
from sms_provider.vendors.limits import check_content, same_content
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

PROFILE = profiles.CHUANGLAN
VENDOR = PROFILE.conn_type
SEND_PATH = "/msg/HttpBatchSendSM"
BALANCE_PATH = "/msg/QueryBalance"
PUSH_REPORT = "push report"
PUSH_MO = "push MO"

MAX_NUMBERS = PROFILE.limits.batch
#: Error 106 fires above 536 characters although another paragraph says 700.
DOC_CONTENT_LIMIT = PROFILE.limits.content_chars
DOC_CONTENT_CEILING = 700
SEND_RETRY_AFTER_S = 1.0
#: The balance call's own 103 text advises one query every 10 seconds.
BALANCE_RETRY_AFTER_S = 10.0
PUSH_TIME_FORMAT = "%y%m%d%H%M"  # YYMMDDhhmm, China time

MOBILE_RE = re.compile(r"1[0-9]{10}")
_DIGITS_RE = re.compile(r"[0-9]+")
_CODE_RE = re.compile(r"-?[0-9]+")
_MSGID_RE = re.compile(r"[0-9A-Za-z_-]+")
_SUCCESS = "0"

CODES: CodeTable = {
    "101": (AuthenticationError, "no such user: check the account"),
    "102": (AuthenticationError, "wrong password"),
    "103": (RateLimitedError, "requests too fast for the account's flow limit"),
    "104": (RetryableError, "platform busy: it did not take the request"),
    "105": (PermanentError, "content contains a sensitive word"),
    "106": (LimitExceededError, "content length wrong (more than 536 characters or empty)"),
    "108": (LimitExceededError, "number count wrong (more than 50000 or none)"),
    "109": (InsufficientBalanceError, "no sending quota left"),
    "110": (PermanentError, "outside the account's allowed sending hours"),
    "111": (PermanentError, "the account's monthly sending quota is used up"),
    "112": (PermanentError, "no such product: the account has not ordered it"),
    "113": (PermanentError, "extno malformed (not digits or wrong length)"),
    "115": (PermanentError, "rejected by automatic content review"),
    "116": (PermanentError, "signature (【…】) missing or not allowed"),
    "117": (AuthenticationError, "calling IP address is not registered for the account"),
    "118": (AuthenticationError, "the account has no permission to send"),
    "119": (AuthenticationError, "the account has expired"),
    "120": (PermanentError, "content is not on the account's whitelist"),
}

REPORT_STATES: dict[str, DeliveryStatus] = {
    "DELIVRD": DeliveryStatus.DELIVERED,
    "MBBLACK": DeliveryStatus.FAILED,
    "ROUTEERR": DeliveryStatus.FAILED,
    "REJECT": DeliveryStatus.FAILED,
    "DISTURB": DeliveryStatus.FAILED,
    "EMSERR": DeliveryStatus.FAILED,
    "SIGNERR": DeliveryStatus.FAILED,
    "KEYWORD": DeliveryStatus.FAILED,
}
STATE_DESCRIPTIONS = {
    "DELIVRD": "delivered",
    "MBBLACK": "number is blacklisted",
    "ROUTEERR": "channel error",
    "REJECT": "rejected by review",
    "DISTURB": "too many messages to this number",
    "EMSERR": "long message incomplete",
    "SIGNERR": "signature wrong",
    "KEYWORD": "sensitive word",
}
#: Any state the document does not list is a carrier gateway state: a failure.
GATEWAY_STATE = "carrier gateway state"

#: Push parameters that are credentials of our receiver, never kept in ``raw``.
PUSH_CREDENTIALS = ("receiver", "pswd")


class ChuanglanClient(VendorClient):
    """Send and balance over ``HttpBatchSendSM``; reports arrive by push only.

    Settings:

    * ``account`` / ``password`` -- the platform account (the password is the
      ``pswd`` parameter, sent in the form body only).
    * ``product`` -- product id to bill; required by the vendor when the account
      ordered several, else the default product is billed.
    * ``extno`` -- extension code appended to the sender number; digits only.
    * ``needstatus`` -- ask for reports; without it no msgid comes back and
      every :class:`Submission` has ``message_id=None``.
    * ``max_batch`` -- numbers per request, at most 50000 (the document's limit).
    * ``max_content_chars`` -- default 536: the document says 700 in one place
      but error 106 fires above 536, so the stricter figure is the default;
      values up to 700 are accepted.
    """

    profile: ClassVar[VendorProfile] = PROFILE

    def __init__(self, settings: HttpSettings, *, account: str, password: str,
                 product: str | None = None, extno: str | None = None,
                 needstatus: bool = True, max_batch: int | None = None,
                 max_content_chars: int = DOC_CONTENT_LIMIT) -> None:
        if not account or not password:
            raise AuthenticationError("account and password are required", vendor=VENDOR)
        if extno is not None and not _DIGITS_RE.fullmatch(extno):
            raise LimitExceededError("extno must be digits only", vendor=VENDOR)
        if not 1 <= max_content_chars <= DOC_CONTENT_CEILING:
            raise LimitExceededError(
                f"max_content_chars must be between 1 and {DOC_CONTENT_CEILING}, "
                f"got {max_content_chars}", vendor=VENDOR)
        super().__init__(settings, max_batch=max_batch)
        self.account = account
        self._password = password
        self.product = product or None
        self.extno = extno or None
        self.needstatus = needstatus
        self.max_content_chars = max_content_chars

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.http.base_url!r}, "
                f"account={self.account!r}, product={self.product!r})")

    # --- sending -----------------------------------------------------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None
             ) -> Sequence[Submission]:
        """One request for the whole chunk: one content, comma-joined numbers, one msgid."""
        if template_id is not None:
            raise PermanentError("this vendor has no templates", vendor=VENDOR,
                                 endpoint=SEND_PATH)
        mobiles, contents, custom_ids = message_columns(messages)
        content = self._check(messages, mobiles, contents)
        form = {
            "account": self.account,
            "pswd": self._password,
            "mobile": ",".join(mobiles),
            "msg": content,
            "needstatus": "true" if self.needstatus else "false",
        }
        if self.product:
            form["product"] = self.product
        if self.extno:
            form["extno"] = self.extno
        resp = self.http.request("POST", SEND_PATH, idempotent=False, data=form)
        msgid = parse_send_response(resp.content, needstatus=self.needstatus)
        n = len(mobiles)
        # one msgid and one content for the request: columns, not an object per number
        return AcceptedBatch(mobiles, [msgid] * n, custom_ids,  # type: ignore[list-item]
                             [charge_items(content)] * n, _SUCCESS)

    def _check(self, messages: Sequence[OutboundMessage], mobiles: list[str],
               contents: list[str]) -> str:
        """Refuse what the platform would refuse, and duplicates it could not report apart."""
        self.check_batch(messages)
        content = same_content(VENDOR, contents)
        check_content(VENDOR, content, self.max_content_chars, where=" in message 0")
        if (digit_numbers(mobiles, prefix="1", min_len=11, max_len=11)
                and len(set(mobiles)) == len(mobiles)):
            return content  # the usual chunk, told without a step per number
        seen: dict[str, int] = {}
        for i, mobile in enumerate(mobiles):
            if not MOBILE_RE.fullmatch(mobile):
                raise LimitExceededError(
                    f"message {i}: mobile is not an 11-digit mainland number "
                    f"(length {len(mobile)})", vendor=VENDOR)
            first = seen.setdefault(mobile, i)
            if first != i:
                raise LimitExceededError(
                    f"message {i} repeats the mobile of message {first}: reports of one "
                    "request are told apart by mobile only", vendor=VENDOR)
        return content

    # --- balance -----------------------------------------------------------
    def balance(self) -> list[Balance]:
        """One :class:`Balance` per product the account ordered."""
        form = {"account": self.account, "pswd": self._password}
        resp = self.http.request("POST", BALANCE_PATH, idempotent=True, data=form)
        return parse_balance_response(resp.content)


# --- responses -------------------------------------------------------------
def _lines(body: bytes | str, endpoint: str) -> list[str]:
    """Non-empty lines of a text answer; CRLF, LF and CR all end a line."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("answer is not UTF-8 text", vendor=VENDOR,
                                endpoint=endpoint) from None
    lines = [line.strip() for line in body.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ProtocolError("answer is empty", vendor=VENDOR, endpoint=endpoint)
    return lines


def _status(first: str, endpoint: str) -> str:
    """The status of a ``resptime,status`` line; anything else makes no sense."""
    parts = [p.strip() for p in first.split(",")]
    if (len(parts) != 2 or not _DIGITS_RE.fullmatch(parts[0])
            or not _CODE_RE.fullmatch(parts[1])):
        raise ProtocolError(f"first line {_clip(first)} is not 'resptime,status'",
                            vendor=VENDOR, endpoint=endpoint)
    return parts[1]


def _clip(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def parse_send_response(body: bytes | str, *, needstatus: bool) -> str | None:
    """The msgid of an accepted send (``None`` without ``needstatus``); else raise.

    Lines after the msgid are ignored: the request was accepted and the msgid
    is all a report needs.
    """
    lines = _lines(body, SEND_PATH)
    status = _status(lines[0], SEND_PATH)
    if status != _SUCCESS:
        raise_for_code(VENDOR, CODES, status, SEND_PATH, retry_after=SEND_RETRY_AFTER_S)
    if not needstatus:
        return None
    if len(lines) < 2:
        raise ProtocolError("accepted, but the msgid line is missing", vendor=VENDOR,
                            endpoint=SEND_PATH)
    if not _MSGID_RE.fullmatch(lines[1]):
        raise ProtocolError(f"msgid line {_clip(lines[1])} is not an id", vendor=VENDOR,
                            endpoint=SEND_PATH)
    return lines[1]


def parse_balance_response(body: bytes | str) -> list[Balance]:
    """``resptime,status`` then one ``product,amount`` line per product."""
    lines = _lines(body, BALANCE_PATH)
    status = _status(lines[0], BALANCE_PATH)
    if status != _SUCCESS:
        raise_for_code(VENDOR, CODES, status, BALANCE_PATH,
                       retry_after=BALANCE_RETRY_AFTER_S)
    return [_product_balance(i, line) for i, line in enumerate(lines[1:], start=2)]


def _product_balance(number: int, line: str) -> Balance:
    parts = [p.strip() for p in line.split(",")]
    amount = _decimal(parts[1]) if len(parts) == 2 and parts[0] else None
    if amount is None:
        raise ProtocolError(f"line {number} {_clip(line)} is not 'product,amount'",
                            vendor=VENDOR, endpoint=BALANCE_PATH)
    return Balance(amount=amount, unit="items", product=parts[0])


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


# --- pushes ----------------------------------------------------------------
def verify_push_credentials(params: Mapping[str, Any], *, receiver: str, password: str
                            ) -> bool:
    """True when a push carries the ``receiver``/``pswd`` configured with the vendor.

    The document allows both to be empty; a missing parameter counts as empty.
    Compared in constant time so a wrong guess learns nothing from timing.
    """
    got_receiver = _text(params.get("receiver")) or ""
    got_password = _text(params.get("pswd")) or ""
    ok_receiver = hmac.compare_digest(got_receiver.encode(), receiver.encode())
    ok_password = hmac.compare_digest(got_password.encode(), password.encode())
    return ok_receiver and ok_password


def parse_push_report(params: Mapping[str, Any]) -> DeliveryReport:
    """One pushed status report (the query parameters of the vendor's GET)."""
    raw = _push_fields(params, PUSH_REPORT)
    msgid = _required(raw, "msgid", PUSH_REPORT)
    mobile = _required(raw, "mobile", PUSH_REPORT)
    state = _required(raw, "status", PUSH_REPORT)
    if not _DIGITS_RE.fullmatch(mobile):
        raise ProtocolError("field 'mobile' is not a number", vendor=VENDOR,
                            endpoint=PUSH_REPORT)
    report_time = _push_time(raw, "reportTime", PUSH_REPORT)
    return DeliveryReport(
        message_id=msgid, mobile=mobile, raw_state=state,
        status=normalise_state(REPORT_STATES, state, DeliveryStatus.FAILED),
        description=STATE_DESCRIPTIONS.get(state, GATEWAY_STATE),
        report_time=report_time, raw=raw)


def parse_push_mo(params: Mapping[str, Any]) -> InboundMessage:
    """One pushed reply; a part of a long reply keeps ``isems``/``emshead`` in ``raw``."""
    raw = _push_fields(params, PUSH_MO)
    mobile = _required(raw, "mobile", PUSH_MO)
    destination = _required(raw, "destcode", PUSH_MO)
    if "msg" not in raw:
        raise ProtocolError("field 'msg' is missing", vendor=VENDOR, endpoint=PUSH_MO)
    received_at = _push_time(raw, "moTime", PUSH_MO)
    _check_ems(raw)
    return InboundMessage(mobile=mobile, content=raw["msg"], received_at=received_at,
                          destination=destination, raw=raw)


def parse_emshead(emshead: str) -> tuple[str, int, int]:
    """``id,total,number`` of one part of a long reply, checked for sense."""
    parts = [p.strip() for p in emshead.split(",")]
    if (len(parts) != 3 or not parts[0]
            or not all(_DIGITS_RE.fullmatch(p) for p in parts[1:])):
        raise ProtocolError("field 'emshead' is not 'id,total,number'", vendor=VENDOR,
                            endpoint=PUSH_MO)
    total, number = int(parts[1]), int(parts[2])
    if not 1 <= number <= total:
        raise ProtocolError(f"field 'emshead' names part {number} of {total}",
                            vendor=VENDOR, endpoint=PUSH_MO)
    return parts[0], total, number


def _check_ems(raw: Mapping[str, str]) -> None:
    isems = raw.get("isems", "0") or "0"
    if isems not in ("0", "1"):
        raise ProtocolError("field 'isems' must be 0 or 1", vendor=VENDOR, endpoint=PUSH_MO)
    if isems == "1":
        parse_emshead(_required(raw, "emshead", PUSH_MO))


def _text(value: Any) -> str | None:
    """A parameter value as text; a parsed query string may hold a list of values."""
    if isinstance(value, list | tuple):
        value = value[-1] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _push_fields(params: Mapping[str, Any], endpoint: str) -> dict[str, str]:
    """The pushed fields as stripped text, without the receiver's credentials."""
    if not isinstance(params, Mapping):
        raise ProtocolError("push parameters are not a mapping", vendor=VENDOR,
                            endpoint=endpoint)
    out: dict[str, str] = {}
    for key, value in params.items():
        if key in PUSH_CREDENTIALS:
            continue
        text = _text(value)
        if text is None:
            raise ProtocolError(f"field {str(key)!r} is not text", vendor=VENDOR,
                                endpoint=endpoint)
        # The reply text is kept as the handset sent it; the other fields are codes.
        out[str(key)] = text if key == "msg" else text.strip()
    return out


def _required(raw: Mapping[str, str], name: str, endpoint: str) -> str:
    value = raw.get(name)
    if not value:
        raise ProtocolError(f"field {name!r} is missing or empty", vendor=VENDOR,
                            endpoint=endpoint)
    return value


def _push_time(raw: Mapping[str, str], name: str, endpoint: str) -> datetime:
    value = _required(raw, name, endpoint)
    try:
        if len(value) != 10 or not _DIGITS_RE.fullmatch(value):
            raise ValueError(value)
        return datetime.strptime(value, PUSH_TIME_FORMAT).replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise ProtocolError(f"field {name!r} is not YYMMDDhhmm", vendor=VENDOR,
                            endpoint=endpoint) from None
