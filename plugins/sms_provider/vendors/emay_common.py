"""What Emay IMS and FMS share: the secure envelope and the status codes.

Secure request: JSON -> UTF-8 -> gzip (only with the ``gzip: on`` header) ->
AES/ECB/PKCS5 with the secretKey's own bytes; the raw ciphertext is the body,
``appId`` travels in a header. The answer's code is the ``result`` header;
only on ``SUCCESS`` is there a body, the data JSON itself, gzipped when the
request was, then encrypted.
"""

from __future__ import annotations

import json
from typing import Any

from sms_provider.errors import (
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
    RateLimitedError,
)
from sms_provider.models import DeliveryStatus
from sms_provider.vendors.codec import aes_decrypt, aes_encrypt, gzip_compress, gzip_decompress
from sms_provider.vendors.codes import CodeTable

SUCCESS = "SUCCESS"
REQUEST_VALID_PERIOD_S = 60

_CLOCK = "request time outside the vendor's validity window: check this machine's clock"

CODES: CodeTable = {
    "ERROR_APPID": (AuthenticationError, "AppId unknown"),
    "ERROR_PARAMS": (PermanentError, "request parameters are wrong"),
    "ERROR_CLIENT_IP": (AuthenticationError, "client IP not registered with the vendor"),
    "ERROR_MOBILE_EMPTY": (PermanentError, "mobile number is empty"),
    "ERROR_MOBILE_NUMBER": (LimitExceededError, "too many mobile numbers in one request"),
    "ERROR_MOBILE_ERROR": (PermanentError, "mobile number is invalid"),
    "ERROR_CONTENT_EMPTY": (PermanentError, "content is empty"),
    "ERROR_CUSTOM_IMSID": (LimitExceededError, "custom message id too long"),
    "ERROR_CUSTOM_FMSID": (LimitExceededError, "custom message id too long"),
    "ERROR_LONG_CONTENT": (LimitExceededError, "content too long"),
    "ERROR_TIMESTAMP": (AuthenticationError, "timestamp wrong or outside the allowed skew"),
    "ERROR_SIGN": (AuthenticationError, "signature wrong: check appId and secretKey"),
    "ERROR_ENCRYPTION": (AuthenticationError, "body could not be decrypted: wrong secretKey"),
    "ERROR_REQUEST_NO_VALID": (AuthenticationError, _CLOCK),
    "ERROR_REQUESTTIME": (AuthenticationError, "requestTime missing or malformed"),
    "ERROR_REQUESTTIME_TIMEOUT": (AuthenticationError, _CLOCK),
    "ERROR_REQUESTVALIDPERIOD": (PermanentError, "requestValidPeriod missing or malformed"),
    "ERROR_OVER_SPEED": (RateLimitedError, "requests too fast"),
    "ERROR_BALANCE": (InsufficientBalanceError, "balance too low"),
    "ERROR_TEMPLATE_NOT_EXIST": (PermanentError, "template does not exist"),
    "ERROR_TEMPLATE_ID_ERROR": (PermanentError, "template id unknown: ids are 20-digit "
                                "strings, check it reached the platform unchanged"),
    "ERROR_TEMPLATE_NOT_PASS": (PermanentError, "template not approved"),
    "ERROR_TEMPLATE_CONTENT": (PermanentError, "template content invalid"),
    "ERROR_TEMPLATE_VARIABLE": (PermanentError, "template variables do not match"),
}

#: Report states of both products (IMS and FMS document the same table).
REPORT_STATES: dict[str, DeliveryStatus] = {
    "DELIVRD": DeliveryStatus.DELIVERED,
    "TIMEOUT": DeliveryStatus.FAILED,
    "FAIL_BALANCE": DeliveryStatus.FAILED,
    "FAIL_MOBILE": DeliveryStatus.FAILED,
    "FAIL_MOBILE_SUPPORT": DeliveryStatus.FAILED,
    "FAIL_MOBILE_REPEAT": DeliveryStatus.FAILED,
    "FAIL_BLACK_DICT": DeliveryStatus.FAILED,
    "FAIL_RESPONSE": DeliveryStatus.FAILED,
    "FAIL_UNKNOW": DeliveryStatus.FAILED,
}
FAILURE_STATES = [s for s, v in REPORT_STATES.items() if v is DeliveryStatus.FAILED]
STATE_DESCRIPTIONS = {
    "DELIVRD": "成功", "TIMEOUT": "运营商状态报告超时", "FAIL_BALANCE": "余额不足",
    "FAIL_MOBILE": "手机号错误", "FAIL_MOBILE_SUPPORT": "手机号不支持",
    "FAIL_MOBILE_REPEAT": "手机号重复", "FAIL_BLACK_DICT": "黑字典失败",
    "FAIL_RESPONSE": "运营商响应失败", "FAIL_UNKNOW": "未知失败",
}


def clean_keys(obj: Any) -> Any:
    """Strip stray spaces from keys and string values (the documents' examples have them)."""
    if isinstance(obj, dict):  # a text value stripped in place: no call per value
        return {str(k).strip(): v.strip() if type(v) is str else clean_keys(v)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_keys(v) for v in obj]
    if isinstance(obj, str):
        return obj.strip()
    return obj


def encode_secure(payload: Any, key: str, *, gzip_on: bool) -> bytes:
    """JSON -> UTF-8 -> optional gzip -> AES: a secure request or response body."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if gzip_on:
        data = gzip_compress(data)
    return aes_encrypt(key, data)


def open_secure(body: bytes, key: str, *, gzip_on: bool) -> bytes:
    """The JSON bytes inside a secure body (decrypted, decompressed); a failure is a
    :class:`ProtocolError`."""
    data = aes_decrypt(key, body)
    return gzip_decompress(data) if gzip_on else data


def decode_secure(body: bytes, key: str, *, gzip_on: bool, encoding: str = "utf-8") -> Any:
    """Inverse of :func:`encode_secure`; any failure is a :class:`ProtocolError`."""
    data = open_secure(body, key, gzip_on=gzip_on)
    try:
        return json.loads(data.decode(encoding))
    except (UnicodeDecodeError, LookupError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"decrypted body is not JSON: {type(exc).__name__}") from None


def secure_headers(app_id: str, *, gzip_on: bool) -> dict[str, str]:
    headers = {"appId": app_id, "Content-Type": "application/octet-stream"}
    if gzip_on:
        headers["gzip"] = "on"
    return headers
