"""Reconciliation across attempts: what became of each recipient, whichever attempt it
took, and what each attempt recovered and cost.

Each attempt is reconciled as a campaign of its own (its reports matched on its
own connection); this joins them by the recipient's row number:

- ``final/``: one row per prepared recipient of the campaign: the final status
  across attempts (DELIVERED if any attempt delivered, else the last attempt's),
  the attempts made, which one delivered, and the charge items per attempt.
- ``attempts/``: one row per recipient and attempt: the attempt's connection,
  message id, the previous attempt's message id, status, charge and amount.
- the per-attempt summary ``report.html`` shows (:func:`attempt_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.reconcile.columns import ints
from sms_provider.data.reconcile.reading import read
from sms_provider.data.resend.attempts import attempt_id
from sms_provider.data.schemas import (
    ATTEMPT_SCHEMA,
    FINAL_SCHEMA,
    MONEY,
    PREPARED_SCHEMA,
    RECONCILIATION_SCHEMA,
)
from sms_provider.data.storage import DataRoot

_FROM_RECON = ["row_number", "conn_id", "vendor", "message_id", "submission_status",
               "final_status", "reason", "charge_items", "currency", "charge_amount",
               "submitted_at"]
_SENT = ("submitted", "ambiguous")


def _attempt_rows(root: DataRoot, campaign_id: str, attempt: int,
                  first: pa.Table | None = None) -> pa.Table:
    """One attempt's reconciled rows as ``ATTEMPT_SCHEMA``."""
    source = attempt_id(campaign_id, attempt)
    recon = first.select(_FROM_RECON) if first is not None else read(
        root, root.campaign(source, "reconciliation"), RECONCILIATION_SCHEMA, _FROM_RECON)
    n = recon.num_rows
    previous = pa.nulls(n, pa.string())
    if attempt > 1:
        prepared = read(root, root.campaign(source, "prepared"), PREPARED_SCHEMA.append(
            pa.field("previous_message_id", pa.string())), ["row_number",
                                                            "previous_message_id"])
        where = pc.index_in(recon["row_number"], value_set=prepared["row_number"])
        previous = pc.take(prepared["previous_message_id"], where)
    columns = {name: pc.cast(recon[name], ATTEMPT_SCHEMA.field(name).type)
               for name in _FROM_RECON}
    return pa.table({"campaign_id": pa.array([campaign_id] * n, pa.string()),
                     "attempt": pa.array(np.full(n, attempt, np.int32)),
                     "previous_message_id": previous, **columns},
                    schema=ATTEMPT_SCHEMA)


def across_attempts(root: DataRoot, campaign_id: str,
                    attempts: Sequence[int]) -> tuple[pa.Table, pa.Table]:
    """``final/`` and ``attempts/`` of a campaign and its resend attempts (2, 3, ...),
    each reconciled and written already.

    The campaign's own rows are read back from its ``reconciliation/``: reconcile
    streams them out a slice at a time and holds no whole table of them.
    """
    first = read(root, root.campaign(campaign_id, "reconciliation"), RECONCILIATION_SCHEMA,
                 [*_FROM_RECON, "mobile"])
    per = [_attempt_rows(root, campaign_id, 1, first),
           *(_attempt_rows(root, campaign_id, k, None) for k in attempts)]
    rows = pa.concat_tables(per)
    n = first.num_rows
    numbers = first["row_number"]
    made = np.zeros(n, np.int32)
    delivered_in = np.zeros(n, np.int32)
    last = np.zeros(n, np.int32)
    items = np.zeros((n, len(per)), np.int32)
    amount: pa.Array = pa.nulls(n, MONEY)
    status = pc.cast(first["final_status"], pa.string())
    conn, message = (pc.cast(first["conn_id"], pa.string()),
                     pc.cast(first["message_id"], pa.string()))
    currency = pc.cast(first["currency"], pa.string())
    for column, table in enumerate(per):
        where = pc.index_in(numbers, value_set=table["row_number"])
        here = np.asarray(pc.is_valid(where))
        sent = here & np.asarray(pc.fill_null(pc.is_in(pc.take(
            table["submission_status"], where), value_set=pa.array(_SENT)), False))
        attempt = int(table["attempt"][0].as_py()) if table.num_rows else column + 1
        made += sent
        items[:, column] = ints(pc.take(table["charge_items"], where), 0)
        took = pc.take(table["charge_amount"], where)
        amount = pc.if_else(pc.is_null(amount), took, pc.if_else(
            pc.is_null(took), amount, pc.add(amount, took)))
        now_delivered = np.asarray(pc.fill_null(pc.equal(pc.take(
            table["final_status"], where), "DELIVERED"), False))
        if column:  # a later attempt decides unless an earlier one delivered
            mask = pa.array(here & (delivered_in == 0))
            status = pc.if_else(mask, pc.take(table["final_status"], where), status)
            conn = pc.if_else(mask, pc.take(table["conn_id"], where), conn)
            message = pc.if_else(mask, pc.take(table["message_id"], where), message)
            currency = pc.coalesce(currency, pc.take(table["currency"], where))
        delivered_in[(delivered_in == 0) & now_delivered] = attempt
        last[here] = attempt
    final = pa.table({
        "campaign_id": pa.array([campaign_id] * n, pa.string()),
        "row_number": numbers,
        "mobile": first["mobile"],
        "final_status": status,
        "attempts": pa.array(made),
        "last_attempt": pa.array(last),
        "delivered_attempt": pa.array(delivered_in, mask=delivered_in == 0),
        "conn_id": conn,
        "message_id": message,
        "charge_items": pa.array(items.sum(axis=1).astype(np.int32)),
        "charge_items_per_attempt": pa.array(items.tolist(), pa.list_(pa.int32())),
        "currency": currency,
        "charge_amount": pc.cast(amount, MONEY) if len(amount) else amount,
    }, schema=FINAL_SCHEMA)
    return final, rows


def attempt_summary(rows: pa.Table) -> list[dict[str, Any]]:
    """Per attempt and connection: recipients, sent, delivered (beyond attempt 1: what
    the resend recovered), failed, still open, the charge, its amount and the cost
    per delivered message."""
    out = []
    keys = rows.group_by(["attempt", "conn_id"]).aggregate([]).sort_by(
        [("attempt", "ascending"), ("conn_id", "ascending")])
    for attempt, conn in zip(keys["attempt"].to_pylist(), keys["conn_id"].to_pylist(),
                             strict=True):
        if conn is None:
            continue
        part = rows.filter(pc.and_(pc.equal(rows["attempt"], attempt),
                                   pc.equal(rows["conn_id"], conn)))
        status = part["final_status"]

        def count(*words: str, column: Any = status) -> int:
            return int(pc.sum(pc.is_in(column, value_set=pa.array(words))).as_py() or 0)

        spend = pc.sum(part["charge_amount"]).as_py() if part["charge_amount"].null_count \
            < part.num_rows else None
        delivered = count("DELIVERED")
        currencies = [c for c in pc.unique(part["currency"]).to_pylist() if c]
        out.append({
            "attempt": attempt, "conn_id": conn, "recipients": part.num_rows,
            "sent": count(*_SENT, column=part["submission_status"]),
            "delivered": delivered, "failed": count("FAILED"),
            "open": count("PENDING", "UNKNOWN"),
            "charge_items": int(pc.sum(part["charge_items"]).as_py() or 0),
            "spend": Decimal(spend) if spend is not None else None,
            "currency": currencies[0] if len(currencies) == 1 else None,
            "cost_per_delivered": (Decimal(spend) / delivered).quantize(Decimal("0.000001"))
            if spend is not None and delivered else None,
        })
    return out
