"""Which carrier a number belongs to, for whole columns: China Mobile, Unicom, Telecom, other.

libphonenumber knows the carrier that was *assigned* a number range
(``phonenumbers.carrier.name_for_number``). China has had mobile number
portability since 2019, so a ported number still shows its first carrier:
the column is an estimate, good for comparing delivery between carriers, not
for billing.

``name_for_number`` costs a parse per row; here the same answer comes from the
same prefix table (``phonenumbers.carrierdata``) on whole columns: the keys,
which nest, laid out once as ranges of a number's first digits, and every
number's range found by one binary search. ``carrier_baseline`` is the per-row
reference the tests hold it to.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import carrier as carrier_names
from phonenumbers import carrierdata

CHINA_MOBILE, CHINA_UNICOM, CHINA_TELECOM, OTHER = (
    "China Mobile", "China Unicom", "China Telecom", "other")
#: the values of the ``carrier`` column, in the order reports list them
CARRIERS: tuple[str, ...] = (CHINA_MOBILE, CHINA_UNICOM, CHINA_TELECOM, OTHER)


def category(name: str | None) -> str:
    """A carrier name as libphonenumber gives it (English) onto the four values."""
    return name if name in (CHINA_MOBILE, CHINA_UNICOM, CHINA_TELECOM) else OTHER


@cache
def _tables() -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per prefix length (longest first): the keys with an English name as sorted integers
    (E.164 prefixes never start with 0), and their codes in the same order."""
    by_length: dict[int, tuple[list[int], list[int]]] = {}
    for key, names in carrierdata.CARRIER_DATA.items():
        name = names.get("en")
        if name is None:  # no English name: libphonenumber tries a shorter prefix
            continue
        keys, codes = by_length.setdefault(len(key), ([], []))
        keys.append(int(key))
        codes.append(CARRIERS.index(category(name)))
    tables = []
    for length, (keys, codes) in sorted(by_length.items(), reverse=True):
        order = np.argsort(keys, kind="stable")
        tables.append((length, np.array(keys, np.int64)[order],
                       np.array(codes, np.int8)[order]))
    return tables


@cache
def _ranges() -> tuple[int, np.ndarray, np.ndarray]:
    """The keys as one partition of the numbers' first ``width`` digits (the longest key's
    length): where each range starts, and the code of the longest key covering it (-1
    none). Prefixes nest, so the longest match of a number is the range it falls in."""
    tables = _tables()
    width = max((length for length, _, _ in tables), default=0)
    spans = sorted((int(k) * 10 ** (width - length), -(int(k) + 1) * 10 ** (width - length),
                    int(c)) for length, keys, codes in tables for k, c in zip(keys, codes,
                                                                                strict=True))
    starts: list[int] = []
    values: list[int] = []

    def mark(at: int, code: int) -> None:
        if starts and starts[-1] == at:
            values[-1] = code
        else:
            starts.append(at)
            values.append(code)

    open_spans: list[tuple[int, int]] = []  # (end, code), innermost last
    for start, minus_end, code in spans:
        while open_spans and open_spans[-1][0] <= start:
            ended, _ = open_spans.pop()
            mark(ended, open_spans[-1][1] if open_spans else -1)
        mark(start, code)
        open_spans.append((-minus_end, code))
    while open_spans:
        ended, _ = open_spans.pop()
        mark(ended, open_spans[-1][1] if open_spans else -1)
    return width, np.array(starts, np.int64), np.array(values, np.int8)


#: longest number held as an int64 here (E.164 allows 15 digits)
_MAX_DIGITS = 18


def carrier_codes(e164: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per E.164 number (digits, no "+") the index of its carrier in ``CARRIERS``.

    Each number is read as an integer once; one binary search of its first
    digits among the key ranges (:func:`_ranges`) finds its longest key. Numbers
    shorter than the longest key try each key length, longest first. Anything
    not plain digits matches no key (every key is digits).
    """
    column = e164.combine_chunks() if isinstance(e164, pa.ChunkedArray) else e164
    column = pc.fill_null(column.cast(pa.string()), "")
    n = len(column)
    code = np.full(n, CARRIERS.index(OTHER), np.int8)
    if not n:
        return code
    digits = np.asarray(pc.utf8_length(column).to_numpy(zero_copy_only=False), np.int64)
    plain = np.asarray(pc.ascii_is_decimal(column).to_numpy(zero_copy_only=False), bool) \
        & (digits > 0) & (digits <= _MAX_DIGITS)
    if not plain.any():
        return code
    rows = np.flatnonzero(plain)
    probe = column if len(rows) == n else column.take(pa.array(rows))
    number = np.asarray(pc.cast(probe, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    digits = digits[rows]
    width, starts, values = _ranges()
    long = np.flatnonzero(digits >= width)
    if len(long):
        head = number[long] // (10 ** (digits[long] - width))
        found = values[np.maximum(np.searchsorted(starts, head, side="right") - 1, 0)]
        found[head < starts[0]] = -1
        hit = found >= 0
        code[rows[long[hit]]] = found[hit]
    left = digits < width
    for length, keys, codes in _tables():
        can = np.flatnonzero(left & (digits >= length))
        if not len(can):
            continue
        prefix = number[can] // (10 ** (digits[can] - length))
        at = np.minimum(np.searchsorted(keys, prefix), len(keys) - 1)
        hit = keys[at] == prefix
        code[rows[can[hit]]] = codes[at[hit]]
        left[can[hit]] = False
    return code


def carrier_column(e164: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The ``carrier`` column for E.164 numbers (built as a dictionary: four strings)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(carrier_codes(e164)), pa.array(CARRIERS)).cast(pa.string())


def carrier_baseline(e164: str) -> str:
    """One number, the slow way: ``phonenumbers.carrier.name_for_number`` per row."""
    try:
        number = phonenumbers.parse("+" + e164)
    except phonenumbers.NumberParseException:
        return OTHER
    return category(carrier_names.name_for_number(number, "en"))
