"""Delivery reports and replies on disk: rows from the model, keys, partitioned appends.

Pull and push both end here. Every batch is appended as its own Parquet file
(never rewritten), so a page is durable before the next one is asked for and
nothing is read back to write. Copies of one report (a replayed push, a
report both pushed and pulled) share ``report_key``; readers drop the
duplicates, writers never have to coordinate. Whether a reply is an opt-out
is :mod:`sms_provider.data.opt_outs`'s to say.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.opt_outs import DEFAULT_OPT_OUT_WORDS, is_opt_out
from sms_provider.data.schemas import INBOUND_SCHEMA, REPORT_SCHEMA
from sms_provider.data.storage import DataRoot, epoch_ms
from sms_provider.models import DeliveryReport, InboundMessage


def _key(*parts: object) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _json(raw: dict[str, Any]) -> str:
    return json.dumps(raw, ensure_ascii=False, default=str, sort_keys=True)


def report_key(conn_id: str, r: DeliveryReport) -> str:
    return _key(conn_id, r.message_id, r.custom_id, r.mobile, r.raw_state, epoch_ms(r.report_time))


def inbound_key(conn_id: str, m: InboundMessage) -> str:
    return _key(conn_id, m.message_id, m.mobile, m.content, epoch_ms(m.received_at), m.destination)


def report_table(reports: Sequence[DeliveryReport], *, conn_id: str, vendor: str, source: str,
                 received_at: datetime | None = None) -> pa.Table:
    now = epoch_ms(received_at or datetime.now(UTC))
    return pa.table({
        "conn_id": [conn_id] * len(reports),
        "vendor": [vendor] * len(reports),
        "message_id": [r.message_id for r in reports],
        "custom_id": [r.custom_id or None for r in reports],
        "mobile": [r.mobile for r in reports],
        "raw_state": [r.raw_state for r in reports],
        "status": [r.status.value for r in reports],
        "description": [r.description for r in reports],
        "submit_time": [epoch_ms(r.submit_time) for r in reports],
        "report_time": [epoch_ms(r.report_time) for r in reports],
        "received_at": [now] * len(reports),
        "source": [source] * len(reports),
        "raw": [_json(r.raw) for r in reports],
        "report_key": [report_key(conn_id, r) for r in reports],
    }, schema=REPORT_SCHEMA)


def inbound_table(messages: Sequence[InboundMessage], *, conn_id: str, vendor: str,
                  source: str, opt_out_words: Iterable[str] = DEFAULT_OPT_OUT_WORDS,
                  received_at: datetime | None = None) -> pa.Table:
    now = epoch_ms(received_at or datetime.now(UTC))
    words = tuple(opt_out_words)
    return pa.table({
        "conn_id": [conn_id] * len(messages),
        "vendor": [vendor] * len(messages),
        "mobile": [m.mobile for m in messages],
        "content": [m.content for m in messages],
        "received_time": [epoch_ms(m.received_at) for m in messages],
        "destination": [m.destination for m in messages],
        "message_id": [m.message_id for m in messages],
        "reference": [m.reference for m in messages],
        "opt_out": [is_opt_out(m.content, words) for m in messages],
        "received_at": [now] * len(messages),
        "source": [source] * len(messages),
        "raw": [_json(m.raw) for m in messages],
        "inbound_key": [inbound_key(conn_id, m) for m in messages],
    }, schema=INBOUND_SCHEMA)


def append(root: DataRoot, dataset: str, conn_id: str, table: pa.Table, *,
           prefix: str) -> list[str]:
    """One new file per UTC day of ``received_at``; returns the paths written."""
    if table.num_rows == 0:
        return []
    days = pc.strftime(table["received_at"], format="%Y-%m-%d")
    written = []
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for day in sorted(set(days.to_pylist())):
        part = table.filter(pc.equal(days, day))
        name = f"{prefix}-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        written.append(root.write_table(part, dataset, conn_id, f"date={day}", name))
    return written


def read_all(root: DataRoot, dataset: str, schema: pa.Schema, conn_id: str | None = None
             ) -> pa.Table:
    """Every row of ``reports/`` or ``inbound/`` (one connection or all), as ``schema``."""
    parts = (dataset, conn_id) if conn_id else (dataset,)
    if not root.list_files(*parts):
        return schema.empty_table()
    import pyarrow.dataset as ds

    data = ds.dataset(root.path(*parts), filesystem=root.fs, format="parquet",
                      schema=schema, partitioning=None)
    return data.to_table()


def dedupe(table: pa.Table, key: str) -> pa.Table:
    """Keep the first-received copy of each key, in order of receipt."""
    if table.num_rows == 0:
        return table
    ordered = table.sort_by([("received_at", "ascending")])
    firsts = (ordered.append_column("_i", pa.array(np.arange(ordered.num_rows, dtype=np.int64)))
              .group_by(key, use_threads=False).aggregate([("_i", "min")]))
    if firsts.num_rows == ordered.num_rows:
        return ordered
    keep = firsts["_i_min"]
    return ordered.take(pc.take(keep, pc.sort_indices(keep)))
