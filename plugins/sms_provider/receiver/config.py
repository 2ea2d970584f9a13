"""What the push receiver accepts: one entry per vendor connection that pushes to us.

The file is JSON::

    {"connections": [
        {"conn_id": "sms_chuanglan", "vendor": "chuanglan",
         "receiver": "…", "password": "…"},
        {"conn_id": "sms_emay_ims", "vendor": "emay_ims",
         "app_id": "…", "secret_key": "…"},
        {"conn_id": "sms_eims", "vendor": "eims", "token": "<long random secret>"}],
     "opt_out_words": ["TD", "退订"],
     "ems_part_timeout_s": 3600,
     "compact_batch_files": 2000,
     "max_body_bytes": 4194304,
     "header_timeout_s": 10, "body_timeout_s": 30, "max_connections": 1000}

An Emay entry may also accept the plain form push (``"accept_plain": true``),
which carries no credential of its own: it then needs ``plain_token`` (a secret
in the push URL, ``/emay/<plain_token>/reports``) and/or ``plain_sources`` (the
addresses or networks the vendor pushes from); with both, a push must pass both.

Each pushed request is told apart by its credentials, so two entries of one
vendor may not share them. Validation errors name the entry and the field,
never the value: the values are credentials. ``repr`` hides them for the same
reason (a config object ends up in tracebacks and debug logs).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sms_provider.data.opt_outs import DEFAULT_OPT_OUT_WORDS

ENV_CONFIG = "SMS_RECEIVER_CONFIG"

VENDORS = ("chuanglan", "emay_ims", "eims")
#: The EIMS token is the only thing that authenticates its pushes: it must be unguessable.
MIN_TOKEN_CHARS = 24
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]+")  # characters that need no escaping in a URL path
_CONN_ID_RE = re.compile(r"[A-Za-z0-9_.-]+")  # it names a folder under the data root
_AES_KEY_LENGTHS = (16, 24, 32)

DEFAULT_EMS_PART_TIMEOUT_S = 3600.0
DEFAULT_COMPACT_BATCH_FILES = 2000
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
#: slow clients: the headers of a request (from connect, or from the previous answer on a
#: kept-alive connection) and then its body must each arrive within these
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 1000

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ReceiverConfigError(ValueError):
    """The receiver configuration is malformed; the message names entry and field."""


@dataclass(frozen=True)
class ChuanglanReceiver:
    """Chuanglan pushes carry ``receiver``/``pswd`` in the query string."""

    conn_id: str
    receiver: str = field(repr=False)
    password: str = field(repr=False)
    vendor: str = "chuanglan"


@dataclass(frozen=True)
class EmayImsReceiver:
    """Emay IMS pushes name the ``appId``; the encrypted form proves it with the key.

    The plain form push carries the appId (not a secret) and nothing else, so
    anyone knowing it could post DELIVERED reports: it is refused unless
    ``accept_plain`` is set, and then it must come with ``plain_token`` in the
    URL and/or from an address in ``plain_sources`` (the config loader insists
    on at least one).
    """

    conn_id: str
    app_id: str
    secret_key: str = field(repr=False)
    accept_plain: bool = False
    plain_token: str | None = field(default=None, repr=False)
    plain_sources: tuple[IPNetwork, ...] = ()
    vendor: str = "emay_ims"

    def plain_allowed(self, token: str | None, client: str | None) -> bool:
        """A plain push reached us at ``token``'s URL from ``client``: is it this account's?"""
        if not self.accept_plain or (self.plain_token is None and not self.plain_sources):
            return False
        if self.plain_token is not None and not hmac.compare_digest(
                (token or "").encode(), self.plain_token.encode()):
            return False
        return not self.plain_sources or _address_in(client, self.plain_sources)


@dataclass(frozen=True)
class EimsReceiver:
    """EIMS pushes carry no credentials: the URL's secret token stands for them."""

    conn_id: str
    token: str = field(repr=False)
    vendor: str = "eims"


Connection = ChuanglanReceiver | EmayImsReceiver | EimsReceiver


@dataclass(frozen=True)
class ReceiverConfig:
    """Connections plus the settings that shape landing and compaction.

    ``durable`` exists for the benchmark's comparison only: False skips the
    fsyncs, so an acknowledged push can be lost in a crash.
    """

    connections: tuple[Connection, ...]
    opt_out_words: tuple[str, ...] = DEFAULT_OPT_OUT_WORDS
    ems_part_timeout_s: float = DEFAULT_EMS_PART_TIMEOUT_S
    compact_batch_files: int = DEFAULT_COMPACT_BATCH_FILES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    durable: bool = True

    def __post_init__(self) -> None:
        _check_unique(self.connections)

    # --- lookups (all credential comparisons in constant time) ---------------
    def by_conn_id(self, conn_id: str) -> Connection | None:
        return next((c for c in self.connections if c.conn_id == conn_id), None)

    def chuanglan_for(self, receiver: str, password: str) -> ChuanglanReceiver | None:
        """The connection whose receiver/pswd these are; every entry is compared."""
        found = None
        for conn in self.connections:
            if isinstance(conn, ChuanglanReceiver):
                ok_r = hmac.compare_digest(receiver.encode(), conn.receiver.encode())
                ok_p = hmac.compare_digest(password.encode(), conn.password.encode())
                if ok_r & ok_p and found is None:
                    found = conn
        return found

    def eims_for(self, token: str) -> EimsReceiver | None:
        """The connection whose URL token this is; every entry is compared."""
        found = None
        for conn in self.connections:
            if (isinstance(conn, EimsReceiver)
                    and hmac.compare_digest(token.encode(), conn.token.encode())
                    and found is None):
                found = conn
        return found

    def emay_for(self, app_id: str) -> EmayImsReceiver | None:
        """The appId is not a secret: a plain lookup."""
        for conn in self.connections:
            if isinstance(conn, EmayImsReceiver) and conn.app_id == app_id:
                return conn
        return None

    def emay_for_token(self, token: str) -> EmayImsReceiver | None:
        """The Emay connection whose plain-push URL token this is; every entry is compared."""
        found = None
        for conn in self.connections:
            if (isinstance(conn, EmayImsReceiver) and conn.plain_token is not None
                    and hmac.compare_digest(token.encode(), conn.plain_token.encode())
                    and found is None):
                found = conn
        return found

    def emay_plain_allowed(self, token: str | None, client: str | None
                           ) -> list[EmayImsReceiver]:
        """The Emay connections that take a plain push at ``token``'s URL from ``client``."""
        return [c for c in self.connections
                if isinstance(c, EmayImsReceiver) and c.plain_allowed(token, client)]

    def emay_secret_key(self, app_id: str) -> str | None:
        conn = self.emay_for(app_id)
        return conn.secret_key if conn else None

    # --- loading ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReceiverConfig:
        if not isinstance(data, Mapping):
            raise ReceiverConfigError("the receiver config must be a JSON object")
        unknown = sorted(set(data) - {"connections", "opt_out_words", "ems_part_timeout_s",
                                      "compact_batch_files", "max_body_bytes",
                                      "header_timeout_s", "body_timeout_s",
                                      "max_connections", "durable"})
        if unknown:
            raise ReceiverConfigError(f"unknown setting(s): {', '.join(unknown)}")
        entries = data.get("connections")
        if not isinstance(entries, list) or not entries:
            raise ReceiverConfigError("'connections' must be a non-empty list")
        connections = tuple(_connection(i, e) for i, e in enumerate(entries))
        kwargs: dict[str, Any] = {}
        if "opt_out_words" in data:
            words = data["opt_out_words"]
            if (not isinstance(words, list) or not words
                    or not all(isinstance(w, str) and w.strip() for w in words)):
                raise ReceiverConfigError("'opt_out_words' must be a non-empty list of words")
            kwargs["opt_out_words"] = tuple(w.strip() for w in words)
        for name, kind, low in (("ems_part_timeout_s", float, 0.0),
                                ("compact_batch_files", int, 1),
                                ("max_body_bytes", int, 1024),
                                ("header_timeout_s", float, 0.1),
                                ("body_timeout_s", float, 0.1),
                                ("max_connections", int, 1)):
            if name in data:
                kwargs[name] = _number(data[name], name, kind, low)
        if "durable" in data:
            if not isinstance(data["durable"], bool):
                raise ReceiverConfigError("'durable' must be true or false")
            kwargs["durable"] = data["durable"]
        return cls(connections=connections, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ReceiverConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ReceiverConfigError(f"cannot read receiver config {os.fspath(path)!r}: "
                                      f"{exc.strerror or type(exc).__name__}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # position only: the offending text may be a credential
            raise ReceiverConfigError(f"receiver config {os.fspath(path)!r} is not JSON "
                                      f"(line {exc.lineno}, column {exc.colno})") from None
        return cls.from_dict(data)

    @classmethod
    def from_env(cls) -> ReceiverConfig:
        path = os.environ.get(ENV_CONFIG)
        if not path:
            raise ReceiverConfigError(f"set {ENV_CONFIG} to the receiver config file")
        return cls.from_file(path)


# --- validation ----------------------------------------------------------------------
_FIELDS: dict[str, tuple[str, ...]] = {
    "chuanglan": ("receiver", "password"),
    "emay_ims": ("app_id", "secret_key"),
    "eims": ("token",),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "emay_ims": ("accept_plain", "plain_token", "plain_sources")}


def _connection(index: int, entry: Any) -> Connection:
    where = f"connections[{index}]"
    if not isinstance(entry, Mapping):
        raise ReceiverConfigError(f"{where} must be an object")
    conn_id = entry.get("conn_id")
    if not isinstance(conn_id, str) or not _CONN_ID_RE.fullmatch(conn_id):
        raise ReceiverConfigError(f"{where}: 'conn_id' must be letters, digits, '_', '-', '.'")
    where = f"{where} ({conn_id})"
    vendor = entry.get("vendor")
    if vendor not in _FIELDS:
        raise ReceiverConfigError(
            f"{where}: 'vendor' must be one of {', '.join(VENDORS)} (the vendors that push)")
    allowed = {"conn_id", "vendor", *_FIELDS[vendor], *_OPTIONAL.get(vendor, ())}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ReceiverConfigError(f"{where}: unknown field(s) {', '.join(unknown)} "
                                  f"for vendor {vendor}")
    values = {name: _secret(entry, name, where) for name in _FIELDS[vendor]}
    if vendor == "chuanglan":
        return ChuanglanReceiver(conn_id, values["receiver"], values["password"])
    if vendor == "emay_ims":
        if len(values["secret_key"].encode("utf-8")) not in _AES_KEY_LENGTHS:
            raise ReceiverConfigError(f"{where}: 'secret_key' must be 16, 24 or 32 bytes")
        return _emay(entry, where, conn_id, values["app_id"], values["secret_key"])
    return EimsReceiver(conn_id, _url_token(values["token"], "token", where))


def _emay(entry: Mapping[str, Any], where: str, conn_id: str, app_id: str,
          secret_key: str) -> EmayImsReceiver:
    """Plain pushes stay off unless asked for, and are never taken unauthenticated."""
    plain = entry.get("accept_plain", False)
    if not isinstance(plain, bool):
        raise ReceiverConfigError(f"{where}: 'accept_plain' must be true or false")
    token = None
    if "plain_token" in entry:
        token = _url_token(_secret(entry, "plain_token", where), "plain_token", where)
    sources = _networks(entry["plain_sources"], where) if "plain_sources" in entry else ()
    if plain and token is None and not sources:
        raise ReceiverConfigError(
            f"{where}: 'accept_plain' needs 'plain_token' (a secret in the push URL) "
            "or 'plain_sources' (the vendor's addresses): a plain push carries no "
            "credential of its own")
    if not plain and (token is not None or sources):
        raise ReceiverConfigError(f"{where}: 'plain_token'/'plain_sources' are set but "
                                  "'accept_plain' is not true")
    return EmayImsReceiver(conn_id, app_id, secret_key, plain, token, sources)


def _url_token(token: str, name: str, where: str) -> str:
    """A secret that stands in a URL for credentials: long, and needing no escaping."""
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
        raise ReceiverConfigError(
            f"{where}: '{name}' must be at least {MIN_TOKEN_CHARS} URL-safe characters "
            "(letters, digits, '-', '_', '.', '~'); e.g. python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def _networks(value: Any, where: str) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list) or not value:
        raise ReceiverConfigError(f"{where}: 'plain_sources' must be a non-empty list of "
                                  "addresses or networks (e.g. \"203.0.113.0/24\")")
    out = []
    for i, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError(item)
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ReceiverConfigError(f"{where}: 'plain_sources'[{i}] is not an address "
                                      "or network") from None
    return tuple(out)


def _address_in(client: str | None, networks: Iterable[IPNetwork]) -> bool:
    """The TCP peer's address, an IPv4-mapped IPv6 one read as IPv4."""
    try:
        address = ipaddress.ip_address((client or "").strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _secret(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ReceiverConfigError(f"{where}: '{name}' is missing or empty")
    if value != value.strip():
        raise ReceiverConfigError(f"{where}: '{name}' has leading or trailing spaces")
    return value


def _number(value: Any, name: str, kind: type, low: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReceiverConfigError(f"'{name}' must be a number")
    if kind is int and value != int(value):
        raise ReceiverConfigError(f"'{name}' must be a whole number")
    if value < low:
        raise ReceiverConfigError(f"'{name}' must be at least {low:g}")
    return kind(value)


def _check_unique(connections: Iterable[Connection]) -> None:
    """Two entries with the same credentials could not be told apart."""
    seen_ids: set[str] = set()
    seen_creds: dict[tuple[str, ...], str] = {}
    for conn in connections:
        if conn.conn_id in seen_ids:
            raise ReceiverConfigError(f"conn_id {conn.conn_id!r} appears twice")
        seen_ids.add(conn.conn_id)
        if isinstance(conn, ChuanglanReceiver):
            creds: tuple[str, ...] = ("chuanglan", conn.receiver, conn.password)
            what = "receiver and password"
        elif isinstance(conn, EmayImsReceiver):
            creds, what = ("emay_ims", conn.app_id), "app_id"
            if conn.plain_token is not None:
                other = seen_creds.setdefault(("emay_plain", conn.plain_token), conn.conn_id)
                if other != conn.conn_id:
                    raise ReceiverConfigError(
                        f"{conn.conn_id!r} has the same plain_token as {other!r}: pushes "
                        "could not be told apart")
        else:
            creds, what = ("eims", conn.token), "token"
        other = seen_creds.setdefault(creds, conn.conn_id)
        if other != conn.conn_id:
            raise ReceiverConfigError(
                f"{conn.conn_id!r} has the same {what} as {other!r}: pushes could not be "
                "told apart")
