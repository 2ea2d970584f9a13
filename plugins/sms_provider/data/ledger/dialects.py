"""SQLite versus PostgreSQL: engines, pragmas, lock errors and SQLite's write turns.

The ledger is any SQLAlchemy URL. SQLite needs WAL and a busy timeout, one writer
per process at a time, and (for the two writes of every request) plain sqlite3
connections; PostgreSQL needs a lock timeout so a lock wait ends with an error.
"""


from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from sms_provider.data.ledger.moves import SendLedger


def default_url(data_root: str | Path) -> str:
    path = Path(data_root) / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn: Any, synchronous: str, busy_ms: int) -> None:
    cur = dbapi_conn.cursor()
    # WAL: a committed intent survives SIGKILL of the process.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.close()


def _engine(url: str, lock_timeout_s: float, *, synchronous: str = "FULL") -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": lock_timeout_s,
                                                     "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_conn, synchronous, int(lock_timeout_s * 1000))

        return engine
    connect_args = {}
    if url.startswith("postgresql"):  # a lock wait ends with an error, not never
        connect_args["options"] = f"-c lock_timeout={max(1, int(lock_timeout_s * 1000))}"
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _is_lock_error(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "pgcode", None) == "55P03":  # lock_not_available: lock_timeout passed
        return True
    text = str(orig).lower()
    return isinstance(orig, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


_F = TypeVar("_F", bound=Callable[..., Any])


def _locks_explained(doing: str) -> Callable[[_F], _F]:
    """A lock that outlasted the ledger's wait becomes a :class:`LedgerLockedError`
    saying what is locked, what it means for the send, and what to do."""
    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: SendLedger, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (sa.exc.OperationalError, sqlite3.OperationalError) as exc:
                if not _is_lock_error(exc):
                    raise
                raise self.locked_error(doing) from None
        return wrapper  # type: ignore[return-value]
    return decorate


class _WriteTurn:
    """SQLite takes one writer at a time and makes the others poll with sleeps of 1, 2,
    5, 10 ms and more; send threads of one process queue here instead and get the lock
    the moment it is free (other processes still meet SQLite's lock). A thread waits
    here no longer than the ledger's lock timeout, so a locked ledger fails every
    thread within it instead of one after another."""

    def __init__(self, ledger: SendLedger) -> None:
        self._lock = threading.Lock()
        self._ledger = ledger

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self._ledger.lock_timeout_s):
            raise self._ledger.locked_error("waiting for this process's other ledger writes")

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class _NoTurn:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


class _SqliteStatements:
    """The two writes every request makes, on plain sqlite3 connections, one per thread.

    Through SQLAlchemy each costs the sending threads more CPU than SQLite's own
    work, CPU the sender shares with everything else on the machine. Only these
    two go this way; every other query keeps to SQLAlchemy. The connections are
    opened here, not taken from the engine's pool, so any number of send threads
    can hold one.
    """

    INSERT_INTENT = (
        "INSERT INTO sms_send_chunks (campaign_id, shard, chunk, fingerprint, recipients, "
        "state, attempts, intent_at, updated_at, owner, lease_until) "
        "VALUES (?, ?, ?, ?, ?, 'intent', 1, ?, ?, ?, ?)")
    FINISH = ("UPDATE sms_send_chunks SET state = ?, outcome = ?, last_error = ?, "
              "updated_at = ? WHERE campaign_id = ? AND shard = ? AND chunk = ? "
              "AND state = 'intent'")

    def __init__(self, path: str, synchronous: str, lock_timeout_s: float) -> None:
        self.path, self.synchronous, self.lock_timeout_s = path, synchronous, lock_timeout_s
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def execute(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run and commit one statement; the rows it changed."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.lock_timeout_s,
                                   check_same_thread=False)
            _sqlite_pragmas(conn, self.synchronous, int(self.lock_timeout_s * 1000))
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        try:
            changed = conn.execute(sql, params).rowcount
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return changed

    def close(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
            self._local = threading.local()
