"""Lexed rows to verdicts: parse, group by calling code, classify, judge -- one chunk at a time.

:class:`_Parser` replays ``phonenumbers.parse`` (calling-code extraction,
international and national prefixes, the default region's code written
without ``+``); one alternation of both prefixes of the default region rules
most rows out in a single RE2 pass. :func:`_segments` groups the parsed rows
by calling code, :func:`_classify` picks each row's region and number type
with :mod:`.rules`, and :func:`_judge` turns all that into reason codes.
:func:`_check_chunk` is one unit of work from raw values to a
:class:`~sms_provider.data.numbers.result.NumberCheck`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import (
    PhoneMetadata,
    PhoneNumberType,
    ValidationResult,
)

from sms_provider.data.numbers.arrays import (
    _anchored,
    _buffers,
    _drop_prefix,
    _lengths,
    _np,
    _Patches,
    _regex,
    _scatter,
)
from sms_provider.data.numbers.lexer import _lex, _Lexed
from sms_provider.data.numbers.reasons import (
    _CODE,
    _REASON_NAMES,
    _SMS_TYPES,
    INVALID_NUMBER,
    MAINLAND_CALLING_CODE,
    NOT_MAINLAND,
    NOT_MOBILE,
)
from sms_provider.data.numbers.result import NumberCheck
from sms_provider.data.numbers.rules import (
    _CODE_TEXT,
    _MAX_NSN_LENGTH,
    _MIN_NSN_LENGTH,
    _NO_STRIP_RESULTS,
    _calling_codes,
    _main_rules,
    _region_names,
    _Rules,
    _rules,
)


def _split_calling_code(array: pa.Array, mask: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """``_extract_country_code`` on the rows under ``mask`` (each at least 3 digits long).

    Returns which rows start with a calling code, the code, and the rest of
    those rows (in row order).
    """
    n = len(array)
    found = np.zeros(n, dtype=bool)
    codes = np.zeros(n, dtype=np.int32)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return found, codes, pa.array([], pa.string())
    sub = array.take(idx)
    offsets, data = _buffers(sub)
    first = [data[offsets[:-1] + k].astype(np.int32) - ord("0") for k in range(3)]
    # calling codes never start with 0, so a head's value tells its width
    heads = (first[0], first[0] * 10 + first[1], first[0] * 100 + first[1] * 10 + first[2])
    known = _calling_codes()
    size = np.zeros(idx.size, dtype=np.int8)
    for width in (3, 2, 1):
        size[known[heads[width - 1]] & (first[0] != 0)] = width
    hit = size > 0
    value = np.choose(np.maximum(size, 1) - 1, heads)
    found[idx[hit]] = True
    codes[idx[hit]] = value[hit]
    return found, codes, _drop_prefix(sub.filter(pa.array(hit)), size[hit])


@dataclass
class _Parsed:
    """Where ``parse`` got to: calling code, national number and where they came from."""

    country_code: np.ndarray
    national: _Patches     # the digits, less any prefix and calling code
    extracted: np.ndarray  # the calling code came from the number, not the default region
    bad: np.ndarray        # parse() would raise
    maybe_prefix: np.ndarray  # rows without a calling code that may start with a prefix


class _Parser:
    """``phonenumbers.parse(value, default_region)`` for lexed rows."""

    def __init__(self, region: str) -> None:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            raise ValueError(f"unknown default region {region!r}")
        self.region = region
        self.home = _rules(metadata.country_code, region)
        self.home_code = str(metadata.country_code)
        # match(A|B) == match(A) or match(B): one pass rules out both prefixes for most rows
        bodies = [b for b in (self.home.idd_body, self.home.np_body) if b]
        self.any_prefix = _anchored("|".join(f"(?:{b})" for b in bodies) or None, full=False)

    def parse(self, lexed: _Lexed) -> _Parsed:
        digits = lexed.digits
        n = len(digits)
        lengths = _lengths(digits)
        live = lexed.reason == 0
        out = _Parsed(np.zeros(n, dtype=np.int32), _Patches(digits), np.zeros(n, dtype=bool),
                      np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        with_plus = live & lexed.plus
        out.bad |= with_plus & (lengths <= 2)
        with_plus &= lengths > 2
        found, codes, rest = _split_calling_code(digits, with_plus)
        self._take(out, found, codes, rest)
        # parse() retries a '+' without a known calling code as if the '+' were absent,
        # but then insists on finding one
        retry = with_plus & ~found
        national = (live & ~lexed.plus) | retry
        out.maybe_prefix = _regex(digits, national, self.any_prefix)
        national &= ~self._strip_idd(digits, national & out.maybe_prefix, out)
        national &= ~self._strip_home_code(digits, lengths, national, out)
        out.bad |= national & retry
        out.country_code[national & ~retry] = self.home.country_code
        return out

    @staticmethod
    def _take(out: _Parsed, found: np.ndarray, codes: np.ndarray, rest: pa.Array) -> None:
        out.country_code[found] = codes[found]
        out.extracted |= found
        out.national.add(np.flatnonzero(found), rest)

    def _strip_idd(self, digits: pa.Array, mask: np.ndarray, out: _Parsed) -> np.ndarray:
        """International dialling prefix then a calling code; returns the rows it decided."""
        decided = np.zeros(len(digits), dtype=bool)
        idx = np.flatnonzero(_regex(digits, mask, self.home.idd_prefix))
        if idx.size == 0:
            return decided
        after = pc.replace_substring_regex(digits.take(idx), self.home.idd_prefix, "",
                                           max_replacements=1)
        stripped = ~_np(pc.starts_with(after, "0"))  # calling codes never start with 0
        long_enough = stripped & (_lengths(after) > 2)
        decided[idx[stripped]] = True
        found, codes, rest = _split_calling_code(after, long_enough)
        out.bad[idx[stripped & ~found]] = True
        full_found = np.zeros(len(digits), dtype=bool)
        full_found[idx[found]] = True
        full_codes = np.zeros(len(digits), dtype=np.int32)
        full_codes[idx[found]] = codes[found]
        self._take(out, full_found, full_codes, rest)
        return decided

    def _strip_home_code(self, digits: pa.Array, lengths: np.ndarray, mask: np.ndarray,
                         out: _Parsed) -> np.ndarray:
        """The default region's calling code written without '+' (``8613800138000``)."""
        taken = np.zeros(len(digits), dtype=bool)
        idx = np.flatnonzero(mask & _np(pc.starts_with(digits, self.home_code)))
        if idx.size == 0:
            return taken
        full = digits.take(idx)
        rest = pc.utf8_slice_codeunits(full, len(self.home_code))
        some = np.ones(idx.size, dtype=bool)
        rest = _scatter(rest, *self.home.strip_national_prefix(rest, some))
        better = ~_regex(full, some, self.home.general_pattern)
        better &= _regex(rest, some, self.home.general_pattern)
        better |= self.home.test_length(lengths[idx]) == ValidationResult.TOO_LONG
        taken[idx[better]] = True
        out.country_code[idx[better]] = self.home.country_code
        out.extracted[idx[better]] = True
        out.national.add(idx[better], rest.filter(pa.array(better)))
        return taken


def _groups(keys: np.ndarray, mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The rows under ``mask`` by key, each group's rows ascending."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    sub = keys[idx]
    order = np.argsort(sub, kind="stable")
    bounds = np.flatnonzero(np.diff(sub[order])) + 1
    return [(int(sub[part[0]]), idx[part]) for part in np.split(order, bounds)]


@dataclass
class _Segment:
    """Rows that share a calling code and the rules their national prefix is read with.

    The default region's numbers, usually most of a chunk, stay the chunk's own
    digits under a mask; every other segment is a compact copy, so it costs in
    proportion to its size and the full national column is built once.
    """

    code: int
    rules: _Rules             # national-prefix rules for these rows
    array: pa.Array           # national numbers
    lengths: np.ndarray
    mask: np.ndarray          # the rows of ``array`` that belong to the segment
    rows: np.ndarray | None   # chunk row of each array row; None when ``array`` is the chunk
    as_written: bool = False  # the numbers are the digits as written (no calling code)

    @classmethod
    def of(cls, code: int, rules: _Rules, array: pa.Array, lengths: np.ndarray,
           mask: np.ndarray, *, as_written: bool = False) -> _Segment:
        if 2 * np.count_nonzero(mask) > len(array):
            return cls(code, rules, array, lengths, mask.copy(), None, as_written)
        idx = np.flatnonzero(mask)
        return cls(code, rules, array.take(idx), lengths[idx], np.ones(idx.size, dtype=bool),
                   idx, as_written)

    def chunk_rows(self, local: np.ndarray) -> np.ndarray:
        return local if self.rows is None else self.rows[local]

    def put(self, target: np.ndarray, values: np.ndarray) -> None:
        if self.rows is None:
            target[self.mask] = values[self.mask]
        else:
            target[self.rows[self.mask]] = values[self.mask]

    def strip_national_prefix(self, maybe_prefix: np.ndarray) -> list[_Segment]:
        """The national-prefix step of ``parse``: kept only when the rest is a possible length."""
        mask = self.mask
        if self.as_written:  # the parser's prefix pass already ruled most rows out
            mask = mask & (maybe_prefix if self.rows is None else maybe_prefix[self.rows])
        local, stripped = self.rules.strip_national_prefix(self.array, mask)
        use = ~np.isin(self.rules.test_length(_lengths(stripped)), _NO_STRIP_RESULTS)
        local, stripped = local[use], stripped.filter(pa.array(use))
        if local.size == 0:
            return [self]
        if self.rows is not None:
            self.array = _scatter(self.array, local, stripped)
            self.lengths = _lengths(self.array)
            return [self]
        self.mask[local] = False  # the chunk stays as written; stripped rows move out
        return [self, _Segment(self.code, self.rules, stripped, _lengths(stripped),
                               np.ones(local.size, dtype=bool), local)]


def _segments(parser: _Parser, parsed: _Parsed, digits: pa.Array, ext_idx: np.ndarray,
              ext_values: pa.Array, ok: np.ndarray) -> list[_Segment]:
    """The parsed rows by calling code; numbers with none written are the digits as they are."""
    ext_lengths = _lengths(ext_values)
    segments = []
    home = ok & ~parsed.extracted
    if home.any():
        segments.append(_Segment.of(parser.home.country_code, parser.home, digits,
                                    _lengths(digits), home, as_written=True))
    for code, idx in _groups(parsed.country_code, ok & parsed.extracted):
        at = np.searchsorted(ext_idx, idx)
        segments.append(_Segment(code, _main_rules(code), ext_values.take(at), ext_lengths[at],
                                 np.ones(idx.size, dtype=bool), idx))
    return segments


def _classify(country_code: int, segment: _Segment) -> tuple[np.ndarray, np.ndarray]:
    """Region (index into the region names, -1 for none) and number type of each row.

    Shared calling codes pick the region like ``_region_code_for_number_from_list``:
    leading digits when the region has them, a full type check otherwise.
    """
    n = len(segment.array)
    _, index = _region_names()
    regions = phonenumbers.region_codes_for_country_code(country_code)
    region = np.full(n, -1, dtype=np.int16)
    types = np.full(n, PhoneNumberType.UNKNOWN, dtype=np.int8)
    array, lengths = segment.array, segment.lengths
    if len(regions) == 1:
        region[segment.mask] = index[regions[0]]
        rules = _rules(country_code, regions[0])
        return region, rules.number_type(array, lengths, segment.mask)
    open_ = segment.mask.copy()
    for name in regions:
        rules = _rules(country_code, name)
        if rules.leading_digits is not None:
            hit = _regex(array, open_, rules.leading_digits)
        else:
            hit = open_ & (rules.number_type(array, lengths, open_) != PhoneNumberType.UNKNOWN)
        region[hit] = index[name]
        open_ &= ~hit
    for name in regions:
        rows = region == index[name]
        if rows.any():
            found = _rules(country_code, name).number_type(array, lengths, rows)
            types[rows] = found[rows]
    return region, types


@dataclass
class _Verdict:
    reason: np.ndarray
    country_code: np.ndarray
    national: pa.Array
    region: np.ndarray  # index into the region names, -1 where the number has none


def _judge(parser: _Parser, lexed: _Lexed) -> _Verdict:
    """From parsed rows to verdicts: national-prefix stripping, length limits, type."""
    parsed = parser.parse(lexed)
    reason = lexed.reason.copy()
    live = reason == 0
    digits = lexed.digits
    lengths = _lengths(digits).copy()
    ext_idx, ext_values = parsed.national.sorted()
    lengths[ext_idx] = _lengths(ext_values)
    ok = live & ~parsed.bad & (lengths >= _MIN_NSN_LENGTH)
    segments = [piece for segment in _segments(parser, parsed, digits, ext_idx, ext_values, ok)
                for piece in segment.strip_national_prefix(parsed.maybe_prefix)]
    types = np.full(len(reason), PhoneNumberType.UNKNOWN, dtype=np.int8)
    region = np.full(len(reason), -1, dtype=np.int16)
    national = _Patches(digits)
    for segment in segments:
        too_long = segment.mask & (segment.lengths > _MAX_NSN_LENGTH)
        ok[segment.chunk_rows(np.flatnonzero(too_long))] = False
        segment.mask &= ~too_long
        found_region, found_types = _classify(segment.code, segment)
        segment.put(region, found_region)
        segment.put(types, found_types)
        if segment.rows is not None:
            national.add(segment.rows, segment.array)
    reason[live & ~ok] = _CODE[INVALID_NUMBER]
    sms = ok & np.isin(types, _SMS_TYPES)
    reason[ok & ~sms & (types == PhoneNumberType.UNKNOWN)] = _CODE[INVALID_NUMBER]
    reason[ok & ~sms & (types != PhoneNumberType.UNKNOWN)] = _CODE[NOT_MOBILE]
    return _Verdict(reason, parsed.country_code, national.apply(), region)


def _check_chunk(parser: _Parser, raw: pa.Array, mainland: bool = False) -> NumberCheck:
    """One unit of work, start to finish; units share nothing, so they run on threads."""
    verdict = _judge(parser, _lex(raw))
    if mainland:
        foreign = (verdict.reason == 0) & (verdict.country_code != MAINLAND_CALLING_CODE)
        verdict.reason[foreign] = _CODE[NOT_MAINLAND]
    valid = verdict.reason == 0
    invalid = ~valid
    codes = np.where(valid, verdict.country_code, 0)
    national = pc.if_else(pa.array(valid), verdict.national, pa.scalar(None, pa.string()))
    e164 = pc.binary_join_element_wise(_CODE_TEXT.take(pa.array(codes)), national, "")
    reason = _REASON_NAMES.take(
        pa.array(verdict.reason.astype(np.int16) - 1, pa.int16(), mask=valid))
    return NumberCheck(e164=e164, country_code=pa.array(codes, pa.int32(), mask=invalid),
                       national=national, reason=reason,
                       region=_region_names()[0].take(
                           pa.array(verdict.region, pa.int16(), mask=verdict.region < 0)))
