"""Writing a campaign's outputs: three Parquet datasets and the analyst's ``report.html``.

Each run writes the same file names (``part-00000.parquet`` …) and removes any
an earlier run left beyond them, so a rerun replaces its outputs, never adds.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data import html_report
from sms_provider.data.reconcile.columns import dictionary_columns
from sms_provider.data.reconcile.outcomes import Rows
from sms_provider.data.reconcile.statuses import DiscrepancyKind
from sms_provider.data.storage import DataRoot, ParquetSink

#: rows per output file at least (as many files as CPUs, so readers can split the work)
ROWS_PER_FILE = 1_000_000


class DatasetSink:
    """``part-00000.parquet`` …, written a slice of rows at a time, the same names each run.

    A table of ``total_rows`` is cut in as many files as there are CPUs (at
    least ``ROWS_PER_FILE`` rows each), each file holding its share of the rows
    in order; slices go to whichever file their rows belong to, so no file and
    no table has to be whole in memory. Files an earlier run left beyond these
    names are removed on :meth:`close`: a rerun replaces, never adds.
    """

    def __init__(self, root: DataRoot, schema: pa.Schema, campaign_id: str, name: str,
                 total_rows: int) -> None:
        self.root, self.schema, self.campaign_id, self.name = root, schema, campaign_id, name
        self.files = max(1, min(os.cpu_count() or 1, total_rows // ROWS_PER_FILE))
        self.step = -(-total_rows // self.files) if total_rows else 0
        self.names = [f"part-{i:05d}.parquet" for i in range(self.files)]
        self.sinks: dict[int, ParquetSink] = {}
        self.written = 0

    def _sink(self, i: int) -> ParquetSink:
        if i not in self.sinks:
            self.sinks[i] = self.root.open_parquet(
                self.schema, *self.root.campaign(self.campaign_id, self.name, self.names[i]),
                dictionary=dictionary_columns(self.schema))
        return self.sinks[i]

    def write(self, table: pa.Table) -> None:
        """The next rows, in order."""
        while table.num_rows:
            i = min(self.written // self.step, self.files - 1)
            take = (table.num_rows if i == self.files - 1
                    else min(table.num_rows, (i + 1) * self.step - self.written))
            self._sink(i).write(table.slice(0, take))
            table = table.slice(take)
            self.written += take

    def abort(self) -> None:
        """Drop the files begun (those of the last whole run are only replaced on close)."""
        for sink in self.sinks.values():
            sink.abort()

    def close(self) -> str:
        """Finish every file (one with no rows still has the columns) and drop older ones."""
        written = {self._sink(i).close() for i in range(self.files)}
        for path in self.root.parquet_files(*self.root.campaign(self.campaign_id, self.name)):
            if path not in written and path.rsplit("/", 1)[-1] not in self.names:
                self.root.fs.delete_file(path)  # an earlier run cut the table in more files
        return self.root.path(*self.root.campaign(self.campaign_id, self.name))


def write_dataset(root: DataRoot, table: pa.Table, campaign_id: str, name: str) -> str:
    """A whole (small) table as ``DatasetSink`` lays it out."""
    sink = DatasetSink(root, table.schema, campaign_id, name, table.num_rows)
    sink.write(table)
    return sink.close()


def write_text(root: DataRoot, text: str, *parts: str) -> str:
    """One UTF-8 file, renamed into place where the filesystem is local."""
    target = root.path(*parts)
    root.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    data = text.encode("utf-8")
    if not root.is_local:
        with root.fs.open_output_stream(target) as out:
            out.write(data)
        return target
    tmp = f"{target}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    root.fs.move(tmp, target)
    return target


# --- what the analyst's report shows -------------------------------------------------

def latency_histogram(rows: Rows) -> list[int]:
    """Rows per ``html_report.LATENCY_EDGES_S`` bucket of report latency."""
    latency = rows.latency_s[~np.isnan(rows.latency_s)]
    inner = np.asarray(html_report.LATENCY_EDGES_S[1:-1], dtype=float)
    bins = np.searchsorted(inner, np.maximum(latency, 0), side="right")
    return np.bincount(bins, minlength=len(inner) + 1).tolist()


def discrepancy_preview(table: pa.Table, per_kind: int = 20) -> list[dict[str, Any]]:
    """The first few discrepancies of each kind (the Parquet dataset has them all)."""
    out: list[dict[str, Any]] = []
    for kind in DiscrepancyKind.ALL:
        out.extend(table.filter(pc.equal(table["kind"], kind)).slice(0, per_kind).to_pylist())
    return out
