"""The one model every vendor client speaks.

Five wire formats collapse into these few types so that the data plane (ledger,
reports, reconciliation) never needs to know which vendor a row came from.
Vendor-specific detail survives in ``raw``/``raw_state`` fields rather than in
extra columns, so nothing a vendor told us is thrown away.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any


class DeliveryStatus(enum.StrEnum):
    """Normalised final (or not yet final) state of one message."""

    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"


class SubmissionStatus(enum.StrEnum):
    """What happened to one recipient when we asked the vendor to send."""

    SUBMITTED = "submitted"
    REJECTED = "rejected"
    AMBIGUOUS = "ambiguous"


@dataclass(slots=True)
class Submission:
    """One recipient of an accepted (or per-number rejected) send request.

    ``charge_items`` is what the vendor says it will bill when it tells us
    (EUMS), otherwise our own estimate from the segment rule. Not frozen: a
    campaign creates millions of these and frozen construction costs 5x.
    """

    mobile: str
    message_id: str | None
    custom_id: str | None = None
    charge_items: int = 1
    vendor_code: str = "0"
    status: SubmissionStatus = SubmissionStatus.SUBMITTED
    description: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery report, pulled or pushed."""

    message_id: str | None
    mobile: str
    raw_state: str
    status: DeliveryStatus
    custom_id: str | None = None
    description: str = ""
    submit_time: datetime | None = None
    report_time: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A reply (MO) from a handset."""

    mobile: str
    content: str
    received_at: datetime | None
    destination: str = ""
    message_id: str | None = None
    reference: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Balance:
    """Remaining credit.

    ``unit`` says what ``amount`` counts: ``items`` (charge items) or ``money``
    (EIMS bills in currency). ``product`` is set where a vendor keeps one
    balance per product (Chuanglan).
    """

    amount: Decimal
    unit: str = "items"
    product: str | None = None
    gift: Decimal | None = None


@dataclass(frozen=True, slots=True)
class DailyStatistic:
    """The vendor's own per-day counts, to reconcile ours against."""

    day: date
    submitted: int
    delivered: int
    failed: int
    unknown: int


class ApprovalState(enum.StrEnum):
    """Per-carrier state of an FMS template (the document's -1..3)."""

    NOT_FOUND = "NOT_FOUND"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    UNSUPPORTED = "UNSUPPORTED"


@dataclass(frozen=True, slots=True)
class Template:
    """A registered FMS template and its approval per carrier (cmcc/cucc/ctcc)."""

    template_id: str
    approvals: dict[str, ApprovalState] = field(default_factory=dict)
    variables: tuple[str, ...] = ()

    @property
    def decided(self) -> bool:
        """True once no carrier is still pending."""
        return all(state is not ApprovalState.PENDING for state in self.approvals.values())

    @property
    def usable(self) -> bool:
        """True once at least one carrier approved and none is pending."""
        return self.decided and any(s is ApprovalState.APPROVED for s in self.approvals.values())
