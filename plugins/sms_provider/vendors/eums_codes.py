"""EUMS's wire vocabulary: paths, protocol versions, documented limits, codes, states.

The client (:mod:`sms_provider.vendors.eums`) and its answer parsers
(:mod:`sms_provider.vendors.eums_answers`) read them here.
"""

from __future__ import annotations

from sms_provider.errors import (
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    RateLimitedError,
    VendorError,
)
from sms_provider.models import DeliveryStatus
from sms_provider.vendors import profiles
from sms_provider.vendors.codes import CodeTable

PROFILE = profiles.EUMS
VENDOR = PROFILE.conn_type

PATH_PREFIX = "/eums/sms/utf8/json/"
SEND = PATH_PREFIX + "send.do"
REPORT = PATH_PREFIX + "report.do"
MO = PATH_PREFIX + "mo.do"
BALANCE = PATH_PREFIX + "balance.do"
STATISTIC = PATH_PREFIX + "statistic_app.do"

PLAIN, AES = 1, 17
#: The document names no maximum of numbers per request: a conservative default.
MAX_RECIPIENTS = PROFILE.limits.batch
MAX_CONTENT_CHARS = PROFILE.limits.content_chars
REFERENCE_MAX = PROFILE.limits.custom_id_chars
REFERENCE_FORBIDDEN = (",", ";")
STATISTIC_MAX_DAYS = PROFILE.limits.statistics_days
STATISTIC_CALLS = PROFILE.limits.statistics_calls
STATISTIC_WINDOW_S = PROFILE.limits.statistics_window_s
#: The document gives 131 no back-off hint; a third of the one-minute window.
TOO_FREQUENT_RETRY_AFTER_S = 20.0
OK = 0
EMPTY_RESULT = 130

_CLOCK = ("seed refused: this machine's clock is more than 30 minutes away from the "
          "gateway's; check the clock (or set clock_offset_s)")

#: Every code of the document's table (101..999); anything else becomes VendorError.
CODES: CodeTable = {
    "101": (AuthenticationError, "account name missing (缺少name参数)"),
    "102": (PermanentError, "seed missing (缺少seed参数)"),
    "103": (PermanentError, "key missing (缺少key参数)"),
    "104": (PermanentError, "dest missing or unusable: no valid number, or more numbers "
                            "than the gateway takes (缺少dest参数)"),
    "105": (PermanentError, "content missing (缺少content参数)"),
    "106": (AuthenticationError, _CLOCK + " (seed错误)"),
    "107": (AuthenticationError, "key wrong: check the password (key错误)"),
    "108": (PermanentError, "ext (extension code) wrong (ext错误)"),
    "109": (LimitExceededError, "content too long (内容超长)"),
    "110": (PermanentError, "template not registered (模板未备案)"),
    "111": (PermanentError, "content carries no 【signature】 (无签名)"),
    "112": (PermanentError, "pk_total missing (缺少pk_total参数)"),
    "113": (PermanentError, "signature not allowed (签名不合法)"),
    "114": (PermanentError, "scheduled time malformed (定时时间格式错误)"),
    "115": (PermanentError, "scheduled time out of range (定时时间范围错误)"),
    "116": (PermanentError, "plain HTTP not supported: use HTTPS (不支持HTTP)"),
    "121": (AuthenticationError, "decryption failed: check aes_key (解密失败密钥问题)"),
    "122": (PermanentError, "decryption failed: numbers (解密失败号码问题)"),
    "123": (PermanentError, "decryption failed: content (解密失败内容问题)"),
    "124": (AuthenticationError, "protocol version (ver) not supported for this account "
                                 "(版本号不支持)"),
    "125": (PermanentError, "data is empty (DATA内容空)"),
    "126": (PermanentError, "decryption failed: data malformed (解密失败-DATA问题)"),
    "127": (PermanentError, "start date wrong (起始日期错误)"),
    "128": (PermanentError, "end date wrong (结束日期错误)"),
    "129": (LimitExceededError, "date window wrong or longer than 31 days (起止日期范围错误)"),
    "130": (PermanentError, "query result empty (查询结果空)"),
    "131": (RateLimitedError, "queried too often (查询过于频繁)"),
    "201": (AuthenticationError, "no such account (无对应账户)"),
    "202": (AuthenticationError, "account suspended (账户暂停)"),
    "203": (AuthenticationError, "account deleted (账户删除)"),
    "204": (AuthenticationError, "client IP not registered for the account (账户IP没备案)"),
    "205": (InsufficientBalanceError, "account has no balance (账户无余额)"),
    "206": (AuthenticationError, "password wrong (密码错误)"),
    "301": (PermanentError, "no such product (无对应产品)"),
    "302": (PermanentError, "product suspended (产品暂停)"),
    "303": (PermanentError, "product deleted (产品删除)"),
    "304": (PermanentError, "product outside its service hours (产品不在服务时间)"),
    "305": (PermanentError, "no matching channel (无匹配通道)"),
    "306": (PermanentError, "channel suspended (通道暂停)"),
    "307": (PermanentError, "channel deleted (通道已删除)"),
    "308": (PermanentError, "channel outside its service hours (通道不在服务时间)"),
    "309": (PermanentError, "SMS service not provided (未提供短信服务)"),
    "401": (PermanentError, "content contains a blocked word (屏蔽词)"),
    "999": (VendorError, "other error (其他错误)"),
}

#: Report states; everything else (UNDELIV, EXPIRED, REJECTD, DELETED, MK:xxxx,
#: ID:xxxx, ...) is a gateway or carrier failure.
REPORT_STATES: dict[str, DeliveryStatus] = {
    "DELIVRD": DeliveryStatus.DELIVERED,
    "UNKNOWN": DeliveryStatus.UNKNOWN,
    "ACCEPTD": DeliveryStatus.PENDING,
    "ENROUTE": DeliveryStatus.PENDING,
}
STATE_DESCRIPTIONS = {
    "DELIVRD": "delivered",
    "UNKNOWN": "state unknown",
    "ACCEPTD": "accepted, not yet delivered",
    "ENROUTE": "on its way",
    "UNDELIV": "undeliverable",
    "EXPIRED": "expired before delivery",
    "REJECTD": "rejected by the carrier",
    "DELETED": "deleted",
}

#: MO ``msg_fmt`` values (the SMPP/CMPP data codings) -> Python codec.
MSG_FORMATS = {0: "ascii", 8: "utf-16-be", 15: "gbk"}
