"""EUMS answers read into the model: pure functions, so canned bodies are checked too.

An answer is plain JSON (``ver=1``, and the errors the gateway gives before it
knows the account) or the hex of its AES ciphertext (``ver=17``). The usual
send answer is read by typed decoding (:func:`accepted_from_text`), every other
one the general way, which names what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import msgspec

from sms_provider.errors import ProtocolError
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
from sms_provider.vendors.batch_text import blank_in
from sms_provider.vendors.clock import parse_china
from sms_provider.vendors.codec import aes_decrypt
from sms_provider.vendors.codes import normalise_state, raise_for_code
from sms_provider.vendors.eums_codes import (
    BALANCE,
    CODES,
    MO,
    MSG_FORMATS,
    OK,
    REPORT,
    REPORT_STATES,
    SEND,
    STATE_DESCRIPTIONS,
    STATISTIC,
    TOO_FREQUENT_RETRY_AFTER_S,
    VENDOR,
)

_DIGITS = re.compile(r"^\d+$")


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
    if "" in message_ids or blank_in("".join(message_ids)):  # the general path strips
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

