"""Vendor clocks: most of these APIs want China Standard Time wall-clock strings."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


def china_now() -> datetime:
    return datetime.now(CHINA_TZ)


def china_stamp(now: datetime | None = None) -> str:
    """``yyyyMMddHHmmss`` in China time (Emay IMS timestamp, EUMS seed)."""
    return (now or china_now()).astimezone(CHINA_TZ).strftime("%Y%m%d%H%M%S")


def epoch_ms() -> int:
    return int(time.time() * 1000)


def parse_china(text: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> datetime | None:
    """Parse a vendor wall-clock time as China time; ``None`` for empty or bad text."""
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None
