"""Money and carriers of one campaign: per-row prices, the ``overview/`` rows (one per
connection) and the ``carriers/`` breakdown.

A row is priced at the price in force on its connection when it was
submitted (:class:`~sms_provider.data.prices.PriceBook`); a row never sent has
no price and no charge. The estimate prices every prepared row at the price in
force at the campaign's first submission on the connection (before anything
is sent: at the time of the run), which is what ``check_balance`` compares
with the balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.carriers import CARRIERS, carrier_codes
from sms_provider.data.prices import PriceBook, from_micros
from sms_provider.data.reconcile.balance import balance_unit
from sms_provider.data.reconcile.columns import STRING, labels
from sms_provider.data.reconcile.outcomes import CampaignPart, Rows
from sms_provider.data.reconcile.statuses import FinalStatus, SubmissionCode
from sms_provider.data.reconcile.tallies import FailureTally
from sms_provider.data.schemas import CARRIER_SCHEMA, MONEY, OVERVIEW_SCHEMA


@dataclass
class Pricing:
    """Per prepared row: its price in millionths (-1: none) and currency code."""

    micros: np.ndarray
    currency: list[str | None]   # per part
    owner: np.ndarray            # per row the part it is counted under (unsent: the first)

    def slice(self, lo: int, hi: int) -> Pricing:
        """Rows ``lo`` to ``hi`` (views): the outputs are built a slice at a time."""
        return Pricing(micros=self.micros[lo:hi], currency=self.currency,
                       owner=self.owner[lo:hi])


def price_rows(parts: list[CampaignPart], rows: Rows, book: PriceBook) -> Pricing:
    """The price in force at each row's submission on its connection."""
    n = len(rows.part)
    if len(parts) == 1 and (rows.part == 0).all():  # the usual case: no gathering
        micros = book.micros_at(parts[0].account.conn_id, rows.submitted_ms)
    else:
        micros = np.full(n, -1, np.int64)
        for p_index, p in enumerate(parts):
            mine = np.flatnonzero(rows.part == p_index)
            if len(mine):
                micros[mine] = book.micros_at(p.account.conn_id, rows.submitted_ms[mine])
    owner = np.where(rows.part >= 0, rows.part, 0 if parts else -1).astype(np.int8)  # as part
    return Pricing(micros=micros, currency=[book.currency(p.account.conn_id) for p in parts],
                   owner=owner)


def money_columns(parts: list[CampaignPart], rows: Rows, pricing: Pricing,
                  e164: pa.ChunkedArray | None, carrier: pa.ChunkedArray | None
                  ) -> dict[str, Any]:
    """The reconciliation columns this module adds: carrier, price, currency, amount."""
    if carrier is None or carrier.null_count:
        computed = labels(carrier_codes(e164), CARRIERS) if e164 is not None else None
        carrier = computed if carrier is None else pc.coalesce(carrier, computed)
    has_price = pricing.micros >= 0
    charged = has_price & (rows.sub_status != SubmissionCode.OTHER) \
        & (rows.sub_status != SubmissionCode.DRY_RUN)
    currency_code = np.where(has_price, pricing.owner, -1).astype(np.int16)
    names = tuple("" if c is None else c for c in pricing.currency) or ("",)
    return {
        "carrier": carrier.cast(STRING) if carrier is not None else pa.nulls(len(rows.part),
                                                                             STRING),
        "price_per_item": price_array(pricing.micros, has_price),
        "currency": labels(currency_code, names),
        "charge_amount": price_array(rows.charge * np.maximum(pricing.micros, 0), charged),
    }


def price_array(micros: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Millionths as exact MONEY decimals, null where not ``valid``."""
    # a decimal128 is a 16-byte little-endian integer of its smallest unit: millionths
    # here, so the int64 values and their sign extension are the buffer (no rounding)
    low = np.where(valid, micros, 0).astype("<i8")
    words = np.empty(2 * len(low), "<i8")
    words[0::2], words[1::2] = low, np.where(low < 0, -1, 0)
    bitmap = pa.array(np.asarray(valid, bool)).buffers()[1]
    return pa.Array.from_buffers(MONEY, len(low), [bitmap, pa.py_buffer(words)])


def overview_table(campaign_id: str, parts: list[CampaignPart], rows: Rows, pricing: Pricing,
                   prepared_items: np.ndarray, book: PriceBook, discrepancies: pa.Table,
                   now: datetime) -> pa.Table:
    """``overview/``: per connection what was sent, delivered and spent."""
    out = []
    by_conn: dict[str | None, int] = {}
    for conn in discrepancies["conn_id"].to_pylist():
        by_conn[conn] = by_conn.get(conn, 0) + 1
    for p_index, p in enumerate(parts):
        a = p.account
        mine = pricing.owner == p_index
        sent = mine & rows.sent
        when = rows.submitted_ms[mine & (rows.submitted_ms >= 0)]
        first = int(when.min()) if len(when) else None
        charged = sent & (rows.charge > 0) & (rows.sub_status != SubmissionCode.REJECTED)
        priced = charged & (pricing.micros >= 0)
        spend = int((rows.charge[priced] * pricing.micros[priced]).sum())
        estimate_price = book.micros_at(a.conn_id, np.array(
            [first if first is not None else int(now.timestamp() * 1000)], np.int64))[0]
        delivered = int((sent & (rows.final == FinalStatus.DELIVERED)).sum())
        unpriced = bool((charged & (pricing.micros < 0)).any())
        out.append({
            "campaign_id": campaign_id, "conn_id": a.conn_id, "vendor": a.vendor,
            "first_submitted_at": first,
            "last_submitted_at": int(when.max()) if len(when) else None,
            "recipients": int(mine.sum()), "sent": int(sent.sum()), "delivered": delivered,
            "failed": int((sent & (rows.final == FinalStatus.FAILED)).sum()),
            "pending": int((sent & (rows.final == FinalStatus.PENDING)).sum()),
            "unknown": int((sent & (rows.final == FinalStatus.UNKNOWN)).sum()),
            "rejected": int((mine & (rows.final == FinalStatus.REJECTED)).sum()),
            "charge_items": int(rows.charge[charged].sum()),
            "currency": pricing.currency[p_index],
            "estimated_amount": (from_micros(int(prepared_items[mine].sum()) * estimate_price)
                                 if estimate_price >= 0 else None),
            "spend": None if unpriced or pricing.currency[p_index] is None
            else from_micros(spend),
            "cost_per_delivered": (from_micros(spend // delivered) if delivered and not unpriced
                                   and pricing.currency[p_index] is not None else None),
            "balance_unit": balance_unit(a.vendor),
            "discrepancies": by_conn.get(a.conn_id, 0),
            "generated_at": now,
        })
    return pa.Table.from_pylist(out, schema=OVERVIEW_SCHEMA)


def carrier_table(campaign_id: str, parts: list[CampaignPart], rows: Rows, pricing: Pricing,
                  carrier: np.ndarray, failures: FailureTally) -> pa.Table:
    """``carriers/``: delivery rate, latency and the top failure reason per connection and
    carrier (only rows that were sent); ``carrier``: per row its index in ``CARRIERS``."""
    failed = rows.final == FinalStatus.FAILED
    out = []
    for p_index, p in enumerate(parts):
        for c_index, name in enumerate(CARRIERS):
            mine = (pricing.owner == p_index) & rows.sent & (carrier == c_index)
            sent = int(mine.sum())
            if not sent:
                continue
            latency = rows.latency_s[mine & ~np.isnan(rows.latency_s)]
            priced = mine & (pricing.micros >= 0) & (rows.sub_status != SubmissionCode.REJECTED)
            delivered = int((mine & (rows.final == FinalStatus.DELIVERED)).sum())
            out.append({
                "campaign_id": campaign_id, "conn_id": p.account.conn_id,
                "vendor": p.account.vendor, "carrier": name, "sent": sent,
                "delivered": delivered, "failed": int((mine & failed).sum()),
                "pending": sent - delivered - int((mine & failed).sum()),
                "delivery_rate": delivered / sent,
                "latency_p50_s": float(np.percentile(latency, 50)) if len(latency) else None,
                "latency_p90_s": float(np.percentile(latency, 90)) if len(latency) else None,
                "top_failure_reason": failures.top_reason(p_index, c_index),
                "spend": (from_micros(int((rows.charge[priced] * pricing.micros[priced]).sum()))
                          if pricing.currency[p_index] is not None else None),
            })
    return pa.Table.from_pylist(out, schema=CARRIER_SCHEMA)
