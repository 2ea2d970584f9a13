"""What the ledger keeps of a settled chunk, and the submissions table built from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.ledger import (
    FINAL_STATES,
    ChunkRecord,
)
from sms_provider.data.schemas import SUBMISSION_SCHEMA
from sms_provider.data.send.chunks import Chunk
from sms_provider.models import AcceptedBatch, Submission, SubmissionStatus


@dataclass
class ShardResult:
    counts: dict[str, int] = field(default_factory=dict)
    table: pa.Table | None = None
    unsent_chunks: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.unsent_chunks == 0


OUTCOME_FIELDS = ("message_id", "custom_id", "charge_items", "vendor_code", "status",
                  "description")


def _outcome(subs: Sequence[Submission]) -> dict[str, Any]:
    """Per recipient, by column: what the ledger keeps of a settled chunk."""
    if isinstance(subs, AcceptedBatch):
        columns = subs.by_column()
    else:
        columns = {"message_id": [s.message_id for s in subs],
                   "custom_id": [s.custom_id for s in subs],
                   "charge_items": [s.charge_items for s in subs],
                   "vendor_code": [s.vendor_code for s in subs],
                   "status": [s.status.value for s in subs],
                   "description": [s.description for s in subs]}
    return {name: _stored(columns[name]) if isinstance(columns[name], list)
            else columns[name] for name in OUTCOME_FIELDS}


def _for_ledger(outcome: dict[str, Any]) -> dict[str, Any]:
    """The outcome as the ledger stores it: a run of consecutive ids as its first."""
    ids = outcome["message_id"]
    run = _id_run(ids) if isinstance(ids, list) else None
    return {**outcome, "message_id": run} if run else outcome


def _stored(values: list[Any]) -> Any:
    """A column as the ledger keeps it: one value when every recipient shares it.

    Most columns of a chunk are uniform (status, charge items, the request's
    reference); a single value keeps the synced ledger write a third the size.
    """
    if values and values.count(values[0]) == len(values):
        return values[0]
    return values


#: the key of a stored message id column that is one run of consecutive numbers
ID_RUN = "consecutive_from"


def _id_run(ids: list[Any]) -> dict[str, str] | None:
    """``{ID_RUN: first}`` when the ids are consecutive decimal numbers of one width.

    Gateways number the messages of one request in sequence (EUMS's own example
    answer does), and a thousand ids are most of what a synced ledger commit
    writes; the first one says it all. Anything else stays a list. Checked
    without a Python step per id: strings of digits of one width, ascending,
    all different, spanning exactly as many numbers as there are ids, can only
    be consecutive (and a width-w digit string is its number's only spelling).
    """
    try:
        joined = "".join(ids)
    except TypeError:  # an id that is not a string
        return None
    # bytes.isdigit: str.isdigit looks each character up in the Unicode tables
    if not (joined.isascii() and joined.encode("ascii").isdigit()):
        return None
    first, last = ids[0], ids[-1]
    if (set(map(len, ids)) != {len(first)} or int(last) - int(first) != len(ids) - 1
            or int(last) >= 2**63 or ids != sorted(ids) or len(set(ids)) != len(ids)):
        return None
    return {ID_RUN: first}


def _uniform(n: int, **values: Any) -> dict[str, Any]:
    return {name: values[name] for name in OUTCOME_FIELDS}


@dataclass(frozen=True)
class SettledColumns:
    """A settled chunk's outcome, ready to join the submissions table.

    Made by the worker that settled the chunk, while other requests are still
    out, so the table at the end is only put together. A column the chunk
    holds one value in stays that Python value: the table expands such values
    for all chunks in one step instead of an Arrow call per chunk and column.
    """

    outcome: dict[str, pa.Array | Any]  # OUTCOME_FIELDS; custom_id: the vendor's, else ours
    counts: dict[str, int]


def settled_columns(chunk: Chunk, record: ChunkRecord) -> SettledColumns | None:
    """The chunk's columns from its ledger record; None while its outcome is open."""
    if record.state not in FINAL_STATES:
        return None
    n = len(chunk)
    outcome = record.outcome or _uniform(
        n, message_id=None, custom_id=None, charge_items=0, vendor_code=None,
        status=SubmissionStatus.AMBIGUOUS.value, description=record.last_error or "")
    columns = {name: (_outcome_array(value, n, name)
                      if isinstance(value, list | dict) else _description(name, value))
               for name, value in ((name, outcome.get(name)) for name in OUTCOME_FIELDS)}
    # the vendor's echo of our id where it gave one, else the id the request carried
    echoed = columns["custom_id"]
    if echoed is None:
        columns["custom_id"] = chunk.rows["custom_id"].combine_chunks()
    elif isinstance(echoed, pa.Array):
        columns["custom_id"] = pc.coalesce(echoed, chunk.rows["custom_id"].combine_chunks())
    status = outcome.get("status")
    counts = dict(Counter(status)) if isinstance(status, list) else {status: n}
    return SettledColumns(columns, counts)


def build_result(campaign_id: str, shard: int, chunks: Sequence[Chunk],
                 records: Sequence[ChunkRecord], *, conn_id: str = "", vendor: str = "",
                 settled: Sequence[SettledColumns | None] | None = None) -> ShardResult:
    """Submissions of every settled chunk: the plan's columns joined to the ledger's outcomes.

    Built chunk by chunk as Arrow arrays, a column the vendor answered alike
    for the whole chunk as one repeated value: no Python object per recipient.
    ``settled`` holds the chunks' columns where they were made already.
    """
    result = ShardResult()
    columns: dict[str, list[Any]] = {name: [] for name in OUTCOME_FIELDS}
    planned: dict[str, list[pa.Array]] = {"row_number": [], "mobile": []}
    chunk_index: list[int] = []
    stamps: list[int] = []
    sizes: list[int] = []
    counts: Counter[str] = Counter()
    for i, (chunk, rec) in enumerate(zip(chunks, records, strict=True)):
        done = (settled[i] if settled is not None else None) or settled_columns(chunk, rec)
        if done is None:
            result.unsent_chunks += 1
            if rec.last_error:
                result.errors.append(f"chunk {chunk.index}: {rec.last_error}")
            continue
        for name in OUTCOME_FIELDS:
            columns[name].append(done.outcome[name])
        for name, pieces in planned.items():
            pieces.extend(chunk.rows[name].chunks)
        counts.update(done.counts)
        chunk_index.append(chunk.index)
        stamps.append(int(rec.updated_at * 1000))
        sizes.append(len(chunk))
    total = sum(sizes)

    def column(name: str, pieces: list[pa.Array]) -> pa.ChunkedArray:
        return pa.chunked_array(pieces, SUBMISSION_SCHEMA.field(name).type)

    def constant(name: str, value: Any) -> pa.Array:
        return pa.repeat(pa.scalar(value, SUBMISSION_SCHEMA.field(name).type), total)

    result.counts = dict(counts)
    result.table = pa.table({
        "campaign_id": constant("campaign_id", campaign_id),
        "conn_id": constant("conn_id", conn_id), "vendor": constant("vendor", vendor),
        "shard": constant("shard", shard),
        "chunk": np.repeat(np.array(chunk_index, dtype=np.int32), sizes),
        **{name: column(name, pieces) for name, pieces in planned.items()},
        **{name: _expanded(pieces, sizes, SUBMISSION_SCHEMA.field(name).type)
           for name, pieces in columns.items()},
        "submitted_at": np.repeat(np.array(stamps, dtype=np.int64), sizes),
    }, schema=SUBMISSION_SCHEMA)
    return result


def _joined(parts: Sequence[ShardResult]) -> ShardResult:
    """Consecutive blocks' results as the one result of the shard."""
    counts: Counter[str] = Counter()
    for part in parts:
        counts.update(part.counts)
    return ShardResult(counts=dict(counts),
                       table=pa.concat_tables([part.table for part in parts
                                               if part.table is not None]),
                       unsent_chunks=sum(part.unsent_chunks for part in parts),
                       errors=[error for part in parts for error in part.errors])


def _outcome_array(values: list[Any] | dict[str, str], n: int, name: str) -> pa.Array:
    """A stored per-recipient outcome column of a chunk as Arrow (descriptions never
    null): a list, or a run of consecutive message ids."""
    if isinstance(values, dict):
        first = values[ID_RUN]
        numbers = pa.array(np.arange(int(first), int(first) + n, dtype=np.int64))
        return pc.utf8_lpad(pc.cast(numbers, pa.string()), len(first), "0")
    if name == "description":
        values = [value or "" for value in values]
    return pa.array(values, SUBMISSION_SCHEMA.field(name).type)


def _description(name: str, value: Any) -> Any:
    return (value or "") if name == "description" else value


def _expanded(pieces: list[pa.Array | Any], sizes: list[int], kind: pa.DataType
              ) -> pa.ChunkedArray:
    """The chunks' pieces of one column as one column: a piece that is a plain value
    stands for that value repeated over its chunk's rows. When every piece is one,
    the whole column is one ``take``, not an Arrow call per chunk."""
    if all(isinstance(piece, pa.Array) for piece in pieces):
        return pa.chunked_array(pieces, kind)
    if not any(isinstance(piece, pa.Array) for piece in pieces):
        runs = np.repeat(np.arange(len(pieces), dtype=np.int64), sizes)
        return pa.chunked_array([pa.array(pieces, kind).take(runs)], kind)
    return pa.chunked_array(
        [piece if isinstance(piece, pa.Array) else pa.repeat(pa.scalar(piece, kind), size)
         for piece, size in zip(pieces, sizes, strict=True)], kind)
