"""Writing a campaign's outputs: three Parquet datasets and the analyst's ``report.html``.

Each run writes the same file names (``part-00000.parquet`` …) and removes any
an earlier run left beyond them, so a rerun replaces its outputs, never adds.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data import html_report
from sms_provider.data.reconcile.outcomes import Rows
from sms_provider.data.reconcile.statuses import DiscrepancyKind, FinalStatus
from sms_provider.data.storage import DataRoot

#: rows per output file at least (files are written in parallel)
ROWS_PER_FILE = 1_000_000


def write_dataset(root: DataRoot, table: pa.Table, campaign_id: str, name: str) -> str:
    """``part-00000.parquet`` …, the same names each run: a rerun replaces, never adds.

    Big tables are cut in as many files as there are CPUs and written side by
    side (the Parquet encoder is single-threaded; this halves the time on two).
    """
    parts = max(1, min(os.cpu_count() or 1, table.num_rows // ROWS_PER_FILE))
    step = -(-table.num_rows // parts) if table.num_rows else 0
    names = [f"part-{i:05d}.parquet" for i in range(parts)]

    def write(i: int) -> str:
        piece = table.slice(i * step, step) if parts > 1 else table
        return root.write_table(piece, *root.campaign(campaign_id, name, names[i]))

    with ThreadPoolExecutor(parts) as pool:
        written = set(pool.map(write, range(parts)))
    for path in root.parquet_files(*root.campaign(campaign_id, name)):
        if path not in written and path.rsplit("/", 1)[-1] not in names:
            root.fs.delete_file(path)  # an earlier run cut the table in more files
    return root.path(*root.campaign(campaign_id, name))


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

def failure_reasons(table: pa.Table, rows: Rows, top: int = 10) -> list[tuple[str, int]]:
    """The commonest reasons of FAILED rows, the rest as ``other``."""
    reasons = table["reason"].filter(pa.array(rows.final == FinalStatus.FAILED))
    counts = sorted(((r["values"] or "(none)", r["counts"])
                     for r in pc.value_counts(reasons).to_pylist()),
                    key=lambda item: (-item[1], item[0]))
    if len(counts) > top:
        counts = [*counts[:top - 1], ("other", sum(c for _, c in counts[top - 1:]))]
    return counts


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
