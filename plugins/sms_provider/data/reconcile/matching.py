"""Which columns identify a message for each vendor, and finding one key among many.

By the vendor's message id, or msgid + mobile where one id names a whole
request; an ambiguous submission (no message id known) by our custom id, per
message or per request + mobile, and by its number where the vendor keeps no
id of ours. Which applies is each vendor profile's ``message_id_scope``,
``custom_id_scope`` and ``ambiguous_settlement``; the sets below are read from
the profiles once, so a lookup per batch stays a set membership.

:func:`lookup` turns keys into integers first: message ids are mostly plain
numbers, which are their own codes; anything else is numbered through one
dictionary over both sides. A plain array (dense codes) or a binary search in
the sorted known codes then matches ten million reports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.reconcile.columns import (
    STRING,
    as_text,
    canonical_ints,
    chunks,
    first_positions,
    ints,
    plain_text,
)
from sms_provider.vendors.profile import (
    AmbiguousSettlement,
    CustomIdScope,
    MessageIdScope,
    VendorProfile,
)
from sms_provider.vendors.profiles import PROFILES


def _vendors(trait: Callable[[VendorProfile], bool]) -> frozenset[str]:
    return frozenset(conn_type for conn_type, p in PROFILES.items() if trait(p))


#: vendors whose message id is shared by a whole request: match on (message id, mobile)
MSGID_PER_REQUEST = _vendors(lambda p: p.message_id_scope is MessageIdScope.REQUEST)
#: vendors that echo our custom id, per message or per request (then with the mobile)
CUSTOM_ID_PER_MESSAGE = _vendors(lambda p: p.custom_id_scope is CustomIdScope.MESSAGE)
CUSTOM_ID_PER_REQUEST = _vendors(lambda p: p.custom_id_scope is CustomIdScope.REQUEST)
#: vendors that keep no id of ours: an ambiguous submission is settled by its number
SETTLED_BY_MOBILE = _vendors(
    lambda p: p.ambiguous_settlement is AmbiguousSettlement.MOBILE)
#: a report for the number may come this long after the ambiguous submission (the
#: default final window) and, clocks being what they are, this long before it
MOBILE_MATCH_AFTER_MS = 72 * 3_600_000
MOBILE_MATCH_BEFORE_MS = 5 * 60_000

SUB_COLUMNS = ["conn_id", "vendor", "row_number", "message_id", "custom_id", "charge_items",
               "vendor_code", "status", "description", "submitted_at"]
_REPORT_COLUMNS = ["message_id", "raw_state", "status", "description", "report_time",
                   "received_at", "report_key"]
_INT64_MAX = str(2**63 - 1)


def needs_mobile(vendor: str) -> bool:
    """Whether the mobile is part of a key (unknown vendor: assume it may be)."""
    return not vendor or vendor in MSGID_PER_REQUEST | CUSTOM_ID_PER_REQUEST | SETTLED_BY_MOBILE


def sub_columns(vendor: str) -> list[str]:
    """The submission columns an account of ``vendor`` reads."""
    return [*SUB_COLUMNS, "mobile"] if needs_mobile(vendor) else SUB_COLUMNS


def report_columns(vendor: str) -> list[str]:
    """Only what matching needs: ids we never compare are not worth reading."""
    columns = list(_REPORT_COLUMNS)
    if not vendor or vendor in CUSTOM_ID_PER_MESSAGE | CUSTOM_ID_PER_REQUEST:
        columns.append("custom_id")
    if needs_mobile(vendor):
        columns.append("mobile")
    return [*columns, "vendor"] if not vendor else columns


def deferred_report_columns(vendor: str) -> list[str]:
    """The wide report columns read later, and only for the rows that need them: the
    ``report_key`` of copies, and what the reports no message id matched are settled or
    listed by (custom id, mobile). At ten million reports each is hundreds of MiB."""
    columns = report_columns(vendor)
    later = ["report_key"]
    if vendor:  # known: custom ids and numbers only settle reports no message id matched
        later += [c for c in ("custom_id", "mobile") if c in columns
                  and not (c == "mobile" and vendor in MSGID_PER_REQUEST)]
    return later


def mobile_tail(mobile: Any) -> Any:
    """The 11-digit mainland number whatever prefix (86, 0086) a side wrote."""
    if not len(mobile) or (pc.max(pc.binary_length(mobile)).as_py() or 0) <= 11:
        return mobile  # nothing to cut (the usual case): no copy of every number
    return pc.utf8_slice_codeunits(mobile, -11)


def message_key(vendor: str, message_id: Any, mobile: Any) -> list[Any]:
    """The columns that identify one message among the vendor's ids."""
    if vendor in MSGID_PER_REQUEST:  # one msgid for a whole request
        return [message_id, mobile_tail(mobile)]
    return [message_id]


def custom_key(vendor: str, custom_id: Any, mobile: Any) -> list[Any] | None:
    """The columns that identify one message among our custom ids; None: the vendor has none."""
    if vendor in CUSTOM_ID_PER_MESSAGE:
        return [custom_id]
    if vendor in CUSTOM_ID_PER_REQUEST:  # one reference per request
        return [custom_id, mobile_tail(mobile)]
    return None


def lookup(known: list[Any], probe: list[Any]) -> np.ndarray:
    """For each probe row the first known row with the same key, -1 where none."""
    left, right, bound = _key_codes(known, probe)
    if bound <= len(left) + len(right) + 1024:  # dense codes: a plain array is the map
        where = first_positions(left, bound + 1)
        return where[np.where(right >= 0, right, bound)]
    return _sorted_lookup(left, right)


def _sorted_lookup(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``lookup`` of sparse codes by binary search in the sorted known codes.

    A hash table over ten million ids (``pc.index_in``) takes the better part of a GiB
    while it is built; the sorted codes and their order take a fifth of that. The sort
    is stable, so among equal codes the first known row is found first.
    """
    if not len(left):
        return np.full(len(right), -1, np.int64)
    order = np.argsort(left, kind="stable")
    ordered = left[order]
    at_or_after = np.searchsorted(ordered, right)
    np.minimum(at_or_after, len(ordered) - 1, out=at_or_after)
    hit = ordered[at_or_after] == right
    del ordered
    hit &= right >= 0  # -1: a null key, which matches nothing
    found = order[at_or_after]
    found[~hit] = -1
    return found


def as_numbers(column: Any) -> Any:
    """Text ids as int64 where every one is a plain number that casting back gives unchanged
    (a third of the memory of the text); otherwise the text as it is."""
    column = plain_text(column)
    if pa.types.is_integer(column.type) or not len(column) \
            or column.null_count == len(column):
        return column  # already numbers (``reading.read``'s ``numbers``), or nothing to do
    values = canonical_ints(column)
    if values is None:
        return column
    numbers = pa.array(values, pa.int64(), mask=values < 0)
    return pa.chunked_array([numbers]) if isinstance(column, pa.ChunkedArray) else numbers


def _canonical_number(column: Any) -> Any:
    """True where the text is a plain decimal number that an int64 gives back unchanged."""
    length = pc.binary_length(column)
    fits = pc.or_(pc.less_equal(length, 18),  # 19 digits: compare as text, same length
                  pc.and_(pc.equal(length, 19), pc.less_equal(column, _INT64_MAX)))
    return pc.and_(pc.and_(pc.ascii_is_decimal(column), fits),
                   pc.or_(pc.equal(length, 1), pc.invert(pc.starts_with(column, "0"))))


def _column_codes(known: Any, probe: Any, dense: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Integers standing for the texts of two columns (equal iff equal), -1 for null; and a
    bound above every code.

    Message ids are mostly plain numbers: then the number itself is the code (cheap).
    Otherwise (or when ``dense`` codes are needed to combine columns) one dictionary
    over both sides numbers the distinct values.
    """
    known, probe = plain_text(known), plain_text(probe)
    left = None if dense else (ints(known, -1) if pa.types.is_integer(known.type)
                               else canonical_ints(known))
    if left is not None:
        right = ints(probe, -1) if pa.types.is_integer(probe.type) else canonical_ints(probe)
        if right is None:
            # a probe that is not a plain number cannot equal one: it matches nothing
            ok = _canonical_number(probe)
            right = ints(pc.cast(pc.if_else(ok, probe, pa.scalar(None, STRING)),
                                 pa.int64()), -1)
        return left, right, max(int(left.max(initial=-1)), 0) + 1
    # few distinct values (a msgid per request): hashing the text is cheap
    known, probe = as_text(known), as_text(probe)  # ids read as numbers, back to text
    both = pc.dictionary_encode(pa.chunked_array(
        [*chunks(known), *chunks(probe)], type=STRING))
    indices = pa.chunked_array([c.indices for c in both.chunks], type=pa.int32())
    codes = ints(indices, -1)
    size = len(both.chunk(0).dictionary) if both.num_chunks else 0
    return codes[:len(known)], codes[len(known):], size


def _key_codes(known: list[Any], probe: list[Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """One integer per row for a key of several columns (-1 where any part is null)."""
    if len(known) == 1:
        return _column_codes(known[0], probe[0], dense=False)
    left, right, bound = _column_codes(known[0], probe[0], dense=True)
    for k, p in zip(known[1:], probe[1:], strict=True):
        cl, cr, size = _column_codes(k, p, dense=False)
        if bound * size >= 2**62:  # too wide to combine as numbers: number the pairs instead
            cl, cr, size = _column_codes(k, p, dense=True)
        left, right = _combine(left, cl, size), _combine(right, cr, size)
        bound *= size
    return left, right, bound


def _combine(first: np.ndarray, second: np.ndarray, size: int) -> np.ndarray:
    """``first * size + second``, -1 where either is -1 (in place: big arrays are dear)."""
    if not first.flags.writeable:
        first = first.copy()
    missing = first < 0
    missing |= second < 0
    first *= size
    first += second
    first[missing] = -1
    return first
