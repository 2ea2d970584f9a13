"""EIMS answers read into the model: pure functions, so canned bodies are checked too.

Numbers and ids come as JSON integers or digit strings; ids are kept as text
exactly as the platform wrote them. Every malformed answer is a ProtocolError
naming the field and the endpoint.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from sms_provider.errors import ProtocolError
from sms_provider.models import (
    AcceptedBatch,
    Balance,
    DeliveryReport,
    DeliveryStatus,
    InboundMessage,
    Submission,
    SubmissionStatus,
)
from sms_provider.segments import charge_items
from sms_provider.vendors.clock import parse_china
from sms_provider.vendors.codes import raise_for_code
from sms_provider.vendors.eims_codes import (
    CODES,
    PATH_BALANCE,
    PATH_INBOUND,
    PATH_REPORT,
    PATH_SEND,
    PUSH_PAGE_LIMIT,
    REPORT_STATE_DESCRIPTIONS,
    STATUS_OK,
    TIME_FORMAT,
    VENDOR,
    report_status,
)


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
    if status != STATUS_OK:
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


class _SendAnswer(msgspec.Struct, gc=False):
    status: int
    array: list[tuple[int, int]]


#: typed decoding of the usual send answer: no list per row, nothing for the collector
_SEND_ANSWER = msgspec.json.Decoder(_SendAnswer)


def read_send_answer(body: bytes | str, mobiles: list[str], content: str
                     ) -> Sequence[Submission]:
    """:func:`parse_send_answer`, the usual answer read straight into columns.

    The usual answer: status 0 and every number taken, in request order, as
    ``[number, id]`` integers, the numbers without leading zeros. Ten thousand
    rows cost more as lists and Submissions than the rest of the request; any
    other answer is parsed the general way, which names what is wrong.
    """
    try:
        answer = _SEND_ANSWER.decode(body)
    except msgspec.DecodeError:  # the validation errors included
        return parse_send_answer(body, mobiles, content)
    rows = answer.array
    joined = ",".join(mobiles)
    if (answer.status != STATUS_OK or len(rows) != len(mobiles) or joined.startswith("0")
            or ",0" in joined or ",".join([str(row[0]) for row in rows]) != joined):
        return parse_send_answer(body, mobiles, content)
    return AcceptedBatch(mobiles, [str(row[1]) for row in rows], None,
                         [charge_items(content)] * len(mobiles))


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

