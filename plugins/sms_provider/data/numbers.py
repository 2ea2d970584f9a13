"""Recipient phone numbers: repair spreadsheet damage, then validate on whole arrays.

A campaign file holds millions of numbers, and ``phonenumbers.parse`` costs tens
of microseconds a call, so the verdicts come from :func:`check_numbers`, which
replays libphonenumber's own decision procedure (country-code extraction,
national-prefix stripping, region choice, ``_number_type_helper``) on pyarrow
arrays with RE2, using the regular expressions and possible lengths read from
``phonenumbers.PhoneMetadata``. :func:`check_number_baseline` is the per-row
reference -- the same repair followed by one ``phonenumbers.parse`` -- and the
tests hold the two to identical verdicts.

Both paths apply the same rules before libphonenumber sees a value:

* characters in :data:`TRIM_CHARS` are stripped from both ends;
* full-width digits, plus and full stop become ASCII;
* a float rendering ``13800138000.0`` loses its ``.0``; scientific notation
  is expanded when no digit can have been lost (``1.38001380000E+10``, or a
  mantissa longer than Excel's display keeps, ``1.3800138E+10``) and is
  ``mangled_number`` otherwise (``1.38E+10``; see :func:`expand_scientific`);
* a value holding anything but digits, plus signs and the separators in
  :data:`SEPARATORS` is ``not_a_number``. libphonenumber would read letters
  as vanity digits or extension labels; neither makes sense for an SMS
  recipient, so the policy is applied before it, in both paths.

A number is kept only when libphonenumber would call it valid and of type
MOBILE or FIXED_LINE_OR_MOBILE.

Per-row cost is dominated by RE2 calls, so the code spends effort on calling it
on fewer rows: plain ASCII digits skip the repair, one alternation rules out
both prefixes of the default region, one tells mobiles from every other type,
and byte-level edits on the string buffers replace regex rewrites. Work is cut
into equal slices that run on a thread each (pyarrow releases the GIL).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumberType,
    ValidationResult,
)

from sms_provider.vendors.profile import NumberStyle
from sms_provider.vendors.profiles import profile_of

# --- reason codes -------------------------------------------------------------

EMPTY = "empty"
NOT_A_NUMBER = "not_a_number"
MANGLED_NUMBER = "mangled_number"
INVALID_NUMBER = "invalid_number"
NOT_MOBILE = "not_mobile"
NOT_MAINLAND = "not_mainland"

#: every reason a row can be rejected with, in code order (code = index + 1)
REASONS: tuple[str, ...] = (EMPTY, NOT_A_NUMBER, MANGLED_NUMBER, INVALID_NUMBER, NOT_MOBILE,
                            NOT_MAINLAND)
_CODE = {reason: code for code, reason in enumerate(REASONS, start=1)}
_REASON_NAMES = pa.array(REASONS, pa.string())

#: the calling code of mainland China, the only destination some vendors serve
MAINLAND_CALLING_CODE = 86

_SMS_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)

# --- the character policy and the spreadsheet repair rules ------------------------

#: stripped from both ends first: spreadsheet cells carry them invisibly
TRIM_CHARS = " \t\r\n\u3000\u00a0\ufeff\u200b"

#: separators a number may be written with; libphonenumber treats each as
#: punctuation. Tildes and "x" are left out: it reads them as extension labels.
SEPARATORS = (" -./()[]"
              "\u00a0\u00ad\u200b\u2060\u3000\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
              "\uff08\uff09\uff0d\uff0f\uff3b\uff3d")

_FULL_WIDTH = {**{0xFF10 + i: str(i) for i in range(10)}, 0xFF0B: "+", 0xFF0E: "."}
_FULL_WIDTH_TABLE = str.maketrans(_FULL_WIDTH)

# The same bodies serve Python's re (baseline) and RE2 (vectorised): [0-9], never \d,
# which Python would let match any script's digits.
_FLOAT_BODY = r"([0-9]+)\.0+"
_SCIENTIFIC_BODY = r"([0-9])(?:\.([0-9]+))?[eE]\+?([0-9]+)"
_FLOAT_RE = re.compile(_FLOAT_BODY)
_SCIENTIFIC_RE = re.compile(_SCIENTIFIC_BODY)
_ALLOWED_RE = re.compile("[0-9+" + re.escape(SEPARATORS) + "]*")

#: libphonenumber refuses longer input outright
_MAX_INPUT_LENGTH = 250
_MAX_NSN_LENGTH = 17
_MIN_NSN_LENGTH = 2


def expand_scientific(text: str) -> str | None:
    """The digits of a scientific-notation value, or None when digits may be lost.

    Spreadsheets turn long digit strings into floats. Only a mantissa that
    carries every digit is expanded: one that would need padding with zeros
    (``1.3800138E+10``) may stand for 13800138123 rounded for display, and a
    guessed number messages a stranger. Such rows are refused as mangled.
    """
    match = _SCIENTIFIC_RE.fullmatch(text)
    if match is None:
        return None
    lead, fraction, exponent = match.group(1), match.group(2) or "", int(match.group(3))
    if len(fraction) >= exponent:
        if fraction[exponent:].strip("0"):
            return None  # not a whole number: no phone number looks like that
        return lead + fraction[:exponent]
    return None


def repair_text(raw: str | None) -> tuple[str | None, str | None]:
    """Undo spreadsheet damage on one value: ``(text for the parser, None)`` or ``(None, reason)``.

    The scalar twin of the array repair inside :func:`check_numbers`: the
    baseline uses it, and the tests hold the array repair to it.
    """
    if raw is None:
        return None, EMPTY
    text = raw.strip(TRIM_CHARS)
    if not text:
        return None, EMPTY
    text = text.translate(_FULL_WIDTH_TABLE)
    if _FLOAT_RE.fullmatch(text):
        text = text.partition(".")[0]
    elif _SCIENTIFIC_RE.fullmatch(text):
        expanded = expand_scientific(text)
        if expanded is None:
            return None, MANGLED_NUMBER
        text = expanded
    if not _ALLOWED_RE.fullmatch(text):
        return None, NOT_A_NUMBER
    return text, None


def check_number_baseline(raw: str | None, default_region: str = "CN"
                          ) -> tuple[str | None, str | None]:
    """One value the slow, obviously right way: ``(e164 digits, None)`` or ``(None, reason)``.

    It is the reference :func:`check_numbers` is tested against and the
    benchmark's yardstick: the shared repair, then a single
    ``phonenumbers.parse``.
    """
    text, reason = repair_text(raw)
    if reason is not None:
        return None, reason
    try:
        number = phonenumbers.parse(text, default_region.upper())
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.NOT_A_NUMBER:
            return None, NOT_A_NUMBER
        return None, INVALID_NUMBER
    if not phonenumbers.is_valid_number(number):
        return None, INVALID_NUMBER
    if phonenumbers.number_type(number) not in _SMS_TYPES:
        return None, NOT_MOBILE
    return f"{number.country_code}{phonenumbers.national_significant_number(number)}", None


# --- the result ---------------------------------------------------------------


@dataclass(frozen=True)
class NumberCheck:
    """Per-row verdicts, aligned with the input.

    ``e164`` holds digits without the ``+``; ``e164``, ``country_code`` and
    ``national`` are null for rejected rows, ``reason`` is null for kept ones.
    ``region`` is set whenever the number could be placed, kept or not, so a
    report can say "valid UK landline" rather than just "rejected".
    """

    e164: pa.Array
    country_code: pa.Array
    national: pa.Array
    region: pa.Array
    reason: pa.Array

    def __len__(self) -> int:
        return len(self.reason)

    @property
    def valid(self) -> pa.BooleanArray:
        return self.reason.is_null()

    def to_table(self) -> pa.Table:
        return pa.table({"e164": self.e164, "country_code": self.country_code,
                         "national": self.national, "region": self.region,
                         "reason": self.reason})


# --- small array helpers ---------------------------------------------------------


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


# --- libphonenumber's rules for one region, on arrays ------------------------------------

#: lengths are looked up in tables this long; longer values cannot reach them
_LENGTH_CAP = 255


def _length_table(lengths: Sequence[int] | None) -> np.ndarray:
    table = np.zeros(_LENGTH_CAP + 1, dtype=bool)
    if lengths is None:
        table[:] = True
    else:
        table[[length for length in lengths if 0 <= length < _LENGTH_CAP]] = True
    return table


def _capped(lengths: np.ndarray) -> np.ndarray:
    return np.minimum(lengths, _LENGTH_CAP)


@dataclass(frozen=True)
class _Desc:
    """A PhoneNumberDesc as ``_is_number_matching_desc`` reads it."""

    body: str
    pattern: str          # anchored for a full match
    lengths: np.ndarray   # table: which lengths may match at all

    @classmethod
    def of(cls, desc: object) -> _Desc | None:
        body = getattr(desc, "national_number_pattern", None)
        if not body:
            return None  # libphonenumber: an absent pattern never matches
        lengths = desc.possible_length or None  # type: ignore[attr-defined]
        return cls(body, _anchored(body, full=True), _length_table(lengths))

    def accepts(self, length: int) -> bool:
        return bool(self.lengths[min(length, _LENGTH_CAP)])

    def matches(self, array: pa.Array, lengths: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return _regex(array, mask & self.lengths[_capped(lengths)], self.pattern)


@dataclass(frozen=True)
class _Chain:
    """The type checks that can apply to numbers of one length, in helper order.

    ``others`` is one RE2 pass that tells whether any non-mobile type matches:
    most numbers are mobiles, and for them that pass plus the mobile pattern
    settle the type.
    """

    others: str | None
    special: list[tuple[int, _Desc]]
    fixed: _Desc | None
    mobile: _Desc | None


_SPECIAL_TYPES = (
    (PhoneNumberType.PREMIUM_RATE, "premium_rate"),
    (PhoneNumberType.TOLL_FREE, "toll_free"),
    (PhoneNumberType.SHARED_COST, "shared_cost"),
    (PhoneNumberType.VOIP, "voip"),
    (PhoneNumberType.PERSONAL_NUMBER, "personal_number"),
    (PhoneNumberType.PAGER, "pager"),
    (PhoneNumberType.UAN, "uan"),
    (PhoneNumberType.VOICEMAIL, "voicemail"),
)
_NO_STRIP_RESULTS = (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                     ValidationResult.INVALID_LENGTH)


class _Rules:
    """One region's metadata, applied the way phonenumberutil applies it."""

    def __init__(self, metadata: PhoneMetadata) -> None:
        self.region: str = metadata.id
        self.country_code: int = metadata.country_code
        general = metadata.general_desc
        self.general_pattern = _anchored(general.national_number_pattern or None, full=True)
        self.general = _Desc.of(general)
        self.possible_lengths = tuple(general.possible_length)
        self.local_lengths = _length_table(general.possible_length_local_only)
        self.special = [(kind, desc) for kind, name in _SPECIAL_TYPES
                        if (desc := _Desc.of(getattr(metadata, name))) is not None]
        self.fixed = _Desc.of(metadata.fixed_line)
        self.mobile = _Desc.of(metadata.mobile)
        self.same_mobile_and_fixed = bool(metadata.same_mobile_and_fixed_line_pattern)
        prefix = metadata.national_prefix_for_parsing or None
        self.np_body = prefix
        self.np_prefix = _anchored(prefix, full=False)
        self.np_whole = f"^(?:{prefix}).*$" if prefix else None
        self.np_rule = metadata.national_prefix_transform_rule or None
        self.np_groups = re.compile(prefix).groups if prefix else 0
        if self.np_rule and not self.np_groups:
            raise ValueError(f"{self.region}: transform rule without a group in {prefix!r}")
        self.idd_body = metadata.international_prefix or None
        self.idd_prefix = _anchored(self.idd_body, full=False)
        self.leading_digits = _anchored(metadata.leading_digits, full=False)
        self._chains: dict[int, _Chain] = {}

    def test_length(self, lengths: np.ndarray) -> np.ndarray:
        """``_test_number_length`` for the UNKNOWN type, in its order of precedence."""
        possible = self.possible_lengths
        out = np.full(lengths.shape, ValidationResult.INVALID_LENGTH, dtype=np.int8)
        out[np.isin(lengths, possible[1:])] = ValidationResult.IS_POSSIBLE
        out[lengths > possible[-1]] = ValidationResult.TOO_LONG
        out[lengths < possible[0]] = ValidationResult.TOO_SHORT
        out[lengths == possible[0]] = ValidationResult.IS_POSSIBLE
        out[self.local_lengths[_capped(lengths)]] = ValidationResult.IS_POSSIBLE_LOCAL_ONLY
        return out

    def strip_national_prefix(self, array: pa.Array, mask: np.ndarray
                              ) -> tuple[np.ndarray, pa.Array]:
        """``_maybe_strip_national_prefix_carrier_code`` on the rows under ``mask``.

        Returns the rows whose number loses a prefix, and what is left of them.
        """
        nothing = np.zeros(0, dtype=np.int64), pa.array([], pa.string())
        if self.np_prefix is None:
            return nothing
        idx = np.flatnonzero(_regex(array, mask, self.np_prefix))
        if idx.size == 0:
            return nothing
        sub = array.take(idx)
        stripped = pc.replace_substring_regex(sub, self.np_prefix, "", max_replacements=1)
        if self.np_rule is not None:
            # the rule applies only when the last group took part in the match
            last = pc.replace_substring_regex(sub, self.np_whole, f"\\{self.np_groups}")
            transformed = pc.replace_substring_regex(sub, self.np_prefix, self.np_rule,
                                                     max_replacements=1)
            stripped = pc.if_else(pc.greater(pc.binary_length(last), 0), transformed, stripped)
        some = np.ones(idx.size, dtype=bool)
        keep = _regex(sub, some, self.general_pattern)
        keep &= ~_regex(stripped, some, self.general_pattern)
        return idx[~keep], stripped.filter(pa.array(~keep))

    def _chain(self, length: int) -> _Chain:
        chain = self._chains.get(length)
        if chain is None:
            special = [(kind, desc) for kind, desc in self.special if desc.accepts(length)]
            fixed = self.fixed if self.fixed is not None and self.fixed.accepts(length) else None
            mobile = self.mobile if self.mobile is not None and self.mobile.accepts(length) \
                else None
            bodies = [desc.body for _, desc in special] + ([fixed.body] if fixed else [])
            others = "^(?:" + "|".join(f"(?:{b})" for b in bodies) + ")$" if bodies else None
            chain = self._chains[length] = _Chain(others, special, fixed, mobile)
        return chain

    def number_type(self, array: pa.Array, lengths: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``_number_type_helper`` for the rows under ``mask`` (UNKNOWN elsewhere)."""
        out = np.full(len(array), PhoneNumberType.UNKNOWN, dtype=np.int8)
        if self.general is None:
            return out
        open_ = self.general.matches(array, lengths, mask)
        present = np.flatnonzero(np.bincount(_capped(lengths[open_]), minlength=1))
        for length in present:
            rows = open_ if present.size == 1 else open_ & (lengths == length)
            self._type_rows(self._chain(int(length)), array, rows, out)
        return out

    def _type_rows(self, chain: _Chain, array: pa.Array, rows: np.ndarray,
                   out: np.ndarray) -> None:
        others = _regex(array, rows, chain.others)
        if others.any():
            open_ = others.copy()
            for kind, desc in chain.special:
                hit = _regex(array, open_, desc.pattern)
                out[hit] = kind
                open_ &= ~hit
            fixed = _regex(array, open_, chain.fixed.pattern if chain.fixed else None)
            if self.same_mobile_and_fixed:
                out[fixed] = PhoneNumberType.FIXED_LINE_OR_MOBILE
            else:
                out[fixed] = PhoneNumberType.FIXED_LINE
                mobile = chain.mobile.pattern if chain.mobile else None
                out[_regex(array, fixed, mobile)] = PhoneNumberType.FIXED_LINE_OR_MOBILE
        if not self.same_mobile_and_fixed and chain.mobile is not None:
            out[_regex(array, rows & ~others, chain.mobile.pattern)] = PhoneNumberType.MOBILE


@cache
def _rules(country_code: int, region: str) -> _Rules:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        raise ValueError(f"no metadata for {region} (+{country_code})")
    return _Rules(metadata)


def _main_rules(country_code: int) -> _Rules:
    return _rules(country_code, phonenumbers.region_code_for_country_code(country_code))


@cache
def _calling_codes() -> np.ndarray:
    """Which values below 1000 are calling codes."""
    known = np.zeros(1000, dtype=bool)
    known[list(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)] = True
    return known


@cache
def _region_names() -> tuple[pa.Array, dict[str, int]]:
    names = sorted({r for regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values()
                    for r in regions})
    return pa.array(names, pa.string()), {name: i for i, name in enumerate(names)}


#: calling codes as text, by value (they are below 1000)
_CODE_TEXT = pa.array([str(code) for code in range(1000)], pa.string())


# --- the vectorised path ------------------------------------------------------------

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


# --- public entry points --------------------------------------------------------------

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
    """Repair and validate every phone value in ``raw`` (see the module docstring).

    ``raw`` is a string column as read from a recipient file (integer and
    float columns are accepted and rendered first); numbers without a
    calling code are read as ``default_region`` numbers. With ``mainland``,
    the verdicts are those of :func:`mainland_only`, reached inside the
    threaded pass rather than by rewriting the finished columns.
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


# --- what each vendor wants ---------------------------------------------------------

def mainland_only(check: NumberCheck) -> NumberCheck:
    """The same verdicts, with valid numbers outside mainland China refused as ``not_mainland``."""
    foreign = pc.fill_null(
        pc.and_(check.valid, pc.not_equal(check.country_code, MAINLAND_CALLING_CODE)), False)
    nothing = pa.scalar(None, pa.string())
    return NumberCheck(
        e164=pc.if_else(foreign, nothing, check.e164),
        country_code=pc.if_else(foreign, pa.scalar(None, check.country_code.type),
                                check.country_code),
        national=pc.if_else(foreign, nothing, check.national),
        region=check.region,
        reason=pc.if_else(foreign, pa.scalar(NOT_MAINLAND), check.reason),
    )


def format_for_vendor(check: NumberCheck, vendor: str) -> pa.Array:
    """Each row's number the way ``vendor`` takes it; null where the row cannot be sent."""
    style = profile_of(vendor).number_style
    if style is NumberStyle.MAINLAND:
        return mainland_only(check).national
    if style is NumberStyle.E164:
        return check.e164
    return pc.binary_join_element_wise(pa.scalar("00"), check.e164, "")
