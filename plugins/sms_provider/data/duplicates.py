"""Duplicate numbers among ten million rows: the first row with a number wins.

Kept apart from :mod:`sms_provider.data.prepare` because the trick is its own: the
numbers as int64 keys, packed with their positions and sorted, instead of hashing
strings.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def later_repeats(keys: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """True for every candidate row whose number a candidate row before it already has.

    Keys are the E.164 digits as int64 (at most 15 digits): sorting or hashing
    integers is several times cheaper than hashing ten million strings.
    """
    rows = np.flatnonzero(candidate)
    repeated = np.zeros(len(candidate), dtype=bool)
    repeated[rows[_repeats(keys[rows])]] = True
    return repeated


def e164_keys(e164: pa.ChunkedArray | pa.Array) -> np.ndarray:
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
