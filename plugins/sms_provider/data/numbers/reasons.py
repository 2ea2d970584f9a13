"""Why a row is refused: the reason names, their one-byte codes, and what counts as a mobile.

The vectorised path carries reasons as small integers (code = index in
:data:`REASONS` + 1, 0 for "kept") and turns them into names only once, at
the end of a chunk.
"""

from __future__ import annotations

import pyarrow as pa
from phonenumbers import PhoneNumberType

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
