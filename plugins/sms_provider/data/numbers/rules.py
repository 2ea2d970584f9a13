"""libphonenumber's rules for one region, applied to whole arrays.

:class:`_Rules` holds a region's ``PhoneMetadata`` as RE2 patterns and length
tables and replays, on the rows under a mask, what phonenumberutil does for
one number: ``_test_number_length``, ``_maybe_strip_national_prefix_carrier_code``
and ``_number_type_helper``. Most numbers are mobiles, so one alternation of
every non-mobile type tells them apart before the per-type checks run.
Rules are built once per region and cached; so are the calling-code and
region-name tables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import (
    PhoneMetadata,
    PhoneNumberType,
    ValidationResult,
)

from sms_provider.data.numbers.arrays import _anchored, _regex

#: libphonenumber refuses longer input outright
_MAX_INPUT_LENGTH = 250
_MAX_NSN_LENGTH = 17
_MIN_NSN_LENGTH = 2

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
