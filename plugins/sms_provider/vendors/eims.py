"""EIMS HTTP API: balance, same-content send, reports by id, inbound replies, pushed reports.

Every call authenticates with ``account`` and ``password`` in the parameters.
When the platform is set up for md5 passwords (``md5_key`` given), the password
sent is ``md5(account + password + seq + time + key)``: ``time`` is Unix seconds
and ``seq`` must grow on every request for the account, across restarts, so the
last seq is kept in a file (see :class:`SeqSource`). The platform refuses a seq
that is not above the last one it accepted, so md5 requests of one account
leave one at a time, in seq order. Reads are GETs with the parameters in the
query; a send is either a GET (at most 100 numbers) or a POST with a JSON body
(at most 10000 numbers).

Answers are JSON with an integer ``status`` (0 = success, -1..-13 = errors that
:data:`CODES` maps onto the error taxonomy). Report states are 0 delivered,
1 unsent, 2 sending and anything else failed (1001..1023 described in
:data:`REPORT_STATE_DESCRIPTIONS`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

import requests

from sms_provider.errors import (
    AmbiguousError,
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
)
from sms_provider.models import (
    Balance,
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Submission,
    SubmissionStatus,
)
from sms_provider.segments import charge_items
from sms_provider.vendors import profiles
from sms_provider.vendors.base import OutboundMessage, VendorClient
from sms_provider.vendors.clock import parse_china
from sms_provider.vendors.codec import md5_hex
from sms_provider.vendors.codes import CodeTable, raise_for_code
from sms_provider.vendors.eims_seq import SeqSource
from sms_provider.vendors.limits import check_content, same_content
from sms_provider.vendors.pg_seq import seq_source
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

log = logging.getLogger(__name__)

PROFILE = profiles.EIMS
VENDOR = PROFILE.conn_type

GET_BATCH_LIMIT = 100
POST_BATCH_LIMIT = PROFILE.limits.batch
REPORT_QUERY_LIMIT = PROFILE.limits.report_query
INBOUND_PAGE_LIMIT = PROFILE.limits.inbound_page
PUSH_PAGE_LIMIT = PROFILE.limits.push_page
MAX_CONTENT_CHARS = PROFILE.limits.content_chars
#: md5 mode: tries of one call when the platform answers -1 (a refused seq), each with
#: a fresh seq. -1 also means wrong credentials, which no retry cures: kept small.
SEQ_ATTEMPTS = 3

PATH_BALANCE = "/getbalance"
PATH_SEND = "/sendsms"
PATH_REPORT = "/getreport"
PATH_INBOUND = "/getsms"

#: ``yyyyMMddHHmmss`` as an integer, the document's time format (China time)
TIME_FORMAT = "%Y%m%d%H%M%S"

_STATUS_OK = 0
_SEQ_REFUSED = "-1"  # the code of a refused md5 request, seq included
_T = TypeVar("_T")
_DIGITS = re.compile(r"[0-9]+")

CODES: CodeTable = {
    "-1": (AuthenticationError,
           "authentication failed: account, password, md5 key, seq or time refused"),
    "-2": (AuthenticationError, "this IP address may not use the account"),
    "-3": (PermanentError, "content contains sensitive words"),
    "-4": (LimitExceededError, "content is empty"),
    "-5": (LimitExceededError, "content is too long"),
    "-6": (PermanentError, "content does not match an approved template"),
    "-7": (LimitExceededError, "too many numbers in one request"),
    "-8": (LimitExceededError, "no numbers in the request"),
    "-9": (PermanentError, "numbers are malformed"),
    "-10": (InsufficientBalanceError, "channel balance too low for this request"),
    "-11": (PermanentError, "scheduled send time is malformed"),
    "-12": (AmbiguousError,
            "platform failed partway through the batch: some numbers may have been "
            "accepted, check with the vendor before sending again"),
    "-13": (AuthenticationError, "account is locked"),
}

#: The document's report state table (English column); 1015 is absent there too.
REPORT_STATE_DESCRIPTIONS: dict[int, str] = {
    0: "success",
    1: "unsent",
    2: "sending",
    1001: "NoRoute",
    1002: "NoChannel",
    1003: "NoBablance",
    1004: "Unkown",
    1005: "Send Refuse",
    1006: "Send Timeout",
    1007: "Server Timeout",
    1008: "SupplierMccMncLimit",
    1009: "ConsumerMccMncLimit",
    1010: "NoSupplier",
    1011: "Black Number",
    1012: "Sensitive Words",
    1013: "Daliy Limit",
    1014: "DestinationMccMncLimit",
    1016: "SMS Template Limit",
    1017: "SupplierNoBablance",
    1018: "UserProfitLimit",
    1019: "ChannelProfitLimit",
    1020: "MccNumberLengthLimit",
    1021: "Job no found",
    1022: "china sms limit",
    1023: "RouteMccMncLimit",
}
FAILURE_STATES: tuple[int, ...] = tuple(s for s in REPORT_STATE_DESCRIPTIONS if s >= 1000)


def report_status(state: int) -> DeliveryStatus:
    """0 delivered, 1 unsent and 2 sending are still open, anything else failed."""
    if state == 0:
        return DeliveryStatus.DELIVERED
    if state in (1, 2):
        return DeliveryStatus.PENDING
    return DeliveryStatus.FAILED


# --- parsing helpers (pure) ---------------------------------------------------------
def _id(value: Any, what: str, endpoint: str) -> str:
    """A message id as text: the JSON integer's digits, or a digit string kept as it came
    (leading zeros included). Never through ``int``/``float``: the id is matched later
    as the platform wrote it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        return value.strip()
    raise ProtocolError(f"{what} is {type(value).__name__}, expected an integer id",
                        vendor=VENDOR, endpoint=endpoint)


def _int(value: Any, what: str, endpoint: str) -> int:
    """An integer field; the platform writes some numbers as digit strings."""
    if isinstance(value, bool):
        raise ProtocolError(f"{what} is a boolean, expected an integer", vendor=VENDOR,
                            endpoint=endpoint)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise ProtocolError(f"{what} is {type(value).__name__}, expected an integer",
                        vendor=VENDOR, endpoint=endpoint)


def _text(value: Any, what: str, endpoint: str) -> str:
    """A string field that the platform may also write as a bare number."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError(f"{what} is {type(value).__name__}, expected a string",
                        vendor=VENDOR, endpoint=endpoint)


def _time(value: Any) -> datetime | None:
    """``yyyyMMddHHmmss`` (an integer on the wire) as China time; None when unusable."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    return parse_china(str(value), TIME_FORMAT)


def _decode_json(body: bytes | str, endpoint: str) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (ValueError, TypeError):
        raise ProtocolError("answer is not JSON", vendor=VENDOR, endpoint=endpoint) from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"answer is a JSON {type(obj).__name__}, expected an object",
                            vendor=VENDOR, endpoint=endpoint)
    return obj


def _rows(obj: dict[str, Any], endpoint: str, width: int, *, required: bool
          ) -> list[list[Any]]:
    """The ``array`` field: a list of rows of at least ``width`` fields."""
    rows = obj.get("array")
    if rows is None:
        if required:
            raise ProtocolError("answer has no 'array'", vendor=VENDOR, endpoint=endpoint)
        return []
    if not isinstance(rows, list):
        raise ProtocolError(f"'array' is {type(rows).__name__}, expected a list",
                            vendor=VENDOR, endpoint=endpoint)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < width:
            raise ProtocolError(f"array[{i}] is not a list of {width} fields",
                                vendor=VENDOR, endpoint=endpoint)
    return rows


def parse_answer(body: bytes | str, endpoint: str) -> dict[str, Any]:
    """Decode an answer and raise the taxonomy error for a non-zero ``status``."""
    obj = _decode_json(body, endpoint)
    if "status" not in obj:
        raise ProtocolError("answer has no 'status'", vendor=VENDOR, endpoint=endpoint)
    status = _int(obj["status"], "status", endpoint)
    if status != _STATUS_OK:
        raise_for_code(VENDOR, CODES, status, endpoint)
    return obj


def _mobile_key(mobile: str) -> str:
    """Numbers come back as JSON integers, which drop leading zeros: compare without them."""
    return mobile.lstrip("0") or "0"


def parse_send_answer(body: bytes | str, mobiles: Sequence[str], content: str
                      ) -> list[Submission]:
    """One Submission per requested number, in request order.

    ``array`` lists only the accepted numbers as ``[number, id]``; a number sent
    twice comes back twice, so ids are handed out in order per number. A number
    absent from ``array`` was refused by the platform (counted in ``fail``).
    """
    obj = parse_answer(body, PATH_SEND)
    ids: dict[str, deque[str]] = defaultdict(deque)
    for i, row in enumerate(_rows(obj, PATH_SEND, 2, required=True)):
        number = _text(row[0], f"array[{i}] number", PATH_SEND)
        msg_id = _id(row[1], f"array[{i}] id", PATH_SEND)
        ids[_mobile_key(number.strip())].append(msg_id)
    items = charge_items(content)
    out: list[Submission] = []
    for mobile in mobiles:
        queue = ids.get(_mobile_key(mobile))
        if queue:
            out.append(Submission(mobile=mobile, message_id=queue.popleft(),
                                  charge_items=items))
        else:
            out.append(Submission(mobile=mobile, message_id=None, charge_items=0,
                                  vendor_code="rejected", status=SubmissionStatus.REJECTED,
                                  description="number refused by the platform"))
    leftover = sum(len(q) for q in ids.values())
    if leftover:
        raise ProtocolError(f"answer holds {leftover} ids for numbers that were not sent",
                            vendor=VENDOR, endpoint=PATH_SEND)
    return out


def parse_report_answer(body: bytes | str) -> list[DeliveryReport]:
    """getreport rows ``[id, number, send time, state]``; ids not found yield no row."""
    obj = parse_answer(body, PATH_REPORT)
    out = []
    for i, row in enumerate(_rows(obj, PATH_REPORT, 4, required=False)):
        msg_id = _id(row[0], f"array[{i}] id", PATH_REPORT)
        mobile = _text(row[1], f"array[{i}] number", PATH_REPORT)
        state = _int(row[3], f"array[{i}] state", PATH_REPORT)
        out.append(DeliveryReport(
            message_id=msg_id, mobile=mobile, raw_state=str(state),
            status=report_status(state),
            description=REPORT_STATE_DESCRIPTIONS.get(state, "failed (state not documented)"),
            submit_time=_time(row[2]),
            raw={"id": row[0], "number": row[1], "time": row[2], "state": row[3]}))
    return out


def _b64_text(value: str) -> tuple[str, bool]:
    """Decode base64 UTF-8 content; (raw text, False) when it is not that.

    One bad reply must not fail the whole page: getsms hands each reply out once,
    so raising would lose the other replies of the page for good.
    """
    try:
        return base64.b64decode(value, validate=True).decode("utf-8"), True
    except (binascii.Error, ValueError):
        return value, False


def parse_inbound_answer(body: bytes | str) -> list[InboundMessage]:
    """getsms rows ``[id, sender, receiving number, time, base64 content]``, deduplicated."""
    obj = parse_answer(body, PATH_INBOUND)
    # With nothing to hand out the platform may leave 'array' out; with replies it may not.
    cnt = _int(obj.get("cnt", 0), "cnt", PATH_INBOUND)
    rows = _rows(obj, PATH_INBOUND, 5, required=cnt > 0)
    seen: set[str] = set()
    out = []
    for i, row in enumerate(rows):
        msg_id = _id(row[0], f"array[{i}] id", PATH_INBOUND)
        if msg_id in seen:
            continue  # the document: the same id twice is the same reply
        seen.add(msg_id)
        encoded = _text(row[4], f"array[{i}] content", PATH_INBOUND)
        content, decoded = _b64_text(encoded)
        raw = {"id": row[0], "src": row[1], "dest": row[2], "time": row[3],
               "content": encoded}
        if not decoded:
            raw["content_not_base64_utf8"] = True
        out.append(InboundMessage(
            mobile=_text(row[1], f"array[{i}] sender", PATH_INBOUND),
            content=content, received_at=_time(row[3]),
            destination=_text(row[2], f"array[{i}] receiving number", PATH_INBOUND),
            message_id=msg_id, raw=raw))
    return out


def _decimal(value: Any, what: str, endpoint: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ProtocolError(f"{what} is {type(value).__name__}, expected a number",
                            vendor=VENDOR, endpoint=endpoint)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ProtocolError(f"{what} is not a number", vendor=VENDOR,
                            endpoint=endpoint) from None
    if not amount.is_finite():
        raise ProtocolError(f"{what} is not a finite number", vendor=VENDOR, endpoint=endpoint)
    return amount


def parse_balance_answer(body: bytes | str) -> list[Balance]:
    """``balance`` and ``gift`` are money, as decimal strings."""
    obj = parse_answer(body, PATH_BALANCE)
    if "balance" not in obj:
        raise ProtocolError("answer has no 'balance'", vendor=VENDOR, endpoint=PATH_BALANCE)
    gift = obj.get("gift")
    return [Balance(amount=_decimal(obj["balance"], "balance", PATH_BALANCE), unit="money",
                    gift=None if gift is None else _decimal(gift, "gift", PATH_BALANCE))]


def parse_push_reports(body: bytes | str) -> list[DeliveryReport]:
    """A pushed report page: ``{"type": "report", "cnt": n, "array": [[id, mobile, time,
    result, reason], ...]}``; result 0 is delivered, anything else failed.

    ``cnt`` must match the rows and a page holds at most 50, as documented: a page
    that breaks either is refused whole, so the platform pushes it again.
    """
    endpoint = "push"
    obj = _decode_json(body, endpoint)
    kind = obj.get("type")
    if kind != "report":
        raise ProtocolError(f"push type is {kind!r}, expected 'report'", vendor=VENDOR,
                            endpoint=endpoint)
    if "cnt" not in obj:
        raise ProtocolError("push lacks 'cnt'", vendor=VENDOR, endpoint=endpoint)
    rows = _rows(obj, endpoint, 5, required=True)
    cnt = _int(obj["cnt"], "cnt", endpoint)
    if cnt != len(rows):
        raise ProtocolError(f"push says cnt={cnt} but holds {len(rows)} reports",
                            vendor=VENDOR, endpoint=endpoint)
    if len(rows) > PUSH_PAGE_LIMIT:
        raise ProtocolError(f"push holds {len(rows)} reports, the limit is {PUSH_PAGE_LIMIT}",
                            vendor=VENDOR, endpoint=endpoint)
    out = []
    for i, row in enumerate(rows):
        result = _int(row[3], f"array[{i}] result", endpoint)
        reason = row[4] if isinstance(row[4], str) else ""
        out.append(DeliveryReport(
            message_id=_id(row[0], f"array[{i}] id", endpoint),
            mobile=_text(row[1], f"array[{i}] mobile", endpoint).strip(),
            raw_state=str(result),
            status=DeliveryStatus.DELIVERED if result == 0 else DeliveryStatus.FAILED,
            description=reason, submit_time=_time(row[2]),
            raw={"id": row[0], "mobile": row[1], "time": row[2], "result": row[3],
                 "reason": row[4]}))
    return out


# --- the client ----------------------------------------------------------------------
class EimsClient(VendorClient):
    """EIMS over HTTP.

    Settings the document leaves open, with conservative defaults:

    * ``method`` -- ``"post"`` (JSON body, up to 10000 numbers a request) or
      ``"get"`` (query string, up to 100); reads are always GET.
    * ``md5_key`` -- the key the vendor negotiated; when set the password goes
      out md5-hashed with ``seq`` and ``time``, otherwise in clear text.
    * ``seq_path`` -- file that keeps the md5 mode's last ``seq`` across restarts
      and processes (see :class:`FileSeqSource`); None keeps it in memory,
      starting at the current Unix time. With ``SMS_LEDGER_URL`` on PostgreSQL
      the seq lives there instead, for every host (:class:`PgSeqSource`), and
      the file only sets its floor. ``seq`` -- any other :class:`SeqSource`
      (it wins over both).
    * ``max_content_chars`` -- the document's 1024 characters; lower it if the
      account's channel is stricter.

    Numbers are EIMS international digits without ``+`` or ``00``
    (``8613800138000``). One request carries one content for all its numbers.
    In md5 mode the requests of one seq source go out one at a time, each
    holding the source's turn until its answer is in (see :meth:`_request`);
    plain mode requests overlap freely.
    """

    profile: ClassVar[VendorProfile] = PROFILE

    def __init__(self, settings: HttpSettings, *, account: str, password: str,
                 md5_key: str | None = None, seq_path: str | os.PathLike[str] | None = None,
                 seq: SeqSource | None = None, method: str = "post",
                 max_batch: int | None = None,
                 max_content_chars: int = MAX_CONTENT_CHARS) -> None:
        method = method.strip().lower()
        if method not in ("get", "post"):
            raise PermanentError(f"method must be 'get' or 'post', got {method!r}",
                                 vendor=VENDOR)
        limit = GET_BATCH_LIMIT if method == "get" else POST_BATCH_LIMIT
        if max_batch is not None and not 1 <= max_batch <= limit:
            raise LimitExceededError(
                f"max_batch must be between 1 and {limit} for {method.upper()} sends, "
                f"got {max_batch}", vendor=VENDOR)
        if max_content_chars < 1:
            raise LimitExceededError(
                f"max_content_chars must be positive, got {max_content_chars}", vendor=VENDOR)
        super().__init__(settings, max_batch=max_batch or limit)
        if not account:
            raise AuthenticationError("account is empty", vendor=VENDOR)
        if not password:
            raise AuthenticationError("password is empty", vendor=VENDOR)
        self.account = account
        self._password = password
        self._md5_key = md5_key or None
        self.method = method
        self.max_content_chars = max_content_chars
        self.seq = seq or seq_source(account, seq_path)  # PostgreSQL with the ledger there

    def __repr__(self) -> str:
        mode = "md5" if self._md5_key else "plain"
        return (f"EimsClient(base_url={self.http.base_url!r}, account={self.account!r}, "
                f"mode={mode!r}, method={self.method!r})")

    # --- authentication ----------------------------------------------------------
    def _md5_auth(self, seq: int) -> dict[str, Any]:
        now = int(time.time())  # taken in the turn: waiting for it cannot make it stale
        digest = md5_hex(f"{self.account}{self._password}{seq}{now}{self._md5_key}")
        return {"account": self.account, "password": digest, "seq": seq, "time": now}

    def _request(self, method: str, path: str, fields: dict[str, Any], *, idempotent: bool
                 ) -> requests.Response:
        """One request with the credentials in front of ``fields`` (query or JSON body).

        In md5 mode the seq is taken and the request made in one turn of the
        seq source, held until the answer is in: a request that left later
        could otherwise reach the platform first and have this one refused.
        Plain mode holds nothing, so its requests overlap freely.
        """
        if not self._md5_key:
            return self._http(method, path, {"account": self.account,
                                             "password": self._password, **fields},
                              idempotent=idempotent)
        with self.seq.turn() as seq:
            return self._http(method, path, {**self._md5_auth(seq), **fields},
                              idempotent=idempotent)

    def _http(self, method: str, path: str, params: dict[str, Any], *, idempotent: bool
              ) -> requests.Response:
        if method == "GET":
            return self.http.request("GET", path, idempotent=idempotent, params=params)
        return self.http.request(method, path, idempotent=idempotent, json_body=params)

    def _call(self, method: str, path: str, fields: dict[str, Any], *, idempotent: bool,
              parse: Callable[[bytes], _T]) -> _T:
        """Make the request and parse its answer; a refused md5 seq is retried.

        -1 to an md5 request can mean its seq was not above the last one the
        platform accepted (a sender that does not share our seq source got
        there first). The platform acts on nothing it refuses, so the call is
        made again with a fresh seq, at most :data:`SEQ_ATTEMPTS` times in all;
        wrong credentials answer -1 every time and surface after the last try.
        """
        attempts = SEQ_ATTEMPTS if self._md5_key else 1
        for attempt in range(1, attempts):
            resp = self._request(method, path, fields, idempotent=idempotent)
            try:
                return parse(resp.content)
            except AuthenticationError as exc:
                if exc.code != _SEQ_REFUSED:
                    raise
                log.warning("EIMS refused an md5 request to %s (-1: seq, time or "
                            "credentials); trying again with a fresh seq (%d of %d)",
                            path, attempt + 1, attempts)
        return parse(self._request(method, path, fields, idempotent=idempotent).content)

    # --- operations -------------------------------------------------------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None
             ) -> list[Submission]:
        """Send one content to every number; numbers the platform refuses come back REJECTED."""
        if template_id is not None:
            raise PermanentError("EIMS has no templates: send the full text",
                                 vendor=VENDOR, endpoint=PATH_SEND)
        self.check_batch(messages)
        content = same_content(VENDOR, [m.content for m in messages])
        check_content(VENDOR, content, self.max_content_chars, where=" (message 0)")
        mobiles = [m.mobile for m in messages]
        for i, mobile in enumerate(mobiles):
            if not _DIGITS.fullmatch(mobile):
                raise LimitExceededError(
                    f"mobile of message {i} ({len(mobile)} characters) is not digits only; "
                    "EIMS wants international digits without '+' or '00'", vendor=VENDOR)
        fields: dict[str, Any] = {"smstype": 0, "numbers": ",".join(mobiles),
                                  "content": content}
        return self._call(self.method.upper(), PATH_SEND, fields, idempotent=False,
                          parse=lambda body: parse_send_answer(body, mobiles, content))

    def query_reports(self, message_ids: Sequence[str]) -> list[DeliveryReport]:
        """Current state of up to 200 messages; unknown ids (``nofound``) yield nothing.

        The query does not consume anything, so it is safe to repeat. Messages
        still unsent or sending come back PENDING.
        """
        if not message_ids:
            return []
        if len(message_ids) > REPORT_QUERY_LIMIT:
            raise LimitExceededError(
                f"{len(message_ids)} ids in one report query, the limit is "
                f"{REPORT_QUERY_LIMIT}", vendor=VENDOR, endpoint=PATH_REPORT)
        for i, msg_id in enumerate(message_ids):
            if not _DIGITS.fullmatch(str(msg_id)):
                raise LimitExceededError(f"message id {i} is not a number",
                                         vendor=VENDOR, endpoint=PATH_REPORT)
        return self._call("GET", PATH_REPORT, {"ids": ",".join(map(str, message_ids))},
                          idempotent=True, parse=parse_report_answer)

    def pull_inbound(self, start_time: int | None = None) -> list[InboundMessage]:
        """Up to 50 replies received since ``start_time`` (Unix seconds); each comes once.

        Not retried blindly: a lost answer would lose the replies it carried,
        so a broken connection surfaces as AmbiguousError.
        """
        params = {} if start_time is None else {"start_time": int(start_time)}
        return self._call("GET", PATH_INBOUND, params, idempotent=False,
                          parse=parse_inbound_answer)

    def balance(self) -> list[Balance]:
        """The account's money balance, with the gift balance alongside."""
        return self._call("GET", PATH_BALANCE, {}, idempotent=True,
                          parse=parse_balance_answer)
