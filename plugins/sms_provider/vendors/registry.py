"""Build any vendor client from connection-shaped fields.

Airflow hooks, the demo and the tests all go through :func:`build_client`, so
the mapping "host/port/schema/login/password/extras -> client" exists once and
is tested without Airflow. Extras arrive as strings when a connection is given
as a URI, hence the typed coercion; an unknown extra is an error (a typo such
as ``aes-key`` would otherwise be silently ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sms_provider.vendors.base import VendorClient
from sms_provider.vendors.profiles import COMMON_EXTRAS, PIPELINE_EXTRAS, PROFILES
from sms_provider.vendors.transport import HttpSettings


class ConnectionConfigError(ValueError):
    """A connection field is missing or malformed; the message names the field."""


def base_url(host: str, port: int | None, schema: str | None, default_port: int | None) -> str:
    """``schema`` is the URL scheme (http/https); a host may already carry one."""
    host = (host or "").strip().rstrip("/")
    if not host:
        raise ConnectionConfigError("host is empty")
    if "://" in host:
        scheme, _, rest = host.partition("://")
    else:
        scheme, rest = (schema or "http"), host
    if scheme not in ("http", "https"):
        raise ConnectionConfigError(f"schema must be http or https, got {scheme!r}")
    port = port or default_port
    if port and ":" not in rest.split("/", 1)[0]:
        head, sep, tail = rest.partition("/")
        rest = f"{head}:{port}{sep}{tail}"
    return f"{scheme}://{rest}"


def pipeline_settings(extras: Mapping[str, Any] | None) -> dict[str, Any]:
    """The typed pipeline extras of a connection (absent ones left out)."""
    out: dict[str, Any] = {}
    for key, extra in PIPELINE_EXTRAS.items():
        raw = (extras or {}).get(key)
        if raw is None or raw == "":
            continue
        try:
            out[key] = extra.coerce(raw)
        except (TypeError, ValueError, ArithmeticError):
            raise ConnectionConfigError(f"extra {key!r} has a malformed value") from None
    return out


def build_client(conn_type: str, *, host: str, port: int | None = None,
                 schema: str | None = None, login: str | None = None,
                 password: str | None = None, extras: Mapping[str, Any] | None = None
                 ) -> VendorClient:
    """The client for one connection; ConnectionConfigError names any bad field."""
    spec = PROFILES.get(conn_type)
    if spec is None:
        raise ConnectionConfigError(
            f"unknown connection type {conn_type!r}; expected one of {sorted(PROFILES)}")
    if not login:
        raise ConnectionConfigError(f"{conn_type}: login ({spec.login_as}) is empty")
    if not password:
        raise ConnectionConfigError(f"{conn_type}: password ({spec.password_as}) is empty")
    kwargs: dict[str, Any] = {}
    transport: dict[str, Any] = {}
    for key, raw in (extras or {}).items():
        if key in PIPELINE_EXTRAS:
            continue
        extra = spec.extras.get(key) or COMMON_EXTRAS.get(key)
        if extra is None:
            allowed = sorted({*spec.extras, *COMMON_EXTRAS, *PIPELINE_EXTRAS})
            raise ConnectionConfigError(
                f"{conn_type}: unknown extra {key!r}; allowed: {', '.join(allowed)}")
        if raw is None:
            continue
        try:
            value = extra.coerce(raw)
        except (TypeError, ValueError):
            # The value may be a key: name the field, never echo the value.
            raise ConnectionConfigError(
                f"{conn_type}: extra {key!r} has a malformed value") from None
        (kwargs if key in spec.extras or key == "max_batch" else transport)[key] = value
    settings = HttpSettings(
        base_url=base_url(host, port, schema, spec.default_port),
        connect_timeout=transport.get("connect_timeout", 5.0),
        read_timeout=transport.get("timeout", 30.0),
        rate_limit=transport.get("rate_limit"),
        account=login,
    )
    kwargs[spec.login_as] = login
    kwargs[spec.password_as] = password
    return spec.client_class()(settings, **kwargs)
