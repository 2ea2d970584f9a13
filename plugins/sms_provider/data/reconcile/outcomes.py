"""What became of each prepared recipient: the ``reconciliation/`` rows and their summary.

Every prepared recipient gets exactly one row, sent or not: its submission
(first connection it went through), the report that decided it, and from the
two its final status. No final report within the final window of the
submission makes a message UNKNOWN; before that it is PENDING.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.prices import PriceBook
from sms_provider.data.reconcile.accounts import Account
from sms_provider.data.reconcile.columns import (
    STRING,
    as_text,
    day_buckets,
    first_positions,
    flat,
    ints,
    labels,
    plain_text,
    repeat,
    span,
    take_rows,
)
from sms_provider.data.reconcile.statuses import (
    FinalStatus,
    SettledBy,
    SubmissionCode,
    UnsentReason,
)
from sms_provider.data.schemas import RECONCILIATION_SCHEMA, SUMMARY_SCHEMA


@dataclass(frozen=True)
class Settings:
    """The options of one reconciliation, in the units the arrays use."""

    final_window_ms: int
    now_ms: int
    statistics_tolerance: float
    balance_tolerance: Decimal
    prices: PriceBook


class CampaignPart:
    """This campaign's rows within one account."""

    def __init__(self, account: Account, campaign_id: str) -> None:
        self.account = account
        code = (account.campaigns.index(campaign_id)
                if campaign_id in account.campaigns else -1)
        #: this campaign's rows in the account, int32 while they fit (like every position)
        self.positions = np.flatnonzero(account.campaign_code == code).astype(
            np.int32 if len(account.campaign_code) < 2**31 - 1 else np.int64)

    @property
    def submitted_ms(self) -> np.ndarray:
        return self.account.submitted_ms[self.positions]


@dataclass
class Rows:
    """Per prepared recipient, the figures every output is made of (NumPy, one per row)."""

    part: np.ndarray          # index into the campaign's parts, -1: never submitted
    sub: np.ndarray           # row in that part's account submissions, -1 none
    best: np.ndarray          # that account's deciding report, -1 none
    sub_status: np.ndarray    # SubmissionCode (OTHER: no submission)
    final: np.ndarray         # FinalStatus
    final_report: np.ndarray  # a DELIVERED/FAILED report decided
    charge: np.ndarray
    submitted_ms: np.ndarray  # -1 none
    latency_s: np.ndarray     # NaN without a final report

    def slice(self, lo: int, hi: int) -> Rows:
        """Rows ``lo`` to ``hi`` (views, no copies): the outputs are built a slice at a time."""
        return Rows(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})

    @property
    def sent(self) -> np.ndarray:
        """Submitted or ambiguous: it may have reached the vendor."""
        return ((self.sub_status == SubmissionCode.SUBMITTED)
                | (self.sub_status == SubmissionCode.AMBIGUOUS))

    @property
    def not_submitted(self) -> np.ndarray:
        return ((self.sub_status == SubmissionCode.DRY_RUN)
                | (self.sub_status == SubmissionCode.OTHER))


def _row_lookup(wanted: np.ndarray, row_numbers: np.ndarray) -> np.ndarray:
    """Position of each wanted row number in ``row_numbers`` (first one), -1 where absent."""
    if not len(row_numbers) or not len(wanted):
        return np.full(len(wanted), -1, np.int64)
    if len(row_numbers) == len(wanted) and np.array_equal(row_numbers, wanted):
        return np.arange(len(wanted))  # submissions in prepared order: the usual case
    top = int(max(row_numbers.max(), wanted.max()))
    if min(row_numbers.min(), wanted.min()) < 0 or top > 4 * (len(wanted) + len(row_numbers)):
        return ints(pc.index_in(pa.array(wanted), value_set=pa.array(row_numbers)), -1)
    return first_positions(row_numbers, top + 1)[wanted]


def reconcile_rows(prepared: pa.Table, parts: list[CampaignPart], s: Settings) -> Rows:
    """Find each prepared recipient's submission and deciding report; settle its status."""
    n = prepared.num_rows
    rn = ints(prepared["row_number"], -1)
    part = np.full(n, -1, np.int8)
    biggest = max([0, *(len(p.account.campaign_code) for p in parts),
                   *(len(p.account.report_code) for p in parts)])
    index = np.int32 if biggest < 2**31 - 1 else np.int64  # positions: half the bytes
    sub = np.full(n, -1, index)
    for p_index, p in enumerate(parts):  # a recipient sent twice keeps the first connection
        found = _row_lookup(rn, ints(p.account.subs["row_number"], -1)[span(p.positions)])
        take = (found >= 0) & (sub < 0)
        sub[take] = p.positions[found[take]]
        part[take] = p_index
        del found, take  # ten million positions each: not kept past their use
    del rn

    # arrays are made only where they cannot be views of the account's (the usual case:
    # one connection, rows in its order): at ten million rows each one is 10-80 MB
    def fresh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # status, submitted, best
        return (np.full(n, SubmissionCode.OTHER, np.int8), np.full(n, -1, np.int64),
                np.full(n, -1, index))

    sub_status: Any = None
    best: Any = None
    submitted_ms: Any = None
    report_code = np.full(n, FinalStatus.PENDING, np.int8)
    when_ms: Any = None
    charge = np.zeros(n, np.int32)  # charge_items is int32; sums and products go int64
    for p_index, p in enumerate(parts):
        a = p.account
        mine: Any = part == p_index
        mine = slice(None) if mine.all() else np.flatnonzero(mine)
        rows = span(sub[mine])  # a slice when in order: no gathering at all
        if isinstance(mine, slice) and isinstance(rows, slice) and a.best.dtype == index \
                and sub_status is None:
            # every row on this account, in its order (the usual case): views, not copies
            sub_status, submitted_ms, best = a.status[rows], a.submitted_ms[rows], a.best[rows]
        else:
            if sub_status is None:
                sub_status, submitted_ms, best = fresh()
            sub_status[mine] = a.status[rows]
            submitted_ms[mine] = a.submitted_ms[rows]
            best[mine] = a.best[rows]
        charge[mine] = a.charge[rows]
        b = best[mine]
        has = b >= 0
        if has.any():
            b = np.where(has, b, 0)
            report_code[mine] = np.where(has, a.report_code[b], FinalStatus.PENDING)
            when = a.report_when[b]
            when[~has] = -1
        else:  # no report for any of them (or none on the account at all)
            when = np.full(len(b), -1, np.int64)
        if isinstance(mine, slice) and when_ms is None:
            when_ms = when  # every row: the gathered times are the column
        else:
            if when_ms is None:
                when_ms = np.full(n, -1, np.int64)
            when_ms[mine] = when
        del b, has, when
    if sub_status is None:  # no connection: nothing was sent
        sub_status, submitted_ms, best = fresh()
    if when_ms is None:
        when_ms = np.full(n, -1, np.int64)

    sent = (sub_status == SubmissionCode.SUBMITTED) | (sub_status == SubmissionCode.AMBIGUOUS)
    final_report = sent & (report_code <= FinalStatus.FAILED)
    overdue = (submitted_ms >= 0) & (s.now_ms - submitted_ms > s.final_window_ms)
    final = np.full(n, FinalStatus.PENDING, np.int8)
    final[final_report] = report_code[final_report]
    final[sent & ~final_report & overdue] = FinalStatus.UNKNOWN
    final[sub_status == SubmissionCode.REJECTED] = FinalStatus.REJECTED
    del sent, overdue, report_code

    # an ambiguous request's cost was never told us; a report proves the message went out
    settled = np.flatnonzero((sub_status == SubmissionCode.AMBIGUOUS) & (best >= 0))
    charge[settled] = ints(prepared["charge_items"].take(pa.array(settled)))
    timed = final_report & (submitted_ms >= 0)
    # never below zero: a report stamped before our submission is the vendor's clock or
    # its precision (Chuanglan's report times are to the minute), not a message that
    # arrived before it left; worked out in place (when_ms is not needed after)
    np.subtract(when_ms, submitted_ms, out=when_ms)
    np.maximum(when_ms, 0, out=when_ms)
    latency = np.divide(when_ms, 1000.0)
    del when_ms
    latency[~timed] = np.nan
    return Rows(part=part, sub=sub, best=best, sub_status=sub_status, final=final,
                final_report=final_report, charge=charge, submitted_ms=submitted_ms,
                latency_s=latency)


#: submission columns an account may hold as numbers (``matching.as_numbers``)
_TEXT_IDS = frozenset({"message_id"})


def _gather(parts: list[CampaignPart], part: np.ndarray, idx: np.ndarray, column: str, *,
            reports: bool = False) -> Any:
    """Per entry, ``column`` of its submission (or report) ``idx`` in its part's account;
    null where ``idx`` is -1. Text comes back plain (dictionaries decoded, ids kept as numbers
    as text)."""
    out = None
    for p_index, p in enumerate(parts):
        source = (p.account.reports if reports else p.account.subs)[column]
        mine = part == p_index
        if mine.all() and len(idx) and idx[0] >= 0 and (idx[-1] - idx[0] == len(idx) - 1) \
                and (np.diff(idx) == 1).all():
            values = source.slice(int(idx[0]), len(idx))  # rows in order: no copy
        elif not (mine & (idx >= 0)).any():
            continue
        else:
            values = take_rows(source, idx, ~mine | (idx < 0))
        values = as_text(values) if column in _TEXT_IDS else plain_text(values)
        out = values if out is None else pc.coalesce(out, values)
    if out is None:
        if column in _TEXT_IDS or not parts:
            return pa.nulls(len(idx), STRING)
        return pa.nulls(len(idx), source.type.value_type if pa.types.is_dictionary(source.type)
                        else source.type)
    return out


def _scatter(n: int, mask: np.ndarray, values: Any, into: Any = None) -> Any:
    """An n-long text column: ``values`` (one per true of ``mask``) there, ``into`` elsewhere."""
    base = into if into is not None else pa.nulls(n, STRING)
    return pc.replace_with_mask(base, pa.array(mask), flat(values)) if mask.any() else base


def _reasons(parts: list[CampaignPart], rows: Rows) -> pa.Array:
    """FAILED: the vendor's state and words; PENDING/UNKNOWN: its last state, if any;
    REJECTED: the vendor's code; never sent: why not. Built only where there is one."""
    n = len(rows.final)
    told = (((rows.final == FinalStatus.FAILED) | (rows.sent & ~rows.final_report))
            & (rows.best >= 0))
    where = np.flatnonzero(told)
    state = _gather(parts, rows.part[where], rows.best[where], "raw_state", reports=True)
    words = _gather(parts, rows.part[where], rows.best[where], "description", reports=True)
    has_words = pc.fill_null(pc.greater(pc.utf8_length(words), 0), False)
    reason = _scatter(n, told, pc.if_else(has_words, pc.binary_join_element_wise(
        state, words, ": "), state))
    refused = rows.final == FinalStatus.REJECTED
    where = np.flatnonzero(refused)
    code = _gather(parts, rows.part[where], rows.sub[where], "vendor_code")
    text = _gather(parts, rows.part[where], rows.sub[where], "description")
    reason = _scatter(n, refused, pc.coalesce(
        pc.if_else(pc.equal(code, ""), pa.scalar(None, STRING), code), text), reason)
    if not rows.not_submitted.any():
        return reason
    unsent = np.where(rows.sub_status == SubmissionCode.DRY_RUN, UnsentReason.DRY_RUN,
                      np.where(rows.sub_status == SubmissionCode.OTHER,
                               UnsentReason.NOT_SUBMITTED, -1))
    return pc.coalesce(reason, labels(unsent, UnsentReason.LABELS))


def reconciliation_table(campaign_id: str, prepared: pa.Table, parts: list[CampaignPart],
                         rows: Rows, extra: Mapping[str, Any] | None = None) -> pa.Table:
    """``reconciliation/``: one row per prepared recipient, as ``RECONCILIATION_SCHEMA``
    (``prepared``: their ``row_number``, ``mobile`` and ``custom_id``; ``rows`` the same
    recipients', a slice or all); ``extra``: the columns other modules add (``money``:
    carrier, price, amount), null where not given."""
    n = prepared.num_rows
    part, sub = rows.part, rows.sub
    if len(parts) == 1 and (part == 0).all():  # the usual case: one connection, all sent
        conn_id: Any = repeat(parts[0].account.conn_id, n)
        vendor: Any = repeat(parts[0].account.vendor, n)
    else:
        only = parts[0].account if len(parts) == 1 else None
        conn_id = pc.fill_null(_gather(parts, part, sub, "conn_id"),
                               pa.scalar(only.conn_id if only else None, STRING))
        vendor = pc.fill_null(_gather(parts, part, sub, "vendor"),
                              pa.scalar(only.vendor if only else None, STRING))
    message_id = _gather(parts, part, sub, "message_id")
    # an ambiguous submission learns the vendor's id from the report that settled it
    learned = (rows.sub_status == SubmissionCode.AMBIGUOUS) & (rows.best >= 0)
    for p_index, p in enumerate(parts):
        mine = learned & (part == p_index)
        if mine.any():
            message_id = pc.coalesce(message_id, p.account.report_message_ids(
                np.where(mine, rows.best, -1)))
    custom_id = _gather(parts, part, sub, "custom_id")
    if custom_id.null_count:  # not sent (or sent without one): our own id
        custom_id = pc.coalesce(custom_id, prepared["custom_id"])
    report_time = _gather(parts, part, np.where(rows.final_report, rows.best, -1),
                          "report_time", reports=True)
    seen = np.zeros(n, np.int32)
    route = np.zeros(n, np.int8)
    for p_index, p in enumerate(parts):
        mine = part == p_index
        seen[mine] = p.account.seen[sub[mine]]
        told = mine & (rows.best >= 0)
        route[told] = p.account.report_route[rows.best[told]]
    return pa.table({
        "campaign_id": repeat(campaign_id, n),
        "conn_id": conn_id,
        "vendor": vendor,
        "row_number": prepared["row_number"],
        "mobile": prepared["mobile"],
        "message_id": message_id,
        "custom_id": custom_id,
        "submission_status": labels(rows.sub_status, SubmissionCode.WRITTEN),
        "final_status": labels(rows.final, FinalStatus.LABELS),
        "reason": _reasons(parts, rows),
        "charge_items": pa.array(rows.charge, pa.int32()),
        "submitted_at": pa.array(rows.submitted_ms, mask=rows.submitted_ms < 0).cast(
            pa.timestamp("ms", tz="UTC")),
        "report_time": report_time,
        "latency_s": pa.array(rows.latency_s, from_pandas=True),
        "reports_seen": pa.array(seen),
        "settled_by": labels(route, SettledBy.LABELS),
        **{f.name: (extra or {}).get(f.name, pa.nulls(n, f.type))
           for f in RECONCILIATION_SCHEMA if f.name in _ADDED},
    }, schema=RECONCILIATION_SCHEMA)


#: columns of ``RECONCILIATION_SCHEMA`` that other modules compute (``extra``)
_ADDED = frozenset({"carrier", "price_per_item", "currency", "charge_amount"})


def summary_table(campaign_id: str, rows: Rows, invalid: int) -> pa.Table:
    """``reconciliation_summary/``: the counts per China day of submission (null day:
    what never reached the vendor), as ``SUMMARY_SCHEMA``."""
    unsent = rows.not_submitted
    bucket, days = day_buckets(rows.submitted_ms, (rows.submitted_ms >= 0) & ~unsent)
    k = len(days)
    sent = rows.sent
    # one pass per dimension: (day, submission status) and (day, final status) pairs
    codes = SubmissionCode.OTHER + 1
    by_status = np.bincount(bucket * codes + rows.sub_status,
                            minlength=k * codes).reshape(k, codes)
    finals = len(FinalStatus.LABELS)
    sent_bucket = bucket[sent]
    by_final = np.bincount(sent_bucket * finals + rows.final[sent],
                           minlength=k * finals).reshape(k, finals)
    valid = by_status.sum(axis=1)
    cols: dict[str, Any] = {
        "valid": valid,
        "submitted": by_status[:, SubmissionCode.SUBMITTED],
        "rejected": by_status[:, SubmissionCode.REJECTED],
        "ambiguous": by_status[:, SubmissionCode.AMBIGUOUS],
        "not_submitted": by_status[:, SubmissionCode.DRY_RUN]
        + by_status[:, SubmissionCode.OTHER],
        "delivered": by_final[:, FinalStatus.DELIVERED],
        "failed": by_final[:, FinalStatus.FAILED],
        "pending": by_final[:, FinalStatus.PENDING],
        "unknown": by_final[:, FinalStatus.UNKNOWN],
        "charge_items_submitted": np.bincount(sent_bucket, weights=rows.charge[sent],
                                              minlength=k).astype(np.int64),
    }
    invalid_col = np.zeros(k, np.int64)
    invalid_col[0] = invalid
    keep = (valid > 0) | (invalid_col > 0)
    keep[1:] &= valid[1:] > 0
    table = {
        "campaign_id": [campaign_id] * int(keep.sum()),
        "day": [d for d, kept in zip(days, keep, strict=True) if kept],
        "input_rows": (valid + invalid_col)[keep],
        "invalid": invalid_col[keep],
        **{name: values[keep] for name, values in cols.items()},
    }
    out = pa.table(table, schema=SUMMARY_SCHEMA)
    # the null day (nothing sent) last: the table reads in the order things happened
    return out.take(np.r_[np.arange(1, out.num_rows), 0]) if keep[0] else out
