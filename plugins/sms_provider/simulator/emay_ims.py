"""Simulated Emay IMS: ``/inter/*`` (JSON + md5 sign) and ``/secure/*`` (AES envelope).

Both interfaces share one set of operations; only the envelope differs. An
operation raises :class:`EmayRefusal` with the platform's code and the
envelope turns it into that interface's error answer: ``{"code": ...}`` for
plain, HTTP 200 with the ``result`` header and no body for secure.

The secure-envelope helpers (:func:`read_secure_request`,
:func:`secure_response`) know nothing IMS-specific, so Emay FMS can reuse them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sms_provider.errors import ProtocolError
from sms_provider.simulator.http import SimRequest, SimResponse
from sms_provider.simulator.state import DELIVERED, InsufficientBalance, Message, unit_hash
from sms_provider.simulator.vendor_base import Handler, VendorSimulator
from sms_provider.vendors import emay_common
from sms_provider.vendors.clock import CHINA_TZ, china_now
from sms_provider.vendors.codec import aes_decrypt, gzip_decompress, md5_hex
from sms_provider.vendors.profiles import EMAY_IMS

MAX_RECIPIENTS = EMAY_IMS.limits.batch
MAX_REPORTS = EMAY_IMS.limits.report_pull
CUSTOM_ID_MAX = EMAY_IMS.limits.custom_id_chars
MOBILE_PATTERN = re.compile(r"^00\d{6,16}$")
STAMP_PATTERN = re.compile(r"^\d{14}$")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OCTET = "application/octet-stream"

Operation = Callable[[dict[str, Any], dict[str, Any]], Any]


class EmayRefusal(Exception):
    """The platform refuses the request with ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# --- the secure envelope, shared by the Emay products ------------------------------
def read_secure_request(req: SimRequest, app_id: str, secret_key: str
                        ) -> tuple[dict[str, Any], bool]:
    """Authenticate and decode a secure request: (payload, gzip on)."""
    if (req.header("appid") or "").strip() != app_id:
        raise EmayRefusal("ERROR_APPID")
    gzip_on = (req.header("gzip") or "").strip().lower() == "on"
    encoding = (req.header("encode") or "utf-8").strip() or "utf-8"
    try:
        data = aes_decrypt(secret_key, req.body)
        if gzip_on:
            data = gzip_decompress(data)
        text = data.decode(encoding)
    except (ProtocolError, UnicodeDecodeError, LookupError):
        raise EmayRefusal("ERROR_ENCRYPTION") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        raise EmayRefusal("ERROR_PARAMS") from None
    if not isinstance(payload, dict):
        raise EmayRefusal("ERROR_PARAMS")
    check_request_time(payload, int(time.time() * 1000))
    return payload, gzip_on


def check_request_time(payload: dict[str, Any], now_ms: int) -> None:
    """``requestTime + requestValidPeriod * 1000 < now`` is a stale request."""
    request_time = payload.get("requestTime")
    if not _is_int(request_time):
        raise EmayRefusal("ERROR_REQUESTTIME")
    period = payload.get("requestValidPeriod")
    if not _is_int(period) or period <= 0:
        raise EmayRefusal("ERROR_REQUESTVALIDPERIOD")
    if request_time + period * 1000 < now_ms:
        raise EmayRefusal("ERROR_REQUESTTIME_TIMEOUT")


def secure_response(code: str, data: Any = None, *, secret_key: str = "",
                    gzip_on: bool = False) -> SimResponse:
    """HTTP 200, code in ``result``; only a success carries the encrypted data."""
    if code != emay_common.SUCCESS:
        return SimResponse(200, b"", {"result": code}, OCTET)
    body = emay_common.encode_secure(data, secret_key, gzip_on=gzip_on)
    return SimResponse(200, body, {"result": code}, OCTET)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- IMS ---------------------------------------------------------------------------
class EmayImsSimulator(VendorSimulator):
    """Config keys: ``app_id``, ``secret_key``, ``timestamp_window_s`` (600),
    ``max_content_chars`` (1000), ``push_url`` and ``push_mode``
    (``encrypted``, the default, or ``plain``)."""

    name = "emay_ims"
    account_field = "appId"

    def __init__(self, sim: Any, config: dict[str, Any]) -> None:
        super().__init__(sim, config)
        self.app_id = str(config["app_id"])
        self.secret_key = str(config["secret_key"])
        self.timestamp_window_s = float(config.get("timestamp_window_s", 600))
        self.max_content_chars = int(config.get("max_content_chars", 1000))
        self.push_mode = str(config.get("push_mode", "encrypted"))
        if self.push_mode not in ("encrypted", "plain"):
            raise ValueError(f"emay_ims push_mode must be 'encrypted' or 'plain', "
                             f"got {self.push_mode!r}")
        self.seed = self.state.settings["seed"]

    def routes(self) -> dict[str, Handler]:
        operations: dict[str, Operation] = {
            "sendSingleIMS": self._send_single,
            "sendBatchIMS": self._send_batch,
            "sendPersonalityIMS": self._send_personality,
            "getIMSReport": self._get_report,
        }
        routes: dict[str, Handler] = {}
        for name, op in operations.items():
            routes[f"/inter/{name}"] = self._plain_handler(name, op)
            routes[f"/secure/{name}"] = self._secure_handler(name, op)
        return routes

    def rate_limited(self, req: SimRequest) -> SimResponse:
        if req.path.startswith("/secure/"):
            return secure_response("ERROR_OVER_SPEED")
        return SimResponse.json({"code": "ERROR_OVER_SPEED"})

    # --- envelopes ---------------------------------------------------------------
    def _plain_handler(self, name: str, op: Operation) -> Handler:
        def handle(req: SimRequest) -> SimResponse:
            if req.method != "POST":
                return SimResponse.text("method not allowed", 405)
            try:
                payload = self._read_plain(req)
                data = op(payload, {"endpoint": name, "mode": "plain"})
            except EmayRefusal as refusal:
                return SimResponse.json({"code": refusal.code})
            return SimResponse.json({"code": emay_common.SUCCESS, "data": data})
        return handle

    def _secure_handler(self, name: str, op: Operation) -> Handler:
        def handle(req: SimRequest) -> SimResponse:
            if req.method != "POST":
                return SimResponse.text("method not allowed", 405)
            try:
                payload, gzip_on = read_secure_request(req, self.app_id, self.secret_key)
                data = op(payload, {"endpoint": name, "mode": "secure", "gzip": gzip_on})
            except EmayRefusal as refusal:
                return secure_response(refusal.code)
            return secure_response(emay_common.SUCCESS, data, secret_key=self.secret_key,
                                   gzip_on=gzip_on)
        return handle

    def _read_plain(self, req: SimRequest) -> dict[str, Any]:
        try:
            payload = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise EmayRefusal("ERROR_PARAMS") from None
        if not isinstance(payload, dict):
            raise EmayRefusal("ERROR_PARAMS")
        app_id, stamp, sign = (payload.get(k) for k in ("appId", "timestamp", "sign"))
        if not all(isinstance(v, str) for v in (app_id, stamp, sign)):
            raise EmayRefusal("ERROR_PARAMS")
        if app_id != self.app_id:
            raise EmayRefusal("ERROR_APPID")
        self._check_stamp(stamp)
        if sign != md5_hex(app_id + self.secret_key + stamp):
            raise EmayRefusal("ERROR_SIGN")
        return payload

    def _check_stamp(self, stamp: str) -> None:
        if not STAMP_PATTERN.match(stamp):
            raise EmayRefusal("ERROR_TIMESTAMP")
        try:
            at = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
        except ValueError:
            raise EmayRefusal("ERROR_TIMESTAMP") from None
        if abs(at.timestamp() - time.time()) > self.timestamp_window_s:
            raise EmayRefusal("ERROR_TIMESTAMP")

    # --- operations --------------------------------------------------------------
    def _send_single(self, payload: dict[str, Any], extra: dict[str, Any]) -> Any:
        mobile = self._mobile(payload.get("mobile"))
        content = self._content(payload.get("content"))
        custom_id = self._custom_id(payload.get("customImsId"))
        return self._accept([mobile], [content], [custom_id], extra)

    def _send_batch(self, payload: dict[str, Any], extra: dict[str, Any]) -> Any:
        imses = self._imses(payload.get("imses"))
        mobiles = [self._mobile(entry.get("mobile")) for entry in imses]
        content = self._content(payload.get("content"))
        custom_ids = [self._custom_id(entry.get("customImsId")) for entry in imses]
        return self._accept(mobiles, [content] * len(mobiles), custom_ids, extra)

    def _send_personality(self, payload: dict[str, Any], extra: dict[str, Any]) -> Any:
        imses = self._imses(payload.get("imses"))
        mobiles = [self._mobile(entry.get("mobile")) for entry in imses]
        contents = [self._content(entry.get("content")) for entry in imses]
        custom_ids = [self._custom_id(entry.get("customImsId")) for entry in imses]
        return self._accept(mobiles, contents, custom_ids, extra)

    def _get_report(self, payload: dict[str, Any], extra: dict[str, Any]) -> Any:
        number = payload.get("number", MAX_REPORTS)
        if not _is_int(number) or not 1 <= number <= MAX_REPORTS:
            raise EmayRefusal("ERROR_PARAMS")
        return [self._report(m) for m in self.state.take_due_reports(number)]

    def _accept(self, mobiles: list[str], contents: list[str],
                custom_ids: list[str | None], extra: dict[str, Any]) -> Any:
        prefix = china_now().strftime("%Y%m%d")
        serials = iter(self.sim.next_serials(len(mobiles)))

        def id_for(_seq: int) -> str:
            return f"{prefix}{next(serials) % 10**12:012d}"

        try:
            accepted = self.state.accept(mobiles, contents, custom_ids, id_for,
                                         extras=[extra] * len(mobiles))
        except InsufficientBalance:
            raise EmayRefusal("ERROR_BALANCE") from None
        answer = [_submit_entry(m) for m in accepted]
        return answer[0] if extra["endpoint"] == "sendSingleIMS" else answer

    # --- field checks ------------------------------------------------------------
    @staticmethod
    def _imses(value: Any) -> list[dict[str, Any]]:
        if value is None or value == []:
            raise EmayRefusal("ERROR_MOBILE_EMPTY")
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise EmayRefusal("ERROR_PARAMS")
        if len(value) > MAX_RECIPIENTS:
            raise EmayRefusal("ERROR_MOBILE_NUMBER")
        return value

    @staticmethod
    def _mobile(value: Any) -> str:
        if value is None or value == "":
            raise EmayRefusal("ERROR_MOBILE_EMPTY")
        if not isinstance(value, str):
            raise EmayRefusal("ERROR_PARAMS")
        if not MOBILE_PATTERN.match(value):
            raise EmayRefusal("ERROR_MOBILE_ERROR")
        return value

    def _content(self, value: Any) -> str:
        if value is None or value == "":
            raise EmayRefusal("ERROR_CONTENT_EMPTY")
        if not isinstance(value, str):
            raise EmayRefusal("ERROR_PARAMS")
        if len(value) > self.max_content_chars:
            raise EmayRefusal("ERROR_LONG_CONTENT")
        return value

    @staticmethod
    def _custom_id(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise EmayRefusal("ERROR_PARAMS")
        if len(value) > CUSTOM_ID_MAX:
            raise EmayRefusal("ERROR_CUSTOM_IMSID")
        return value

    # --- reports -----------------------------------------------------------------
    def _state_of(self, m: Message) -> str:
        if m.outcome == DELIVERED:
            return "DELIVRD"
        failures = emay_common.FAILURE_STATES
        return failures[int(unit_hash(self.seed, m.message_id) * len(failures))]

    def _report(self, m: Message) -> dict[str, Any]:
        state = self._state_of(m)
        return {
            "mobile": m.mobile, "imsId": m.message_id, "customImsId": m.custom_id or "",
            "state": state, "desc": emay_common.STATE_DESCRIPTIONS[state],
            "receiveTime": m.report_time.strftime(TIME_FORMAT),
            "submitTime": m.submit_time.strftime(TIME_FORMAT),
        }

    def push_reports(self, messages: list[Message]) -> bool:
        if not self.push_url:
            return True
        reports = [{"appId": self.app_id, **self._report(m)} for m in messages]
        if self.push_mode == "plain":
            text = json.dumps(reports, ensure_ascii=False)
            return self._post_ok("POST", self.push_url, data={"reports": text})
        body = emay_common.encode_secure(reports, self.secret_key, gzip_on=True)
        return self._post_ok("POST", self.push_url, data=body,
                             headers={"appId": self.app_id, "Content-Type": OCTET})


def _submit_entry(m: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {"mobile": m.mobile, "imsId": m.message_id}
    if m.custom_id is not None:
        entry["customImsId"] = m.custom_id
    return entry
