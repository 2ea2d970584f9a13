"""The interface every vendor client implements, and the request shape it accepts.

The send task only ever calls :meth:`VendorClient.send` with chunks of at most
:attr:`VendorClient.max_batch` messages; the client picks the vendor endpoint
(single, same-content batch, personalised batch) and enforces the vendor's
limits *before* anything goes on the wire.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, ClassVar

from sms_provider.errors import LimitExceededError, RateLimitedError
from sms_provider.models import (
    Balance,
    ColumnBatch,
    DailyStatistic,
    DeliveryReport,
    InboundMessage,
    Submission,
)
from sms_provider.vendors.transport import HttpSettings, HttpTransport

if TYPE_CHECKING:
    from sms_provider.vendors.profile import VendorProfile


@dataclass(slots=True)
class OutboundMessage:
    """One message to send. ``mobile`` is already in the vendor's own format.

    Not frozen: a campaign builds millions of these and frozen construction
    costs 5x; nothing changes them after planning.
    """

    mobile: str
    content: str = ""
    custom_id: str | None = None
    variables: Mapping[str, str] | None = None  # FMS template variables


class OutboundBatch(ColumnBatch[OutboundMessage]):
    """A request's messages kept by column, as the send path plans them.

    It reads like a list of :class:`OutboundMessage` (each one made on access);
    a client that only needs the columns takes them with :func:`message_columns`
    and the thousand objects of a request are never made.
    """

    __slots__ = ("contents", "custom_ids", "mobiles", "variables")

    def __init__(self, mobiles: list[str], contents: list[str], custom_ids: list[str | None],
                 variables: list[Mapping[str, str] | None]) -> None:
        self._set_length(mobiles, contents, custom_ids, variables)
        self.mobiles, self.contents = mobiles, contents
        self.custom_ids, self.variables = custom_ids, variables

    def _record(self, index: int) -> OutboundMessage:
        return OutboundMessage(self.mobiles[index], self.contents[index],
                               self.custom_ids[index], self.variables[index])

    def __repr__(self) -> str:
        return f"OutboundBatch({len(self)} messages)"


def message_columns(messages: Sequence[OutboundMessage]
                    ) -> tuple[list[str], list[str], list[str | None]]:
    """Mobiles, contents and custom ids of ``messages``, without per-message work for a batch."""
    if isinstance(messages, OutboundBatch):
        return messages.mobiles, messages.contents, messages.custom_ids
    return ([m.mobile for m in messages], [m.content for m in messages],
            [m.custom_id for m in messages])


def message_variables(messages: Sequence[OutboundMessage]) -> list[Mapping[str, str] | None]:
    """The template variables of ``messages``, without per-message work for a batch."""
    if isinstance(messages, OutboundBatch):
        return messages.variables
    return [m.variables for m in messages]


#: the calls that reach the vendor; a "too fast" answer to any of them pauses the account
VENDOR_CALLS = ("send", "pull_reports", "query_reports", "pull_inbound", "balance",
                "statistics", "register_template", "query_template")


def _shares_rate_limit_answers(call: Callable) -> Callable:
    """Wrap a vendor call so the vendor's own "too fast" pauses every worker of the account.

    Only an answer from the vendor counts (it carries the vendor's code, HTTP 429
    included); a client's own guard (EUMS's query window) raises without a code
    and is this process's business. The error is raised on unchanged.
    """
    @functools.wraps(call)
    def vendor_call(self: VendorClient, *args: object, **kwargs: object) -> object:
        try:
            return call(self, *args, **kwargs)
        except RateLimitedError as exc:
            if exc.code is not None and not getattr(exc, "pause_shared", False):
                exc.pause_shared = True  # an outer vendor call does not pause again
                self.http.limiter.pause(exc.retry_after)
            raise
    return vendor_call


class Capability:
    SEND = "send"
    PULL_REPORTS = "pull_reports"      # consume-once pull (Emay, EUMS)
    QUERY_REPORTS = "query_reports"    # by message id (EIMS)
    PUSH_REPORTS = "push_reports"      # the vendor can push to us
    INBOUND = "inbound"                # pull replies (EIMS, EUMS)
    BALANCE = "balance"
    STATISTICS = "statistics"          # vendor daily statistics (EUMS)
    TEMPLATES = "templates"            # FMS


class VendorClient:
    """Base for the five clients: one keep-alive session, limits, nothing secret in repr.

    A client class names its :class:`VendorProfile`; the class attributes below are
    copied from it once, so the send path reads them without a lookup.
    """

    profile: ClassVar[VendorProfile]
    vendor: ClassVar[str] = ""
    #: the largest number of recipients one request may carry, per the document
    batch_limit: ClassVar[int] = 1
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: where the vendor keeps our own id: per ``"message"`` (Emay customImsId /
    #: customFmsId), per ``"request"`` (EUMS reference) or nowhere (``"none"``)
    custom_id_scope: ClassVar[str] = "none"
    #: whether one request may carry different contents (or template variables)
    personalised_batches: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        profile = cls.__dict__.get("profile")
        if profile is not None:
            cls.vendor = profile.conn_type
            cls.batch_limit = profile.limits.batch
            cls.capabilities = profile.capabilities
            cls.custom_id_scope = profile.custom_id_scope.value
            cls.personalised_batches = profile.personalised_batches
        for name in VENDOR_CALLS:
            if name in cls.__dict__:
                setattr(cls, name, _shares_rate_limit_answers(cls.__dict__[name]))

    def __init__(self, settings: HttpSettings, *, max_batch: int | None = None) -> None:
        if max_batch is not None and not 1 <= max_batch <= self.batch_limit:
            raise LimitExceededError(
                f"max_batch must be between 1 and {self.batch_limit}, got {max_batch}",
                vendor=self.vendor)
        self.max_batch = max_batch or self.batch_limit
        self.http = HttpTransport(self.vendor, settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.http.base_url!r})"

    def __enter__(self) -> VendorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    # --- operations; each client implements those it supports -------------
    def send(self, messages: Sequence[OutboundMessage], *, template_id: str | None = None
             ) -> list[Submission]:
        raise NotImplementedError

    def pull_reports(self, limit: int | None = None) -> list[DeliveryReport]:
        raise NotImplementedError(f"{self.vendor} has no pull reports")

    def query_reports(self, message_ids: Sequence[str]) -> list[DeliveryReport]:
        raise NotImplementedError(f"{self.vendor} has no report query by id")

    def pull_inbound(self) -> list[InboundMessage]:
        raise NotImplementedError(f"{self.vendor} has no inbound pull")

    def balance(self) -> list[Balance]:
        raise NotImplementedError(f"{self.vendor} has no balance call")

    def statistics(self, start: date, end: date) -> list[DailyStatistic]:
        raise NotImplementedError(f"{self.vendor} has no daily statistics")

    def check_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Refuse an empty or oversized chunk before sending."""
        if not messages:
            raise LimitExceededError("no recipients to send to", vendor=self.vendor)
        if len(messages) > self.max_batch:
            raise LimitExceededError(
                f"{len(messages)} recipients in one request, the limit is {self.max_batch}",
                vendor=self.vendor)
