"""Emay Flash Push (FMS) as the platform behaves: templates, sends, reports, balance.

Normal mode is served under ``/fms/normal/`` and ``/inter/`` (deployments
differ), secure mode under ``/fms/secure/``. Every answer is HTTP 200 with the
code in the ``result`` header; only SUCCESS carries a body. FMS has no push.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sms_provider.errors import SmsError
from sms_provider.simulator.http import SimRequest, SimResponse
from sms_provider.simulator.state import DELIVERED, InsufficientBalance, Message, unit_hash
from sms_provider.simulator.vendor_base import Handler, VendorSimulator
from sms_provider.vendors import emay_common
from sms_provider.vendors.clock import CHINA_TZ
from sms_provider.vendors.codec import aes_decrypt, aes_encrypt, gzip_compress, gzip_decompress
from sms_provider.vendors.profiles import EMAY_FMS

SUCCESS = emay_common.SUCCESS
MOBILE_RE = re.compile(r"1[0-9]{10}")
PLACEHOLDER_RE = re.compile(r"\$\{([^{}]+)\}")
MAX_MOBILES = EMAY_FMS.limits.batch
MAX_REPORTS = EMAY_FMS.limits.report_pull
CUSTOM_ID_MAX = EMAY_FMS.limits.custom_id_chars
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NORMAL_PREFIXES = ("/fms/normal", "/inter")
SECURE_PREFIX = "/fms/secure"


class Refusal(Exception):
    """Ends a request with one of the platform's codes."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _int(value: Any, code: str) -> int:
    """A JSON integer (or digit string, as lenient Java parsers take it)."""
    if isinstance(value, bool):
        raise Refusal(code)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise Refusal(code)


def _text(value: Any) -> str:
    """A scalar field as text; objects and lists are malformed here."""
    if value is None:
        return ""
    if isinstance(value, dict | list | bool):
        raise Refusal("ERROR_PARAMS")
    return str(value).strip()


def _template_id(value: Any) -> str:
    """``templateId`` exactly as sent. The platform's ids are strings (20 digits, past
    what a float or a signed 64-bit integer holds), so a JSON number is refused rather
    than read back as digits: a client that turned an id into a number has already lost
    it, and the platform, like this simulator, only knows the exact string it issued."""
    if value is None or value == "":
        raise Refusal("ERROR_PARAMS")
    if isinstance(value, dict | list | bool):
        raise Refusal("ERROR_PARAMS")
    if not isinstance(value, str):
        raise Refusal("ERROR_TEMPLATE_ID_ERROR")
    return value


class EmayFmsSimulator(VendorSimulator):
    """Config keys: ``app_id``, ``secret_key``, ``balance_as_string`` (bare-string balance),
    ``templates`` (``[{"id": "...", "text": "..."}]``: templates the account already had
    approved by every carrier, under ids of any shape an older deployment issued)."""

    name = "emay_fms"
    account_field = "appId"

    def __init__(self, sim: Any, config: dict[str, Any]) -> None:
        super().__init__(sim, config)
        self.app_id = str(config.get("app_id", ""))
        self.secret_key = str(config.get("secret_key", ""))
        self.balance_as_string = bool(config.get("balance_as_string", False))
        self._seed = self.state.settings["seed"]
        for entry in config.get("templates") or ():
            if not isinstance(entry.get("id"), str) or not isinstance(entry.get("text"), str):
                raise ValueError("emay_fms.templates: each entry needs a string id and text")
            self.state.add_template(entry["id"], entry["text"], _placeholders(entry["text"]))

    def routes(self) -> dict[str, Handler]:
        endpoints: dict[str, Callable[[dict[str, Any]], Any]] = {
            "templateReport": self._template_report,
            "querytemplate": self._query_template,
            "sendSingleFMS": self._send_single,
            "sendBatchFMS": self._send_batch,
            "getFMSReport": self._reports,
            "getBalance": self._balance,
        }
        routes: dict[str, Handler] = {}
        for name, endpoint in endpoints.items():
            for prefix in NORMAL_PREFIXES:
                routes[f"{prefix}/{name}"] = partial(self._normal, endpoint)
            routes[f"{SECURE_PREFIX}/{name}"] = partial(self._secure, endpoint)
        return routes

    def rate_limited(self, req: SimRequest) -> SimResponse:
        return _refused("ERROR_OVER_SPEED")

    # --- the two envelopes ------------------------------------------------------------------
    def _normal(self, endpoint: Callable[[dict[str, Any]], Any], req: SimRequest
                ) -> SimResponse:
        try:
            payload = self._read_normal(req)
            if str(payload.get("appId", "")).strip() != self.app_id:
                raise Refusal("ERROR_APPID")
            data = self._process(endpoint, payload)
        except Refusal as refusal:
            return _refused(refusal.code)
        return SimResponse.json(data, headers={"result": SUCCESS})

    def _secure(self, endpoint: Callable[[dict[str, Any]], Any], req: SimRequest
                ) -> SimResponse:
        gzip_on = (req.header("gzip") or "").strip().lower() == "on"
        try:
            if (req.header("appid") or "").strip() != self.app_id:
                raise Refusal("ERROR_APPID")
            payload = self._read_secure(req, gzip_on)
            data = self._process(endpoint, payload)
        except Refusal as refusal:
            return _refused(refusal.code)
        body = aes_encrypt(self.secret_key, _gzip_if(gzip_on, _dumps(data)))
        return SimResponse(200, body, {"result": SUCCESS}, "application/octet-stream")

    def _read_normal(self, req: SimRequest) -> dict[str, Any]:
        if req.method != "POST":
            raise Refusal("ERROR_PARAMS")
        try:
            payload = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise Refusal("ERROR_PARAMS") from None
        return _object(payload)

    def _read_secure(self, req: SimRequest, gzip_on: bool) -> dict[str, Any]:
        """Undecryptable (wrong key, garbage, bad gzip) is ERROR_ENCRYPTION; bad JSON is not."""
        if req.method != "POST":
            raise Refusal("ERROR_PARAMS")
        encoding = (req.header("encode") or "utf-8").strip() or "utf-8"
        try:
            data = aes_decrypt(self.secret_key, req.body)
            if gzip_on:
                data = gzip_decompress(data)
            text = data.decode(encoding)
        except LookupError:
            raise Refusal("ERROR_PARAMS") from None  # unknown charset name
        except (SmsError, UnicodeDecodeError):
            raise Refusal("ERROR_ENCRYPTION") from None
        try:
            payload = json.loads(text)
        except ValueError:
            raise Refusal("ERROR_PARAMS") from None
        return _object(payload)

    def _process(self, endpoint: Callable[[dict[str, Any]], Any], payload: dict[str, Any]
                 ) -> Any:
        payload = emay_common.clean_keys(payload)
        request_time = _int(payload.get("requestTime"), "ERROR_REQUESTTIME")
        period = _int(payload.get("requestValidPeriod"), "ERROR_REQUESTVALIDPERIOD")
        if request_time <= 0:
            raise Refusal("ERROR_REQUESTTIME")
        if period <= 0:
            raise Refusal("ERROR_REQUESTVALIDPERIOD")
        if request_time + period * 1000 < time.time() * 1000:
            raise Refusal("ERROR_REQUESTTIME_TIMEOUT")
        return endpoint(payload)

    # --- templates -------------------------------------------------------------------------
    def _template_report(self, payload: dict[str, Any]) -> dict[str, Any]:
        text = payload.get("templateInfo")
        if not isinstance(text, str) or not text.strip():
            raise Refusal("ERROR_TEMPLATE_CONTENT")
        template = self.state.register_template(text, _placeholders(text))
        return {"templateId": template.template_id, "variable": ",".join(template.variables)}

    def _query_template(self, payload: dict[str, Any]) -> dict[str, Any]:
        template_id = _template_id(payload.get("templateId"))
        states = self.state.template_states(template_id)
        if states is None:
            states = {"cmcc": -1, "cucc": -1, "ctcc": -1}
        return {"templateId": template_id, "status": states}

    # --- sending ---------------------------------------------------------------------------
    def _send_single(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._send(payload, [payload])[0]

    def _send_batch(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        entries = payload.get("fmses")
        if entries is None or entries == []:
            raise Refusal("ERROR_MOBILE_EMPTY")
        if not isinstance(entries, list):
            raise Refusal("ERROR_PARAMS")
        if len(entries) > MAX_MOBILES:
            raise Refusal("ERROR_MOBILE_NUMBER")
        for entry in entries:
            _object(entry)
        return self._send(payload, entries)

    def _send(self, payload: dict[str, Any], entries: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
        template = self._usable_template(_template_id(payload.get("templateId")))
        mobiles, custom_ids, contents, extras = [], [], [], []
        # a request's recipients often share their variables: each distinct text is
        # parsed and rendered once
        rendered: dict[Any, tuple[dict[str, str], str]] = {}
        for entry in entries:
            mobile = _text(entry.get("mobile"))
            if not mobile:
                raise Refusal("ERROR_MOBILE_EMPTY")
            if not MOBILE_RE.fullmatch(mobile):
                raise Refusal("ERROR_MOBILE_ERROR")
            custom_id = _text(entry.get("customFmsId")) or None
            if custom_id is not None and len(custom_id) > CUSTOM_ID_MAX:
                raise Refusal("ERROR_CUSTOM_FMSID")
            content = entry.get("content")
            key = content if isinstance(content, str) else None
            done = rendered.get(key) if key is not None else None
            if done is None:
                variables = _variables(content, template.variables)
                done = (variables, PLACEHOLDER_RE.sub(
                    lambda m, v=variables: v[m.group(1).strip()], template.text))
                if key is not None:
                    rendered[key] = done
            mobiles.append(mobile)
            custom_ids.append(custom_id)
            contents.append(done[1])
            extras.append({"template_id": template.template_id, "variables": done[0]})
        prefix = datetime.now(CHINA_TZ).strftime("%y%m%d%H%M%S")
        serials = iter(self.sim.next_serials(len(mobiles)))
        try:
            accepted = self.state.accept(
                mobiles, contents, custom_ids,
                lambda _seq: f"{prefix}{next(serials) % 10**8:08d}", extras=extras)
        except InsufficientBalance:
            raise Refusal("ERROR_BALANCE") from None
        return [_submission(m) for m in accepted]

    def _usable_template(self, template_id: str) -> Any:
        template = self.state.templates.get(template_id)
        if template is None:  # what the platform answers for an id it never issued
            raise Refusal("ERROR_TEMPLATE_ID_ERROR")
        states = self.state.template_states(template_id) or {}
        if 1 not in states.values():  # still pending everywhere, or rejected everywhere
            raise Refusal("ERROR_TEMPLATE_NOT_PASS")
        return template

    # --- reports and balance ---------------------------------------------------------------
    def _reports(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        number = payload.get("number")
        limit = MAX_REPORTS if number is None else _int(number, "ERROR_PARAMS")
        if not 1 <= limit <= MAX_REPORTS:
            raise Refusal("ERROR_PARAMS")
        return [self._report(m) for m in self.state.take_due_reports(limit)]

    def _report(self, m: Message) -> dict[str, Any]:
        if m.outcome == DELIVERED:
            state = "DELIVRD"
        else:
            failures = emay_common.FAILURE_STATES
            state = failures[int(unit_hash(self._seed, m.message_id) * len(failures))]
        report = {"mobile": m.mobile, "fmsId": m.message_id, "state": state,
                  "desc": emay_common.STATE_DESCRIPTIONS[state],
                  "receiveTime": m.report_time.strftime(TIME_FORMAT),
                  "submitTime": m.submit_time.strftime(TIME_FORMAT)}
        if m.custom_id is not None:
            report["customFmsId"] = m.custom_id
        return report

    def _balance(self, payload: dict[str, Any]) -> Any:
        balance = str(self.state.balance)
        return balance if self.balance_as_string else {"balance": balance}


# --- helpers -----------------------------------------------------------------------------

def _refused(code: str) -> SimResponse:
    return SimResponse(200, b"", {"result": code})


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refusal("ERROR_PARAMS")
    return value


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _gzip_if(on: bool, data: bytes) -> bytes:
    return gzip_compress(data) if on else data


def _placeholders(text: str) -> tuple[str, ...]:
    """The ``${name}`` variables of a template text, each once, in order."""
    return tuple(dict.fromkeys(name.strip() for name in PLACEHOLDER_RE.findall(text)))


def _variables(content: Any, expected: tuple[str, ...]) -> dict[str, str]:
    """``content`` is a JSON string of the variables; empty for a fixed template."""
    if content is None or content == "":
        values: Any = {}
    elif isinstance(content, str):
        try:
            values = json.loads(content)
        except ValueError:
            raise Refusal("ERROR_TEMPLATE_VARIABLE") from None
    else:
        raise Refusal("ERROR_TEMPLATE_VARIABLE")
    if not isinstance(values, dict) or set(values) != set(expected):
        raise Refusal("ERROR_TEMPLATE_VARIABLE")
    if any(isinstance(v, dict | list) or v is None for v in values.values()):
        raise Refusal("ERROR_TEMPLATE_VARIABLE")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def _submission(m: Message) -> dict[str, Any]:
    answer = {"mobile": m.mobile, "fmsId": m.message_id}
    if m.custom_id is not None:
        answer["customFmsId"] = m.custom_id
    return answer
