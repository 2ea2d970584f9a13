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
from sms_provider.data.storage import DataRoot, ParquetSink

DATASET = "reconciliation"
#: the partition keys, in path order
PARTITIONS = ("month", "vendor")
#: ``vendor`` of rows that never reached any connection
NO_VENDOR = "none"


def partition_schema() -> pa.Schema:
    """The partition keys' types (text), for ``pyarrow.dataset.partitioning(flavor="hive")``."""
    return pa.schema([(name, pa.string()) for name in PARTITIONS])


def _months(submitted: pa.ChunkedArray, fallback_ms: int) -> pa.Array:
    when = ms(submitted, -1)
    local = np.where(when >= 0, when, fallback_ms) + CHINA_OFFSET_MS
    stamps = pa.array(local, pa.timestamp("ms"))
    return pc.strftime(stamps, format="%Y-%m")


def unsent_month_ms(submitted_ms: np.ndarray, now: datetime) -> int:
    """The moment whose month a row never sent is filed under: the campaign's first
    submission, or the run."""
    sent = submitted_ms[submitted_ms >= 0]
    return int(sent.min()) if len(sent) else int(now.timestamp() * 1000)


class SharedSink:
    """This campaign's files in ``reconciliation/``, written a slice of rows at a time.

    Opening deletes the campaign's files under every partition; each slice's rows
    go to their partition's file, in order; :meth:`close` puts the files in place.
    """

    def __init__(self, root: DataRoot, schema: pa.Schema, campaign_id: str,
                 unsent_ms: int) -> None:
        self.root, self.unsent_ms = root, unsent_ms
        self.name = f"{campaign_id.replace('/', '+')}.parquet"  # an attempt: <id>+attempt-2
        self.schema = schema.remove(schema.get_field_index("vendor"))
        for path in root.list_files(DATASET):
            if path.rsplit("/", 1)[-1] == self.name:
                root.fs.delete_file(path)
        self.sinks: dict[str, ParquetSink] = {}

    def write(self, table: pa.Table) -> None:
        """The next rows of the campaign's ``reconciliation/`` table."""
        if not table.num_rows:
            return
        vendor = pc.fill_null(table["vendor"], NO_VENDOR)
        vendor = pc.if_else(pc.equal(vendor, ""), NO_VENDOR, vendor)
        keys = pc.binary_join_element_wise(_months(table["submitted_at"], self.unsent_ms),
                                           vendor, "/")
        body = table.drop_columns(["vendor"])
        for key in distinct(keys):
            if key not in self.sinks:
                m, v = key.split("/", 1)
                self.sinks[key] = self.root.open_parquet(
                    self.schema, DATASET, f"month={m}", f"vendor={v}", self.name)
            self.sinks[key].write(body.filter(pc.equal(keys, key)))

    def abort(self) -> None:
        """Drop the files begun (the campaign's earlier ones were deleted on opening)."""
        for sink in self.sinks.values():
            sink.abort()

    def close(self) -> str:
        for sink in self.sinks.values():
            sink.close()
        return self.root.path(DATASET)
