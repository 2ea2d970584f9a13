"""EIMS md5 ``seq`` shared by every host: a row per account in the ledger's PostgreSQL.

A seq file orders the processes of one host only. With workers on several hosts
the counter lives where the send ledger already is (``SMS_LEDGER_URL``, when it
is a PostgreSQL URL): one row per account in ``sms_eims_seq``, and the
account's *turn* is a PostgreSQL session advisory lock held from taking the
seq until the platform has answered, because the platform refuses a seq that
arrives after a higher one (see :class:`~sms_provider.vendors.eims_seq.SeqSource`).

Why an advisory lock beside the row rather than ``SELECT ... FOR UPDATE``: the
new seq must be committed *before* its request leaves (a crash mid-request must
not hand the same seq out again, as the file source fsyncs first), and a row
lock ends with its transaction. The session lock outlives that commit, and the
server drops it by itself when a worker dies and its connection closes.

A seq never goes below ``max(last in the local seq file + 1, now in Unix
seconds)``, so switching a deployment from its seq file (or from the in-memory
counter, which starts at the current time) moves forward.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sms_provider.errors import PermanentError, RetryableError
from sms_provider.vendors.eims_seq import VENDOR, SeqSource, local_seq_source

ENV_LEDGER_URL = "SMS_LEDGER_URL"
TABLE = "sms_eims_seq"
#: the first key of our advisory locks (the second is the account's hash); "EIMS"
LOCK_SPACE = 0x45494D53
#: how long a turn waits for another sender's turn before a retryable error
TURN_TIMEOUT_S = 120.0

_CREATE = ("CREATE TABLE IF NOT EXISTS sms_eims_seq (account text PRIMARY KEY, "
           "last_seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())")
_TAKE = ("INSERT INTO sms_eims_seq (account, last_seq) VALUES (:account, :floor) "
         "ON CONFLICT (account) DO UPDATE SET "
         "last_seq = GREATEST(sms_eims_seq.last_seq + 1, :floor), updated_at = now() "
         "RETURNING last_seq")

_engines: dict[str, Any] = {}
_ready: set[str] = set()
_engines_lock = threading.Lock()


def is_postgresql(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _engine(url: str) -> Any:
    import sqlalchemy as sa

    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=8)
            _engines[url] = engine
        return engine


def file_floor(path: str | os.PathLike[str] | None) -> int:
    """The last seq written to the local seq file, 0 without one."""
    if path is None:
        return 0
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise PermanentError(f"cannot read the seq file {path}: {exc.strerror}",
                             vendor=VENDOR) from None
    if not text:
        return 0
    if not text.isdigit():
        raise PermanentError(f"seq file {path} does not hold a number; repair it with a "
                             "value above the last seq used", vendor=VENDOR)
    return int(text)


class PgSeqSource(SeqSource):
    """The account's last seq in PostgreSQL; a turn holds its advisory lock."""

    def __init__(self, url: str, account: str, *,
                 floor_path: str | os.PathLike[str] | None = None,
                 turn_timeout_s: float = TURN_TIMEOUT_S) -> None:
        self.url = url
        self.account = account
        self.floor_path = floor_path
        self.turn_timeout_s = turn_timeout_s
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PgSeqSource(url={self._safe_url()!r}, account={self.account!r})"

    def _safe_url(self) -> str:
        import sqlalchemy as sa

        try:
            url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError:
            return "postgresql://?"
        return url.set(password=None).render_as_string(hide_password=True)

    def _failed(self, exc: Exception) -> RetryableError:
        code = getattr(getattr(exc, "orig", None), "pgcode", None)
        if code == "55P03":  # lock_not_available
            return RetryableError(
                f"another sender held the md5 seq turn of EIMS account {self.account!r} "
                f"for over {self.turn_timeout_s:g} s; nothing was sent: retry", vendor=VENDOR)
        return RetryableError(
            f"the EIMS seq store {self._safe_url()} ({ENV_LEDGER_URL}) failed "
            f"({type(exc).__name__}); nothing was sent: retry once the database is back",
            vendor=VENDOR)

    def _create_table(self, conn: Any) -> None:
        import sqlalchemy as sa

        if self.url in _ready:
            return
        with conn.begin():  # serialised: concurrent CREATE IF NOT EXISTS can collide
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:space, 0)"),
                         {"space": LOCK_SPACE})
            conn.execute(sa.text(_CREATE))
        _ready.add(self.url)

    @contextmanager
    def turn(self) -> Iterator[int]:
        import sqlalchemy as sa

        with self._lock:  # this source's threads queue here, not on the database
            try:
                conn = _engine(self.url).connect()
            except sa.exc.SQLAlchemyError as exc:
                raise self._failed(exc) from None
            locked = False
            try:
                try:
                    self._create_table(conn)
                    key = {"space": LOCK_SPACE, "account": self.account}
                    with conn.begin():
                        conn.execute(sa.text("SELECT set_config('lock_timeout', :ms, false)"),
                                     {"ms": f"{max(1, int(self.turn_timeout_s * 1000))}"})
                    with conn.begin():
                        conn.execute(sa.text(
                            "SELECT pg_advisory_lock(:space, hashtext(:account))"), key)
                    locked = True
                    floor = max(file_floor(self.floor_path) + 1, int(time.time()))
                    with conn.begin():  # committed before the request leaves
                        seq = conn.execute(sa.text(_TAKE), {"account": self.account,
                                                            "floor": floor}).scalar_one()
                except sa.exc.SQLAlchemyError as exc:
                    raise self._failed(exc) from None
                yield int(seq)
            finally:
                self._end_turn(conn, locked)

    def _end_turn(self, conn: Any, locked: bool) -> None:
        import sqlalchemy as sa

        try:
            if locked:
                with conn.begin():
                    conn.execute(sa.text(
                        "SELECT pg_advisory_unlock(:space, hashtext(:account))"),
                        {"space": LOCK_SPACE, "account": self.account})
        except sa.exc.SQLAlchemyError:
            conn.invalidate()  # a pooled connection must not keep the lock
        finally:
            conn.close()


def seq_source(account: str, seq_path: str | os.PathLike[str] | None,
               env: Mapping[str, str] | None = None) -> SeqSource:
    """The seq source a connection gets: PostgreSQL when the ledger is there, else local.

    ``SMS_LEDGER_URL`` naming PostgreSQL means the deployment may run workers on
    several hosts, where a file cannot order them; ``seq_path`` then only sets
    the floor. Otherwise the seq file, or the in-memory counter without one.
    """
    env = os.environ if env is None else env
    url = env.get(ENV_LEDGER_URL, "").strip()
    if is_postgresql(url):
        return PgSeqSource(url, account, floor_path=seq_path)
    return local_seq_source(seq_path)
