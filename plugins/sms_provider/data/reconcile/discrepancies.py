"""Where the vendor's books and ours disagree: ``discrepancies/``.

Charged-never-reported is about this campaign's rows. The account-level checks
(reports for unknown messages, vendor statistics, balance) are computed over
the submissions of every campaign on the connection, then reported for the
days and balance intervals this campaign touched, so a campaign's report stays
about that campaign.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.prices import from_micros
from sms_provider.data.reconcile.accounts import Account
from sms_provider.data.reconcile.balance import balance_steps
from sms_provider.data.reconcile.columns import CHINA_OFFSET_MS, DAY_MS, iso, repeat
from sms_provider.data.reconcile.matching import (
    CUSTOM_ID_PER_REQUEST,
    MSGID_PER_REQUEST,
    mobile_tail,
)
from sms_provider.data.reconcile.outcomes import CampaignPart, Rows, Settings
from sms_provider.data.reconcile.reading import read
from sms_provider.data.reconcile.statuses import DiscrepancyKind, FinalStatus, SubmissionCode
from sms_provider.data.reports import dedupe
from sms_provider.data.schemas import DAILY_STATISTIC_SCHEMA, DISCREPANCY_SCHEMA, MONEY
from sms_provider.data.storage import DataRoot

#: unknown reports received this long before a campaign's first submission still count
#: for it: a push can beat the send task's own record of the answer
REPORT_LEAD = timedelta(hours=1)


def find_discrepancies(root: DataRoot, parts: list[CampaignPart], charged: pa.Table,
                       s: Settings) -> pa.Table:
    """This campaign's charged-never-reported rows (``charged``, from
    :func:`charged_never_reported` over each slice), then per connection its unknown
    reports, statistics and balance mismatches, as ``DISCREPANCY_SCHEMA``."""
    pieces = [charged]
    for p in parts:
        sent_ms = p.submitted_ms[p.submitted_ms >= 0]
        if not len(sent_ms):
            continue
        pieces.append(_unknown_reports(p.account, int(sent_ms.min()), int(sent_ms.max()), s))
        pieces.append(_statistics_mismatches(root, p.account, sent_ms, s))
        pieces.append(_balance_mismatches(root, p.account, sent_ms, s))
    return pa.concat_tables(pieces)


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DISCREPANCY_SCHEMA)


def charged_never_reported(table: pa.Table, rows: Rows, s: Settings) -> pa.Table:
    """Paid for (the vendor accepted and billed it) and never told what became of it
    (``table``: ``reconciliation/`` rows, ``rows`` the same recipients')."""
    mask = ((rows.sub_status == SubmissionCode.SUBMITTED) & (rows.charge > 0)
            & (rows.final == FinalStatus.UNKNOWN))
    if not mask.any():
        return DISCREPANCY_SCHEMA.empty_table()
    t = table.filter(pa.array(mask))
    hours = f"{s.final_window_ms / 3_600_000:g}"
    key = pc.coalesce(t["message_id"], t["custom_id"],
                      pc.binary_join_element_wise("row ", pc.cast(t["row_number"], pa.string()),
                                                  ""))
    detail = pc.binary_join_element_wise(
        "row ", pc.cast(t["row_number"], pa.string()), ", submitted ", iso(t["submitted_at"]),
        f", no DELIVERED/FAILED report within {hours} h", "")
    return pa.table({
        "kind": repeat(DiscrepancyKind.CHARGED_NEVER_REPORTED, t.num_rows),
        "conn_id": t["conn_id"], "key": key, "detail": detail,
        "count": pc.cast(t["charge_items"], pa.int64()),
        "amount": pc.multiply(pc.cast(t["charge_items"], MONEY), t["price_per_item"]).cast(
            MONEY),
    }, schema=DISCREPANCY_SCHEMA)


def _unknown_reports(a: Account, first_ms: int, last_ms: int, s: Settings) -> pa.Table:
    """Reports no campaign on the connection sent, received while this campaign was live."""
    lo = first_ms - int(REPORT_LEAD.total_seconds() * 1000)
    hi = last_ms + s.final_window_ms
    picked = np.flatnonzero((a.strays_received >= lo) & (a.strays_received <= hi))
    if not len(picked):
        return DISCREPANCY_SCHEMA.empty_table()
    t = dedupe(a.strays.take(picked), "report_key")
    names = t.column_names
    tail = mobile_tail(t["mobile"]) if "mobile" in names else None
    by_mobile = tail is not None and a.vendor in MSGID_PER_REQUEST
    keys = [pc.binary_join_element_wise(t["message_id"], tail, "/") if by_mobile
            else t["message_id"]]
    if "custom_id" in names:
        keys.append(pc.binary_join_element_wise(t["custom_id"], tail, "/")
                    if tail is not None and a.vendor in CUSTOM_ID_PER_REQUEST
                    else t["custom_id"])
    if tail is not None:
        keys.append(pc.binary_join_element_wise("mobile ", t["mobile"], ""))
    key = pc.fill_null(pc.coalesce(*keys), "(no id)")
    g = (t.append_column("key", key).group_by("key", use_threads=False)
         .aggregate([("report_key", "count"), ("received_at", "min"), ("received_at", "max")]))
    detail = pc.binary_join_element_wise(
        pc.cast(g["report_key_count"], pa.string()),
        " report(s) match no submission of any campaign on this connection; received ",
        iso(g["received_at_min"]), " .. ", iso(g["received_at_max"]), "")
    return pa.table({
        "kind": repeat(DiscrepancyKind.REPORT_FOR_UNKNOWN_MESSAGE, g.num_rows),
        "conn_id": repeat(a.conn_id, g.num_rows), "key": g["key"], "detail": detail,
        "count": g["report_key_count"], "amount": pa.nulls(g.num_rows, MONEY)},
        schema=DISCREPANCY_SCHEMA)


def _epoch_day(day: Any) -> int:
    return (day - datetime(1970, 1, 1).date()).days


def _statistics_mismatches(root: DataRoot, a: Account, sent_ms: np.ndarray,
                           s: Settings) -> pa.Table:
    """The vendor's own daily counts (latest fetch of each day) against ours, all campaigns."""
    if not a.conn_id:
        return DISCREPANCY_SCHEMA.empty_table()
    stats = read(root, ("statistics", a.conn_id, "daily"), DAILY_STATISTIC_SCHEMA,
                 ["day", "submitted", "delivered", "failed", "fetched_at"]).to_pylist()
    latest: dict[int, dict[str, Any]] = {}
    never = datetime.min.replace(tzinfo=UTC)
    for row in sorted(stats, key=lambda r: r["fetched_at"] or never):
        if row["day"] is not None:
            latest[_epoch_day(row["day"])] = row  # the last fetch of a day wins
    days = set(np.unique((sent_ms + CHINA_OFFSET_MS) // DAY_MS).tolist())
    out = []
    empty = {"submitted": 0, "delivered": 0, "failed": 0, "unsettled": 0}
    for day in sorted(days & latest.keys()):
        vendor, ours = latest[day], a.daily().get(day, empty)
        problems, worst = [], 0
        gap = (vendor["submitted"] or 0) - ours["submitted"]
        if not 0 <= gap <= ours["unsettled"]:  # unsettled ambiguous ones may have gone out
            extra = (f" (+{ours['unsettled']} ambiguous not settled)"
                     if ours["unsettled"] else "")
            problems.append(f"submitted: vendor {vendor['submitted']}, ours "
                            f"{ours['submitted']}{extra}")
            worst = abs(gap)
        allowed = s.statistics_tolerance * (vendor["submitted"] or 0)
        for name in ("delivered", "failed"):
            diff = (vendor[name] or 0) - ours[name]
            if abs(diff) > allowed:
                problems.append(f"{name}: vendor {vendor[name]}, ours {ours[name]}")
                worst = max(worst, abs(diff))
        if problems:
            out.append({"kind": DiscrepancyKind.STATISTICS_MISMATCH, "conn_id": a.conn_id,
                        "key": vendor["day"].isoformat(),
                        "detail": "; ".join(problems) + " (China day, all campaigns)",
                        "count": worst})
    return _rows_table(out)


def _balance_mismatches(root: DataRoot, a: Account, sent_ms: np.ndarray,
                        s: Settings) -> pa.Table:
    """Each fall of the balance between two snapshots against what we submitted then: in
    money for a money balance (items at the price in force when sent), else in items."""
    out = []
    for step in balance_steps(root, a, sent_ms, s.prices):
        found = step.gap(s.balance_tolerance)
        if found is None:
            continue
        gap, items = found
        if step.unit == "money":
            ours = (f"we submitted {step.ours_items} charge items = {step.ours_money:f} "
                    f"{step.currency} at the prices in force (all campaigns)")
            amount: Decimal | None = gap
        else:
            ours = f"we submitted {step.ours_items} charge items (all campaigns)"
            amount = (gap * from_micros(step.price_micros)) if step.price_micros else None
        note = f"; {step.unsettled} ambiguous not settled" if step.unsettled else ""
        stamps = iso(pa.array([step.start_ms, step.end_ms], pa.timestamp("ms", tz="UTC")))
        out.append({"kind": DiscrepancyKind.BALANCE_MISMATCH, "conn_id": a.conn_id,
                    "key": f"{stamps[0]}..{stamps[1]}",
                    "detail": f"balance fell by {step.fall:f} {step.unit}, {ours}{note}",
                    "count": items, "amount": amount})
    return _rows_table(out)
