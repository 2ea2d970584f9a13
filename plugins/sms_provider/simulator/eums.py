"""Simulated EUMS V2.1 gateway: send, report, mo, balance and statistic_app (GET or POST).

Authentication as the gateway does it: ``key`` = md5(md5(password) + seed
[+ data]) with a seed in China time no more than ``skew_minutes`` away.
With ``ver=17`` the send ``data`` is hex AES ciphertext and every answer is
hex ciphertext of its JSON, except those given before the account is known
(101, 201, 124), which are plain JSON.

Config keys (besides the shared ``simulation``/``balance``): ``name``,
``password``, ``aes_key`` (no key: ``ver=17`` answers 124),
``require_signature`` (true: content needs a 【…】 signature, else 111),
``max_content_chars`` (500 -> 109), ``max_numbers`` (1000 -> 104),
``skew_minutes`` (30 -> 106), ``statistic_calls_per_minute`` (3 -> 131),
``account_status`` (active | suspended -> 202 | deleted -> 203),
``blocked_words`` ([] -> 401), ``mo_port`` (the MO ``dest`` prefix) and
``pull_batch`` (500, the most reports or replies one pull hands out).

The document describes no push, so ``push_url``/``mo_push_url`` are ignored:
reports and replies wait to be pulled.
"""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sms_provider.errors import ProtocolError
from sms_provider.simulator.http import SimRequest, SimResponse
from sms_provider.simulator.state import DELIVERED, InsufficientBalance, SimState, unit_hash
from sms_provider.simulator.vendor_base import Handler, VendorSimulator
from sms_provider.vendors.clock import CHINA_TZ
from sms_provider.vendors.codec import aes_decrypt, aes_encrypt, md5_hex
from sms_provider.vendors.profiles import EUMS

PREFIX = "/eums/sms/utf8/json/"
STATISTIC_PATH = PREFIX + "statistic_app.do"
MOBILE = re.compile(r"^1\d{10}$")
DIGITS = re.compile(r"^\d+$")
SIGNATURE = re.compile(r"^【([^【】]*)】|【([^【】]*)】$")
FAILURE_STATES = ("UNDELIV", "EXPIRED", "REJECTD", "MK:0001")
EXT_MAX_DIGITS = 12
#: message ids hold a 4-digit position within the request
MAX_NUMBERS_CEILING = 10_000
REFERENCE_MAX = EUMS.limits.custom_id_chars
SIGNATURE_MAX = 20
STATISTIC_MAX_DAYS = EUMS.limits.statistics_days
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ACCOUNT_CODES = {"suspended": 202, "deleted": 203}


class Refusal(Exception):
    """The gateway answers ``{"code": code}``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


Action = Callable[[dict[str, str]], dict[str, Any]]


class EumsSimulator(VendorSimulator):
    name = "eums"
    account_field = "name"

    def __init__(self, sim: SimState, config: dict[str, Any]) -> None:
        super().__init__(sim, config)
        self.push_url = self.mo_push_url = None
        self.account = str(config.get("name", ""))
        self.password_md5 = md5_hex(str(config.get("password", "")))
        self.aes_key: str | None = config.get("aes_key") or None
        self.require_signature = bool(config.get("require_signature", True))
        self.max_content = int(config.get("max_content_chars", 500))
        self.max_numbers = int(config.get("max_numbers", 1000))
        if not 1 <= self.max_numbers <= MAX_NUMBERS_CEILING:
            raise ValueError(f"eums: max_numbers must be 1..{MAX_NUMBERS_CEILING}")
        self.skew_s = float(config.get("skew_minutes", 30)) * 60
        self.statistic_calls = int(config.get("statistic_calls_per_minute",
                                                  EUMS.limits.statistics_calls))
        self.account_code = ACCOUNT_CODES.get(str(config.get("account_status", "active")))
        self.blocked_words = tuple(str(w) for w in config.get("blocked_words", ()))
        self.mo_port = str(config.get("mo_port", "1069012345678"))
        self.pull_batch = int(config.get("pull_batch", 500))
        self._statistic_times: deque[float] = deque()
        self._statistic_lock = threading.Lock()

    def routes(self) -> dict[str, Handler]:
        actions: dict[str, tuple[Action, bool]] = {
            "send.do": (self._send, True), "report.do": (self._report, False),
            "mo.do": (self._mo, False), "balance.do": (self._balance, False),
            "statistic_app.do": (self._statistic, False)}
        return {PREFIX + name: self._handler(action, signs_data)
                for name, (action, signs_data) in actions.items()}

    def rate_limited(self, req: SimRequest) -> SimResponse:
        """131 for statistics (the only documented frequency code); HTTP 429 elsewhere."""
        if req.path.rstrip("/") == STATISTIC_PATH:
            return self._serve(req, self._too_frequent, signs_data=False)
        return super().rate_limited(req)

    @staticmethod
    def _too_frequent(params: dict[str, str]) -> dict[str, Any]:
        raise Refusal(131)

    # --- envelope ------------------------------------------------------------
    def _handler(self, action: Action, signs_data: bool) -> Handler:
        def handle(req: SimRequest) -> SimResponse:
            if req.method not in ("GET", "POST"):
                return SimResponse.text("method not allowed", 405)
            return self._serve(req, action, signs_data=signs_data)
        return handle

    def _serve(self, req: SimRequest, action: Action, *, signs_data: bool) -> SimResponse:
        params = req.params()
        if not params.get("name"):
            return SimResponse.json({"code": 101})
        if params["name"] != self.account:
            return SimResponse.json({"code": 201})
        ver = params.get("ver", "").strip()
        if ver not in ("1", "17") or (ver == "17" and not self.aes_key):
            return SimResponse.json({"code": 124})
        try:
            self._authenticate(params, signs_data)
            answer = action({**params, "ver": ver})
        except Refusal as refusal:
            answer = {"code": refusal.code}
        if ver == "1":
            return SimResponse.json(answer)
        plain = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        cipher = aes_encrypt(self.aes_key, plain).hex().upper()  # type: ignore[arg-type]
        return SimResponse(200, cipher.encode("ascii"), {}, "text/plain;charset=utf-8")

    def _authenticate(self, params: dict[str, str], signs_data: bool) -> None:
        seed, key = params.get("seed", ""), params.get("key", "")
        if not seed:
            raise Refusal(102)
        if not key:
            raise Refusal(103)
        try:
            at = datetime.strptime(seed, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
        except ValueError:
            raise Refusal(106) from None
        if len(seed) != 14 or abs(time.time() - at.timestamp()) > self.skew_s:
            raise Refusal(106)
        signed = self.password_md5 + seed + (params.get("data", "") if signs_data else "")
        if not hmac.compare_digest(md5_hex(signed).encode(), key.encode("utf-8", "replace")):
            raise Refusal(107)
        if self.account_code:
            raise Refusal(self.account_code)

    # --- send ------------------------------------------------------------------
    def _send(self, params: dict[str, str]) -> dict[str, Any]:
        data = params.get("data", "")
        if not data.strip():
            raise Refusal(125)
        encrypted = params["ver"] == "17"
        body = self._decrypt(data) if encrypted else self._parse(data, 999)
        dest = self._field(body, "dest", 104, 122 if encrypted else 104)
        content = self._field(body, "content", 105, 123 if encrypted else 105)
        ext = self._ext(body.get("ext"))
        reference = self._reference(body.get("reference"))
        self._check_content(content)
        numbers = [n.strip() for n in dest.split(",") if n.strip()]
        if not numbers or len(numbers) > self.max_numbers:
            raise Refusal(104)
        valid = [n for n in numbers if MOBILE.match(n)]
        if not valid:
            raise Refusal(104)
        # MMddHHmmss + request serial + position: 19 digits like the document's
        # ids, one lock round per request rather than per number.
        base = (datetime.now(CHINA_TZ).strftime("%m%d%H%M%S")
                + f"{self.sim.next_serial() % 10**5:05d}")
        position = itertools.count()
        try:
            accepted = self.state.accept(
                valid, [content] * len(valid), [reference] * len(valid),
                lambda _seq: f"{base}{next(position):04d}",
                extras=[{"ext": ext}] * len(valid) if ext else None)
        except InsufficientBalance:
            raise Refusal(205) from None
        return {"code": 0, "data": [
            {"dest_number": m.mobile, "message_id": m.message_id, "charge_item": m.charge_items}
            for m in accepted]}

    def _decrypt(self, data: str) -> dict[str, Any]:
        try:
            cipher = bytes.fromhex(data.strip())
        except ValueError:
            raise Refusal(126) from None
        if not cipher or len(cipher) % 16:
            raise Refusal(126)
        try:
            plain = aes_decrypt(self.aes_key, cipher)  # type: ignore[arg-type]
        except ProtocolError:
            raise Refusal(121) from None
        return self._parse(plain, 126)

    @staticmethod
    def _parse(text: str | bytes, code: int) -> dict[str, Any]:
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            raise Refusal(code) from None
        if not isinstance(body, dict):
            raise Refusal(code)
        return body

    @staticmethod
    def _field(body: dict[str, Any], key: str, missing: int, malformed: int) -> str:
        value = body.get(key)
        if value is None or value == "":
            raise Refusal(missing)
        if not isinstance(value, str):
            raise Refusal(malformed)
        return value

    @staticmethod
    def _ext(value: object) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not DIGITS.match(value) or len(value) > EXT_MAX_DIGITS:
            raise Refusal(108)
        return value

    @staticmethod
    def _reference(value: object) -> str | None:
        if value is None or value == "":
            return None
        if (not isinstance(value, str) or len(value) > REFERENCE_MAX
                or "," in value or ";" in value):
            raise Refusal(999)  # the document gives the reference rules no code of their own
        return value

    def _check_content(self, content: str) -> None:
        if len(content) > self.max_content:
            raise Refusal(109)
        if self.require_signature:
            found = SIGNATURE.search(content)
            if found is None:
                raise Refusal(113 if "【" in content or "】" in content else 111)
            signature = found.group(1) if found.group(1) is not None else found.group(2)
            if not signature.strip() or len(signature) > SIGNATURE_MAX:
                raise Refusal(113)
        if any(word in content for word in self.blocked_words):
            raise Refusal(401)

    # --- pulls and queries -------------------------------------------------------
    def _report(self, params: dict[str, str]) -> dict[str, Any]:
        seed = self.state.settings["seed"]
        data = []
        for m in self.state.take_due_reports(self.pull_batch):
            state = (FAILURE_STATES[int(unit_hash(seed, m.message_id) * len(FAILURE_STATES))]
                     if m.outcome != DELIVERED else "DELIVRD")
            data.append({"message_id": m.message_id, "dest_number": m.mobile,
                         "report_status": state,
                         "report_time": m.report_time.strftime(TIME_FORMAT),
                         "reference": m.custom_id or ""})
        return {"code": 0, "data": data}

    def _mo(self, params: dict[str, str]) -> dict[str, Any]:
        data = []
        for mo in self.state.take_mo(self.pull_batch):
            data.append({
                "dest": self.mo_port + mo.destination, "src": mo.mobile,
                "content": mo.content,
                "receive_time": datetime.fromtimestamp(mo.received_at, CHINA_TZ
                                                       ).strftime(TIME_FORMAT),
                "binary_content": base64.b64encode(mo.content.encode("utf-16-be")
                                                   ).decode("ascii"),
                "msg_fmt": 8, "reference": mo.reference, "sign": ""})
        return {"code": 0, "data": data}

    def _balance(self, params: dict[str, str]) -> dict[str, Any]:
        return {"code": 0, "balance_item": self.state.balance}

    def _statistic(self, params: dict[str, str]) -> dict[str, Any]:
        self._count_statistic_call()
        start = self._date(params.get("start_date", ""), 127)
        end = self._date(params.get("end_date", ""), 128)
        if end < start or (end - start).days + 1 > STATISTIC_MAX_DAYS:
            raise Refusal(129)
        first, last = start.strftime("%Y%m%d"), end.strftime("%Y%m%d")
        rows = [{"date": day, **counts}
                for day, counts in sorted(self.state.daily_counts().items())
                if first <= day <= last]
        if not rows:
            raise Refusal(130)
        return {"code": 0, "data": rows}

    def _count_statistic_call(self) -> None:
        now = time.monotonic()
        with self._statistic_lock:
            times = self._statistic_times
            while times and now - times[0] >= 60:
                times.popleft()
            if len(times) >= self.statistic_calls:
                raise Refusal(131)
            times.append(now)

    @staticmethod
    def _date(text: str, code: int) -> datetime:
        if len(text) != 8 or not DIGITS.match(text):
            raise Refusal(code)
        try:
            return datetime.strptime(text, "%Y%m%d")
        except ValueError:
            raise Refusal(code) from None

