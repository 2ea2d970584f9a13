"""The send ledger: each chunk's intent is durable before its request goes out.

A chunk moves through these states::

    pending --(intent committed)--> intent --(answer)--> sent | rejected
                                           \\--(retryable error)--> pending
                                           \\--(answer lost)-------> ambiguous

Only ``pending`` chunks are ever sent. An intent records its owner (the
sender: task instance and try, host, process) and a lease the live sender
renews. A sender that finds a chunk in ``intent`` asks whether its owner is
certainly gone: an earlier try of the same task, a process on this machine
that no longer runs, or a lease that ran out. Then the request may be on the
wire with nobody left to hear the answer: the chunk becomes ``ambiguous`` and
is never resent; delivery reports settle it later by custom id. While the
owner may still be sending, the chunk is left alone: the finder waits for its
outcome (see ``sms_provider.data.send``). Every change of state is a
compare-and-set on the row, so two senders never both send one chunk and never
overwrite each other's outcome.

The ledger is any SQLAlchemy URL: an SQLite file under the data root by
default, PostgreSQL for deployments with several workers.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

PENDING, INTENT, SENT, REJECTED, AMBIGUOUS = "pending", "intent", "sent", "rejected", "ambiguous"
FINAL_STATES = frozenset({SENT, REJECTED, AMBIGUOUS})

#: seconds a sender's claim on its chunks in flight lasts unless renewed; senders renew
#: it every third of that (once per shard, not per request)
LEASE_S = 30.0
#: seconds a statement waits for another connection's write lock before giving up
LOCK_TIMEOUT_S = 30.0

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
    sa.Column("owner", sa.Text),  # JSON: the SenderIdentity of the latest intent
    sa.Column("lease_until", sa.Float),  # the owner's claim on its intent lasts until then
)
#: columns later releases added, with their SQL type: an older ledger gets them on opening
_ADDED_COLUMNS = {"owner": "TEXT", "lease_until": "FLOAT"}


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


class LedgerLockedError(RuntimeError):
    """Another connection held a lock on the ledger for longer than the ledger waits.

    Retryable: nothing is sent without its intent committed, so a later try
    sends only what certainly was not sent.
    """

    retryable = True


@dataclass(frozen=True)
class SenderIdentity:
    """Who wrote an intent: enough to tell, later, whether it can still be sending.

    ``task`` is ``dag_id/run_id/task_id/map_index`` when the sender runs as an
    Airflow task (``attempt`` its try number); ``machine`` names the host, its
    boot and its process namespace, so a process id is only checked where it
    means the same process.
    """

    sender: str
    host: str
    pid: int
    machine: str
    started: str | None = None  # the process's start time, against pid reuse
    task: str | None = None
    attempt: int | None = None

    @classmethod
    def current(cls, task: str | None = None, attempt: int | None = None) -> SenderIdentity:
        """A new sender in this process (each run of a shard is a sender of its own)."""
        pid = os.getpid()
        return cls(uuid.uuid4().hex[:16], socket.gethostname(), pid, _machine(),
                   _process_start(pid), task, attempt)

    def to_json(self) -> str:
        return self._stored

    @functools.cached_property
    def _stored(self) -> str:  # made once: every intent of the sender stores it
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> SenderIdentity | None:
        """The stored owner; None for none or one this release cannot read."""
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError):
            return None

    def describe(self) -> str:
        where = f"host {self.host}, pid {self.pid}"
        if self.task:
            return f"task {self.task} try {self.attempt} ({where})"
        return f"sender {self.sender} ({where})"

    def earlier_try_of(self, other: SenderIdentity) -> bool:
        """True when this is an earlier try of ``other``'s task instance (it was given up)."""
        return bool(self.task and self.task == other.task and self.attempt is not None
                    and other.attempt is not None and self.attempt < other.attempt)

    def process_gone(self) -> bool:
        """True when this identity's process certainly runs no more (checked on its own
        machine only; elsewhere only the lease can tell)."""
        if self.machine != _machine():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it runs, as another user
        stat = _proc_stat(self.pid)
        if stat is None:
            return False
        state, started = stat
        return state in ("Z", "X") or (self.started is not None and started != self.started)


@functools.cache
def _machine() -> str:
    """This host, its boot and this process namespace: where process ids are comparable."""
    parts = [socket.gethostname()]
    for read in (lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                 lambda: os.readlink("/proc/self/ns/pid")):
        try:
            parts.append(read())
        except OSError:
            parts.append("")
    return "|".join(parts)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """A process's state letter and start time (clock ticks since boot), from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _process_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


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
    owner: str | None = None  # the latest intent's SenderIdentity, as stored
    lease_until: float | None = None

    @property
    def owner_identity(self) -> SenderIdentity | None:
        return SenderIdentity.from_json(self.owner)


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


class SendLedger:
    """Chunk states for every campaign, in one table.

    ``lock_timeout_s`` is how long a statement waits for another connection's
    lock before failing with :class:`LedgerLockedError`; ``lease_s`` how long
    an intent stays its sender's without renewal.
    """

    def __init__(self, url: str, *, lock_timeout_s: float = LOCK_TIMEOUT_S,
                 lease_s: float = LEASE_S) -> None:
        if not lock_timeout_s > 0:
            raise ValueError(f"the ledger's lock timeout must be positive, not {lock_timeout_s}")
        self.url = url
        self.lock_timeout_s = float(lock_timeout_s)
        self.lease_s = float(lease_s)
        #: the owner of intents written without one (a sender passes its own)
        self.owner = SenderIdentity.current()
        #: commits that must be on disk before a request leaves (the intent)
        self.engine = _engine(url, self.lock_timeout_s)
        #: everything else: an outcome lost in an OS crash leaves the chunk in
        #: ``intent``, which turns ambiguous, never resent; and the next synced
        #: intent commit flushes the WAL entries before it anyway
        self._relaxed = (_engine(url, self.lock_timeout_s, synchronous="NORMAL")
                         if url.startswith("sqlite") else self.engine)
        self._writing: _WriteTurn | _NoTurn = (
            _WriteTurn(self) if url.startswith("sqlite") else _NoTurn())
        self._create_table()
        database = self.engine.url.database
        sqlite_file = (self.engine.dialect.name == "sqlite" and database
                       and database != ":memory:" and not database.startswith("file:"))
        self._intent_sql = (_SqliteStatements(database, "FULL", self.lock_timeout_s)
                            if sqlite_file else None)
        self._relaxed_sql = (_SqliteStatements(database, "NORMAL", self.lock_timeout_s)
                             if sqlite_file else None)

    def __repr__(self) -> str:
        # The URL may carry a database password.
        return f"SendLedger({self.engine.url.render_as_string(hide_password=True)!r})"

    @property
    def location(self) -> str:
        """Where the ledger is, without credentials: the SQLite file, or the URL."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database:
            return str(Path(url.database).resolve())
        return url.set(username=None, password=None).render_as_string(hide_password=True)

    def locked_error(self, doing: str) -> LedgerLockedError:
        return LedgerLockedError(
            f"the send ledger {self.location} stayed locked for more than "
            f"{self.lock_timeout_s:g} s while {doing}: another connection holds a lock on it "
            "(a long transaction, an open sqlite3 shell or backup, a stuck process). End or "
            "wait out whatever holds it, or let the ledger wait longer "
            "(SMS_LEDGER_LOCK_TIMEOUT, seconds); then retry the task: a retry sends only "
            "what certainly was not sent.")

    @_locks_explained("opening it")
    def _create_table(self) -> None:
        _metadata.create_all(self.engine)
        with self.engine.connect() as conn:
            have = {c["name"] for c in sa.inspect(conn).get_columns(chunks_table.name)}
        for name, kind in _ADDED_COLUMNS.items():
            if name in have:
                continue
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text(
                        f"ALTER TABLE {chunks_table.name} ADD COLUMN {name} {kind}"))
            except (sa.exc.OperationalError, sa.exc.ProgrammingError):
                with self.engine.connect() as conn:  # another process added it first
                    if name not in {c["name"] for c in
                                    sa.inspect(conn).get_columns(chunks_table.name)}:
                        raise

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
                           json.loads(row.outcome) if row.outcome else None, row.updated_at,
                           row.owner, row.lease_until)

    def abandoned(self, record: ChunkRecord, finder: SenderIdentity,
                  now: float | None = None) -> str | None:
        """Why the sender of a chunk in ``intent`` is certainly no longer sending it, as
        the chunk's ambiguity reason; None while it may still be (then only its own
        outcome may settle the chunk)."""
        owner = record.owner_identity
        gone = "stopped after the request may have gone out"
        if owner is None:
            if record.owner is None or record.lease_until is None:
                return f"the sending process {gone}"
            who = "its sender"
        elif owner.sender == finder.sender:
            return f"this sender's own earlier request {gone}"
        elif owner.earlier_try_of(finder):
            return f"try {owner.attempt} of this task ({owner.host}, pid {owner.pid}) {gone}"
        elif owner.process_gone():
            return f"the sending process ({owner.describe()}) {gone}"
        else:
            who = owner.describe()
        now = time.time() if now is None else now
        if record.lease_until is not None and record.lease_until < now:
            expired = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.lease_until))
            return f"{who} stopped renewing its lease (expired {expired}) and {gone}"
        return None

    @_locks_explained("reading a chunk's state (nothing was sent)")
    def claim(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
              recipients: int, *, owner: SenderIdentity | None = None) -> ChunkRecord:
        """The chunk's record, created ``pending`` on first sight (no request is sent).

        A record left in ``intent`` by a sender that is gone turns ``ambiguous`` here.
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
                row = self._settle_stale(conn, row, fingerprint, owner or self.owner)
        return self._record(row)

    def _settle_stale(self, conn: sa.Connection, row: Any, fingerprint: str,
                      finder: SenderIdentity) -> Any:
        """The row, made ``ambiguous`` first when it is an intent its sender abandoned.

        The change is a compare-and-set on the owner and lease seen: a lease renewed
        meanwhile leaves the chunk to its live sender.
        """
        if row.fingerprint != fingerprint:
            raise LedgerMismatchError(
                f"campaign {row.campaign_id!r} shard {row.shard} chunk {row.chunk}: its "
                "recipients differ from those recorded when it was first sent; the prepared "
                "data changed. Use a new campaign_id, or restore the original prepared data.")
        key = self._key(row.campaign_id, row.shard, row.chunk)
        t = chunks_table.c
        while row.state == INTENT:
            reason = self.abandoned(self._record(row), finder)
            if reason is None:
                return row  # its sender may be mid-request: only it may settle the chunk
            conn.execute(chunks_table.update().where(
                key, t.state == INTENT, t.owner.is_not_distinct_from(row.owner),
                t.lease_until.is_not_distinct_from(row.lease_until)).values(
                state=AMBIGUOUS, updated_at=time.time(), last_error=reason))
            row = conn.execute(sa.select(chunks_table).where(key)).one()
        return row

    @_locks_explained("recording a chunk's intent (the chunk was not sent)")
    def begin_send(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
                   recipients: int, *, owner: SenderIdentity | None = None
                   ) -> tuple[bool, ChunkRecord]:
        """Move the chunk to ``intent`` for ``owner``, committed before the request:
        ``(True, record)``.

        ``(False, record)`` when it must not be sent: its outcome is known, it is
        ambiguous, or (``record.state == INTENT``) another sender that may still
        be sending it holds it. A chunk never seen before is inserted straight as
        ``intent``: one durable commit before the request.
        """
        owner = owner or self.owner
        now = time.time()
        stamp, lease = owner.to_json(), now + self.lease_s
        values = dict(campaign_id=campaign_id, shard=shard, chunk=chunk,
                      fingerprint=fingerprint, recipients=recipients)
        try:
            with self._writing:
                if self._intent_sql is not None:
                    self._intent_sql.execute(self._intent_sql.INSERT_INTENT, (
                        campaign_id, shard, chunk, fingerprint, recipients, now, now, stamp,
                        lease))
                else:
                    with self.engine.begin() as conn:
                        conn.execute(_INSERT_INTENT, {**values, "state": INTENT,
                                                      "attempts": 1, "intent_at": now,
                                                      "updated_at": now, "owner": stamp,
                                                      "lease_until": lease})
            return True, ChunkRecord(**values, state=INTENT, attempts=1, last_error=None,
                                     outcome=None, updated_at=now, owner=stamp,
                                     lease_until=lease)
        except (sa.exc.IntegrityError, sqlite3.IntegrityError):
            pass  # known chunk: a retry, a rerun, or a concurrent sender
        key = self._key(campaign_id, shard, chunk)
        t = chunks_table.c
        with self._writing, self.engine.begin() as conn:
            row = self._settle_stale(
                conn, conn.execute(sa.select(chunks_table).where(key)).one(), fingerprint,
                owner)
            if row.state != PENDING:
                return False, self._record(row)
            moved = conn.execute(
                chunks_table.update().where(key, t.state == PENDING)
                .values(state=INTENT, attempts=t.attempts + 1, intent_at=now,
                        updated_at=now, owner=stamp, lease_until=lease)).rowcount == 1
            row = conn.execute(sa.select(chunks_table).where(key)).one()
        return moved and row.owner == stamp, self._record(row)

    @_locks_explained("recording a chunk's answer (the request went out; a retry counts "
                      "the chunk ambiguous, never sends it again)")
    def finish(self, record: ChunkRecord, state: str, *, outcome: Any = None,
               error: str | None = None) -> ChunkRecord:
        """Record what the answer (or its absence) means for the chunk; the new record.

        A chunk another sender took for abandoned (made ``ambiguous``) while this
        one was still waiting for its answer still gets that answer when it is
        definite: the real outcome is never thrown away.
        """
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
        if done:
            return dataclasses.replace(record, state=state, outcome=outcome,
                                       last_error=error, updated_at=now)
        key = self._key(record.campaign_id, record.shard, record.chunk)
        t = chunks_table.c
        with self._writing, self._relaxed.begin() as conn:
            if state in (SENT, REJECTED) and record.owner is not None:
                conn.execute(chunks_table.update().where(
                    key, t.state == AMBIGUOUS, t.owner == record.owner).values(
                    state=state, outcome=stored, last_error=error, updated_at=now))
            return self._record(conn.execute(sa.select(chunks_table).where(key)).one())

    @_locks_explained("renewing the lease on chunks in flight")
    def renew_lease(self, campaign_id: str, shard: int, owner: SenderIdentity) -> int:
        """Extend ``owner``'s lease on its chunks in flight in the shard; how many."""
        t = chunks_table.c
        with self._writing, self._relaxed.begin() as conn:
            return conn.execute(chunks_table.update().where(
                t.campaign_id == campaign_id, t.shard == shard, t.state == INTENT,
                t.owner == owner.to_json()).values(
                lease_until=time.time() + self.lease_s)).rowcount

    @_locks_explained("reading chunk states (nothing was sent)")
    def chunks(self, campaign_id: str, shard: int | None = None) -> list[ChunkRecord]:
        query = sa.select(chunks_table).where(chunks_table.c.campaign_id == campaign_id)
        if shard is not None:
            query = query.where(chunks_table.c.shard == shard)
        with self._relaxed.connect() as conn:
            rows = conn.execute(query.order_by(chunks_table.c.shard, chunks_table.c.chunk))
            return [self._record(r) for r in rows]
