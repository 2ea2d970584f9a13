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

Answers are JSON with an integer ``status``; the codes, paths and limits are in
:mod:`sms_provider.vendors.eims_codes`, the answer parsers in
:mod:`sms_provider.vendors.eims_answers`. This module is the client.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import requests

from sms_provider.errors import (
    AuthenticationError,
    LimitExceededError,
    PermanentError,
)
from sms_provider.models import Balance, DeliveryReport, InboundMessage, Submission
from sms_provider.vendors.base import OutboundMessage, VendorClient, message_columns
from sms_provider.vendors.batch_text import plain_digit_numbers
from sms_provider.vendors.codec import md5_hex
from sms_provider.vendors.eims_answers import (
    parse_balance_answer,
    parse_inbound_answer,
    parse_report_answer,
    read_send_answer,
)
from sms_provider.vendors.eims_codes import (
    GET_BATCH_LIMIT,
    MAX_CONTENT_CHARS,
    PATH_BALANCE,
    PATH_INBOUND,
    PATH_REPORT,
    PATH_SEND,
    POST_BATCH_LIMIT,
    PROFILE,
    REPORT_QUERY_LIMIT,
    SEQ_REFUSED,
    VENDOR,
)
from sms_provider.vendors.eims_seq import SeqSource
from sms_provider.vendors.limits import check_content, same_content
from sms_provider.vendors.pg_seq import seq_source
from sms_provider.vendors.profile import VendorProfile
from sms_provider.vendors.transport import HttpSettings

log = logging.getLogger(__name__)

#: md5 mode: tries of one call when the platform answers -1 (a refused seq), each with
#: a fresh seq. -1 also means wrong credentials, which no retry cures: kept small.
SEQ_ATTEMPTS = 3

_T = TypeVar("_T")
_DIGITS = re.compile(r"[0-9]+")


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
                if exc.code != SEQ_REFUSED:
                    raise
                log.warning("EIMS refused an md5 request to %s (-1: seq, time or "
                            "credentials); trying again with a fresh seq (%d of %d)",
                            path, attempt + 1, attempts)
        return parse(self._request(method, path, fields, idempotent=idempotent).content)

    # --- operations -------------------------------------------------------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None
             ) -> Sequence[Submission]:
        """Send one content to every number; numbers the platform refuses come back REJECTED."""
        if template_id is not None:
            raise PermanentError("EIMS has no templates: send the full text",
                                 vendor=VENDOR, endpoint=PATH_SEND)
        self.check_batch(messages)
        mobiles, contents, _ = message_columns(messages)
        content = same_content(VENDOR, contents)
        check_content(VENDOR, content, self.max_content_chars, where=" (message 0)")
        if not plain_digit_numbers(mobiles):  # the usual chunk is told at once
            for i, mobile in enumerate(mobiles):
                if not _DIGITS.fullmatch(mobile):
                    raise LimitExceededError(
                        f"mobile of message {i} ({len(mobile)} characters) is not digits "
                        "only; EIMS wants international digits without '+' or '00'",
                        vendor=VENDOR)
        fields: dict[str, Any] = {"smstype": 0, "numbers": ",".join(mobiles),
                                  "content": content}
        return self._call(self.method.upper(), PATH_SEND, fields, idempotent=False,
                          parse=lambda body: read_send_answer(body, mobiles, content))

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
