"""Small helpers on Arrow arrays: numpy views, masked regex, patches, byte-level edits.

Per-row cost is dominated by RE2 calls, so :func:`_regex` runs a pattern only
on the rows that still need it, and the byte-level edits on a string array's
buffers stand in for regex rewrites. Every helper expects string arrays
without nulls unless it says otherwise.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _np(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _lengths(array: pa.Array) -> np.ndarray:
    return _np(pc.binary_length(array)).astype(np.int32, copy=False)


def _scatter(base: pa.Array, idx: np.ndarray, values: pa.Array) -> pa.Array:
    """``base`` with the rows at ``idx`` (ascending) replaced by ``values``."""
    if idx.size == 0:
        return base
    if idx.size == len(base):
        return values
    mask = np.zeros(len(base), dtype=bool)
    mask[idx] = True
    return pc.replace_with_mask(base, pa.array(mask), values)


class _Patches:
    """Row replacements gathered first and applied in one pass.

    Every ``replace_with_mask`` copies the whole array, so the many small,
    disjoint updates of a chunk are applied together.
    """

    def __init__(self, base: pa.Array) -> None:
        self.base = base
        self.idx: list[np.ndarray] = []
        self.values: list[pa.Array] = []

    def add(self, idx: np.ndarray, values: pa.Array) -> None:
        if idx.size:
            self.idx.append(idx)
            self.values.append(values)

    def sorted(self) -> tuple[np.ndarray, pa.Array]:
        """The replacements by ascending row."""
        if not self.idx:
            return np.zeros(0, dtype=np.int64), pa.array([], pa.string())
        idx = np.concatenate(self.idx)
        values = pa.concat_arrays(self.values)
        order = np.argsort(idx, kind="stable")
        return idx[order], values.take(order)

    def apply(self) -> pa.Array:
        return _scatter(self.base, *self.sorted())


def _regex(array: pa.Array, mask: np.ndarray, pattern: str | None) -> np.ndarray:
    """Rows under ``mask`` that match ``pattern``; RE2 runs only where it has to.

    Taking a subset is much cheaper than a regex evaluation, but not free, so
    a nearly full mask runs over everything.
    """
    out = np.zeros(len(array), dtype=bool)
    if pattern is None:
        return out
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return out
    if idx.size > 0.85 * len(array):
        return _np(pc.match_substring_regex(array, pattern)) & mask
    out[idx] = _np(pc.match_substring_regex(array.take(idx), pattern))
    return out


# Byte-level edits straight on a string array's buffers: a regex replace costs hundreds
# of nanoseconds a row, these cost a few a byte.


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (from 0) and bytes of a string array without nulls."""
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[array.offset:
                                                           array.offset + len(array) + 1]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))
    return offsets - offsets[0], data[offsets[0]:offsets[-1]]


def _running_count(flags: np.ndarray) -> np.ndarray:
    """How many flags are set before each position (one more entry than flags)."""
    out = np.zeros(flags.size + 1, dtype=np.int32)
    np.cumsum(flags, dtype=np.int32, out=out[1:])
    return out


def _keep_bytes(offsets: np.ndarray, data: np.ndarray, keep: np.ndarray) -> pa.Array:
    return pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(
        _running_count(keep)[offsets]), pa.py_buffer(np.compress(keep, data)))


def _contains(array: pa.Array, chars: str) -> np.ndarray:
    """Rows holding any of the ASCII ``chars``."""
    offsets, data = _buffers(array)
    hit = np.zeros(data.size, dtype=bool)
    for char in chars:
        hit |= data == ord(char)
    out = np.zeros(len(array), dtype=bool)
    out[np.searchsorted(offsets, np.flatnonzero(hit), side="right") - 1] = True
    return out


def _digits_only(array: pa.Array) -> pa.Array:
    """Each string with every byte but ASCII digits dropped."""
    offsets, data = _buffers(array)
    return _keep_bytes(offsets, data, (data >= ord("0")) & (data <= ord("9")))


def _drop_prefix(array: pa.Array, sizes: np.ndarray) -> pa.Array:
    """Each string without its first ``sizes`` bytes (at most 3, never past its end)."""
    offsets, data = _buffers(array)
    keep = np.ones(data.size, dtype=bool)
    for k in range(int(sizes.max(initial=0))):
        keep[offsets[:-1][sizes > k] + k] = False
    return _keep_bytes(offsets, data, keep)


def _anchored(body: str | None, *, full: bool) -> str | None:
    if body is None:
        return None
    return f"^(?:{body})$" if full else f"^(?:{body})"
