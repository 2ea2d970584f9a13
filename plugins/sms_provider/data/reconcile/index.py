"""The index page beside the campaign reports: every campaign, one line each.

It is built from every campaign's ``overview/`` (one row per connection), so it
costs a few small files however big the campaigns, and is rewritten whole at
the end of each ``reconcile_all``: a campaign reconciled once stays listed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.dataset as ds

from sms_provider.data import html_index
from sms_provider.data.reconcile.reading import list_campaigns
from sms_provider.data.reconcile.writer import write_text
from sms_provider.data.schemas import OVERVIEW_SCHEMA
from sms_provider.data.storage import DataRoot


def read_overviews(root: DataRoot) -> pa.Table:
    """Every campaign's ``overview/`` rows (campaigns never reconciled: none)."""
    files = [f for cid in list_campaigns(root)
             for f in root.parquet_files(*root.campaign(cid, "overview"))]
    if not files:
        return OVERVIEW_SCHEMA.empty_table()
    return ds.dataset(files, filesystem=root.fs, format="parquet",
                      schema=OVERVIEW_SCHEMA).to_table()


def write_index(root: DataRoot, now: datetime | None = None) -> str:
    """Write ``campaigns/index.html``; returns its path."""
    rows = read_overviews(root).to_pylist()
    html = html_index.render(rows, generated_at=now or datetime.now(UTC))
    return write_text(root, html, "campaigns", "index.html")
