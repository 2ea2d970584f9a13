"""Where the data root and the send ledger are, read from the environment without Airflow.

``SMS_DATA_ROOT`` is a local path (default: ``data/`` in the checkout) or an
object-storage URI. ``SMS_LEDGER_URL`` is any SQLAlchemy URL; by default an SQLite
file under a local data root. An object-store root has no place for SQLite, so
there the URL must be set. ``SMS_LEDGER_LOCK_TIMEOUT`` (seconds, default 30) is how
long a ledger statement waits for another connection's lock before the task fails
with a retryable error saying so.

The tasks (``operators/runtime.py``) and the standalone receiver read the same
variables here, so both find the same folder by default.
"""

from __future__ import annotations

import os
from pathlib import Path

from sms_provider.data.ledger import LOCK_TIMEOUT_S, SendLedger, default_url
from sms_provider.data.storage import DataRoot

CHECKOUT_DATA = Path(__file__).resolve().parents[3] / "data"
ENV_DATA_ROOT = "SMS_DATA_ROOT"


def data_location() -> str:
    """``SMS_DATA_ROOT``, else ``data/`` in the checkout."""
    return os.environ.get(ENV_DATA_ROOT) or str(CHECKOUT_DATA)


def is_object_store(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def ledger_url(root: DataRoot) -> str:
    url = os.environ.get("SMS_LEDGER_URL")
    if url:
        return url
    if not root.is_local:
        raise RuntimeError(
            f"SMS_DATA_ROOT {root.uri} is not a local folder, so the send ledger cannot live "
            "there: set SMS_LEDGER_URL (e.g. postgresql+psycopg2://user@host/db)")
    return default_url(root.base)


def ledger_lock_timeout() -> float:
    text = os.environ.get("SMS_LEDGER_LOCK_TIMEOUT", "").strip()
    if not text:
        return LOCK_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"SMS_LEDGER_LOCK_TIMEOUT must be a number of seconds above 0, "
                         f"not {text!r}")
    return seconds


def open_ledger(root: DataRoot) -> SendLedger:
    return SendLedger(ledger_url(root), lock_timeout_s=ledger_lock_timeout())
