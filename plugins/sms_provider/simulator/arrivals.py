"""The arrival log: every vendor request the simulator received, in arrival order.

A vendor counts a rate limit by when requests *arrive*, so the proof that
workers on several hosts kept an account's limit together is read here, not
from the senders' own clocks. Each entry names the vendor, the path, the
account as the vendor names it on the wire (``appId``, ``account``,
``name``) and the arrival time (``time.time()``); never a password.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

from sms_provider.simulator.http import SimRequest

#: entries kept; a 200k-recipient campaign at 1000 a request needs 200
MAX_ENTRIES = 500_000


def request_account(req: SimRequest, field: str) -> str | None:
    """The account ``field`` of a request: a header, the query, a form or a JSON body.

    An encrypted body hides it (Emay's secure mode carries ``appId`` as a header,
    which is looked at first); a request without it gives None.
    """
    value = req.header(field)
    if value is None:
        value = req.query.get(field)
    if value is None and req.body:
        ctype = req.header("content-type", "") or ""
        try:
            if "json" in ctype or req.body[:1] in (b"{", b"["):
                body = json.loads(req.body.decode("utf-8"))
                value = body.get(field) if isinstance(body, dict) else None
            elif "form" in ctype:
                value = req.form().get(field)
        except (UnicodeDecodeError, ValueError):
            value = None
    return None if value is None else str(value)


class ArrivalLog:
    """Thread-safe, bounded list of arrivals; cleared with the rest of the state."""

    def __init__(self) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=MAX_ENTRIES)
        self._lock = threading.Lock()

    def record(self, vendor: str, req: SimRequest, account_field: str,
               arrived: float | None = None) -> None:
        entry = {"vendor": vendor, "path": req.path, "method": req.method,
                 "account": request_account(req, account_field) if account_field else None,
                 "time": time.time() if arrived is None else arrived}
        with self._lock:
            self._entries.append(entry)

    def entries(self, vendor: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._entries if not vendor or e["vendor"] == vendor]
