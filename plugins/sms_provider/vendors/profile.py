"""The shape of a vendor profile: every trait of a vendor that code outside its client
module needs to know, so that the data plane, the operators, the simulator and the
provider metadata ask one object instead of testing a vendor's name.

The five profiles themselves are in :mod:`sms_provider.vendors.profiles`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sms_provider.vendors.base import VendorClient


class NumberStyle(StrEnum):
    """How a vendor wants a number written on the wire."""

    IDD = "idd"            # 00 + calling code + number: 008613800138000
    E164 = "e164"          # calling code + number, no "+": 8613800138000
    MAINLAND = "mainland"  # the 11-digit mainland number: 13800138000


class CustomIdScope(StrEnum):
    """Where the vendor keeps an id of ours that its reports echo back."""

    MESSAGE = "message"    # one per recipient (Emay customImsId / customFmsId)
    REQUEST = "request"    # one per request, shared by its recipients (EUMS reference)
    NONE = "none"          # the vendor keeps no id of ours


class MessageIdScope(StrEnum):
    """What one vendor message id names."""

    RECIPIENT = "recipient"  # every recipient gets its own id
    REQUEST = "request"      # one id for a whole request: matched with the mobile


class AmbiguousSettlement(StrEnum):
    """How a submission whose answer was lost is settled from the reports."""

    CUSTOM_ID = "custom_id"  # a report carrying our custom id settles it
    MOBILE = "mobile"        # an unclaimed report for the number settles it


class FailureClass(StrEnum):
    """What a failed delivery report says went wrong, as far as another try is concerned.

    Each profile maps its vendor's report states onto these (``failure_classes``);
    ``sms_resend`` sends again only what a carrier or the vendor failed
    (:attr:`retry_worthy`), never invalid numbers, opt-outs or blacklisted numbers
    (:attr:`never_resent`), whatever the conf asks.
    """

    CARRIER = "carrier"                  # the carrier network or gateway failed it
    VENDOR = "vendor"                    # the vendor's platform, channel or supplier did
    INVALID_NUMBER = "invalid_number"    # the number does not exist or cannot take SMS
    BLACKLISTED = "blacklisted"          # the vendor or carrier blacklists the number
    OPTED_OUT = "opted_out"              # the recipient asked not to be messaged
    CONTENT = "content"                  # the text was refused (review, words, signature)
    FREQUENCY = "frequency"              # too many messages to the number already
    UNCLASSIFIED = "unclassified"        # a state the profile does not know

    @property
    def retry_worthy(self) -> bool:
        """Resent by default: the same message may well arrive through another route."""
        return self in (FailureClass.CARRIER, FailureClass.VENDOR)

    @property
    def never_resent(self) -> bool:
        """Not resent even when a conf names it: the number itself is the problem."""
        return self in (FailureClass.INVALID_NUMBER, FailureClass.BLACKLISTED,
                        FailureClass.OPTED_OUT)


@dataclass(frozen=True)
class Extra:
    """One connection extra: how its text is read, and its field in the connection form."""

    coerce: Callable[[Any], Any]
    label: str
    schema: Mapping[str, Any]
    description: str = ""
    #: masked wherever it might be printed (an AES key, an md5 key)
    sensitive: bool = False

    def form_field(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.description:
            out["description"] = self.description
        out["schema"] = dict(self.schema)
        return out


@dataclass(frozen=True)
class Limits:
    """The vendor's documented limits; the client enforces them and the simulator too."""

    batch: int                             # recipients in one send request
    content_chars: int | None              # the default content limit (None: a template)
    custom_id_chars: int | None = None     # our id's length where the vendor keeps one
    report_pull: int | None = None         # reports one pull hands out
    report_query: int | None = None        # message ids one report query takes
    inbound_page: int | None = None        # replies one inbound call hands out
    push_page: int | None = None           # reports one push carries
    statistics_days: int | None = None     # the widest statistics window, in days
    statistics_calls: int | None = None    # statistics calls allowed per window below
    statistics_window_s: float | None = None


@dataclass(frozen=True)
class VendorProfile:
    """Everything outside the client module knows about one vendor."""

    conn_type: str
    #: the one display name: hook name, connection type label, provider metadata
    label: str
    #: ``"module:Class"`` of the client, imported only when a client is built
    client: str
    #: the hook class exposed under ``sms_provider.hooks.sms``
    hook_class: str
    login_as: str                          # client keyword that takes Connection.login
    password_as: str                       # client keyword that takes Connection.password
    login_label: str                       # how the connection form names them
    password_label: str
    extras: Mapping[str, Extra]
    limits: Limits
    capabilities: frozenset[str]
    number_style: NumberStyle
    #: whether numbers outside mainland China may be sent
    sends_abroad: bool
    custom_id_scope: CustomIdScope
    message_id_scope: MessageIdScope
    ambiguous_settlement: AmbiguousSettlement
    #: whether one request may carry different contents (or template variables)
    personalised_batches: bool
    #: reports and replies write numbers as E.164 digits without the "+"
    reports_e164_digits: bool = False
    #: the balance is money, not charge items: a price per item compares the two
    bills_in_money: bool = False
    default_port: int | None = None
    #: failed report states (``raw_state``) by what they mean for a resend
    failure_classes: Mapping[str, FailureClass] = field(default_factory=dict)
    #: the class of a failed state not in ``failure_classes``
    failure_default: FailureClass = FailureClass.UNCLASSIFIED

    def failure_class(self, raw_state: str | None) -> FailureClass:
        """What a failed report's state means for another try."""
        if raw_state is None:
            return FailureClass.UNCLASSIFIED
        return self.failure_classes.get(raw_state.strip(), self.failure_default)

    @property
    def default_conn_id(self) -> str:
        return f"sms_{self.conn_type}"

    @property
    def keeps_custom_id(self) -> bool:
        return self.custom_id_scope is not CustomIdScope.NONE

    @property
    def mobile_in_keys(self) -> bool:
        """Whether a report is matched with the help of its number."""
        return (self.message_id_scope is MessageIdScope.REQUEST
                or self.custom_id_scope is CustomIdScope.REQUEST
                or self.ambiguous_settlement is AmbiguousSettlement.MOBILE)

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def client_class(self) -> type[VendorClient]:
        module, _, name = self.client.partition(":")
        return getattr(importlib.import_module(module), name)
