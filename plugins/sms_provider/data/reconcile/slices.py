"""The per-recipient outputs, built and written a slice of prepared rows at a time.

The figures per recipient (:class:`~sms_provider.data.reconcile.outcomes.Rows`:
small NumPy arrays) are computed for the whole campaign at once; the table
they turn into (``reconciliation/``, its text columns above all) is several
times their size, and written twice (the campaign's own dataset and the
cross-campaign one). So the prepared text columns are read a slice at a
time, in file order, each slice's table is built, counted (FAILED reasons,
carriers, charged-never-reported) and handed to a writer thread, and the next
slice is built while it is written. At most two slices are held at once,
whatever the campaign's size; the files hold what writing the whole table
would have written.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from sms_provider.data.carriers import CARRIERS
from sms_provider.data.reconcile.discrepancies import charged_never_reported
from sms_provider.data.reconcile.money import Pricing, money_columns
from sms_provider.data.reconcile.outcomes import CampaignPart, Rows, Settings, reconciliation_table
from sms_provider.data.reconcile.shared import SharedSink, unsent_month_ms
from sms_provider.data.reconcile.tallies import FailureTally
from sms_provider.data.reconcile.writer import DatasetSink
from sms_provider.data.schemas import DISCREPANCY_SCHEMA, PREPARED_SCHEMA, RECONCILIATION_SCHEMA
from sms_provider.data.storage import DataRoot

#: prepared rows per slice: big enough that per-slice costs vanish, small enough that
#: two slices' tables are a small part of the memory
SLICE_ROWS = 100_000
#: the prepared columns the table takes as they are (read a slice at a time)
PREPARED_TEXT = ["row_number", "mobile", "custom_id", "e164", "carrier"]


@dataclass
class RecipientOutputs:
    """What the rest of the run needs from the per-recipient rows once they are written."""

    paths: dict[str, str]
    charged_never_reported: pa.Table
    failures: FailureTally
    carrier: np.ndarray  # per row its index in CARRIERS


def prepared_slices(root: DataRoot, campaign_id: str, rows: int) -> Iterator[pa.Table]:
    """``PREPARED_TEXT`` of the campaign's prepared rows, ``rows`` at a time, in the order a
    whole read gives them (files sorted, rows in file order)."""
    files = root.parquet_files(*root.campaign(campaign_id, "prepared"))
    if not files:
        return
    data = ds.dataset(files, filesystem=root.fs, format="parquet", schema=PREPARED_SCHEMA)
    held: pa.Table | None = None
    # no read-ahead beyond the next batch: by default a scan reads many files ahead; and
    # pages read as they are decoded, not a whole row group's columns (a million rows of
    # text) at once
    paged = ds.ParquetFragmentScanOptions(use_buffered_stream=True, buffer_size=1 << 20,
                                          pre_buffer=False)
    for batch in data.to_batches(columns=PREPARED_TEXT, batch_size=rows, batch_readahead=1,
                                 fragment_readahead=1, fragment_scan_options=paged):
        piece = pa.Table.from_batches([batch])
        held = piece if held is None else pa.concat_tables([held, piece])
        while held.num_rows >= rows:
            yield held.slice(0, rows)
            held = held.slice(rows)
    if held is not None and held.num_rows:
        yield held


def write_recipient_rows(root: DataRoot, campaign_id: str, parts: list[CampaignPart],
                         rows: Rows, pricing: Pricing, settings: Settings, now: datetime,
                         *, slice_rows: int | None = None) -> RecipientOutputs:
    """Write ``reconciliation/`` and this campaign's part of the cross-campaign dataset,
    a slice at a time; return the counts the other outputs are made of."""
    n = len(rows.part)
    step = max(1, slice_rows or SLICE_ROWS)
    own = DatasetSink(root, RECONCILIATION_SCHEMA, campaign_id, "reconciliation", n)
    shared = SharedSink(root, RECONCILIATION_SCHEMA, campaign_id,
                        unsent_month_ms(rows.submitted_ms, now))
    out = RecipientOutputs(paths={}, charged_never_reported=DISCREPANCY_SCHEMA.empty_table(),
                           failures=FailureTally(), carrier=np.zeros(n, np.int8))
    charged: list[pa.Table] = []

    try:  # a failure halfway leaves no half-written file behind
        lo = _write_slices(root, campaign_id, parts, rows, pricing, settings, step, own,
                           shared, out, charged)
        if lo != n:
            raise RuntimeError(f"prepared/ of {campaign_id} changed while it was reconciled:"
                               f" {lo} rows read a slice at a time, {n} at first")
    except BaseException:
        own.abort()
        shared.abort()
        raise
    out.paths = {"reconciliation": own.close(), "shared_reconciliation": shared.close()}
    out.charged_never_reported = pa.concat_tables([out.charged_never_reported, *charged])
    return out


def _write_slices(root: DataRoot, campaign_id: str, parts: list[CampaignPart], rows: Rows,
                  pricing: Pricing, settings: Settings, step: int, own: DatasetSink,
                  shared: SharedSink, out: RecipientOutputs, charged: list[pa.Table]) -> int:
    """The loop of :func:`write_recipient_rows`; returns the rows written."""
    lo = 0
    with ThreadPoolExecutor(2) as pool:  # the two datasets are encoded side by side
        pending: list[Future[None]] = []
        for text in prepared_slices(root, campaign_id, step):
            hi = lo + text.num_rows
            r, price = rows.slice(lo, hi), pricing.slice(lo, hi)
            extra = money_columns(parts, r, price, text["e164"], text["carrier"])
            table = reconciliation_table(campaign_id, text, parts, r, extra)
            del extra
            out.failures.add(table, r, price.owner)
            out.carrier[lo:hi] = np.asarray(
                pc.index_in(table["carrier"], value_set=pa.array(CARRIERS))
                .fill_null(len(CARRIERS) - 1).to_numpy(zero_copy_only=False))
            charged.append(charged_never_reported(table, r, settings))
            for done in pending:  # one slice being written while the next is built
                done.result()
            pending = [pool.submit(own.write, table), pool.submit(shared.write, table)]
            del table
            lo = hi
        for done in pending:
            done.result()
    return lo
