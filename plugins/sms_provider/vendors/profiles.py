"""The five vendor profiles: what is special about each vendor, in one place.

Read a profile here to learn a vendor's number format, limits, ids and
capabilities; the client module holds only its wire protocol. The connection
form, the registry that builds clients, the hooks, the provider metadata, the
data plane and the simulator all read these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sms_provider.vendors.base import Capability
from sms_provider.vendors.profile import (
    AmbiguousSettlement,
    CustomIdScope,
    Extra,
    FailureClass,
    Limits,
    MessageIdScope,
    NumberStyle,
    VendorProfile,
)


def to_bool(value: Any) -> bool:
    """Extras arrive as text from a connection URI: "true", "0", "on"..."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def to_optional_text(value: Any) -> str | None:
    return None if value is None or str(value) == "" else str(value)


def _enum(*values: Any, default: Any) -> dict[str, Any]:
    return {"type": ["string", "null"], "enum": [*values, None], "default": default}


def _int(default: int | None = None) -> dict[str, Any]:
    return {"type": ["integer", "null"], **({"default": default} if default is not None else {})}


def _text() -> dict[str, Any]:
    return {"type": ["string", "null"]}


def _secret(label: str, description: str) -> Extra:
    return Extra(to_optional_text, label, {"type": ["string", "null"], "format": "password"},
                 description, sensitive=True)


def _content_limit(default: int) -> Extra:
    return Extra(int, "Max content characters", _int(default))


def _gzip() -> Extra:
    return Extra(to_bool, "Gzip (secure mode)", {"type": ["boolean", "null"], "default": True})


def _valid_period() -> Extra:
    return Extra(int, "Request valid period (s)", _int(60))


#: extras every connection type takes (transport settings, read by the client)
COMMON_EXTRAS: Mapping[str, Extra] = {
    "timeout": Extra(float, "Read timeout (s)", {"type": ["number", "null"], "default": 30}),
    "connect_timeout": Extra(float, "Connect timeout (s)",
                             {"type": ["number", "null"], "default": 5}),
    "max_batch": Extra(int, "Recipients per request", _int(),
                       "At most the vendor's documented limit."),
    "rate_limit": Extra(float, "Requests per second", {"type": ["number", "null"]},
                        "Empty for no limit."),
}

#: extras the pipeline reads (not the client): how many requests a send task keeps in
#: flight, and what one charge item costs where a vendor bills in money (EIMS)
PIPELINE_EXTRAS: Mapping[str, Extra] = {
    "send_concurrency": Extra(int, "Requests in flight per send task", _int(4)),
    "failover_after_s": Extra(float, "Failover after (s)",
                              {"type": ["number", "null"], "default": 120},
                              "How long retryable errors must persist before a routed "
                              "campaign moves its unsent chunks to the next connection."),
    "price_per_item": Extra(Decimal, "Price per charge item", {"type": ["number", "null"]},
                            "Set where the vendor bills in money (EIMS) to compare the "
                            "balance with a campaign's estimate."),
}


_C, _V, _N, _B, _T, _F = (FailureClass.CARRIER, FailureClass.VENDOR,
                          FailureClass.INVALID_NUMBER, FailureClass.BLACKLISTED,
                          FailureClass.CONTENT, FailureClass.FREQUENCY)

#: Emay IMS and FMS report states (vendor docs, 状态报告): what each failure means
EMAY_FAILURES: Mapping[str, FailureClass] = {
    "TIMEOUT": _C,              # 运营商状态报告超时: the carrier never answered
    "FAIL_RESPONSE": _C,        # 运营商响应失败: the carrier refused the hand-over
    "FAIL_BALANCE": _V,         # 余额不足: the vendor's channel ran dry
    "FAIL_UNKNOW": _V,          # 未知失败
    "FAIL_MOBILE": _N,          # 手机号错误
    "FAIL_MOBILE_SUPPORT": _N,  # 手机号不支持: the number cannot take this SMS
    "FAIL_MOBILE_REPEAT": _F,   # 手机号重复: the vendor's repeat filter
    "FAIL_BLACK_DICT": _B,      # 黑字典失败: the vendor's blacklist
}

#: EIMS report states (its state table, numbers as text): every state ≥ 1000 fails
EIMS_FAILURES: Mapping[str, FailureClass] = {
    **{state: _V for state in ("1001", "1002", "1003", "1004", "1008", "1009", "1010",
                               "1013", "1017", "1018", "1019", "1021", "1022", "1023")},
    "1005": _C,  # Send Refuse
    "1006": _C,  # Send Timeout
    "1007": _V,  # Server Timeout
    "1011": _B,  # Black Number
    "1012": _T,  # Sensitive Words
    "1014": _C,  # DestinationMccMncLimit: the destination network's limit
    "1016": _T,  # SMS Template Limit
    "1020": _N,  # MccNumberLengthLimit: the number is the wrong length
}

#: EUMS report states: every state not DELIVRD/UNKNOWN/ACCEPTD/ENROUTE is a gateway or
#: carrier failure (UNDELIV, EXPIRED, REJECTD, DELETED, MK:xxxx, ID:xxxx, ...)
EUMS_FAILURES: Mapping[str, FailureClass] = {
    "UNDELIV": _C, "EXPIRED": _C, "REJECTD": _C, "DELETED": _C,
}

#: Chuanglan report states (2.2 状态报告值); 其他 (anything else) is a gateway state
CHUANGLAN_FAILURES: Mapping[str, FailureClass] = {
    "MBBLACK": _B,   # 黑名单号码
    "ROUTEERR": _V,  # 通道异常
    "EMSERR": _V,    # 长短信不完整: the vendor lost part of a long message
    "REJECT": _T,    # 审核驳回
    "SIGNERR": _T,   # 签名错
    "KEYWORD": _T,   # 敏感词
    "DISTURB": _F,   # 手机号码发送次数过多
}

EMAY_IMS = VendorProfile(
    conn_type="emay_ims", label="Emay International SMS",
    client="sms_provider.vendors.emay_ims:EmayImsClient", hook_class="EmayImsHook",
    login_as="app_id", password_as="secret_key", login_label="AppId",
    password_label="secretKey",
    extras={
        "mode": Extra(str, "Mode", _enum("plain", "secure", default="plain"),
                      "plain: /inter/ with md5 sign; secure: /secure/ with AES"),
        "gzip": _gzip(),
        "request_valid_period": _valid_period(),
        "max_content_chars": _content_limit(1000),
    },
    limits=Limits(batch=300, content_chars=1000, custom_id_chars=32, report_pull=500),
    capabilities=frozenset({Capability.SEND, Capability.PULL_REPORTS,
                            Capability.PUSH_REPORTS}),
    number_style=NumberStyle.IDD, sends_abroad=True,
    custom_id_scope=CustomIdScope.MESSAGE, message_id_scope=MessageIdScope.RECIPIENT,
    ambiguous_settlement=AmbiguousSettlement.CUSTOM_ID, personalised_batches=True,
    failure_classes=EMAY_FAILURES,
)

EMAY_FMS = VendorProfile(
    conn_type="emay_fms", label="Emay Flash Push (FMS)",
    client="sms_provider.vendors.emay_fms:EmayFmsClient", hook_class="EmayFmsHook",
    login_as="app_id", password_as="secret_key", login_label="AppId",
    password_label="secretKey",
    extras={
        "mode": Extra(str, "Mode", _enum("normal", "secure", default="normal")),
        "gzip": _gzip(),
        "path_prefix": Extra(to_optional_text, "Path prefix", _text(),
                             "Default /fms/normal or /fms/secure; some deployments use "
                             "/inter."),
        "request_valid_period": _valid_period(),
    },
    limits=Limits(batch=300, content_chars=None, custom_id_chars=32, report_pull=500),
    capabilities=frozenset({Capability.SEND, Capability.PULL_REPORTS, Capability.BALANCE,
                            Capability.TEMPLATES}),
    number_style=NumberStyle.MAINLAND, sends_abroad=False,
    custom_id_scope=CustomIdScope.MESSAGE, message_id_scope=MessageIdScope.RECIPIENT,
    ambiguous_settlement=AmbiguousSettlement.CUSTOM_ID, personalised_batches=True,
    failure_classes=EMAY_FAILURES,
)

EIMS = VendorProfile(
    conn_type="eims", label="EIMS SMS",
    client="sms_provider.vendors.eims:EimsClient", hook_class="EimsHook",
    login_as="account", password_as="password", login_label="Account",
    password_label="Password",
    extras={
        "md5_key": _secret("MD5 key", "Set when the server requires md5 password mode."),
        "seq_path": Extra(to_optional_text, "Sequence file", _text(),
                          "Where the md5-mode seq is kept across restarts."),
        "method": Extra(str, "Send method", _enum("post", "get", default="post"),
                        "post: ≤10000 numbers a request, get: ≤100"),
        "max_content_chars": _content_limit(1024),
    },
    limits=Limits(batch=10_000, content_chars=1024, report_query=200, inbound_page=50,
                  push_page=50),
    capabilities=frozenset({Capability.SEND, Capability.QUERY_REPORTS,
                            Capability.PUSH_REPORTS, Capability.INBOUND,
                            Capability.BALANCE}),
    number_style=NumberStyle.E164, sends_abroad=True,
    custom_id_scope=CustomIdScope.NONE, message_id_scope=MessageIdScope.RECIPIENT,
    ambiguous_settlement=AmbiguousSettlement.MOBILE, personalised_batches=False,
    reports_e164_digits=True, bills_in_money=True, default_port=20003,
    failure_classes=EIMS_FAILURES,
)

EUMS = VendorProfile(
    conn_type="eums", label="EUMS SMS",
    client="sms_provider.vendors.eums:EumsClient", hook_class="EumsHook",
    login_as="name", password_as="password", login_label="Name", password_label="Password",
    extras={
        "ver": Extra(int, "Protocol version",
                     {"type": ["integer", "null"], "enum": [1, 17, None], "default": 1},
                     "1 plain, 17 AES"),
        "aes_key": _secret("AES key", "Supplied by the vendor for ver=17."),
        "clock_offset_s": Extra(float, "Clock offset (s)",
                                {"type": ["number", "null"], "default": 0},
                                "Added to this host's time for the seed."),
        "ext": Extra(to_optional_text, "Extension code", _text()),
        "max_content_chars": _content_limit(500),
    },
    limits=Limits(batch=1000, content_chars=500, custom_id_chars=50, statistics_days=31,
                  statistics_calls=3, statistics_window_s=60.0),
    capabilities=frozenset({Capability.SEND, Capability.PULL_REPORTS, Capability.INBOUND,
                            Capability.BALANCE, Capability.STATISTICS}),
    number_style=NumberStyle.MAINLAND, sends_abroad=False,
    custom_id_scope=CustomIdScope.REQUEST, message_id_scope=MessageIdScope.RECIPIENT,
    ambiguous_settlement=AmbiguousSettlement.CUSTOM_ID, personalised_batches=False,
    failure_classes=EUMS_FAILURES, failure_default=FailureClass.CARRIER,
)

CHUANGLAN = VendorProfile(
    conn_type="chuanglan", label="Chuanglan SMS",
    client="sms_provider.vendors.chuanglan:ChuanglanClient", hook_class="ChuanglanHook",
    login_as="account", password_as="password", login_label="Account",
    password_label="Password",
    extras={
        "product": Extra(to_optional_text, "Product id", _text()),
        "extno": Extra(to_optional_text, "Extension number", _text()),
        "needstatus": Extra(to_bool, "Request status reports",
                            {"type": ["boolean", "null"], "default": True}),
        "max_content_chars": _content_limit(536),
    },
    limits=Limits(batch=50_000, content_chars=536),
    capabilities=frozenset({Capability.SEND, Capability.PUSH_REPORTS, Capability.BALANCE}),
    number_style=NumberStyle.MAINLAND, sends_abroad=False,
    custom_id_scope=CustomIdScope.NONE, message_id_scope=MessageIdScope.REQUEST,
    ambiguous_settlement=AmbiguousSettlement.MOBILE, personalised_batches=False,
    failure_classes=CHUANGLAN_FAILURES, failure_default=FailureClass.CARRIER,
)

#: every vendor, by connection type
PROFILES: Mapping[str, VendorProfile] = {
    p.conn_type: p for p in (EMAY_IMS, EMAY_FMS, EIMS, EUMS, CHUANGLAN)}


class UnknownVendorError(ValueError):
    """A connection type no profile describes; the message lists the known ones."""


def profile_of(conn_type: str) -> VendorProfile:
    """The profile of ``conn_type``; an unknown type is named with the known ones."""
    try:
        return PROFILES[conn_type]
    except KeyError:
        raise UnknownVendorError(
            f"unknown connection type {conn_type!r}; expected one of {sorted(PROFILES)}"
        ) from None


#: extras whose values must be masked wherever they might be printed
SENSITIVE_EXTRAS = frozenset(name for p in PROFILES.values()
                             for name, extra in p.extras.items() if extra.sensitive)
