"""The connection form of each vendor: Airflow 3's ``conn-fields`` and field behaviour.

Kept beside (and tested against) ``vendors.registry`` so that every extra the
client takes has a form field and no form field is ignored by the client.
"""

from __future__ import annotations

from typing import Any

_COMMON: dict[str, dict[str, Any]] = {
    "timeout": {"label": "Read timeout (s)", "schema": {"type": ["number", "null"],
                                                       "default": 30}},
    "connect_timeout": {"label": "Connect timeout (s)", "schema": {"type": ["number", "null"],
                                                                  "default": 5}},
    "max_batch": {"label": "Recipients per request",
                  "description": "At most the vendor's documented limit.",
                  "schema": {"type": ["integer", "null"]}},
    "rate_limit": {"label": "Requests per second",
                   "description": "Empty for no limit.",
                   "schema": {"type": ["number", "null"]}},
    "send_concurrency": {"label": "Requests in flight per send task",
                         "schema": {"type": ["integer", "null"], "default": 4}},
}


def _enum(*values: Any, default: Any) -> dict[str, Any]:
    return {"type": ["string", "null"], "enum": [*values, None], "default": default}


def _secret(label: str, description: str) -> dict[str, Any]:
    return {"label": label, "description": description,
            "schema": {"type": ["string", "null"], "format": "password"}}


_VENDOR_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "emay_ims": {
        "mode": {"label": "Mode", "description": "plain: /inter/ with md5 sign; "
                 "secure: /secure/ with AES", "schema": _enum("plain", "secure", default="plain")},
        "gzip": {"label": "Gzip (secure mode)", "schema": {"type": ["boolean", "null"],
                                                          "default": True}},
        "request_valid_period": {"label": "Request valid period (s)",
                                 "schema": {"type": ["integer", "null"], "default": 60}},
        "max_content_chars": {"label": "Max content characters",
                              "schema": {"type": ["integer", "null"], "default": 1000}},
    },
    "emay_fms": {
        "mode": {"label": "Mode", "schema": _enum("normal", "secure", default="normal")},
        "gzip": {"label": "Gzip (secure mode)", "schema": {"type": ["boolean", "null"],
                                                          "default": True}},
        "path_prefix": {"label": "Path prefix",
                        "description": "Default /fms/normal or /fms/secure; some deployments "
                        "use /inter.", "schema": {"type": ["string", "null"]}},
        "request_valid_period": {"label": "Request valid period (s)",
                                 "schema": {"type": ["integer", "null"], "default": 60}},
    },
    "eims": {
        "md5_key": _secret("MD5 key", "Set when the server requires md5 password mode."),
        "seq_path": {"label": "Sequence file",
                     "description": "Where the md5-mode seq is kept across restarts.",
                     "schema": {"type": ["string", "null"]}},
        "price_per_item": {"label": "Price per charge item",
                           "description": "EIMS bills in money: set this to compare the "
                           "balance with a campaign's estimate.",
                           "schema": {"type": ["number", "null"]}},
        "method": {"label": "Send method", "description": "post: ≤10000 numbers a request, "
                   "get: ≤100", "schema": _enum("post", "get", default="post")},
        "max_content_chars": {"label": "Max content characters",
                              "schema": {"type": ["integer", "null"], "default": 1024}},
    },
    "eums": {
        "ver": {"label": "Protocol version", "description": "1 plain, 17 AES",
                "schema": {"type": ["integer", "null"], "enum": [1, 17, None], "default": 1}},
        "aes_key": _secret("AES key", "Supplied by the vendor for ver=17."),
        "clock_offset_s": {"label": "Clock offset (s)",
                           "description": "Added to this host's time for the seed.",
                           "schema": {"type": ["number", "null"], "default": 0}},
        "ext": {"label": "Extension code", "schema": {"type": ["string", "null"]}},
        "max_content_chars": {"label": "Max content characters",
                              "schema": {"type": ["integer", "null"], "default": 500}},
    },
    "chuanglan": {
        "product": {"label": "Product id", "schema": {"type": ["string", "null"]}},
        "extno": {"label": "Extension number", "schema": {"type": ["string", "null"]}},
        "needstatus": {"label": "Request status reports",
                       "schema": {"type": ["boolean", "null"], "default": True}},
        "max_content_chars": {"label": "Max content characters",
                              "schema": {"type": ["integer", "null"], "default": 536}},
    },
}

_LOGIN_LABELS = {
    "emay_ims": ("AppId", "secretKey"), "emay_fms": ("AppId", "secretKey"),
    "eims": ("Account", "Password"), "eums": ("Name", "Password"),
    "chuanglan": ("Account", "Password"),
}

#: the ones whose values must be masked wherever they might be printed
SENSITIVE_EXTRAS = frozenset(name for fields in _VENDOR_FIELDS.values()
                             for name, f in fields.items()
                             if f.get("schema", {}).get("format") == "password")


def conn_fields(conn_type: str) -> dict[str, dict[str, Any]]:
    return {**_VENDOR_FIELDS[conn_type], **_COMMON}


def field_behaviour(conn_type: str) -> dict[str, Any]:
    login, password = _LOGIN_LABELS[conn_type]
    return {
        "hidden-fields": ["extra"],
        "relabeling": {"login": login, "password": password, "schema": "Scheme (http/https)"},
        "placeholders": {"host": "vendor host or IP", "schema": "http"},
    }
