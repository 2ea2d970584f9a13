"""What one charge item costs, per connection and over time: the price file.

Analysts reconcile money, and prices change, so a price has a validity start
(``valid_from``) and a message is priced at the price in force when it was
submitted: a campaign sent across a price change is priced at both. The file
(``include/prices.json`` by default, ``SMS_PRICES_FILE`` elsewhere) is JSON, a
list of entries, or CSV with the same columns::

    [{"conn_id": "sms_eims", "price_per_item": "0.045", "currency": "CNY",
      "valid_from": "2026-01-01"}]

``valid_from`` is a date (midnight, China time) or an ISO datetime (China time
unless it names an offset). Amounts are exact: a price is held in millionths
of its currency (an int64 per row), so sums over ten million rows never round.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np

#: amounts are held in millionths of the currency: exact, and int64 holds 9e12 units
MICROS = 1_000_000
CHINA = timezone(timedelta(hours=8))
DEFAULT_CURRENCY = "CNY"
#: a price given without a start (the old ``price_per_item`` option) holds from the epoch
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS = ("conn_id", "price_per_item", "currency", "valid_from")


class PriceFileError(ValueError):
    """A price file that cannot be read; the message names the file and the entry."""


@dataclass(frozen=True)
class Price:
    """One price: from ``valid_from`` on, until the connection's next entry starts."""

    conn_id: str | None          # None: any connection without a price of its own
    price_per_item: Decimal
    currency: str
    valid_from: datetime         # aware

    @property
    def micros(self) -> int:
        return int(self.price_per_item * MICROS)


def to_micros(value: Decimal | int) -> int:
    return int(Decimal(value) * MICROS)


def from_micros(value: int | np.integer) -> Decimal:
    """Millionths back to an exact decimal with six places."""
    return (Decimal(int(value)) / MICROS).quantize(Decimal("0.000001"))


class PriceBook:
    """Every price of every connection; answers "what did this cost when it was sent"."""

    def __init__(self, prices: Iterable[Price] = ()) -> None:
        self.prices: dict[str | None, list[Price]] = {}
        for p in prices:
            self.prices.setdefault(p.conn_id, []).append(p)
        for conn_id, entries in self.prices.items():
            entries.sort(key=lambda p: p.valid_from)
            starts = [p.valid_from for p in entries]
            if len(set(starts)) != len(starts):
                raise PriceFileError(f"connection {conn_id!r} has two prices valid from the "
                                     "same moment")
            if len({p.currency for p in entries}) > 1:
                raise PriceFileError(f"connection {conn_id!r} changes currency; give the new "
                                     "currency its own connection")

    def __bool__(self) -> bool:
        return bool(self.prices)

    def _entries(self, conn_id: str | None) -> list[Price]:
        return self.prices.get(conn_id) or self.prices.get(None) or []

    def currency(self, conn_id: str | None) -> str | None:
        entries = self._entries(conn_id)
        return entries[0].currency if entries else None

    def price_at(self, conn_id: str | None, when: datetime) -> Price | None:
        """The price in force at ``when`` (None: no price, or before the first one)."""
        entries = self._entries(conn_id)
        found = None
        for p in entries:
            if p.valid_from <= when:
                found = p
        return found

    def micros_at(self, conn_id: str | None, when_ms: np.ndarray) -> np.ndarray:
        """Per moment (epoch ms) the price in millionths; -1 where none is in force
        (no price for the connection, before its first price, or no moment: -1)."""
        entries = self._entries(conn_id)
        if not entries:
            return np.full(len(when_ms), -1, np.int64)
        starts = np.array([int(p.valid_from.timestamp() * 1000) for p in entries], np.int64)
        values = np.array([p.micros for p in entries], np.int64)
        # ten million moments: no temporary beyond the answer and one index per row
        which = np.searchsorted(starts, when_ms, side="right")
        which -= 1
        missing = (which < 0) | (when_ms < 0)
        np.maximum(which, 0, out=which)
        out = values[which]
        del which
        out[missing] = -1
        return out

    @classmethod
    def constant(cls, value: Mapping[Any, Any] | Decimal | str | float | None) -> PriceBook:
        """One price (or one per conn_id) valid for ever: the ``price_per_item`` option."""
        if value is None:
            return cls()
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        return cls(Price(k, _decimal(v, "price_per_item"), DEFAULT_CURRENCY, ALWAYS)
                   for k, v in items)

    @classmethod
    def from_file(cls, path: str | Path) -> PriceBook:
        """Read a JSON or CSV price file (see the module docstring)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise PriceFileError(f"{path}: cannot read the price file: {exc.strerror}") from None
        if path.suffix.lower() == ".csv":
            rows: list[Any] = list(csv.DictReader(text.splitlines()))
        else:
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PriceFileError(f"{path}: not JSON: {exc}") from None
            if isinstance(rows, dict):
                rows = rows.get("prices", rows)
            if not isinstance(rows, list):
                raise PriceFileError(f"{path}: expected a list of prices")
        prices = []
        for number, row in enumerate(rows, 1):
            where = f"{path}: entry {number}"
            if not isinstance(row, dict):
                raise PriceFileError(f"{where}: expected an object with {', '.join(_FIELDS)}")
            missing = [f for f in ("conn_id", "price_per_item", "valid_from")
                       if row.get(f) in (None, "")]
            if missing:
                raise PriceFileError(f"{where}: missing {', '.join(missing)}")
            try:
                prices.append(Price(
                    conn_id=str(row["conn_id"]),
                    price_per_item=_decimal(row["price_per_item"], "price_per_item"),
                    currency=str(row.get("currency") or DEFAULT_CURRENCY),
                    valid_from=parse_valid_from(row["valid_from"])))
            except ValueError as exc:
                raise PriceFileError(f"{where}: {exc}") from None
        try:
            return cls(prices)
        except PriceFileError as exc:
            raise PriceFileError(f"{path}: {exc}") from None


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{name} {value!r} must be a number of at least 0")
    if number != number.quantize(Decimal("0.000001")):
        raise ValueError(f"{name} {value!r} has more than six decimal places")
    return number


def parse_valid_from(value: Any) -> datetime:
    """A date (midnight China time) or an ISO datetime (China time unless it says)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        try:
            moment = (datetime.fromisoformat(text) if "T" in text or " " in text
                      else datetime.combine(date.fromisoformat(text), datetime.min.time()))
        except ValueError:
            raise ValueError(f"valid_from {value!r} is not an ISO date or datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)


#: the price file shipped with a checkout (``include/prices.json``)
SHIPPED = Path(__file__).resolve().parents[3] / "include" / "prices.json"


def price_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """``SMS_PRICES_FILE``, else the checkout's ``include/prices.json`` if there is one."""
    configured = (os.environ if environ is None else environ).get("SMS_PRICES_FILE", "")
    if configured.strip():
        return Path(configured.strip())
    return SHIPPED if SHIPPED.exists() else None


def configured_prices(environ: Mapping[str, str] | None = None) -> PriceBook:
    """The price book the pipeline uses (no file: an empty one, nothing gets an amount)."""
    path = price_file(environ)
    return PriceBook.from_file(path) if path else PriceBook()
