"""Vendor code tables: each vendor's documented codes mapped onto the taxonomy.

A table entry is ``code -> (error class, description)``. Codes absent from a
table raise :class:`VendorError`, which keeps the raw code for the analyst.
"""

from __future__ import annotations

from collections.abc import Mapping

from sms_provider.errors import RateLimitedError, SmsError, VendorError
from sms_provider.models import DeliveryStatus

CodeTable = Mapping[str, tuple[type[SmsError], str]]


def raise_for_code(vendor: str, table: CodeTable, code: object, endpoint: str,
                   *, retry_after: float = 1.0) -> None:
    """Raise the taxonomy error for a non-success vendor code."""
    key = str(code).strip()
    cls, description = table.get(key, (VendorError, "code not in the vendor's documentation"))
    if issubclass(cls, RateLimitedError):
        raise RateLimitedError(description, retry_after=retry_after, vendor=vendor, code=key,
                               endpoint=endpoint)
    raise cls(description, vendor=vendor, code=key, endpoint=endpoint)


def normalise_state(table: Mapping[str, DeliveryStatus], raw: object,
                    default: DeliveryStatus = DeliveryStatus.UNKNOWN) -> DeliveryStatus:
    """Map a raw report state; states a document does not list get ``default``."""
    return table.get(str(raw).strip(), default)
