"""Emay International SMS (IMS): single, same-content and personalised sends, reports.

Two interfaces carry the same four operations:

* ``/inter/*`` (plain): a UTF-8 JSON body signed with
  ``md5(appId + secretKey + timestamp)``; the answer is ``{"code", "data"}``.
* ``/secure/*``: the Emay secure envelope (see :mod:`emay_common`); the code is
  the ``result`` header and only a ``SUCCESS`` carries a body, the data itself.

Reports are a consume-once pull (``getIMSReport``) or a push to our URL, either
encrypted (header ``appId``, AES body) or plain (form field ``reports``); the
push parsers here are pure functions for the HTTP receiver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import requests

from sms_provider.errors import (
    AuthenticationError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
)
from sms_provider.models import AcceptedBatch, DeliveryReport, Submission, SubmissionStatus
from sms_provider.segments import charge_items
from sms_provider.vendors import emay_common, profiles
from sms_provider.vendors.base import OutboundMessage, VendorClient, message_columns
from sms_provider.vendors.batch_text import digit_numbers, longest
from sms_provider.vendors.clock import china_stamp, epoch_ms, parse_china
from sms_provider.vendors.codec import aes_decrypt, aes_key_bytes, gzip_decompress, md5_hex
from sms_provider.vendors.codes import CodeTable, normalise_state, raise_for_code
from sms_provider.vendors.emay_accepted import ims_data_accepted, ims_plain_accepted
from sms_provider.vendors.limits import CUSTOM_ID_MAX, check_content, check_custom_id
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

PROFILE = profiles.EMAY_IMS
VENDOR = PROFILE.conn_type

#: One table for every code either interface answers; unknown codes become VendorError.
CODES: CodeTable = emay_common.CODES

SEND_SINGLE = "sendSingleIMS"
SEND_BATCH = "sendBatchIMS"
SEND_PERSONALITY = "sendPersonalityIMS"
GET_REPORT = "getIMSReport"

MAX_RECIPIENTS = PROFILE.limits.batch
MAX_REPORTS = PROFILE.limits.report_pull
DEFAULT_MAX_CONTENT_CHARS = PROFILE.limits.content_chars
#: ``00`` + country code + subscriber number, as the document's examples write them.
MOBILE_PATTERN = re.compile(r"^00\d{6,16}$")
#: The platform gives no back-off hint with ERROR_OVER_SPEED; one second is our guess.
OVER_SPEED_RETRY_AFTER_S = 1.0
GZIP_MAGIC = b"\x1f\x8b"

Mode = Literal["plain", "secure"]


class EmayImsClient(VendorClient):
    """Client of the Emay IMS plain (``/inter``) or secure (``/secure``) interface.

    Settings the document leaves open, with conservative defaults:

    * ``max_content_chars`` (1000): the document names ERROR_LONG_CONTENT but no
      number; content longer than this is refused before sending.
    * ``request_valid_period`` (60 s): how long a secure request stays valid; the
      platform rejects it once ``requestTime + period`` has passed.
    * ``gzip`` (True): compress secure bodies, as the document recommends.

    Mobiles must already be ``00`` + country code + number (``0061422118000``).
    """

    profile: ClassVar[VendorProfile] = PROFILE

    def __init__(self, settings: HttpSettings, *, app_id: str, secret_key: str,
                 mode: Mode = "plain", gzip: bool = True, request_valid_period: int = 60,
                 max_batch: int | None = None,
                 max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS) -> None:
        if mode not in ("plain", "secure"):
            raise ValueError(f"mode must be 'plain' or 'secure', got {mode!r}")
        if not app_id:
            raise AuthenticationError("app_id is empty", vendor=VENDOR)
        if not secret_key:
            raise AuthenticationError("secret_key is empty", vendor=VENDOR)
        if mode == "secure":
            aes_key_bytes(secret_key)  # a wrong length fails now, not on the first send
        if request_valid_period <= 0:
            raise ValueError("request_valid_period must be a positive number of seconds")
        if max_content_chars <= 0:
            raise ValueError("max_content_chars must be positive")
        super().__init__(settings, max_batch=max_batch)
        self.app_id = app_id
        self._secret_key = secret_key
        self.mode: Mode = mode
        self.gzip = gzip
        self.request_valid_period = int(request_valid_period)
        self.max_content_chars = max_content_chars

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_url={self.http.base_url!r}, "
                f"app_id={self.app_id!r}, mode={self.mode!r})")

    # --- operations -------------------------------------------------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None
             ) -> Sequence[Submission]:
        """Send through the narrowest endpoint that fits the chunk.

        One recipient goes to sendSingleIMS, one shared text to sendBatchIMS,
        anything else to sendPersonalityIMS.
        """
        if template_id is not None:
            raise PermanentError("IMS has no templates", vendor=VENDOR)
        self.check_batch(messages)
        mobiles, contents, custom_ids = message_columns(messages)
        if not self._usual_chunk(mobiles, contents, custom_ids):
            for index, message in enumerate(messages):  # names the message at fault
                self._check_message(index, message)
        endpoint, payload = build_send_payload(messages)
        path = self._path(endpoint)
        if endpoint == SEND_SINGLE:
            return submissions_from_answer(messages, self._call(endpoint, payload), path)
        resp = self._exchange(endpoint, payload)
        accepted = self._accepted(resp, mobiles, custom_ids, contents)
        if accepted is not None:
            return accepted
        return submissions_from_answer(messages, self._answer_data(resp, path), path)

    def pull_reports(self, limit: int | None = None) -> list[DeliveryReport]:
        """Take up to ``limit`` reports; the platform hands each one out once only."""
        number = MAX_REPORTS if limit is None else limit
        if not 1 <= number <= MAX_REPORTS:
            raise LimitExceededError(
                f"report pull size {number} is outside 1..{MAX_REPORTS}", vendor=VENDOR,
                endpoint=self._path(GET_REPORT))
        data = self._call(GET_REPORT, {"number": number})
        return reports_from_data(data, self._path(GET_REPORT))

    # --- checks -----------------------------------------------------------
    def _check_message(self, index: int, message: OutboundMessage) -> None:
        where = f" in message {index}"
        if not MOBILE_PATTERN.match(message.mobile or ""):
            raise PermanentError(
                f"mobile{where} is not 00 + country code + number "
                f"({len(message.mobile or '')} characters)", vendor=VENDOR)
        check_content(VENDOR, message.content, self.max_content_chars, where=where)
        check_custom_id(VENDOR, message.custom_id, where=where)

    # --- wire -------------------------------------------------------------
    def _path(self, endpoint: str) -> str:
        return f"/{'secure' if self.mode == 'secure' else 'inter'}/{endpoint}"

    def _call(self, endpoint: str, fields: dict[str, Any]) -> Any:
        """One request in the configured mode; returns the answer's data.

        Sends and report pulls both change the platform's state, so a lost
        answer is ambiguous rather than retryable.
        """
        return self._answer_data(self._exchange(endpoint, fields), self._path(endpoint))

    def _exchange(self, endpoint: str, fields: dict[str, Any]) -> requests.Response:
        """Post ``fields`` signed (plain) or enveloped (secure); the answer as it came."""
        path = self._path(endpoint)
        if self.mode == "secure":
            payload = {**fields, "requestTime": epoch_ms(),
                       "requestValidPeriod": self.request_valid_period}
            body = emay_common.encode_secure(payload, self._secret_key, gzip_on=self.gzip)
            headers = emay_common.secure_headers(self.app_id, gzip_on=self.gzip)
        else:
            timestamp = china_stamp()
            payload = {"appId": self.app_id, "timestamp": timestamp,
                       "sign": md5_hex(self.app_id + self._secret_key + timestamp), **fields}
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json;charset=utf-8"}
        return self.http.request("POST", path, idempotent=False, data=body, headers=headers)

    def _answer_data(self, resp: requests.Response, path: str) -> Any:
        """The data of an answer in the configured mode; a refusal raises."""
        if self.mode == "secure":
            return parse_secure_answer(resp.headers.get("result"), resp.content,
                                       self._secret_key, gzip_on=self.gzip, endpoint=path)
        return parse_plain_answer(resp.content, path)

    def _usual_chunk(self, mobiles: list[str], contents: list[str],
                     custom_ids: list[str | None]) -> bool:
        """Whether every message passes :meth:`_check_message`, told without a Python
        step per message for the usual chunk (False: check them one by one)."""
        return (digit_numbers(mobiles, prefix="00", min_len=8, max_len=18)
                and "" not in contents and None not in contents
                and longest(contents) <= self.max_content_chars
                and longest(custom_ids) <= CUSTOM_ID_MAX)

    def _accepted(self, resp: requests.Response, mobiles: list[str],
                  custom_ids: list[str | None], contents: list[str]) -> AcceptedBatch | None:
        """The usual batch answer read by typed decoding; None for any other one."""
        first = contents[0]
        items = ([charge_items(first)] * len(contents) if contents.count(first) == len(contents)
                 else list(map(charge_items, contents)))
        if self.mode != "secure":
            return ims_plain_accepted(resp.content, mobiles, custom_ids, items)
        if (resp.headers.get("result") or "").strip() != emay_common.SUCCESS or not resp.content:
            return None
        try:
            data = emay_common.open_secure(resp.content, self._secret_key, gzip_on=self.gzip)
        except ProtocolError:
            return None
        return ims_data_accepted(data, mobiles, custom_ids, items)


# --- requests ------------------------------------------------------------------
def build_send_payload(messages: Sequence[OutboundMessage]) -> tuple[str, dict[str, Any]]:
    """Pick the endpoint for a checked chunk and build its fields (without auth)."""
    if len(messages) == 1:
        only = messages[0]
        return SEND_SINGLE, _with_custom_id({"mobile": only.mobile, "content": only.content},
                                            only.custom_id)
    mobiles, contents, custom_ids = message_columns(messages)
    first = contents[0]
    rows = zip(mobiles, contents, custom_ids, strict=True)
    with_ids = None not in custom_ids
    if contents.count(first) == len(contents):
        imses = ([{"mobile": m, "customImsId": c} for m, _, c in rows] if with_ids
                 else [_with_custom_id({"mobile": m}, c) for m, _, c in rows])
        return SEND_BATCH, {"content": first, "imses": imses}
    imses = ([{"mobile": m, "content": t, "customImsId": c} for m, t, c in rows] if with_ids
             else [_with_custom_id({"mobile": m, "content": t}, c) for m, t, c in rows])
    return SEND_PERSONALITY, {"imses": imses}


def _with_custom_id(entry: dict[str, Any], custom_id: str | None) -> dict[str, Any]:
    if custom_id is not None:
        entry["customImsId"] = custom_id
    return entry


# --- answers -------------------------------------------------------------------
def parse_plain_answer(body: bytes, endpoint: str) -> Any:
    """The ``data`` of a plain ``{"code", "data"}`` answer; a non-success code raises."""
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(f"answer is not JSON ({len(body)} bytes)", vendor=VENDOR,
                            endpoint=endpoint) from None
    if not isinstance(answer, dict):
        raise ProtocolError(f"answer is a JSON {type(answer).__name__}, not an object",
                            vendor=VENDOR, endpoint=endpoint)
    answer = emay_common.clean_keys(answer)
    code = answer.get("code")
    if not isinstance(code, str) or not code:
        raise ProtocolError("answer has no code", vendor=VENDOR, endpoint=endpoint)
    if code != emay_common.SUCCESS:
        raise_for_code(VENDOR, CODES, code, endpoint, retry_after=OVER_SPEED_RETRY_AFTER_S)
    return answer.get("data")


def parse_secure_answer(result: str | None, body: bytes, secret_key: str, *, gzip_on: bool,
                        endpoint: str) -> Any:
    """The decrypted data of a secure answer; ``None`` when a success has no body."""
    code = (result or "").strip()
    if not code:
        raise ProtocolError("answer has no result header", vendor=VENDOR, endpoint=endpoint)
    if code != emay_common.SUCCESS:
        raise_for_code(VENDOR, CODES, code, endpoint, retry_after=OVER_SPEED_RETRY_AFTER_S)
    if not body:
        return None
    try:
        data = emay_common.decode_secure(body, secret_key, gzip_on=gzip_on)
    except ProtocolError as exc:
        raise ProtocolError(f"answer body cannot be decoded: {exc}", vendor=VENDOR,
                            endpoint=endpoint) from None
    return emay_common.clean_keys(data)


def submissions_from_answer(messages: Sequence[OutboundMessage], data: Any, endpoint: str
                            ) -> list[Submission]:
    """Pair the answer's entries with what we sent, by position, checking each mobile.

    A single send answers one object, a batch a list; either way there must be
    exactly one entry per recipient, in order, or the answer is not trusted.
    """
    entries = [data] if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ProtocolError("answer data is missing or not a list", vendor=VENDOR,
                            endpoint=endpoint)
    if len(entries) != len(messages):
        raise ProtocolError(f"answer has {len(entries)} entries for {len(messages)} "
                            "recipients", vendor=VENDOR, endpoint=endpoint)
    out = []
    for index, (message, entry) in enumerate(zip(messages, entries, strict=True)):
        if not isinstance(entry, dict):
            raise ProtocolError(f"answer entry {index} is not an object", vendor=VENDOR,
                                endpoint=endpoint)
        if _text(entry.get("mobile")) != message.mobile.strip():
            raise ProtocolError(f"answer entry {index} is for another mobile",
                                vendor=VENDOR, endpoint=endpoint)
        ims_id = _text(entry.get("imsId"))
        if not ims_id:
            raise ProtocolError(f"answer entry {index} has no imsId", vendor=VENDOR,
                                endpoint=endpoint)
        out.append(Submission(
            mobile=message.mobile, message_id=ims_id,
            custom_id=_text(entry.get("customImsId")) or message.custom_id,
            charge_items=charge_items(message.content), vendor_code=emay_common.SUCCESS,
            status=SubmissionStatus.SUBMITTED))
    return out


def reports_from_data(data: Any, endpoint: str) -> list[DeliveryReport]:
    """Reports from a pull answer or a push; an empty answer means no reports."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise ProtocolError(f"reports are a {type(data).__name__}, not a list",
                            vendor=VENDOR, endpoint=endpoint)
    return [_report(entry, index, endpoint) for index, entry in enumerate(data)]


def _report(entry: Any, index: int, endpoint: str) -> DeliveryReport:
    if not isinstance(entry, dict):
        raise ProtocolError(f"report {index} is not an object", vendor=VENDOR,
                            endpoint=endpoint)
    entry = emay_common.clean_keys(entry)
    mobile, state = _text(entry.get("mobile")), _text(entry.get("state"))
    if not mobile or not state:
        missing = "mobile" if not mobile else "state"
        raise ProtocolError(f"report {index} has no {missing}", vendor=VENDOR,
                            endpoint=endpoint)
    return DeliveryReport(
        message_id=_text(entry.get("imsId")) or None, mobile=mobile, raw_state=state,
        status=normalise_state(emay_common.REPORT_STATES, state),
        custom_id=_text(entry.get("customImsId")) or None,
        description=_text(entry.get("desc")),
        submit_time=parse_china(_text(entry.get("submitTime")) or None),
        report_time=parse_china(_text(entry.get("receiveTime")) or None),
        raw=entry)


def _text(value: Any) -> str:
    """A scalar as stripped text; ids may arrive as JSON numbers."""
    if value is None or isinstance(value, dict | list | bool):
        return ""
    return str(value).strip()


# --- pushes --------------------------------------------------------------------
PUSH = "push"


def parse_push_encrypted(body: bytes, app_id: str | None,
                         secret_key_for: Callable[[str], str | None]) -> list[DeliveryReport]:
    """Reports from an encrypted push: the ``appId`` header picks the key.

    The document says the body is gzipped before encryption, but the platform
    decides that per account, so a decrypted body that does not start with the
    gzip magic bytes (1f 8b) is taken as the JSON itself.
    """
    app = (app_id or "").strip()
    if not app:
        raise AuthenticationError("push has no appId header", vendor=VENDOR, endpoint=PUSH)
    key = secret_key_for(app)
    if not key:
        raise AuthenticationError(f"push for unknown appId {app!r}", vendor=VENDOR,
                                  endpoint=PUSH)
    try:
        data = aes_decrypt(key, body)
        if data.startswith(GZIP_MAGIC):
            data = gzip_decompress(data)
    except ProtocolError as exc:
        raise ProtocolError(f"push body cannot be decoded: {exc}", vendor=VENDOR,
                            endpoint=PUSH) from None
    reports = _push_reports(data, "push body")
    for index, report in enumerate(reports):
        other = _text(report.raw.get("appId"))
        if other and other != app:
            raise ProtocolError(f"report {index} belongs to another appId", vendor=VENDOR,
                                endpoint=PUSH)
    return reports


def parse_push_form(reports_field: str) -> list[DeliveryReport]:
    """Reports from a plain push: the ``reports`` form field, a JSON list."""
    if not isinstance(reports_field, str | bytes) or not reports_field:
        raise ProtocolError("push has no reports field", vendor=VENDOR, endpoint=PUSH)
    raw = reports_field.encode("utf-8") if isinstance(reports_field, str) else reports_field
    return _push_reports(raw, "reports field")


def _push_reports(data: bytes, what: str) -> list[DeliveryReport]:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(f"{what} is not JSON", vendor=VENDOR, endpoint=PUSH) from None
    if not isinstance(parsed, list):
        raise ProtocolError(f"{what} is a JSON {type(parsed).__name__}, not a list",
                            vendor=VENDOR, endpoint=PUSH)
    return reports_from_data(parsed, PUSH)


__all__ = [
    "CODES",
    "VENDOR",
    "EmayImsClient",
    "build_send_payload",
    "parse_plain_answer",
    "parse_push_encrypted",
    "parse_push_form",
    "parse_secure_answer",
    "reports_from_data",
    "submissions_from_answer",
]
