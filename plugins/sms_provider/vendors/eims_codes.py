"""EIMS's wire vocabulary: paths, documented limits, status codes and report states.

The client (:mod:`sms_provider.vendors.eims`), its answer parsers
(:mod:`sms_provider.vendors.eims_answers`) and the simulator read them here.
Answers carry an integer ``status``: 0 is success, -1..-13 are the errors
:data:`CODES` maps onto the error taxonomy. Report states are 0 delivered,
1 unsent, 2 sending and anything else failed (1001..1023 described in
:data:`REPORT_STATE_DESCRIPTIONS`).
"""

from __future__ import annotations

from sms_provider.errors import (
    AmbiguousError,
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
)
from sms_provider.models import DeliveryStatus
from sms_provider.vendors import profiles
from sms_provider.vendors.codes import CodeTable

PROFILE = profiles.EIMS
VENDOR = PROFILE.conn_type

GET_BATCH_LIMIT = 100
POST_BATCH_LIMIT = PROFILE.limits.batch
REPORT_QUERY_LIMIT = PROFILE.limits.report_query
INBOUND_PAGE_LIMIT = PROFILE.limits.inbound_page
PUSH_PAGE_LIMIT = PROFILE.limits.push_page
MAX_CONTENT_CHARS = PROFILE.limits.content_chars

PATH_BALANCE = "/getbalance"
PATH_SEND = "/sendsms"
PATH_REPORT = "/getreport"
PATH_INBOUND = "/getsms"

#: ``yyyyMMddHHmmss`` as an integer, the document's time format (China time)
TIME_FORMAT = "%Y%m%d%H%M%S"

STATUS_OK = 0
#: the code of a refused md5 request, seq included
SEQ_REFUSED = "-1"

CODES: CodeTable = {
    "-1": (AuthenticationError,
           "authentication failed: account, password, md5 key, seq or time refused"),
    "-2": (AuthenticationError, "this IP address may not use the account"),
    "-3": (PermanentError, "content contains sensitive words"),
    "-4": (LimitExceededError, "content is empty"),
    "-5": (LimitExceededError, "content is too long"),
    "-6": (PermanentError, "content does not match an approved template"),
    "-7": (LimitExceededError, "too many numbers in one request"),
    "-8": (LimitExceededError, "no numbers in the request"),
    "-9": (PermanentError, "numbers are malformed"),
    "-10": (InsufficientBalanceError, "channel balance too low for this request"),
    "-11": (PermanentError, "scheduled send time is malformed"),
    "-12": (AmbiguousError,
            "platform failed partway through the batch: some numbers may have been "
            "accepted, check with the vendor before sending again"),
    "-13": (AuthenticationError, "account is locked"),
}

#: The document's report state table (English column); 1015 is absent there too.
REPORT_STATE_DESCRIPTIONS: dict[int, str] = {
    0: "success",
    1: "unsent",
    2: "sending",
    1001: "NoRoute",
    1002: "NoChannel",
    1003: "NoBablance",
    1004: "Unkown",
    1005: "Send Refuse",
    1006: "Send Timeout",
    1007: "Server Timeout",
    1008: "SupplierMccMncLimit",
    1009: "ConsumerMccMncLimit",
    1010: "NoSupplier",
    1011: "Black Number",
    1012: "Sensitive Words",
    1013: "Daliy Limit",
    1014: "DestinationMccMncLimit",
    1016: "SMS Template Limit",
    1017: "SupplierNoBablance",
    1018: "UserProfitLimit",
    1019: "ChannelProfitLimit",
    1020: "MccNumberLengthLimit",
    1021: "Job no found",
    1022: "china sms limit",
    1023: "RouteMccMncLimit",
}
FAILURE_STATES: tuple[int, ...] = tuple(s for s in REPORT_STATE_DESCRIPTIONS if s >= 1000)


def report_status(state: int) -> DeliveryStatus:
    """0 delivered, 1 unsent and 2 sending are still open, anything else failed."""
    if state == 0:
        return DeliveryStatus.DELIVERED
    if state in (1, 2):
        return DeliveryStatus.PENDING
    return DeliveryStatus.FAILED

