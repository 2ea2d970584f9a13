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

from sms_provider.data.reconcile.columns import CHINA_OFFSET_MS, dictionary_columns, ms
from sms_provider.data.storage import DataRoot, ParquetSink

DATASET = "reconciliation"
#: the partition keys, in path order
PARTITIONS = ("month", "vendor")
#: ``vendor`` of rows that never reached any connection
NO_VENDOR = "none"


def partition_schema() -> pa.Schema:
    """The partition keys' types (text), for ``pyarrow.dataset.partitioning(flavor="hive")``."""
    return pa.schema([(name, pa.string()) for name in PARTITIONS])


def _months(submitted: pa.ChunkedArray, fallback_ms: int) -> np.ndarray:
    """Per row its China month as months since 1970-01 (NumPy's ``datetime64[M]``): text
    per row (``strftime``) cost more than writing the rows."""
    when = ms(submitted, -1)
    local = np.where(when >= 0, when, fallback_ms) + CHINA_OFFSET_MS
    return local.astype("datetime64[ms]").astype("datetime64[M]").astype(np.int64)


def _month_label(month: int) -> str:
    """``2026-03`` for a month counted as :func:`_months` does."""
    return str(np.datetime64(month, "M"))


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
        self.sinks: dict[tuple[str, str], ParquetSink] = {}

    def write(self, table: pa.Table) -> None:
        """The next rows of the campaign's ``reconciliation/`` table."""
        if not table.num_rows:
            return
        vendor = pc.fill_null(table["vendor"], NO_VENDOR)
        vendor = pc.if_else(pc.equal(vendor, ""), NO_VENDOR, vendor)
        vendor = pc.dictionary_encode(vendor.combine_chunks() if isinstance(
            vendor, pa.ChunkedArray) else vendor)
        names = vendor.dictionary.to_pylist()
        key = _months(table["submitted_at"], self.unsent_ms) * len(names) + \
            vendor.indices.to_numpy(zero_copy_only=False)
        body = table.drop_columns(["vendor"])
        first = int(key[0])
        if (key == first).all():
            keys = [first]
        else:  # in order of first appearance, as the rows come
            values, where = np.unique(key, return_index=True)
            keys = values[np.argsort(where)].tolist()
        for k in keys:
            month, name = _month_label(k // len(names)), names[k % len(names)]
            if (month, name) not in self.sinks:
                self.sinks[month, name] = self.root.open_parquet(
                    self.schema, DATASET, f"month={month}", f"vendor={name}", self.name,
                    dictionary=dictionary_columns(self.schema))
            self.sinks[month, name].write(body if len(keys) == 1
                                          else body.filter(pa.array(key == k)))

    def abort(self) -> None:
        """Drop the files begun (the campaign's earlier ones were deleted on opening)."""
        for sink in self.sinks.values():
            sink.abort()

    def close(self) -> str:
        for sink in self.sinks.values():
            sink.close()
        return self.root.path(DATASET)
