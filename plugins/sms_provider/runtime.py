"""Where a running task finds the data root and the send ledger.

``SMS_DATA_ROOT`` is a local path (default: ``data/`` in the checkout) or an
object-storage URI, resolved through Airflow's ``ObjectStoragePath`` so its
connection supplies the credentials (``s3://aws_conn@bucket/sms``).
``SMS_LEDGER_URL`` is any SQLAlchemy URL; by default an SQLite file under a
local data root. An object-store root has no place for SQLite, so there the
URL must be set. ``SMS_LEDGER_LOCK_TIMEOUT`` (seconds, default 30) is how long a
ledger statement waits for another connection's lock before the task fails
with a retryable error saying so.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from sms_provider.data.ledger import LOCK_TIMEOUT_S, SendLedger, default_url
from sms_provider.data.storage import DataRoot

CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "data"


def data_root() -> DataRoot:
    location = os.environ.get("SMS_DATA_ROOT") or str(CHECKOUT_DATA)
    if "://" in location and not location.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(location)
        return DataRoot(path.path, pafs.PyFileSystem(pafs.FSSpecHandler(path.fs)))
    return DataRoot(location.removeprefix("file://"))


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


@contextmanager
def local_recipients(location: str) -> Iterator[str]:
    """A local path for the recipients file; an object-store URI is copied to a temp file
    first (through ``ObjectStoragePath``, so the URI's connection supplies credentials)."""
    if "://" not in location or location.startswith("file://"):
        yield location
        return
    from airflow.sdk import ObjectStoragePath

    source = ObjectStoragePath(location)
    with tempfile.NamedTemporaryFile(suffix=Path(source.path).suffix) as copy:
        with source.open("rb") as handle:
            shutil.copyfileobj(handle, copy, length=1 << 20)
        copy.flush()
        yield copy.name
