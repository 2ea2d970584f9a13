"""What each vendor wants: numbers in the style of its profile, mainland-only where it must."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.numbers.reasons import MAINLAND_CALLING_CODE, NOT_MAINLAND
from sms_provider.data.numbers.result import NumberCheck
from sms_provider.vendors.profile import NumberStyle
from sms_provider.vendors.profiles import profile_of


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
