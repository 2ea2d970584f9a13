"""Balance movements: each fall of a connection's balance between two snapshots, beside
what we submitted in between, in charge items and in money.

A vendor whose balance is money (the profile's ``bills_in_money``: EIMS) is
reconciled in money: the fall against our charge items priced at the price in
force when each was submitted, so a price change between two snapshots is
priced right. A vendor whose balance is charge items is reconciled in items;
its money figures (items at the price) are shown beside them, never compared.
Products (Chuanglan) and gift credit are all spendable: one balance per moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import pyarrow.compute as pc

from sms_provider.data.prices import PriceBook, from_micros
from sms_provider.data.reconcile.accounts import Account
from sms_provider.data.reconcile.reading import read
from sms_provider.data.reconcile.statuses import SubmissionCode
from sms_provider.data.schemas import BALANCE_SCHEMA
from sms_provider.data.storage import DataRoot, epoch_ms
from sms_provider.vendors.profiles import PROFILES


@dataclass(frozen=True)
class BalanceStep:
    """One interval between two snapshots that this campaign submitted in."""

    conn_id: str
    unit: str                       # items | money
    start_ms: int
    end_ms: int
    before: Decimal
    after: Decimal
    ours_items: int                 # charge items we submitted in (start, end], all campaigns
    ours_micros: int | None         # those items at the price in force when sent; None: unpriced
    unsettled: int                  # ambiguous submissions not settled (may have gone out)
    price_micros: int | None        # the price in force at the end of the step
    currency: str | None

    @property
    def fall(self) -> Decimal:
        return self.before - self.after

    @property
    def topped_up(self) -> bool:
        """The balance rose: what was spent cannot be told apart from the top-up."""
        return self.fall < 0

    @property
    def fall_items(self) -> Decimal | None:
        if self.unit == "items":
            return self.fall
        return self.fall * 1_000_000 / self.price_micros if self.price_micros else None

    @property
    def fall_money(self) -> Decimal | None:
        if self.unit == "money":
            return self.fall
        return self.fall * from_micros(self.price_micros) if self.price_micros else None

    @property
    def ours_money(self) -> Decimal | None:
        return from_micros(self.ours_micros) if self.ours_micros is not None else None

    def as_row(self) -> dict[str, object]:
        """What the report's balance table shows of this step."""
        return {"conn_id": self.conn_id, "unit": self.unit, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "before": self.before, "after": self.after,
                "fall": self.fall, "fall_items": self.fall_items,
                "fall_money": self.fall_money, "ours_items": self.ours_items,
                "ours_money": self.ours_money, "currency": self.currency,
                "unsettled": self.unsettled, "topped_up": self.topped_up}

    def gap(self, tolerance_items: Decimal) -> tuple[Decimal, int] | None:
        """(gap in the balance's unit, gap in charge items) when beyond the tolerance; None
        when the books agree or cannot be compared (a top-up, a money balance unpriced)."""
        if self.topped_up:
            return None
        if self.unit == "items":
            gap = self.fall - self.ours_items
            return (gap, round(gap)) if abs(gap) > tolerance_items else None
        if self.ours_micros is None or not self.price_micros:
            return None
        gap = self.fall - from_micros(self.ours_micros)
        items = gap * 1_000_000 / self.price_micros
        return (gap, round(items)) if abs(items) > tolerance_items else None


def balance_unit(vendor: str) -> str | None:
    """``money`` or ``items`` from the vendor's profile; None for an unknown vendor."""
    profile = PROFILES.get(vendor)
    if profile is None:
        return None
    return "money" if profile.bills_in_money else "items"


def _decimal(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text not in (None, "") else None
    except InvalidOperation:
        return None


def balance_steps(root: DataRoot, a: Account, sent_ms: np.ndarray, prices: PriceBook
                  ) -> list[BalanceStep]:
    """The balance intervals this campaign's submissions (``sent_ms``) fall in."""
    if not a.conn_id:
        return []
    snaps = read(root, ("statistics", a.conn_id, "balance"), BALANCE_SCHEMA,
                 ["amount", "unit", "gift", "taken_at"])
    units = [balance_unit(a.vendor)] if balance_unit(a.vendor) else ["items", "money"]
    charged = (a.status == SubmissionCode.SUBMITTED) & (a.submitted_ms >= 0)
    unsettled = (a.status == SubmissionCode.AMBIGUOUS) & (a.best < 0) & (a.submitted_ms >= 0)
    micros = prices.micros_at(a.conn_id, a.submitted_ms)
    priced = charged & (micros >= 0)
    out = []
    for unit in units:
        totals: dict[int, Decimal] = {}
        for row in snaps.filter(pc.equal(snaps["unit"], unit)).to_pylist():
            amount = _decimal(row["amount"])
            if amount is None or row["taken_at"] is None:
                continue
            moment = epoch_ms(row["taken_at"])
            totals[moment] = totals.get(moment, Decimal(0)) + amount + (
                _decimal(row["gift"]) or 0)
        times = np.array(sorted(totals), np.int64)
        if len(times) < 2:
            continue
        # a submission at t belongs to the step (times[i-1], times[i]]
        step = np.searchsorted(times, a.submitted_ms, side="left")
        size = len(times) + 1
        items = np.bincount(step[charged], weights=a.charge[charged], minlength=size)
        money = np.bincount(step[priced], weights=(a.charge * micros)[priced], minlength=size)
        unpriced = np.bincount(step[charged & ~priced], minlength=size)
        maybe = np.bincount(step[unsettled], minlength=size)
        end_price = prices.micros_at(a.conn_id, times)
        for i in np.unique(np.searchsorted(times, sent_ms, side="left")).tolist():
            if not 1 <= i < len(times):
                continue
            out.append(BalanceStep(
                conn_id=a.conn_id, unit=unit, start_ms=int(times[i - 1]),
                end_ms=int(times[i]), before=totals[int(times[i - 1])],
                after=totals[int(times[i])], ours_items=int(items[i]),
                ours_micros=None if unpriced[i] else int(money[i]), unsettled=int(maybe[i]),
                price_micros=int(end_price[i]) if end_price[i] >= 0 else None,
                currency=prices.currency(a.conn_id)))
    return out

