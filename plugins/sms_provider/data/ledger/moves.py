"""The send ledger's moves: claims, intents, outcomes and leases, each a compare-and-set.

See the package docstring for the states a chunk moves through.
"""


from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sms_provider.data.ledger.dialects import (
    _engine,
    _locks_explained,
    _NoTurn,
    _SqliteStatements,
    _WriteTurn,
)
from sms_provider.data.ledger.owners import SenderIdentity
from sms_provider.data.ledger.schema import (
    _ADDED_COLUMNS,
    _FINISH,
    _INSERT_INTENT,
    _metadata,
    chunks_table,
)
from sms_provider.data.ledger.states import (
    FINAL_STATES,
    LEASE_S,
    LOCK_TIMEOUT_S,
    ChunkRecord,
    ChunkState,
    LedgerLockedError,
    LedgerMismatchError,
)


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
                           row.recipients, ChunkState(row.state), row.attempts, row.last_error,
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
                    fingerprint=fingerprint, recipients=recipients, state=ChunkState.PENDING,
                    attempts=0, updated_at=time.time()))
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
        while row.state == ChunkState.INTENT:
            reason = self.abandoned(self._record(row), finder)
            if reason is None:
                return row  # its sender may be mid-request: only it may settle the chunk
            conn.execute(chunks_table.update().where(
                key, t.state == ChunkState.INTENT, t.owner.is_not_distinct_from(row.owner),
                t.lease_until.is_not_distinct_from(row.lease_until)).values(
                state=ChunkState.AMBIGUOUS, updated_at=time.time(), last_error=reason))
            row = conn.execute(sa.select(chunks_table).where(key)).one()
        return row

    @_locks_explained("recording a chunk's intent (the chunk was not sent)")
    def begin_send(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
                   recipients: int, *, owner: SenderIdentity | None = None
                   ) -> tuple[bool, ChunkRecord]:
        """Move the chunk to ``intent`` for ``owner``, committed before the request:
        ``(True, record)``.

        ``(False, record)`` when it must not be sent: its outcome is known, it is
        ambiguous, or (``record.state == ChunkState.INTENT``) another sender that may still
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
                        conn.execute(_INSERT_INTENT, {**values, "state": ChunkState.INTENT,
                                                      "attempts": 1, "intent_at": now,
                                                      "updated_at": now, "owner": stamp,
                                                      "lease_until": lease})
            return True, ChunkRecord(**values, state=ChunkState.INTENT, attempts=1, last_error=None,
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
            if row.state != ChunkState.PENDING:
                return False, self._record(row)
            moved = conn.execute(
                chunks_table.update().where(key, t.state == ChunkState.PENDING)
                .values(state=ChunkState.INTENT, attempts=t.attempts + 1, intent_at=now,
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
        if state not in (ChunkState.PENDING, *FINAL_STATES):
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
            if state in (ChunkState.SENT, ChunkState.REJECTED) and record.owner is not None:
                conn.execute(chunks_table.update().where(
                    key, t.state == ChunkState.AMBIGUOUS, t.owner == record.owner).values(
                    state=state, outcome=stored, last_error=error, updated_at=now))
            return self._record(conn.execute(sa.select(chunks_table).where(key)).one())

    @_locks_explained("renewing the lease on chunks in flight")
    def renew_lease(self, campaign_id: str, shard: int, owner: SenderIdentity) -> int:
        """Extend ``owner``'s lease on its chunks in flight in the shard; how many."""
        t = chunks_table.c
        with self._writing, self._relaxed.begin() as conn:
            return conn.execute(chunks_table.update().where(
                t.campaign_id == campaign_id, t.shard == shard, t.state == ChunkState.INTENT,
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
