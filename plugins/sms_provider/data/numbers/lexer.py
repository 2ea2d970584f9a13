"""Raw values to what ``parse`` would see: digits, a leading plus, or a refusal reason.

Plain ASCII digits, the common case, skip every regex (:func:`_lex`); the rest
go through the array form of :func:`~sms_provider.data.numbers.policy.repair_text`
(:func:`_lex_messy`): trimming, full-width and Unicode separators to ASCII by
byte-level edits, float and scientific renderings undone, then one RE2 pass
that settles the character policy and viability together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.numbers.arrays import (
    _buffers,
    _contains,
    _digits_only,
    _keep_bytes,
    _lengths,
    _np,
    _regex,
    _running_count,
    _scatter,
)
from sms_provider.data.numbers.policy import (
    _FLOAT_BODY,
    _FULL_WIDTH,
    _SCIENTIFIC_BODY,
    SEPARATORS,
    TRIM_CHARS,
)
from sms_provider.data.numbers.reasons import (
    _CODE,
    EMPTY,
    INVALID_NUMBER,
    MANGLED_NUMBER,
    NOT_A_NUMBER,
)
from sms_provider.data.numbers.rules import _MAX_INPUT_LENGTH, _MIN_NSN_LENGTH

_P = r"[ ()./\[\]-]"  # the separators once mapped to ASCII
_VIABLE = rf"^{_P}*\+*(?:{_P}*[0-9])+[ ()./\[\]+-]*$"
_TWO_DIGITS = rf"^{_P}*[0-9][0-9][ ()./\[\]+-]*$"
_PLUS_FIRST = rf"^{_P}*\+"
_ALLOWED_ASCII = r"^[0-9 ()./\[\]+-]*$"
_TO_ASCII = ([(chr(code), text) for code, text in _FULL_WIDTH.items()]
             + [(char, " ") for char in SEPARATORS if not char.isascii()])


def _utf8_to_ascii() -> dict[bytes, np.ndarray]:
    """:data:`_TO_ASCII` as bytes: per UTF-8 lead (all bytes but the last) of a mapped
    character, a table from its last byte to the ASCII replacement (0: unmapped)."""
    tables: dict[bytes, np.ndarray] = {}
    for char, replacement in _TO_ASCII:
        encoded = char.encode()
        tables.setdefault(encoded[:-1], np.zeros(256, dtype=np.uint8))[encoded[-1]] = \
            ord(replacement)
    return tables


_UTF8_TO_ASCII = _utf8_to_ascii()


@dataclass
class _Lexed:
    """Each row as ``parse`` would see it: its digits, a leading plus, or a reason."""

    digits: pa.Array
    plus: np.ndarray
    reason: np.ndarray


def _to_ascii(text: pa.Array) -> pa.Array:
    """Full-width digits, plus and full stop to ASCII, every other separator to a space.

    Spaces stand in for the Unicode separators because libphonenumber treats
    all of them as the same punctuation.
    """
    idx = np.flatnonzero(~_np(pc.string_is_ascii(text)))
    if idx.size == 0:
        return text
    offsets, data = _buffers(text.take(idx))
    out = data.copy()
    keep = np.ones(data.size, dtype=bool)
    for lead, table in _UTF8_TO_ASCII.items():
        # a UTF-8 lead byte never occurs inside another character, so matches are characters
        width = len(lead)
        if data.size <= width:
            continue
        replacement = table[data[width:]]
        match = replacement != 0
        for k, byte in enumerate(lead):
            match &= data[k:data.size - width + k] == byte
        at = np.flatnonzero(match)
        out[at] = replacement[at]
        for k in range(1, width + 1):
            keep[at + k] = False
    return _scatter(text, idx, _keep_bytes(offsets, out, keep))


def _strip_float_zeros(text: pa.Array) -> pa.Array:
    """``13800138000.0`` -> ``13800138000``: what a float column turns a number into."""
    pattern = f"^(?:{_FLOAT_BODY})$"
    idx = np.flatnonzero(_regex(text, _contains(text, "."), pattern))
    if idx.size == 0:
        return text
    return _scatter(text, idx, pc.replace_substring_regex(text.take(idx), pattern, r"\1"))


_SCIENTIFIC_PARTS = r"^(?P<lead>[0-9])(?:\.(?P<fraction>[0-9]+))?[eE]\+?(?P<exponent>[0-9]+)$"


def _expand_scientific_rows(text: pa.Array, reason: np.ndarray) -> pa.Array:
    """:func:`expand_scientific` on every scientific-notation row at once.

    Refused rows become empty text with reason ``mangled_number``.
    """
    idx = np.flatnonzero(_regex(text, _contains(text, "eE"), f"^(?:{_SCIENTIFIC_BODY})$"))
    if idx.size == 0:
        return text
    parts = pc.extract_regex(text.take(idx), _SCIENTIFIC_PARTS)
    lead = _buffers(parts.field("lead"))[1]
    starts, fraction = _buffers(parts.field("fraction"))  # "" where there is none
    size = np.diff(starts)
    exponent = parts.field("exponent")
    short = _lengths(exponent) <= 6  # longer ones are absurd; keep them clear of overflow
    power = np.where(short, _np(pc.cast(pc.if_else(pa.array(short), exponent, "0"),
                                        pa.int64())), 10**9)
    # all digits written: whatever lies beyond the exponent must be zeros
    nonzero = _running_count(fraction != ord("0"))
    beyond = nonzero[starts[1:]] - nonzero[np.minimum(starts[:-1] + power, starts[1:])]
    kept = (size >= power) & (beyond == 0)
    reason[idx[~kept]] = _CODE[MANGLED_NUMBER]
    # lead digit, then the fraction's digits, then zeros: exponent + 1 digits a row
    widths = np.where(kept, power + 1, 0)
    offsets = np.concatenate(([0], np.cumsum(widths)))
    row = np.repeat(np.arange(idx.size), widths)
    at = np.arange(offsets[-1]) - offsets[row]
    out = np.full(offsets[-1], ord("0"), dtype=np.uint8)
    first = at == 0
    out[first] = lead[row[first]]
    from_fraction = (at >= 1) & (at <= size[row])
    out[from_fraction] = fraction[starts[row[from_fraction]] + at[from_fraction] - 1]
    expanded = pa.StringArray.from_buffers(idx.size, pa.py_buffer(offsets.astype(np.int32)),
                                           pa.py_buffer(out))
    return _scatter(text, idx, expanded)


def _lex_messy(raw: pa.Array) -> _Lexed:
    """Rows that are not plain ASCII digits: repair, enforce the policy, judge viability."""
    reason = np.zeros(len(raw), dtype=np.int8)
    text = _to_ascii(pc.utf8_trim(raw, characters=TRIM_CHARS))
    reason[_lengths(text) == 0] = _CODE[EMPTY]
    text = _strip_float_zeros(text)
    text = _expand_scientific_rows(text, reason)
    open_ = reason == 0
    # The viability pattern admits only allowed characters, so one pass settles the
    # policy and viability alike (both are not_a_number). Only values too long for
    # parse() need them told apart: it refuses those before looking at them.
    viable = _regex(text, open_, _VIABLE)
    too_long = open_ & (_np(pc.utf8_length(text)) > _MAX_INPUT_LENGTH)
    allowed = _regex(text, too_long, _ALLOWED_ASCII)
    reason[too_long] = np.where(allowed[too_long], _CODE[INVALID_NUMBER], _CODE[NOT_A_NUMBER])
    open_ &= ~too_long
    digits = _digits_only(text)
    count = _lengths(digits)
    viable &= (count >= 3) | _regex(text, viable & (count == 2), _TWO_DIGITS)
    reason[open_ & ~viable] = _CODE[NOT_A_NUMBER]
    plus = _regex(text, open_ & viable & _contains(text, "+"), _PLUS_FIRST)
    return _Lexed(digits, plus, reason)


def _lex(raw: pa.Array) -> _Lexed:
    """Split off the common case -- plain ASCII digits -- before any regex runs."""
    n = len(raw)
    reason = np.zeros(n, dtype=np.int8)
    plus = np.zeros(n, dtype=bool)
    text = raw
    if raw.null_count:
        reason[~_np(raw.is_valid())] = _CODE[EMPTY]
        text = raw.fill_null("")
    plain = _np(pc.ascii_is_decimal(text))
    messy = (reason == 0) & ~plain
    digits = text
    idx = np.flatnonzero(messy)
    if idx.size:
        repaired = _lex_messy(text.take(idx))
        digits = _scatter(text, idx, repaired.digits)
        plus[idx] = repaired.plus
        reason[idx] = repaired.reason
    lengths = _lengths(text)
    reason[plain & (lengths > _MAX_INPUT_LENGTH)] = _CODE[INVALID_NUMBER]
    reason[plain & (lengths < _MIN_NSN_LENGTH)] = _CODE[NOT_A_NUMBER]
    return _Lexed(digits, plus, reason)
