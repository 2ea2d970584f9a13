"""What a phone value may hold, how spreadsheet damage is undone, and the per-row baseline.

Both paths -- :func:`check_number_baseline` here and the vectorised
:func:`~sms_provider.data.numbers.check_numbers` -- apply the same rules before
libphonenumber sees a value:

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

The regular-expression bodies defined here serve both Python's ``re`` (the
scalar repair) and RE2 (the array repair in :mod:`.lexer`).
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException

from sms_provider.data.numbers.reasons import (
    _SMS_TYPES,
    EMPTY,
    INVALID_NUMBER,
    MANGLED_NUMBER,
    NOT_A_NUMBER,
    NOT_MOBILE,
)

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
