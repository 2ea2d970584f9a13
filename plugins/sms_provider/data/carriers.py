"""Which carrier a number belongs to, for whole columns: China Mobile, Unicom, Telecom, other.

libphonenumber knows the carrier that was *assigned* a number range
(``phonenumbers.carrier.name_for_number``). China has had mobile number
portability since 2019, so a ported number still shows its first carrier:
the column is an estimate, good for comparing delivery between carriers, not
for billing.

``name_for_number`` costs a parse per row; here the same answer comes from the
same prefix table (``phonenumbers.carrierdata``) on Arrow arrays: for each
prefix length, longest first, one hash lookup of every still-unresolved row's
prefix among the table's keys of that length. ``carrier_baseline`` is the
per-row reference the tests hold it to.
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
def _tables() -> list[tuple[int, pa.Array, np.ndarray]]:
    """Per prefix length (longest first): the keys with an English name, and their codes."""
    by_length: dict[int, tuple[list[str], list[int]]] = {}
    for key, names in carrierdata.CARRIER_DATA.items():
        name = names.get("en")
        if name is None:  # no English name: libphonenumber tries a shorter prefix
            continue
        keys, codes = by_length.setdefault(len(key), ([], []))
        keys.append(key)
        codes.append(CARRIERS.index(category(name)))
    return [(length, pa.array(keys, pa.string()), np.array(codes, np.int8))
            for length, (keys, codes) in sorted(by_length.items(), reverse=True)]


def carrier_codes(e164: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per E.164 number (digits, no "+") the index of its carrier in ``CARRIERS``."""
    column = e164.combine_chunks() if isinstance(e164, pa.ChunkedArray) else e164
    column = pc.fill_null(column.cast(pa.string()), "")
    n = len(column)
    code = np.full(n, -1, np.int8)
    for length, keys, codes in _tables():
        left = np.flatnonzero(code < 0)
        if not len(left):
            break
        probe = column if len(left) == n else column.take(pa.array(left))
        found = pc.index_in(pc.utf8_slice_codeunits(probe, 0, length), value_set=keys)
        found = np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64)
        hit = found >= 0
        code[left[hit]] = codes[found[hit]]
    code[code < 0] = CARRIERS.index(OTHER)
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
