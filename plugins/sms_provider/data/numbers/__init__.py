"""Recipient phone numbers: repair spreadsheet damage, then validate on whole arrays.

A campaign file holds millions of numbers, and ``phonenumbers.parse`` costs tens
of microseconds a call, so the verdicts come from :func:`check_numbers`, which
replays libphonenumber's own decision procedure (country-code extraction,
national-prefix stripping, region choice, ``_number_type_helper``) on pyarrow
arrays with RE2, using the regular expressions and possible lengths read from
``phonenumbers.PhoneMetadata``. :func:`check_number_baseline` is the per-row
reference -- the same repair followed by one ``phonenumbers.parse`` -- and the
tests hold the two to identical verdicts.

Both paths apply the same character policy and spreadsheet repair rules
(:mod:`.policy`) before libphonenumber sees a value. A number is kept only
when libphonenumber would call it valid and of type MOBILE or
FIXED_LINE_OR_MOBILE.

Per-row cost is dominated by RE2 calls, so the code spends effort on calling it
on fewer rows: plain ASCII digits skip the repair, one alternation rules out
both prefixes of the default region, one tells mobiles from every other type,
and byte-level edits on the string buffers replace regex rewrites. Work is cut
into equal slices that run on a thread each (pyarrow releases the GIL).

The modules, in the order a value meets them: :mod:`.check` (entry points,
threading), :mod:`.lexer` (raw text to digits), :mod:`.classify` (parse, region,
type, verdict), with :mod:`.rules` (libphonenumber's metadata on arrays) and
:mod:`.arrays` (buffer helpers) beneath; :mod:`.reasons`, :mod:`.policy` (and
the baseline), :mod:`.result` and :mod:`.vendor_format` beside them. This
package re-exports the public names; patch a setting such as ``CHUNK_ROWS`` in
the module that defines it.
"""

from __future__ import annotations

from sms_provider.data.numbers.check import CHUNK_ROWS, as_phone_text, check_numbers, float_text
from sms_provider.data.numbers.policy import (
    SEPARATORS,
    TRIM_CHARS,
    check_number_baseline,
    expand_scientific,
    repair_text,
)
from sms_provider.data.numbers.reasons import (
    EMPTY,
    INVALID_NUMBER,
    MAINLAND_CALLING_CODE,
    MANGLED_NUMBER,
    NOT_A_NUMBER,
    NOT_MAINLAND,
    NOT_MOBILE,
    REASONS,
)
from sms_provider.data.numbers.result import NumberCheck
from sms_provider.data.numbers.vendor_format import format_for_vendor, mainland_only

__all__ = [
    "CHUNK_ROWS",
    "EMPTY",
    "INVALID_NUMBER",
    "MAINLAND_CALLING_CODE",
    "MANGLED_NUMBER",
    "NOT_A_NUMBER",
    "NOT_MAINLAND",
    "NOT_MOBILE",
    "REASONS",
    "SEPARATORS",
    "TRIM_CHARS",
    "NumberCheck",
    "as_phone_text",
    "check_number_baseline",
    "check_numbers",
    "expand_scientific",
    "float_text",
    "format_for_vendor",
    "mainland_only",
    "repair_text",
]
