"""Arrow and NumPy column helpers: the few conversions every reconciliation step repeats.

Ten million rows make every copy count, so these convert without widening or
copying where they can (dictionary columns through their few distinct values,
in-order indices as slices).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STRING = pa.string()
#: China has one time zone and no daylight saving: days are UTC+8 days
CHINA_OFFSET_MS = 8 * 3600 * 1000
DAY_MS = 86_400_000


def ms(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    """A timestamp column as int64 milliseconds, nulls as ``fill``."""
    return ints(pc.cast(column, pa.int64()), fill)


def ints(column: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    """An integer column as int64 NumPy, nulls as ``fill`` (copying no more than needed:
    fresh memory is a good part of the cost at ten million rows)."""
    if column.null_count:
        column = pc.fill_null(column, fill)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def codes_of(column: pa.ChunkedArray, names: tuple[str, ...], default: int) -> np.ndarray:
    """Small integer code of each value (its index in ``names``, else ``default``).

    Dictionary columns are mapped through their few distinct values, not row by row.
    """
    out = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            values = chunk.dictionary.to_pylist()
            lut = np.array([names.index(v) if v in names else default for v in values]
                           + [default], np.int8)
            indices = chunk.indices
            if indices.null_count:
                indices = pc.fill_null(indices, len(values))
            out.append(lut[indices.to_numpy(zero_copy_only=False)])  # no widening copy
        else:
            codes = np.full(len(chunk), default, np.int8)
            for code, name in enumerate(names):
                codes[bool_mask(pc.equal(chunk, name))] = code
            out.append(codes)
    return np.concatenate(out) if out else np.zeros(0, np.int8)


def labels(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """Small integer codes as text (code outside ``names``: null), without a Python loop."""
    valid = (codes >= 0) & (codes < len(names))
    indices = pa.array(np.where(valid, codes, 0).astype(np.int8), mask=~valid)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names)).cast(STRING)


def repeat(value: str | None, n: int) -> pa.Array:
    """One text ``n`` times (built as a dictionary: one string, not ``n``)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int8)), pa.array([value], STRING)).cast(STRING)


def bool_mask(mask: Any) -> np.ndarray:
    """A boolean Arrow column as NumPy, null as False."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def plain_text(column: Any) -> Any:
    """Plain strings (a dictionary column decoded)."""
    return pc.cast(column, STRING) if pa.types.is_dictionary(column.type) else column


def narrow(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary column with the smallest indices its dictionaries allow (int8 for a
    handful of words: a quarter of the int32 indices a Parquet read gives, at ten million
    rows 30 MiB saved a column); anything else as it is."""
    if not pa.types.is_dictionary(column.type):
        return column
    return _narrowed(column, max((len(c.dictionary) for c in column.chunks), default=0))


def narrow_array(column: pa.DictionaryArray) -> pa.DictionaryArray:
    """:func:`narrow` for one array (a batch as it is read)."""
    return _narrowed(column, len(column.dictionary))


def _narrowed(column: Any, size: int) -> Any:
    """``column`` with the narrowest indices a dictionary of ``size`` words takes (never
    wider than it has)."""
    index = next((t for t, top in ((pa.int8(), 127), (pa.int16(), 32_767)) if size < top),
                 None)
    if index is None or column.type.index_type.bit_width <= index.bit_width:
        return column
    return column.cast(pa.dictionary(index, column.type.value_type))


#: output columns whose values are mostly distinct per row: dictionary-encoding them is
#: wasted work (the writer builds a dictionary, then falls back page by page), a third of
#: the time it takes to write the per-recipient outputs
PER_ROW_COLUMNS = frozenset({"row_number", "mobile", "e164", "message_id", "custom_id",
                             "previous_message_id", "submitted_at", "report_time",
                             "latency_s"})


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` worth a dictionary in Parquet: every one but
    :data:`PER_ROW_COLUMNS`."""
    return [f.name for f in schema if f.name not in PER_ROW_COLUMNS]


def one_chunk(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A fixed-width or dictionary column in one chunk, taken from many times.

    Arrow's take on a chunked column concatenates every chunk first, for each
    take (at ten million report times, a quarter of a second per slice of
    rows); text stays chunked, :func:`take_rows` takes it a chunk at a time.
    """
    kind = column.type
    if column.num_chunks <= 1 or pa.types.is_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_string(kind):
        return column
    return pa.chunked_array([column.combine_chunks()], column.type)


def as_text(column: Any) -> Any:
    """Plain strings of a text column however it is held: a dictionary decoded, an id kept as
    int64 (``matching.as_numbers``) written back as the text it was."""
    if pa.types.is_integer(column.type):
        return pc.cast(column, STRING)
    return plain_text(column)


#: 10**0 .. 10**18: a non-negative int64's digits are where it falls among them
_POWERS_OF_TEN = np.array([10**k for k in range(19)], np.int64)


def canonical_ints(column: Any) -> np.ndarray | None:
    """The ids as int64 (null: -1) if every one is a plain decimal number that an int64
    gives back unchanged (no sign, no leading zero, no space); else None.

    One cast and one length: a text is canonical exactly when it casts to a
    non-negative number with as many digits as the text has characters (a sign, a
    leading zero or a space would be a character more). Text beyond int64 fails the
    cast.
    """
    column = plain_text(column)
    try:
        cast = pc.cast(column, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    values = ints(cast, -1)
    length = ints(pc.binary_length(column), 0)
    digits = np.maximum(np.searchsorted(_POWERS_OF_TEN, values, side="right"), 1)
    ok = (values >= 0) & (length == digits)
    if column.null_count:
        ok |= bool_mask(pc.is_null(column))  # a missing id is no obstacle
    return values if ok.all() else None


def distinct(column: pa.ChunkedArray) -> list[Any]:
    """The distinct values of a (possibly dictionary) column as Python objects."""
    return pc.unique(plain_text(pc.unique(column))).to_pylist() if len(column) else []


def optional_column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """``table[name]``, None when the table was read without it."""
    return table[name] if name in table.column_names else None


def chunks(column: Any) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def flat(column: Any) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def iso(column: Any) -> Any:
    """Timestamps as ``2026-03-01T12:00:00Z`` (whole seconds are plenty for a reader)."""
    seconds = pc.cast(column, pa.timestamp("s", tz="UTC"), safe=False)
    return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")


def first_positions(codes: np.ndarray, size: int) -> np.ndarray:
    """An array of ``size``: for each code its first position in ``codes``, else -1."""
    where = np.full(size, -1, np.int64)
    valid = np.flatnonzero(codes >= 0)
    where[codes[valid]] = valid  # with repeated codes, which one lands is not defined …
    repeated = valid[where[codes[valid]] != valid]
    if len(repeated):  # … so settle those few codes explicitly
        np.minimum.at(where, codes[repeated], repeated)
    return where


def span(idx: np.ndarray) -> np.ndarray | slice:
    """``idx`` as a slice when it counts up by one (indexing by it then copies nothing)."""
    if len(idx) and idx[0] >= 0 and idx[-1] - idx[0] == len(idx) - 1 \
            and bool((np.diff(idx) == 1).all()):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def at(values: np.ndarray, idx: np.ndarray, fill: int) -> np.ndarray:
    """``values[idx]``, ``fill`` where ``idx`` is -1."""
    if not len(values):
        return np.full(len(idx), fill, values.dtype)
    return np.where(idx >= 0, values[np.where(idx >= 0, idx, 0)], fill)


def day_buckets(submitted_ms: np.ndarray, has_day: np.ndarray) -> tuple[np.ndarray, list]:
    """China day bucket per row (0: no day) and the day (days since the epoch) of each
    bucket."""
    day = (submitted_ms + CHINA_OFFSET_MS) // DAY_MS
    if not has_day.any():
        return np.zeros(len(day), np.int64), [None]
    uniq, inverse = (np.unique(day[has_day], return_inverse=True)
                     if np.ptp(day[has_day]) > 100_000 else (None, None))
    bucket = np.zeros(len(day), np.int64)
    if uniq is None:  # days of a campaign are few and close: count, don't sort
        first = int(day[has_day].min())
        bucket[has_day] = day[has_day] - first + 1
        days = [None, *range(first, int(day[has_day].max()) + 1)]
    else:
        bucket[has_day] = inverse + 1
        days = [None, *uniq.tolist()]
    return bucket, days


def take_rows(column: pa.ChunkedArray, idx: np.ndarray, missing: np.ndarray) -> Any:
    """``column.take(idx)``, null where ``missing``, without gathering the whole column.

    Arrow's take on a chunked text column first concatenates every chunk (at ten
    million ids, a few hundred MiB for each slice taken); here each chunk gives up
    only its own rows. Fixed-width and dictionary columns are taken as they are.
    """
    kind = column.type
    if column.num_chunks <= 1 or not (pa.types.is_string(kind) or pa.types.is_binary(kind)
                                      or pa.types.is_large_string(kind)):
        return column.take(pa.array(idx, mask=missing))
    starts = np.cumsum([0, *(len(c) for c in column.chunks)])
    rows = np.flatnonzero(~missing)
    order = np.argsort(idx[rows], kind="stable")
    wanted = idx[rows][order]
    bounds = np.searchsorted(wanted, starts)
    pieces = [column.chunk(c).take(pa.array(wanted[bounds[c]:bounds[c + 1]] - starts[c]))
              for c in range(column.num_chunks) if bounds[c + 1] > bounds[c]]
    gathered = pa.concat_arrays(pieces) if pieces else pa.array([], kind)
    where = np.full(len(idx), -1, np.int64)  # each row's place among the gathered values
    where[rows[order]] = np.arange(len(rows))
    return pa.chunked_array([gathered.take(pa.array(where, mask=where < 0))], kind)
