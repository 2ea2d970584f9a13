"""Recipients file in, ``prepared/`` and ``rejected/`` out: every input row accounted for.

Each input row ends in exactly one of the two datasets; a rejected row keeps
its row number, raw value and the first reason it failed (number, content,
duplicate, suppression, in that order). The output is a pure function of the
input, so a rerun writes the same files and the send ledger's fingerprints
still match. Both datasets are written under :mod:`sms_provider.data.completion`'s
marker: a prepare that fails partway leaves nothing a later run reads as whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.carriers import carrier_column
from sms_provider.data.completion import mark_finished, mark_unfinished, require_finished
from sms_provider.data.content import (
    ContentTemplate,
    ContentTemplateError,
    charge_items,
    first_control_character,
    holds_control_character,
)
from sms_provider.data.numbers import check_numbers, format_for_vendor
from sms_provider.data.opt_outs import load_suppressed
from sms_provider.data.recipients import load_recipients, require_single, text_columns
from sms_provider.data.schemas import PREPARED_SCHEMA, REJECTED_SCHEMA
from sms_provider.data.storage import DataRoot
from sms_provider.vendors.profiles import profile_of


@dataclass(frozen=True)
class PrepareSettings:
    campaign_id: str
    vendor: str
    content: str
    mobile_column: str = "mobile"
    max_content_chars: int | None = None
    template_variables: Sequence[str] | None = None  # templates: send these columns as variables
    default_region: str = "CN"
    max_shards: int = 8
    min_shard_rows: int = 5000


@dataclass
class PrepareSummary:
    campaign_id: str
    input_rows: int
    prepared: int
    rejected: int
    shards: list[int]
    estimated_items: int
    reasons: dict[str, int] = field(default_factory=dict)
    encoding: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def custom_id_prefix(campaign_id: str) -> str:
    """8 hex characters: with a row number, a custom id stays well under 32."""
    return hashlib.sha256(campaign_id.encode("utf-8")).hexdigest()[:8]


def shard_count(rows: int, max_shards: int, min_shard_rows: int) -> int:
    return max(1, min(max_shards, math.ceil(rows / max(1, min_shard_rows))))


#: reason codes, in the order they are judged (the first one that applies wins)
_NUMBER, _MISSING, _CONTROL, _TOO_LONG, _DUPLICATE, _SUPPRESSED = 1, 2, 3, 4, 5, 6
_REASONS = pa.array([None, None, "missing_value", "control_character", "content_too_long",
                     "duplicate", "suppressed"], pa.string())
_DETAILS = pa.array([None, "", None, None, None, "number already listed in an earlier row",
                     "number is on the suppression list"], pa.string())


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow column as numpy, null counted as false."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _first_reason(*masks: np.ndarray, rows: int) -> np.ndarray:
    """Per row, 1 + the index of the first mask that is true there, 0 where none is (int8)."""
    codes = np.zeros(rows, dtype=np.int8)
    for code in range(len(masks), 0, -1):
        codes[masks[code - 1]] = code
    return codes


def prepare(root: DataRoot, recipients: str, settings: PrepareSettings) -> PrepareSummary:
    """Validate, personalise, deduplicate and shard; write the two datasets."""
    template = ContentTemplate.parse(settings.content)
    loaded = load_recipients(recipients, mobile_column=settings.mobile_column)
    columns = loaded.table.column_names
    try:
        template.check_columns(columns)
    except ContentTemplateError as exc:
        raise ContentTemplateError(f"{recipients}: {exc}") from None
    missing = [name for name in settings.template_variables or () if name not in columns]
    if missing:
        raise ContentTemplateError(f"{recipients}: template variable(s) {', '.join(missing)} "
                                   f"have no column; its columns are: {', '.join(columns)}")
    # the columns whose values go out: text, one column per name, no control characters
    personal = list(dict.fromkeys([*template.variables, *(settings.template_variables or ())]))
    require_single(loaded, [settings.mobile_column, *personal])
    table = text_columns(loaded, personal)
    raw = table[settings.mobile_column]
    mainland = not profile_of(settings.vendor).sends_abroad
    check = check_numbers(raw, settings.default_region, mainland=mainland)
    # mainland vendors: the national format, without a second mainland pass
    mobile = check.national if mainland else format_for_vendor(check, settings.vendor)
    empties = template.empties(table)
    content = template.render(table, empties)
    limit = settings.max_content_chars
    length = pc.utf8_length(content)
    too_long = _mask(pc.greater(length, limit)) if limit else np.zeros(table.num_rows, bool)
    first_control = _first_reason(*(_mask(holds_control_character(table[name]))
                                    for name in personal), rows=table.num_rows)
    number_bad = _mask(pc.is_valid(check.reason))
    content_ok = _mask(pc.is_valid(content)) & ~too_long & (first_control == 0)
    # Duplicates are judged among rows that would otherwise go out; the first row wins.
    candidate = ~number_bad & content_ok
    # Each vendor format maps one-to-one onto E.164, so duplicates are judged there.
    dup = _mask(_duplicates(check.e164, pa.array(candidate, pa.bool_())))
    suppressed = _mask(pc.is_in(check.e164, value_set=load_suppressed(root)))
    first_empty = _first_reason(*(_mask(empties[name]) for name in template.variables),
                                rows=table.num_rows)
    codes = _first_reason(number_bad, first_empty > 0, first_control > 0, too_long, dup,
                          suppressed, rows=table.num_rows)
    rejected = _rejected(table, raw, codes, check.reason, first_empty, template.variables,
                         length, limit)
    if (codes == _CONTROL).any():
        rejected = _control_details(rejected, table, codes, first_control, personal)
    kept = _Kept(table, np.flatnonzero(codes == 0), mobile, check.e164, content)
    prepared, shards, items = _write(root, settings, kept, rejected)
    reasons = {r["values"]: r["counts"] for r in
               pc.value_counts(rejected["reason"]).to_pylist()} if rejected.num_rows else {}
    return PrepareSummary(
        campaign_id=settings.campaign_id, input_rows=table.num_rows,
        prepared=prepared, rejected=rejected.num_rows, shards=list(range(shards)),
        estimated_items=items, reasons=reasons, encoding=loaded.encoding)


def _rejected(table: pa.Table, raw: pa.ChunkedArray | pa.Array, codes: np.ndarray,
              number_reason: pa.ChunkedArray | pa.Array, first_empty: np.ndarray,
              variables: list[str], length: pa.ChunkedArray | pa.Array,
              limit: int | None) -> pa.Table:
    """The rejected rows with their reason and detail, strings built for those rows only."""
    rows = pa.array(np.flatnonzero(codes), pa.int64())
    code = pa.array(codes[rows.to_numpy()], pa.int8())
    reason = pc.take(_REASONS, code)
    detail = pc.take(_DETAILS, code)
    reason = pc.if_else(pc.equal(code, _NUMBER), pc.take(number_reason, rows), reason)
    if variables:
        names = pa.array([None, *variables], pa.string())
        empty = pc.take(names, pa.array(first_empty[rows.to_numpy()], pa.int8()))
        detail = pc.if_else(pc.equal(code, _MISSING),
                            pc.binary_join_element_wise("empty column ", empty, ""), detail)
    if limit:
        chars = pc.cast(pc.take(length, rows), pa.string())
        detail = pc.if_else(pc.equal(code, _TOO_LONG), pc.binary_join_element_wise(
            chars, f" characters, the limit is {limit}", ""), detail)
    # Filtered (not taken), the columns keep the source's chunks, and so the Parquet
    # pages (cut at chunk boundaries too) come out as they always have.
    rejected = pa.array(codes != 0, pa.bool_())
    raw_value = pc.filter(pc.cast(raw, pa.string()), rejected)
    return pa.table({
        "row_number": pc.filter(table["row_number"], rejected),
        "raw_value": raw_value,
        "reason": _chunked_like(reason, raw_value), "detail": _chunked_like(detail, raw_value),
    }, schema=REJECTED_SCHEMA)


def _control_details(rejected: pa.Table, table: pa.Table, codes: np.ndarray,
                     first_control: np.ndarray, columns: list[str]) -> pa.Table:
    """The detail of rows rejected for a control character: which column, which character
    (built in Python for those rows only; they are few)."""
    rows = np.flatnonzero(codes == _CONTROL)
    which = first_control[rows]
    details = np.empty(rows.size, dtype=object)
    for code, name in enumerate(columns, 1):
        chosen = which == code
        if chosen.any():
            values = pc.take(table[name], pa.array(rows[chosen])).to_pylist()
            details[chosen] = [f"column {name!r} holds the control character "
                               f"{first_control_character(value)}" for value in values]
    positions = np.searchsorted(np.flatnonzero(codes), rows)  # rejected rows, ascending
    detail = rejected["detail"].to_pylist()
    for position, text in zip(positions.tolist(), details.tolist(), strict=True):
        detail[position] = text
    return rejected.set_column(rejected.schema.get_field_index("detail"), "detail",
                               _chunked_like(pa.array(detail, pa.string()),
                                             rejected["row_number"]))


def _chunked_like(values: pa.Array | pa.ChunkedArray, like: pa.Array | pa.ChunkedArray
                  ) -> pa.ChunkedArray:
    """``values`` cut into chunks of the same lengths as ``like``'s (no copies)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(like, pa.ChunkedArray):
        return pa.chunked_array([values], values.type)
    chunks, offset = [], 0
    for chunk in like.chunks:
        chunks.append(values.slice(offset, len(chunk)))
        offset += len(chunk)
    return pa.chunked_array(chunks, values.type)


def _duplicates(e164: pa.ChunkedArray | pa.Array, candidate: pa.ChunkedArray | pa.Array
                ) -> pa.Array:
    """True for every candidate row whose number a candidate row before it already has.

    Keys are the E.164 digits as int64 (at most 15 digits): sorting or hashing
    integers is several times cheaper than hashing ten million strings.
    """
    mask = _mask(candidate)
    rows = np.flatnonzero(mask)
    keys = _int64_keys(e164)
    repeated = np.zeros(len(mask), dtype=bool)
    repeated[rows[_repeats(keys[rows])]] = True
    return pa.array(repeated, pa.bool_())


def _int64_keys(e164: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The E.164 digits as int64, -1 where there is no number; parsed on two threads
    (Arrow's cast releases the GIL)."""
    rows = len(e164)
    half = (rows + 1) // 2

    def part(start: int, length: int) -> np.ndarray:
        piece = pc.fill_null(pc.cast(e164.slice(start, length), pa.int64()), -1)
        if isinstance(piece, pa.ChunkedArray):
            piece = piece.combine_chunks()
        return piece.to_numpy()

    if rows < 1 << 16:
        return part(0, rows) if rows else np.zeros(0, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-keys") as pool:
        return np.concatenate(list(pool.map(part, (0, half), (half, rows - half))))


def _repeats(keys: np.ndarray) -> np.ndarray:
    """Positions of the keys an earlier position already holds.

    Each key and its position are packed into one int64 and sorted: numpy's
    vectorised sort of plain integers is far quicker than an argsort or a hash
    table, and after it a key's first position leads its run. Keys spread too
    wide to pack (numbers of many countries in a huge file) go through a hash
    table instead.
    """
    if keys.size < 2:
        return np.zeros(0, dtype=np.int64)
    low, high = int(keys.min()), int(keys.max())
    position_bits = (keys.size - 1).bit_length()
    if (high - low).bit_length() + position_bits > 62:
        import pandas as pd

        return np.flatnonzero(pd.Series(keys).duplicated(keep="first").to_numpy())
    packed = (keys - low) << position_bits
    packed |= np.arange(keys.size, dtype=np.int64)
    packed.sort()
    run_keys = packed >> position_bits
    later = np.empty(keys.size, dtype=bool)
    later[0] = False
    np.equal(run_keys[1:], run_keys[:-1], out=later[1:])
    return packed[later] & ((1 << position_bits) - 1)


@dataclass(frozen=True)
class _Kept:
    """The source columns and the positions of the rows that go out (ascending)."""

    table: pa.Table
    rows: np.ndarray
    mobile: pa.ChunkedArray | pa.Array
    e164: pa.ChunkedArray | pa.Array
    content: pa.ChunkedArray | pa.Array


def _prepared(kept: _Kept, settings: PrepareSettings, shard: int, start: int, stop: int
              ) -> pa.Table:
    """Shard ``shard``: kept rows ``start`` to ``stop``, taken from the source columns.

    Shards are contiguous runs of kept rows, so each is a filter of one contiguous
    range of source rows.
    """
    n = stop - start
    first, last = int(kept.rows[start]), int(kept.rows[stop - 1]) + 1
    mask = np.zeros(last - first, dtype=bool)
    mask[kept.rows[start:stop] - first] = True
    keep = pa.array(mask, pa.bool_())

    def take(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
        return pc.filter(column.slice(first, last - first), keep)

    row_number = take(kept.table["row_number"])
    content = take(kept.content)
    variables: pa.Array | pa.ChunkedArray
    if settings.template_variables is not None:
        variables_of = ContentTemplate.parse(
            "".join("{" + v + "}" for v in settings.template_variables) or "x")
        variables = (variables_of.variables_json(
                         kept.table.slice(first, last - first).filter(keep))
                     if settings.template_variables else pa.array(["{}"] * n, pa.string()))
    else:
        variables = pa.nulls(n, pa.string())
    custom_ids = pc.binary_join_element_wise(
        custom_id_prefix(settings.campaign_id), pc.cast(row_number, pa.string()), "")
    return pa.table({
        "row_number": row_number,
        "mobile": take(kept.mobile),
        "e164": take(kept.e164),
        "content": content,
        "variables": variables,
        "charge_items": charge_items(content),
        "custom_id": custom_ids,
        "shard": pa.array(np.full(n, shard, dtype=np.int32)),
        "carrier": carrier_column(take(kept.e164)),
    }, schema=PREPARED_SCHEMA)


def _write(root: DataRoot, settings: PrepareSettings, kept: _Kept, rejected: pa.Table
           ) -> tuple[int, int, int]:
    """Replace both datasets under the unfinished-prepare marker (see ``completion``).

    Should any write fail (a full disk), what was written goes again, best effort,
    and the marker stays: readers refuse the campaign until a prepare finishes.
    """
    campaign_id = settings.campaign_id
    mark_unfinished(root, campaign_id)
    try:
        result = _write_datasets(root, settings, kept, rejected)
    except BaseException:
        for name in ("prepared", "rejected"):
            with contextlib.suppress(Exception):
                root.remove_dir(*root.campaign(campaign_id, name))
        raise
    mark_finished(root, campaign_id)
    return result


def _write_datasets(root: DataRoot, settings: PrepareSettings, kept: _Kept,
                    rejected: pa.Table) -> tuple[int, int, int]:
    """Replace both datasets; stale shard files of an earlier, larger run go too.

    Each shard is built and written by one job on a two-thread pool (Arrow and the
    Parquet writer release the GIL). Returns the prepared rows, the number of shards
    and the charge items.
    """
    campaign_id = settings.campaign_id
    for name in ("prepared", "rejected"):
        root.remove_dir(*root.campaign(campaign_id, name))
    n = len(kept.rows)
    if n == 0:
        empty = PREPARED_SCHEMA.empty_table()
        root.write_table(empty, *root.campaign(campaign_id, "prepared", "part-00000.parquet"))
        root.write_table(rejected, *root.campaign(campaign_id, "rejected", "part-00000.parquet"))
        return 0, 0, 0
    per_shard = max(1, math.ceil(n / shard_count(n, settings.max_shards,
                                                 settings.min_shard_rows)))
    shards = math.ceil(n / per_shard)

    def job(shard: int) -> int:
        start = shard * per_shard
        part = _prepared(kept, settings, shard, start, min(n, start + per_shard))
        root.write_table(part, *root.campaign(campaign_id, "prepared",
                                              f"part-{shard:05d}.parquet"))
        return int(pc.sum(part["charge_items"]).as_py() or 0)

    def write_rejected() -> int:
        root.write_table(rejected, *root.campaign(campaign_id, "rejected", "part-00000.parquet"))
        return 0

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-shard") as pool:
        futures = [pool.submit(job, shard) for shard in range(shards)]
        futures.append(pool.submit(write_rejected))
        items = sum(future.result() for future in futures)
    return n, shards, items


def read_shard(root: DataRoot, campaign_id: str, shard: int) -> pa.Table:
    """One shard of ``prepared/``; refused while the campaign's prepare is unfinished."""
    require_finished(root, campaign_id)
    return root.read_table(*root.campaign(campaign_id, "prepared", f"part-{shard:05d}.parquet"))
