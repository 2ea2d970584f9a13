"""The public entry points: any phone column to text, and the threaded check over it.

:func:`check_numbers` cuts a column into equal slices, as many as a multiple
of the cores, and runs :func:`~sms_provider.data.numbers.classify._check_chunk`
on a thread each: pyarrow and RE2 release the GIL, and the slices share
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.numbers.arrays import _np
from sms_provider.data.numbers.classify import _check_chunk, _Parser
from sms_provider.data.numbers.result import NumberCheck

#: rows per unit of work at most; units run on a thread each (pyarrow releases the GIL)
CHUNK_ROWS = 1 << 19
_MIN_PARALLEL_ROWS = 1 << 16
_FIELDS = ("e164", "country_code", "national", "region", "reason")


def as_phone_text(raw: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.ChunkedArray:
    """Any column of phone values as UTF-8 strings, numbers repaired like spreadsheet text."""
    if not isinstance(raw, pa.Array | pa.ChunkedArray):
        raw = pa.array(raw, pa.string())
    if isinstance(raw, pa.Array):
        raw = pa.chunked_array([raw])
    kind = raw.type
    if pa.types.is_dictionary(kind):
        raw = raw.cast(kind.value_type)
        kind = raw.type
    if pa.types.is_floating(kind):
        return pa.chunked_array([float_text(chunk) for chunk in raw.chunks], pa.string())
    return raw.cast(pa.string())


def float_text(values: pa.Array) -> pa.Array:
    """Floats as the text a spreadsheet-repair would recover: whole numbers without ``.0``.

    A whole number below 10^16 is printed exactly as its integer; anything else
    keeps its float rendering, which the text rules then judge (``1e+20`` is
    a mangled number, ``1.5`` not a number, NaN empty).
    """
    values = values.cast(pa.float64())
    numbers = _np(values.fill_null(np.nan))
    whole = np.isfinite(numbers) & (np.abs(numbers) < 1e16)
    whole[whole] = numbers[whole] == np.floor(numbers[whole])
    as_int = pc.cast(pa.array(np.where(whole, numbers, 0).astype(np.int64)), pa.string())
    as_float = pc.cast(values, pa.string())
    nan = pc.is_nan(values.fill_null(np.nan))
    text = pc.if_else(pa.array(whole), as_int, as_float)
    return pc.if_else(nan, pa.scalar(None, pa.string()), text)


def _units(column: pa.ChunkedArray, workers: int) -> Iterator[pa.Array]:
    """Equal slices, as many as a multiple of the workers: no thread idles at the end."""
    rows = len(column)
    count = -(-max(1, -(-rows // CHUNK_ROWS)) // workers) * workers
    size = max(1, -(-rows // count))
    for start in range(0, rows, size):
        piece = column.slice(start, size)
        yield piece.chunk(0) if piece.num_chunks == 1 else piece.combine_chunks()


def check_numbers(raw: pa.Array | pa.ChunkedArray, default_region: str = "CN", *,
                  mainland: bool = False) -> NumberCheck:
    """Repair and validate every phone value in ``raw`` (see the package docstring).

    ``raw`` is a string column as read from a recipient file (integer and
    float columns are accepted and rendered first); numbers without a
    calling code are read as ``default_region`` numbers. With ``mainland``,
    the verdicts are those of :func:`.vendor_format.mainland_only`, reached
    inside the threaded pass rather than by rewriting the finished columns.
    """
    parser = _Parser(default_region.upper())
    column = as_phone_text(raw)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    if len(column) < _MIN_PARALLEL_ROWS:
        workers = 1
    units = list(_units(column, workers)) or [pa.array([], pa.string())]
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda unit: _check_chunk(parser, unit, mainland), units))
    else:
        parts = [_check_chunk(parser, unit, mainland) for unit in units]
    # one column at a time, each slice's copy dropped once merged: the peak stays near
    # one copy of the result instead of two
    pieces = {field: [getattr(part, field) for part in parts] for field in _FIELDS}
    del parts
    return NumberCheck(**{field: pa.concat_arrays(pieces.pop(field)) for field in _FIELDS})
