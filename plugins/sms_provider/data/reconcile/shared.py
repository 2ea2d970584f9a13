"""The ``reconciliation`` dataset across campaigns: every campaign's rows, one dataset.

Laid out hive-style so that pandas, pyarrow and DuckDB read all campaigns at once
and skip whole months or vendors::

    reconciliation/month=2026-03/vendor=eims/<campaign_id>.parquet

``month`` is the China month of the row's submission (a row never sent takes
the campaign's first submission month, or the month of the run); ``vendor`` is
the row's vendor. The two are partition keys only (not repeated in the files),
so no reader sees a column twice; every other column is as in the campaign's
own ``reconciliation/`` (``RECONCILIATION_SCHEMA``). Partition values are
words (``2026-03``, ``eims``), never digits only, so readers that infer types
from the path keep them text.

A campaign's files carry its id as their name (a resend attempt's
``<id>/attempt-2`` as ``<id>+attempt-2``: ``+`` is in no campaign id): a rerun
first deletes every file of that name under any partition, then writes, so it
replaces, never adds.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.reconcile.columns import CHINA_OFFSET_MS, distinct, ms
from sms_provider.data.storage import DataRoot

DATASET = "reconciliation"
#: the partition keys, in path order
PARTITIONS = ("month", "vendor")
#: ``vendor`` of rows that never reached any connection
NO_VENDOR = "none"


def partition_schema() -> pa.Schema:
    """The partition keys' types (text), for ``pyarrow.dataset.partitioning(flavor="hive")``."""
    return pa.schema([(name, pa.string()) for name in PARTITIONS])


def _months(submitted: pa.ChunkedArray, now: datetime) -> pa.Array:
    when = ms(submitted, -1)
    sent = when >= 0
    fallback = int(when[sent].min()) if sent.any() else int(now.timestamp() * 1000)
    local = np.where(sent, when, fallback) + CHINA_OFFSET_MS
    stamps = pa.array(local, pa.timestamp("ms"))
    return pc.strftime(stamps, format="%Y-%m")


def write_shared(root: DataRoot, table: pa.Table, campaign_id: str, now: datetime) -> str:
    """Replace this campaign's files in ``reconciliation/``; returns the dataset's path."""
    name = f"{campaign_id.replace('/', '+')}.parquet"  # an attempt: <id>+attempt-2
    for path in root.list_files(DATASET):
        if path.rsplit("/", 1)[-1] == name:
            root.fs.delete_file(path)
    if table.num_rows:
        vendor = pc.fill_null(table["vendor"], NO_VENDOR)
        vendor = pc.if_else(pc.equal(vendor, ""), NO_VENDOR, vendor)
        month = _months(table["submitted_at"], now)
        body = table.drop_columns(["vendor"])
        keys = pc.binary_join_element_wise(month, vendor, "/")
        for key in distinct(keys):
            m, v = key.split("/", 1)
            piece = body.filter(pc.equal(keys, key))
            root.write_table(piece, DATASET, f"month={m}", f"vendor={v}", name)
    return root.path(DATASET)
