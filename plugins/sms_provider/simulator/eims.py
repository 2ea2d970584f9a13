"""The EIMS platform: getbalance, sendsms (GET or JSON POST), getreport, getsms, PUT pushes.

Configuration (the ``eims`` object of the simulator config):

* ``account``, ``password`` -- the credentials; ``md5_key`` (null = plain
  passwords) switches to md5 passwords with ``seq``/``time``. A request whose
  ``seq`` is not above the last one accepted for its account (the first must
  be at least 1) answers -1 and is not acted on; only a request that passes
  the whole md5 check moves the account's last seq.
* ``time_window_s`` (300) -- md5 mode: allowed |time - now| before -1.
* ``price`` ("0.05") -- money per charge item; ``gift`` ("0") -- the gift balance.
* ``max_content_chars`` (1024) -- longer content answers -5.
* ``push_url`` -- where reports are PUT, at most 50 a request.
* ``ip_denied`` (false) -- every call answers -2, as for an IP not on the account's list.
* ``locked`` (false) -- every authenticated call answers -13.
* ``sensitive_words`` ([]) -- content holding one answers -3.
* ``templates`` (null) -- regular expressions; when set, content matching none answers -6.
* ``batch_error`` (false) -- sendsms accepts (and charges) the batch, then answers -12.

Ids are process-wide increasing integers. Message states follow the seeded
outcome: delivered -> 0, failed -> one of 1001..1023, silent -> 2 forever.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sms_provider.simulator.http import SimRequest, SimResponse
from sms_provider.simulator.state import (
    DELIVERED,
    SILENT,
    InsufficientBalance,
    Message,
    SimState,
    unit_hash,
)
from sms_provider.simulator.vendor_base import Handler, VendorSimulator
from sms_provider.vendors.clock import CHINA_TZ
from sms_provider.vendors.codec import md5_hex
from sms_provider.vendors.eims_codes import (
    FAILURE_STATES,
    GET_BATCH_LIMIT,
    INBOUND_PAGE_LIMIT,
    POST_BATCH_LIMIT,
    PUSH_PAGE_LIMIT,
    REPORT_QUERY_LIMIT,
    REPORT_STATE_DESCRIPTIONS,
)

OK = 0
AUTH, IP_DENIED, SENSITIVE, CONTENT_EMPTY, CONTENT_LONG, NOT_TEMPLATE = -1, -2, -3, -4, -5, -6
TOO_MANY, NUMBERS_EMPTY, NUMBERS_BAD, NO_BALANCE, BAD_SENDTIME = -7, -8, -9, -10, -11
BATCH_ERROR, LOCKED = -12, -13

UNSENT, SENDING = 1, 2
MOBILE = re.compile(r"[0-9]{7,15}")
STAMP = "%Y%m%d%H%M%S"


def _scalar(value: Any) -> str | None:
    """A parameter as text; JSON numbers are accepted, anything else is absent."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if re.fullmatch(r"-?[0-9]{1,19}", text) else None


def _stamp(epoch: float) -> int:
    return int(datetime.fromtimestamp(epoch, CHINA_TZ).strftime(STAMP))


def _valid_sendtime(text: str) -> bool:
    if not re.fullmatch(r"[0-9]{14}", text):
        return False
    try:
        datetime.strptime(text, STAMP)
    except ValueError:
        return False
    return True


class EimsSimulator(VendorSimulator):
    name = "eims"
    account_field = "account"

    def __init__(self, sim: SimState, config: dict[str, Any]) -> None:
        super().__init__(sim, config)
        self.account = str(config.get("account", ""))
        self.password = str(config.get("password", ""))
        self.md5_key = config.get("md5_key") or None
        try:
            self.price = Decimal(str(config.get("price", "0.05")))
            self.gift = Decimal(str(config.get("gift", "0")))
        except InvalidOperation:
            raise ValueError("eims: price and gift must be decimal numbers") from None
        self.time_window_s = float(config.get("time_window_s", 300))
        self.max_content_chars = int(config.get("max_content_chars", 1024))
        self.ip_denied = bool(config.get("ip_denied", False))
        self.locked = bool(config.get("locked", False))
        self.sensitive_words = [str(w) for w in config.get("sensitive_words", []) if w]
        templates = config.get("templates")
        try:
            self.templates = (None if templates is None
                              else [re.compile(str(t)) for t in templates])
        except re.error:
            raise ValueError("eims: templates must be regular expressions") from None
        self.batch_error = bool(config.get("batch_error", False))
        self._last_seq: dict[str, int] = {}
        self._seq_lock = threading.Lock()

    def routes(self) -> dict[str, Handler]:
        return {"/getbalance": self.getbalance, "/sendsms": self.sendsms,
                "/getreport": self.getreport, "/getsms": self.getsms}

    # --- helpers ---------------------------------------------------------------
    @staticmethod
    def _status(code: int, **fields: Any) -> SimResponse:
        return SimResponse.json({"status": code, **fields})

    def _check(self, params: dict[str, Any]) -> int:
        """The platform's gate in its order: IP list, credentials, account lock."""
        if self.ip_denied:
            return IP_DENIED
        account = _scalar(params.get("account"))
        password = _scalar(params.get("password"))
        if account != self.account or password is None:
            return AUTH
        if self.md5_key is None:
            if password != self.password:
                return AUTH
        elif not self._md5_ok(account, password, params):
            return AUTH
        return LOCKED if self.locked else OK

    def _md5_ok(self, account: str, password: str, params: dict[str, Any]) -> bool:
        seq_text, time_text = _scalar(params.get("seq")), _scalar(params.get("time"))
        seq, stamp = _int_or_none(seq_text), _int_or_none(time_text)
        if seq is None or stamp is None or abs(stamp - time.time()) > self.time_window_s:
            return False
        expected = md5_hex(f"{account}{self.password}{seq_text}{time_text}{self.md5_key}")
        if password.strip().lower() != expected:
            return False
        with self._seq_lock:
            if seq <= self._last_seq.get(account, 0):
                return False
            self._last_seq[account] = seq
        return True

    def _refuse_read(self, req: SimRequest) -> SimResponse | None:
        """The answer to a read that is not a GET or does not pass the gate; else None."""
        if req.method != "GET":
            return SimResponse.text(f"{req.method} not allowed", 405)
        code = self._check(req.query)
        return self._status(code) if code else None

    # --- endpoints -------------------------------------------------------------
    def getbalance(self, req: SimRequest) -> SimResponse:
        refused = self._refuse_read(req)
        if refused:
            return refused
        money = Decimal(self.state.balance) * self.price
        return self._status(OK, balance=f"{money:.6f}", gift=f"{self.gift:.5f}")

    def _send_params(self, req: SimRequest) -> tuple[dict[str, Any], int]:
        if req.method == "GET":
            return dict(req.query), GET_BATCH_LIMIT
        params: dict[str, Any] = dict(req.query)
        try:
            body = json.loads(req.body) if req.body else {}
        except (ValueError, UnicodeDecodeError):
            body = {}
        if isinstance(body, dict):
            params.update(body)
        return params, POST_BATCH_LIMIT

    def sendsms(self, req: SimRequest) -> SimResponse:
        if req.method not in ("GET", "POST"):
            return SimResponse.text(f"{req.method} not allowed", 405)
        params, limit = self._send_params(req)
        code = self._check(params)
        if code:
            return self._status(code)
        content = _scalar(params.get("content")) or ""
        code = self._check_content(content)
        if code:
            return self._status(code)
        numbers_text = (_scalar(params.get("numbers")) or "").strip()
        if not numbers_text:
            return self._status(NUMBERS_EMPTY)
        numbers = [n.strip() for n in numbers_text.split(",")]
        if len(numbers) > limit:
            return self._status(TOO_MANY)
        sendtime = _scalar(params.get("sendtime"))
        if sendtime and not _valid_sendtime(sendtime.strip()):
            return self._status(BAD_SENDTIME)
        good = [n for n in numbers if MOBILE.fullmatch(n)]
        if not good:
            return self._status(NUMBERS_BAD)
        # The document's ids are JSON integers of no stated width: ``yyMMddHHmmss`` plus
        # seven digits of the serial makes 19, past the 2**53 a double holds exactly and
        # inside the signed 64-bit range a Java gateway's long has.
        prefix = datetime.now(CHINA_TZ).strftime("%y%m%d%H%M%S")
        serials = iter(self.sim.next_serials(len(good)))
        try:
            accepted = self.state.accept(
                good, [content] * len(good), [None] * len(good),
                lambda _seq: f"{prefix}{next(serials) % 10**7:07d}")
        except InsufficientBalance:
            return self._status(NO_BALANCE)
        if self.batch_error:
            return self._status(BATCH_ERROR)
        return self._status(OK, success=len(accepted), fail=len(numbers) - len(good),
                            array=[[int(m.mobile), int(m.message_id)] for m in accepted])

    def _check_content(self, content: str) -> int:
        if not content:
            return CONTENT_EMPTY
        if len(content) > self.max_content_chars:
            return CONTENT_LONG
        if any(word in content for word in self.sensitive_words):
            return SENSITIVE
        if self.templates is not None and not any(t.fullmatch(content)
                                                  for t in self.templates):
            return NOT_TEMPLATE
        return OK

    def _state(self, m: Message, now: float) -> int:
        """The state getreport shows and pushes carry: decided once the report is due."""
        if m.outcome == SILENT or m.due_at > now:
            return SENDING
        if m.outcome == DELIVERED:
            return OK
        pick = unit_hash(self.state.settings["seed"], "eims-state", m.message_id)
        return FAILURE_STATES[int(pick * len(FAILURE_STATES))]

    def getreport(self, req: SimRequest) -> SimResponse:
        refused = self._refuse_read(req)
        if refused:
            return refused
        ids = [i.strip() for i in (req.query.get("ids") or "").split(",") if i.strip()]
        if not ids:
            return self._status(NUMBERS_EMPTY)
        if len(ids) > REPORT_QUERY_LIMIT:
            return self._status(TOO_MANY)
        counts = {"success": 0, "fail": 0, "unsent": 0, "sending": 0, "nofound": 0}
        rows = []
        now = time.time()
        for msg_id in ids:
            found = self.state.find(msg_id)
            if not found:
                counts["nofound"] += 1
                continue
            m = found[0]
            state = self._state(m, now)
            key = ("success" if state == OK else "unsent" if state == UNSENT
                   else "sending" if state == SENDING else "fail")
            counts[key] += 1
            rows.append([int(m.message_id), m.mobile, _stamp(m.submitted_at), state])
        return self._status(OK, **counts, array=rows)

    def getsms(self, req: SimRequest) -> SimResponse:
        refused = self._refuse_read(req)
        if refused:
            return refused
        # Like the platform's atoi: a start_time that is not a number counts as 0.
        since = _int_or_none(req.query.get("start_time")) or 0
        replies = self.state.take_mo(INBOUND_PAGE_LIMIT, since=since)
        rows = [[mo.seq, mo.mobile, mo.destination, _stamp(mo.received_at),
                 base64.b64encode(mo.content.encode("utf-8")).decode("ascii")]
                for mo in replies]
        return self._status(OK, cnt=len(rows), array=rows)

    # --- pushes ----------------------------------------------------------------
    def push_reports(self, messages: list[Message]) -> bool:
        """PUT pages of at most 50 reports; True only when every page was acknowledged."""
        if not self.push_url:
            return True
        now = time.time()
        ok = True
        for start in range(0, len(messages), PUSH_PAGE_LIMIT):
            rows = []
            for m in messages[start:start + PUSH_PAGE_LIMIT]:
                state = self._state(m, max(now, m.due_at))
                rows.append([int(m.message_id), m.mobile, _stamp(m.submitted_at), state,
                             REPORT_STATE_DESCRIPTIONS[state]])
            body = json.dumps({"type": "report", "cnt": len(rows), "array": rows},
                              ensure_ascii=False).encode("utf-8")
            ok = self._post_ok("PUT", self.push_url, data=body,
                               headers={"Content-Type": "application/json;charset=utf-8"}
                               ) and ok
        return ok
