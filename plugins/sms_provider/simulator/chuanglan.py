"""Simulated Chuanglan-style platform: ``HttpBatchSendSM``, ``QueryBalance``, GET pushes.

Answers are text lines (``resptime,status`` then the msgid or the product
balances) with the document's codes 101..120. One msgid covers a whole
request; internally every recipient gets its own ``msgid-seq`` message id so
that outcomes differ per number, and the msgid is the message's ``batch_id``.

Choices where the document is silent: an unknown or missing ``needstatus``
value counts as false (the document only speaks of "not equal to true");
numbers that are not ``^1\\d{10}$`` are skipped and not charged as long as one
valid number remains (none valid -> 108); every configured product shows the
one shared balance.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from typing import Any

from sms_provider.segments import MULTI_SEGMENT, SINGLE_SEGMENT
from sms_provider.simulator.http import SimRequest, SimResponse
from sms_provider.simulator.state import (
    DELIVERED,
    Inbound,
    InsufficientBalance,
    Message,
    SimState,
    unit_hash,
)
from sms_provider.simulator.vendor_base import Handler, VendorSimulator
from sms_provider.vendors.clock import CHINA_TZ, china_now, china_stamp
from sms_provider.vendors.profiles import CHUANGLAN

SEND_PATH = "/msg/HttpBatchSendSM"
BALANCE_PATH = "/msg/QueryBalance"

MOBILE_RE = re.compile(r"1[0-9]{10}")
DIGITS_RE = re.compile(r"[0-9]+")
SIGNATURE_RE = re.compile(r"【[^【】]+】")
PUSH_TIME_FORMAT = "%y%m%d%H%M"
DEFAULT_DESTCODE = "1065751600001"

#: Failure states handed out for failed outcomes: the document's, plus two
#: common carrier gateway states ("其他 网关状态").
FAILURE_STATES = ("MBBLACK", "ROUTEERR", "REJECT", "DISTURB", "EMSERR", "SIGNERR",
                  "KEYWORD", "UNDELIV", "EXPIRED")


class ChuanglanSimulator(VendorSimulator):
    """Config keys: ``account``, ``password``, ``products``, ``require_signature``,
    ``max_content_chars``, ``max_numbers``, ``push_url``, ``mo_push_url``,
    ``receiver``, ``receiver_password``, ``balance_query_interval_s``, ``destcode``.
    """

    name = "chuanglan"
    account_field = "account"

    def __init__(self, sim: SimState, config: dict[str, Any]) -> None:
        super().__init__(sim, config)
        self.account = str(config.get("account", ""))
        self.password = str(config.get("password", ""))
        self.products = [str(p) for p in config.get("products") or ["1"]]
        self.require_signature = bool(config.get("require_signature", True))
        self.max_content_chars = int(config.get("max_content_chars",
                                                CHUANGLAN.limits.content_chars))
        self.max_numbers = int(config.get("max_numbers", CHUANGLAN.limits.batch))
        self.receiver = str(config.get("receiver") or "")
        self.receiver_password = str(config.get("receiver_password") or "")
        self.balance_interval_s = float(config.get("balance_query_interval_s", 0))
        self.destcode = str(config.get("destcode") or DEFAULT_DESTCODE)
        self._balance_lock = threading.Lock()
        self._last_balance_at: float | None = None

    def routes(self) -> dict[str, Handler]:
        return {SEND_PATH: self.send, BALANCE_PATH: self.query_balance}

    def rate_limited(self, req: SimRequest) -> SimResponse:
        return _status(103)

    # --- send ----------------------------------------------------------------
    def send(self, req: SimRequest) -> SimResponse:
        if req.method not in ("GET", "POST"):
            return SimResponse.text("method not allowed", 405)
        p = req.params()
        numbers = _numbers(p)
        mobiles = [m for m in numbers if MOBILE_RE.fullmatch(m)]
        refused = self._auth(p) or self._check_send(p, len(numbers), len(mobiles))
        if refused:
            return _status(refused)
        extno = p.get("extno", "")
        needstatus = p.get("needstatus", "").strip().lower() == "true"
        content = p["msg"]
        msgid = self._msgid()
        extra = {"product": p.get("product") or self.products[0], "extno": extno,
                 "needstatus": needstatus, "ext": self.destcode + extno}
        try:
            self.state.accept(mobiles, [content] * len(mobiles), [None] * len(mobiles),
                              lambda seq: f"{msgid}-{seq}", batch_id=msgid,
                              extras=[extra] * len(mobiles))
        except InsufficientBalance:
            return _status(109)
        if needstatus:
            return SimResponse.text(f"{china_stamp()},0\n{msgid}")
        return _status(0)

    def _auth(self, p: dict[str, str]) -> int:
        if p.get("account", "") != self.account or not self.account:
            return 101
        if p.get("pswd", "") != self.password:
            return 102
        return 0

    def _check_send(self, p: dict[str, str], numbers: int, valid: int) -> int:
        """The first of the document's refusals that applies, in the platform's order."""
        product = p.get("product")
        if product and product not in self.products:
            return 112
        extno = p.get("extno")
        if extno and not DIGITS_RE.fullmatch(extno):
            return 113
        if not 0 < numbers <= self.max_numbers or not valid:
            return 108
        content = p.get("msg", "")
        if not 0 < len(content) <= self.max_content_chars:
            return 106
        if self.require_signature and not SIGNATURE_RE.search(content):
            return 116
        return 0

    def _msgid(self) -> str:
        """``yyMMddHHmmss`` plus five digits of a process-wide serial: 17 digits, as in
        the document, unique unless one second sees 100,000 requests."""
        return f"{china_now().strftime('%y%m%d%H%M%S')}{self.sim.next_serial() % 10**5:05d}"

    # --- balance -------------------------------------------------------------
    def query_balance(self, req: SimRequest) -> SimResponse:
        if req.method not in ("GET", "POST"):
            return SimResponse.text("method not allowed", 405)
        refused = self._auth(req.params()) or self._too_soon()
        if refused:
            return _status(refused)
        amount = self.state.balance
        lines = [f"{china_stamp()},0"] + [f"{pid},{amount}" for pid in self.products]
        return SimResponse.text("\n".join(lines))

    def _too_soon(self) -> int:
        if self.balance_interval_s <= 0:
            return 0
        now = time.monotonic()
        with self._balance_lock:
            last = self._last_balance_at
            if last is not None and now - last < self.balance_interval_s:
                return 103
            self._last_balance_at = now
        return 0

    # --- pushes --------------------------------------------------------------
    def push_reports(self, messages: list[Message]) -> bool:
        """One GET per report; reports of ``needstatus=false`` requests are never sent."""
        url = self.push_url
        if not url:
            return True
        for m in messages:
            if not m.extra.get("needstatus", True):
                continue
            params = {"receiver": self.receiver, "pswd": self.receiver_password,
                      "msgid": m.batch_id,
                      "reportTime": m.report_time.strftime(PUSH_TIME_FORMAT),
                      "mobile": m.mobile, "status": self._state_of(m)}
            if not self._post_ok("GET", url, params=params):
                return False
        return True

    def _state_of(self, m: Message) -> str:
        if m.outcome == DELIVERED:
            return "DELIVRD"
        draw = unit_hash(self.state.settings["seed"], m.message_id)
        return FAILURE_STATES[int(draw * len(FAILURE_STATES))]

    def push_mo(self, replies: list[Inbound]) -> bool:
        """One GET per reply; a long reply goes as ``isems=1`` parts with an ``emshead``."""
        url = self.mo_push_url
        if not url:
            return True
        for mo in replies:
            received = datetime.fromtimestamp(mo.received_at, CHINA_TZ)
            base = {"receiver": self.receiver, "pswd": self.receiver_password,
                    "moTime": received.strftime(PUSH_TIME_FORMAT),
                    "destcode": mo.destination or self.destcode, "mobile": mo.mobile}
            for extra in _mo_parts(mo):
                if not self._post_ok("GET", url, params={**base, **extra}):
                    return False
        return True


def _status(code: int) -> SimResponse:
    return SimResponse.text(f"{china_stamp()},{code}")


def _numbers(p: dict[str, str]) -> list[str]:
    return [m.strip() for m in p.get("mobile", "").split(",") if m.strip()]


def _mo_parts(mo: Inbound) -> list[dict[str, str]]:
    text = mo.content
    if len(text) <= SINGLE_SEGMENT:
        return [{"msg": text}]
    pieces = [text[i:i + MULTI_SEGMENT] for i in range(0, len(text), MULTI_SEGMENT)]
    ref = mo.seq % 256
    return [{"msg": piece, "isems": "1", "emshead": f"{ref},{len(pieces)},{n}"}
            for n, piece in enumerate(pieces, start=1)]
