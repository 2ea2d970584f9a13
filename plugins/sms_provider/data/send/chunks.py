"""Cutting a shard into requests: chunks, their fingerprints and per-request custom ids.

The same prepared rows always give the same chunks, so a rerun recognises its
chunks in the ledger and refuses changed ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.vendors.base import OutboundBatch


class Chunk:
    """One request's worth of a shard: a run of planned rows, kept as Arrow columns.

    A million-recipient shard held as Python message objects keeps the garbage
    collector walking them for the whole send; as Arrow slices it costs nothing
    until a worker builds the messages of the one request it is making.
    """

    __slots__ = ("fingerprint", "index", "rows", "uniform")

    def __init__(self, index: int, fingerprint: str, rows: pa.Table,
                 uniform: frozenset[str] = frozenset()) -> None:
        self.index = index
        self.fingerprint = fingerprint
        #: row_number, mobile, content, custom_id (as the vendor gets it), variables
        self.rows = rows
        #: columns that hold one value throughout, by the plan's construction
        self.uniform = uniform

    def __len__(self) -> int:
        return self.rows.num_rows

    def __repr__(self) -> str:
        return (f"Chunk(index={self.index}, recipients={len(self)}, "
                f"fingerprint={self.fingerprint!r})")

    def column(self, name: str) -> list[Any]:
        """One planned column as Python values (through numpy: several times faster
        than ``to_pylist``, which makes an Arrow scalar per value); a uniform column
        repeats one Python value instead of making a string per recipient."""
        if name in self.uniform and len(self):
            return [self.rows[name][0].as_py()] * len(self)
        return self.rows[name].to_numpy().tolist()

    @property
    def row_numbers(self) -> list[int]:
        return self.column("row_number")

    @property
    def custom_ids(self) -> list[str | None]:
        return self.column("custom_id")

    @property
    def messages(self) -> OutboundBatch:
        """The request's messages, built anew on each call (they are not kept)."""
        variables = self.rows["variables"]
        parsed: list[Any] = [None] * len(self)
        if variables.null_count < len(variables):  # each distinct text parsed once
            seen: dict[str, Any] = {}
            parsed = [seen[v] if v in seen else seen.setdefault(v, json.loads(v) if v else None)
                      for v in self.column("variables")]
        contents = self.column("content")
        if None in contents:
            contents = [content or "" for content in contents]
        return OutboundBatch(self.column("mobile"), contents, self.custom_ids, parsed)


def request_reference(campaign_id: str, shard: int, chunk: int) -> str:
    """A per-request custom id (EUMS reference): ≤50 chars, no ``,`` or ``;``."""
    digest = hashlib.sha1(campaign_id.encode()).hexdigest()[:10]
    return f"{digest}-{shard}-{chunk}"


def plan_chunks(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                personalised: bool, custom_id_scope: str | None) -> list[Chunk]:
    """Cut a shard into requests: identical content together unless the vendor personalises."""
    return list(iter_chunks(table, campaign_id=campaign_id, shard=shard, max_batch=max_batch,
                            personalised=personalised, custom_id_scope=custom_id_scope))


def iter_chunks(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                personalised: bool, custom_id_scope: str | None) -> Iterator[Chunk]:
    """:func:`plan_chunks` one chunk at a time.

    Rows go by row number; unless the vendor personalises, rows of one content
    go together, contents in the order they first appear. Each chunk's
    fingerprint is the SHA-256 of its rows' lines (row number, mobile, content,
    custom id, variables; tab-separated, ``None`` for a missing value), so a
    rerun recognises its chunks and refuses changed ones.
    """
    planned, starts = _planned_rows(table, campaign_id=campaign_id, shard=shard,
                                    max_batch=max_batch, personalised=personalised,
                                    custom_id_scope=custom_id_scope)
    # the same content throughout a chunk unless the vendor personalises; the same id
    # throughout unless ids are per message
    uniform = frozenset(({"content"} if not personalised else set())
                        | ({"custom_id"} if custom_id_scope != "message" else set()))
    index = 0
    chunks = len(starts) - 1
    while index < chunks:  # lines a block at a time: the first request leaves sooner
        last = index
        block = _FINGERPRINT_BLOCK_ROWS if index else 0  # the first chunk on its own
        while last < chunks and starts[last + 1] - starts[index] <= block:
            last += 1
        last = max(last, index + 1)
        base = starts[index]
        offsets, data = _fingerprint_lines(planned.slice(base, starts[last] - base))
        for i in range(index, last):
            start, stop = starts[i] - base, starts[i + 1] - base
            digest = hashlib.sha256(data[offsets[start]:offsets[stop] - 1]).hexdigest()[:32]
            yield Chunk(i, digest, planned.slice(starts[i], starts[i + 1] - starts[i]),
                        uniform)
        index = last


#: rows whose fingerprint lines are built at once
_FINGERPRINT_BLOCK_ROWS = 1 << 15
_PLANNED_COLUMNS = ("row_number", "mobile", "content", "custom_id", "variables")


def _planned_rows(table: pa.Table, *, campaign_id: str, shard: int, max_batch: int,
                  personalised: bool, custom_id_scope: str | None
                  ) -> tuple[pa.Table, list[int]]:
    """The rows in send order with the custom id each request carries, and where each
    chunk starts (one entry more than there are chunks)."""
    if not _ascending(table["row_number"]):  # prepared shards already are: no copy
        table = table.sort_by("row_number")
    n = table.num_rows

    def column(name: str, kind: pa.DataType, default: pa.Array) -> pa.ChunkedArray | pa.Array:
        return pc.cast(table[name], kind) if name in table.column_names else default

    row_number = column("row_number", pa.int64(), pa.nulls(n, pa.int64()))
    mobile = column("mobile", pa.string(), pa.nulls(n, pa.string()))
    content = column("content", pa.string(), pa.array([""] * n, pa.string()))
    variables = column("variables", pa.string(), pa.nulls(n, pa.string()))
    custom_id = column("custom_id", pa.string(), pa.nulls(n, pa.string()))
    order = None
    if personalised or n == 0:
        group_sizes = np.array([n] if n else [], dtype=np.int64)
    else:
        groups = pc.dictionary_encode(content, null_encoding="encode")
        codes = (np.concatenate([chunk.indices.to_numpy() for chunk in groups.chunks])
                 if isinstance(groups, pa.ChunkedArray) else groups.indices.to_numpy())
        if np.any(codes[1:] < codes[:-1]):  # some content comes back after another
            order = np.argsort(codes, kind="stable")  # by first appearance, rows in order
        group_sizes = np.bincount(codes)
    sizes = _chunk_sizes(group_sizes, max_batch)  # a chunk never spans two groups
    chunk_of_row = np.repeat(np.arange(sizes.size), sizes)
    starts = [0, *np.cumsum(sizes).tolist()]
    planned = pa.table({"row_number": row_number, "mobile": mobile, "content": content,
                        "custom_id": custom_id, "variables": variables})
    if order is not None:
        planned = planned.take(pa.array(order))
    if custom_id_scope == "request":
        refs = pa.array([request_reference(campaign_id, shard, index)
                         for index in range(len(starts) - 1)], pa.string())
        planned = planned.set_column(3, "custom_id", refs.take(pa.array(chunk_of_row)))
    elif custom_id_scope != "message":
        planned = planned.set_column(3, "custom_id", pa.nulls(n, pa.string()))
    return planned, starts


def _ascending(values: pa.ChunkedArray | pa.Array) -> bool:
    numbers = values.to_numpy()
    return bool(np.all(numbers[1:] >= numbers[:-1]))


def _chunk_sizes(group_sizes: np.ndarray, max_batch: int) -> np.ndarray:
    """Each group cut into requests of ``max_batch`` rows, the last one holding the rest."""
    full, rest = np.divmod(group_sizes, max_batch)
    counts = full + (rest > 0)
    sizes = np.full(int(counts.sum()), max_batch, dtype=np.int64)
    last = np.cumsum(counts) - 1
    sizes[last[rest > 0]] = rest[rest > 0]
    return sizes


def _fingerprint_lines(planned: pa.Table) -> tuple[np.ndarray, memoryview]:
    """Every planned row as its fingerprint line plus a newline, in one buffer.

    Returns the line offsets and the bytes: a chunk's text is one contiguous
    slice, hashed without a Python string per row.
    """
    none = pa.scalar("None", pa.large_string())
    fields = [pc.fill_null(pc.cast(planned[name], pa.large_string()), none)
              for name in _PLANNED_COLUMNS]  # 64-bit offsets: a shard may pass 2 GiB
    tab, newline = pa.scalar("\t", pa.large_string()), pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*fields, tab),
                                        pa.scalar("", pa.large_string()), newline)
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    _, offsets_buffer, data_buffer = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        lines.offset:lines.offset + len(lines) + 1]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    return offsets, data
