"""The send ledger: each chunk's intent is durable before its request goes out.

A chunk moves through these states::

    pending --(intent committed)--> intent --(answer)--> sent | rejected
                                           \\--(retryable error)--> pending
                                           \\--(answer lost)-------> ambiguous

Only ``pending`` chunks are ever sent. ``intent`` found on a later run means
the process died with the request possibly on the wire: it becomes
``ambiguous`` and is never resent; delivery reports settle it later by custom
id. The ``pending -> intent`` step is a compare-and-set, so two workers that
somehow run the same shard cannot both send one chunk.

The ledger is any SQLAlchemy URL: an SQLite file under the data root by
default, PostgreSQL for deployments with several workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

PENDING, INTENT, SENT, REJECTED, AMBIGUOUS = "pending", "intent", "sent", "rejected", "ambiguous"
FINAL_STATES = frozenset({SENT, REJECTED, AMBIGUOUS})

_metadata = sa.MetaData()
chunks_table = sa.Table(
    "sms_send_chunks", _metadata,
    sa.Column("campaign_id", sa.String(200), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("chunk", sa.Integer, primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("recipients", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("outcome", sa.Text),  # JSON, one entry per recipient of the chunk
    sa.Column("intent_at", sa.Float),
    sa.Column("updated_at", sa.Float, nullable=False),
)


# The two statements every request runs, built once: constructing SQLAlchemy
# expressions per call cost more than SQLite's own work.
_c = chunks_table.c
_KEY = sa.and_(_c.campaign_id == sa.bindparam("k_campaign"), _c.shard == sa.bindparam("k_shard"),
               _c.chunk == sa.bindparam("k_chunk"))
_INSERT_INTENT = chunks_table.insert()
_FINISH = (chunks_table.update().where(_KEY, _c.state == INTENT)
           .values(state=sa.bindparam("v_state"), outcome=sa.bindparam("v_outcome"),
                   last_error=sa.bindparam("v_error"), updated_at=sa.bindparam("v_at")))


class LedgerMismatchError(RuntimeError):
    """A chunk's recipients differ from what the ledger recorded for it earlier.

    Raised instead of sending: the prepared data changed under a partly sent
    campaign, and continuing could send someone twice.
    """


@dataclass(frozen=True)
class ChunkRecord:
    campaign_id: str
    shard: int
    chunk: int
    fingerprint: str
    recipients: int
    state: str
    attempts: int
    last_error: str | None
    outcome: Any  # per recipient, by column: see sms_provider.data.send
    updated_at: float


def default_url(data_root: str | Path) -> str:
    path = Path(data_root) / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_conn: Any, synchronous: str) -> None:
    cur = dbapi_conn.cursor()
    # WAL: a committed intent survives SIGKILL of the process.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _engine(url: str, *, synchronous: str = "FULL") -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            _sqlite_pragmas(dbapi_conn, synchronous)

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


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
        "state, attempts, intent_at, updated_at) VALUES (?, ?, ?, ?, ?, 'intent', 1, ?, ?)")
    FINISH = ("UPDATE sms_send_chunks SET state = ?, outcome = ?, last_error = ?, "
              "updated_at = ? WHERE campaign_id = ? AND shard = ? AND chunk = ? "
              "AND state = 'intent'")

    def __init__(self, path: str, synchronous: str) -> None:
        self.path, self.synchronous = path, synchronous
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def execute(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run and commit one statement; the rows it changed."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            _sqlite_pragmas(conn, self.synchronous)
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


class SendLedger:
    """Chunk states for every campaign, in one table."""

    def __init__(self, url: str) -> None:
        self.url = url
        #: commits that must be on disk before a request leaves (the intent)
        self.engine = _engine(url)
        #: everything else: an outcome lost in an OS crash leaves the chunk in
        #: ``intent``, which turns ambiguous, never resent; and the next synced
        #: intent commit flushes the WAL entries before it anyway
        self._relaxed = (_engine(url, synchronous="NORMAL") if url.startswith("sqlite")
                         else self.engine)
        #: SQLite takes one writer at a time and makes the others poll with sleeps of
        #: 1, 2, 5, 10 ms and more; send threads of one process queue here instead and
        #: get the lock the moment it is free (other processes still meet SQLite's lock)
        self._writing: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if url.startswith("sqlite") else contextlib.nullcontext())
        _metadata.create_all(self.engine)
        database = self.engine.url.database
        sqlite_file = (self.engine.dialect.name == "sqlite" and database
                       and database != ":memory:" and not database.startswith("file:"))
        self._intent_sql = _SqliteStatements(database, "FULL") if sqlite_file else None
        self._relaxed_sql = _SqliteStatements(database, "NORMAL") if sqlite_file else None

    def __repr__(self) -> str:
        # The URL may carry a database password.
        return f"SendLedger({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        for statements in (self._intent_sql, self._relaxed_sql):
            if statements is not None:
                statements.close()
        self.engine.dispose()
        self._relaxed.dispose()

    @staticmethod
    def _key(campaign_id: str, shard: int, chunk: int) -> sa.ColumnElement[bool]:
        t = chunks_table.c
        return sa.and_(t.campaign_id == campaign_id, t.shard == shard, t.chunk == chunk)

    def _record(self, row: Any) -> ChunkRecord:
        return ChunkRecord(row.campaign_id, row.shard, row.chunk, row.fingerprint,
                           row.recipients, row.state, row.attempts, row.last_error,
                           json.loads(row.outcome) if row.outcome else None, row.updated_at)

    def claim(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
              recipients: int) -> ChunkRecord:
        """The chunk's record, created ``pending`` on first sight (no request is sent).

        A record left in ``intent`` by a dead process turns ``ambiguous`` here.
        """
        key = self._key(campaign_id, shard, chunk)
        with self._writing, self._relaxed.begin() as conn:
            row = conn.execute(sa.select(chunks_table).where(key)).first()
            if row is None:
                conn.execute(chunks_table.insert().values(
                    campaign_id=campaign_id, shard=shard, chunk=chunk,
                    fingerprint=fingerprint, recipients=recipients, state=PENDING, attempts=0,
                    updated_at=time.time()))
                row = conn.execute(sa.select(chunks_table).where(key)).one()
            else:
                row = self._settle_stale(conn, row, fingerprint)
        return self._record(row)

    def _settle_stale(self, conn: sa.Connection, row: Any, fingerprint: str) -> Any:
        if row.fingerprint != fingerprint:
            raise LedgerMismatchError(
                f"campaign {row.campaign_id!r} shard {row.shard} chunk {row.chunk}: its "
                "recipients differ from those recorded when it was first sent; the prepared "
                "data changed. Use a new campaign_id, or restore the original prepared data.")
        if row.state != INTENT:
            return row
        key = self._key(row.campaign_id, row.shard, row.chunk)
        conn.execute(chunks_table.update().where(key, chunks_table.c.state == INTENT).values(
            state=AMBIGUOUS, updated_at=time.time(),
            last_error="the sending process stopped after the request may have gone out"))
        return conn.execute(sa.select(chunks_table).where(key)).one()

    def begin_send(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
                   recipients: int) -> tuple[bool, ChunkRecord]:
        """Move the chunk to ``intent``, committed before the request: ``(True, record)``.

        ``(False, record)`` when it must not be sent: its outcome is known, it is
        ambiguous, or another worker holds it. A chunk never seen before is
        inserted straight as ``intent``: one durable commit before the request.
        """
        now = time.time()
        values = dict(campaign_id=campaign_id, shard=shard, chunk=chunk,
                      fingerprint=fingerprint, recipients=recipients)
        try:
            with self._writing:
                if self._intent_sql is not None:
                    self._intent_sql.execute(self._intent_sql.INSERT_INTENT, (
                        campaign_id, shard, chunk, fingerprint, recipients, now, now))
                else:
                    with self.engine.begin() as conn:
                        conn.execute(_INSERT_INTENT, {**values, "state": INTENT,
                                                      "attempts": 1, "intent_at": now,
                                                      "updated_at": now})
            return True, ChunkRecord(**values, state=INTENT, attempts=1, last_error=None,
                                     outcome=None, updated_at=now)
        except (sa.exc.IntegrityError, sqlite3.IntegrityError):
            pass  # known chunk: a retry, a rerun, or a concurrent worker
        key = self._key(campaign_id, shard, chunk)
        with self._writing, self.engine.begin() as conn:
            row = self._settle_stale(
                conn, conn.execute(sa.select(chunks_table).where(key)).one(), fingerprint)
            if row.state != PENDING:
                return False, self._record(row)
            moved = conn.execute(
                chunks_table.update().where(key, chunks_table.c.state == PENDING)
                .values(state=INTENT, attempts=chunks_table.c.attempts + 1, intent_at=now,
                        updated_at=now)).rowcount == 1
            row = conn.execute(sa.select(chunks_table).where(key)).one()
        return moved, self._record(row)

    def finish(self, record: ChunkRecord, state: str, *, outcome: Any = None,
               error: str | None = None) -> ChunkRecord:
        """Record what the answer (or its absence) means for the chunk; the new record."""
        if state not in (PENDING, *FINAL_STATES):
            raise ValueError(f"cannot finish a chunk in state {state!r}")
        now = time.time()
        stored = json.dumps(outcome) if outcome is not None else None
        with self._writing:
            if self._relaxed_sql is not None:
                done = self._relaxed_sql.execute(self._relaxed_sql.FINISH, (
                    state, stored, error, now, record.campaign_id, record.shard,
                    record.chunk)) == 1
            else:
                with self._relaxed.begin() as conn:
                    done = conn.execute(_FINISH, {
                        "k_campaign": record.campaign_id, "k_shard": record.shard,
                        "k_chunk": record.chunk, "v_state": state, "v_outcome": stored,
                        "v_error": error, "v_at": now}).rowcount == 1
        if not done:  # someone settled it meanwhile (a rerun marked it ambiguous)
            key = self._key(record.campaign_id, record.shard, record.chunk)
            with self._relaxed.connect() as conn:
                return self._record(conn.execute(sa.select(chunks_table).where(key)).one())
        return dataclasses.replace(record, state=state, outcome=outcome, last_error=error,
                                   updated_at=now)

    def chunks(self, campaign_id: str, shard: int | None = None) -> list[ChunkRecord]:
        query = sa.select(chunks_table).where(chunks_table.c.campaign_id == campaign_id)
        if shard is not None:
            query = query.where(chunks_table.c.shard == shard)
        with self._relaxed.connect() as conn:
            rows = conn.execute(query.order_by(chunks_table.c.shard, chunks_table.c.chunk))
            return [self._record(r) for r in rows]
