"""The one model every vendor client speaks.

Five wire formats collapse into these few types so that the data plane (ledger,
reports, reconciliation) never needs to know which vendor a row came from.
Vendor-specific detail survives in ``raw``/``raw_state`` fields rather than in
extra columns, so nothing a vendor told us is thrown away.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence, Sized
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar, overload

T = TypeVar("T")


class DeliveryStatus(enum.StrEnum):
    """Normalised final (or not yet final) state of one message."""

    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"


class SubmissionStatus(enum.StrEnum):
    """What happened to one recipient when we asked the vendor to send: the ``status``
    of a row in ``submissions/``.

    Not the send ledger's :class:`~sms_provider.data.ledger.ChunkState` (the state
    of a whole request: ``pending`` there means "not certainly sent yet"), nor
    reconcile's final status (``PENDING``/``REJECTED`` there describe delivery).
    """

    #: the vendor accepted the recipient
    SUBMITTED = "submitted"
    #: the vendor refused the recipient (or the whole request): never sent
    REJECTED = "rejected"
    #: the request may have gone out unheard: delivery reports settle it
    AMBIGUOUS = "ambiguous"
    #: a dry run planned the recipient and sent nothing
    DRY_RUN = "dry_run"


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


class ColumnBatch(Sequence[T]):
    """Records kept as parallel columns that read like a list: a record is made only
    when one is asked for, so a batch of a thousand costs a few lists, not a thousand
    objects. Subclasses say how long they are and how to make record ``index``."""

    __slots__ = ("_length",)

    def _set_length(self, *columns: Sized) -> None:
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._length = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self._length

    def _record(self, index: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self)))]
        return self._record(index)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable columns, like a list

    def __add__(self, other: Sequence[T]) -> list[T]:
        return [*self, *other]

    def __radd__(self, other: Sequence[T]) -> list[T]:
        return [*other, *self]


class AcceptedBatch(ColumnBatch[Submission]):
    """A request's submissions when the vendor took every recipient, kept by column.

    It reads like a list of :class:`Submission` (each one made on access) but
    costs no object per recipient: the send path, which handles every
    recipient of a campaign, reads the columns through :meth:`by_column`.
    """

    __slots__ = ("charge_items", "custom_id", "message_ids", "mobiles", "vendor_code")

    def __init__(self, mobiles: list[str], message_ids: list[str],
                 custom_id: str | list[str | None] | None, charge_items: list[int],
                 vendor_code: str = "0") -> None:
        """``custom_id`` is the request's one id (EUMS reference) or each recipient's;
        ``vendor_code`` is the vendor's code of success."""
        self._set_length(mobiles, message_ids, charge_items,
                         *([custom_id] if isinstance(custom_id, list) else []))
        self.mobiles, self.message_ids = mobiles, message_ids
        self.custom_id, self.charge_items = custom_id, charge_items
        self.vendor_code = vendor_code

    def _record(self, index: int) -> Submission:
        custom_id = self.custom_id
        return Submission(self.mobiles[index], self.message_ids[index],
                          custom_id[index] if isinstance(custom_id, list) else custom_id,
                          self.charge_items[index], self.vendor_code)

    def __repr__(self) -> str:
        custom_id = ("one per recipient" if isinstance(self.custom_id, list)
                     else repr(self.custom_id))
        return f"AcceptedBatch({len(self)} submissions, custom_id={custom_id})"

    def by_column(self) -> dict[str, Any]:
        """Each :class:`Submission` field as a list, or one value every recipient shares."""
        return {"mobile": self.mobiles, "message_id": self.message_ids,
                "custom_id": self.custom_id, "charge_items": self.charge_items,
                "vendor_code": self.vendor_code, "status": SubmissionStatus.SUBMITTED.value,
                "description": ""}


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
