"""One Airflow pool per vendor connection, so the shards of many campaigns share an
account fairly; ``python -m sms_provider.pools`` creates them.

A pool's slots are how many send tasks may use the connection at once, across
every campaign and worker; each send task keeps ``send_concurrency`` requests in
flight, so the account sees at most slots x send_concurrency (and the
connection's ``rate_limit`` caps the rate whatever the slots). The default slots
are the connection's ``send_concurrency`` (4 when unset): one campaign alone
runs its four shards at once, two campaigns take turns.

The send tasks are routed to the pool by the cluster policy in
:mod:`sms_provider.policy`. Connections are found in the metadata database and in
``AIRFLOW_CONN_*`` environment variables; a secrets backend cannot be listed, so
name those connections with ``--conn-id``. The same without this module::

    airflow pools set sms_vendor_sms_eums 4 "SMS vendor connection sms_eums"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sms_provider.vendors.profiles import PROFILES
from sms_provider.vendors.registry import ConnectionConfigError, pipeline_settings

POOL_PREFIX = "sms_vendor_"
DEFAULT_SLOTS = 4
CONN_ENV_PREFIX = "AIRFLOW_CONN_"


def pool_name(conn_id: str) -> str:
    """The pool of a vendor connection: ``sms_vendor_<conn_id>``."""
    return POOL_PREFIX + conn_id


@dataclass(frozen=True)
class VendorConnection:
    conn_id: str
    conn_type: str
    slots: int


def _slots(conn_id: str, extras: Mapping[str, object] | None) -> int:
    try:
        settings = pipeline_settings(extras)
    except ConnectionConfigError as exc:
        raise ConnectionConfigError(f"connection {conn_id!r}: {exc}") from None
    return max(1, int(settings.get("send_concurrency") or DEFAULT_SLOTS))


def _extras(text: str | None) -> dict[str, object]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def environment_connections(env: Mapping[str, str]) -> list[VendorConnection]:
    """Vendor connections given as ``AIRFLOW_CONN_<ID>`` (JSON or URI)."""
    from airflow.models.connection import Connection

    found = []
    for key, value in sorted(env.items()):
        if not key.startswith(CONN_ENV_PREFIX) or key.startswith(CONN_ENV_PREFIX + "_"):
            continue  # AIRFLOW_CONN__TEAM___ID: a team's; name it with --conn-id
        conn_id = key[len(CONN_ENV_PREFIX):].lower()
        text = value.strip()
        if text.startswith("{"):
            conn = Connection.from_json(text, conn_id=conn_id)
        else:
            scheme = urlsplit(text).scheme.replace("-", "_")
            if scheme not in PROFILES:
                continue
            conn = Connection(conn_id=conn_id, uri=text)
        if conn.conn_type in PROFILES:
            found.append(VendorConnection(conn_id, conn.conn_type,
                                          _slots(conn_id, _extras(conn.extra))))
    return found


def database_connections() -> list[VendorConnection]:
    """Vendor connections in the metadata database."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Connection).where(
            Connection.conn_type.in_(sorted(PROFILES)))).all()
        return [VendorConnection(c.conn_id, c.conn_type, _slots(c.conn_id, _extras(c.extra)))
                for c in rows]


def named_connections(conn_ids: Iterable[str]) -> list[VendorConnection]:
    """Connections looked up by id through every configured backend."""
    from airflow.sdk import BaseHook

    found = []
    for conn_id in conn_ids:
        conn = BaseHook.get_connection(conn_id)
        if conn.conn_type not in PROFILES:
            raise ConnectionConfigError(
                f"connection {conn_id!r} has type {conn.conn_type!r}; expected one of "
                f"{sorted(PROFILES)}")
        found.append(VendorConnection(conn_id, conn.conn_type,
                                      _slots(conn_id, conn.extra_dejson)))
    return found


def vendor_connections(conn_ids: Sequence[str] = (),
                       env: Mapping[str, str] | None = None) -> list[VendorConnection]:
    """The connections to make pools for: ``conn_ids``, else every one that can be listed."""
    if conn_ids:
        return named_connections(conn_ids)
    by_id = {c.conn_id: c for c in database_connections()}
    by_id.update({c.conn_id: c for c in environment_connections(
        os.environ if env is None else env)})  # the environment wins, as in Airflow
    return [by_id[k] for k in sorted(by_id)]


def ensure_pools(connections: Iterable[VendorConnection], *, slots: int | None = None,
                 update: bool = False) -> list[tuple[str, int, str]]:
    """Create each connection's pool; an existing pool keeps its slots unless ``update``.

    Returns ``(pool, slots, "created" | "updated" | "kept")`` per connection.
    """
    from airflow.models.pool import Pool

    done = []
    for conn in connections:
        name = pool_name(conn.conn_id)
        wanted = slots or conn.slots
        existing = Pool.get_pool(name)
        if existing is not None and not update:
            done.append((name, existing.slots, "kept"))
            continue
        Pool.create_or_update_pool(
            name, wanted, f"SMS vendor connection {conn.conn_id} ({conn.conn_type}): send "
            "tasks of every campaign share it", include_deferred=False)
        done.append((name, wanted, "updated" if existing is not None else "created"))
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sms_provider.pools",
        description="Create one Airflow pool per SMS vendor connection "
                    f"({POOL_PREFIX}<conn_id>).")
    parser.add_argument("--conn-id", action="append", default=[],
                        help="only this connection (repeatable; needed for connections "
                             "in a secrets backend)")
    parser.add_argument("--slots", type=int, default=None,
                        help="slots of every pool (default: the connection's "
                             f"send_concurrency, else {DEFAULT_SLOTS})")
    parser.add_argument("--update", action="store_true",
                        help="also set the slots of pools that exist already")
    args = parser.parse_args(argv)
    if args.slots is not None and args.slots < 1:
        parser.error("--slots must be 1 or more")
    connections = vendor_connections(args.conn_id)
    if not connections:
        print("no SMS vendor connections found; name them with --conn-id", file=sys.stderr)
        return 1
    for name, slots, action in ensure_pools(connections, slots=args.slots,
                                            update=args.update):
        print(f"{action} pool {name} ({slots} slots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
