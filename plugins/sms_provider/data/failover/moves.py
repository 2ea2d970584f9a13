"""Moves in the send ledger: which unsent chunks left which connection, for where, and why.

A move is one transaction in the ledger's own database: the chunks go from
``pending`` (or never seen) to ``moved`` by compare-and-set, and the move rows
(one per target connection) are inserted with them. So a chunk is either still
its first connection's to send, or moved, never both: a sender that finds it
``moved`` leaves it alone, and a chunk in ``intent`` (maybe on the wire),
``ambiguous`` (maybe sent) or ``rejected`` (the vendor refused the number) is
never moved. The moved recipients form a new shard whose number is derived
from the move's id, so a rerun after SIGKILL finds the same shard, and the
ledger's own chunk states keep its sending exactly once.

Alongside, per campaign and connection, when retryable errors began
(``sms_send_outages``): the failover window is measured from there, across
tasks and hosts, and a connection that sends again clears it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from sms_provider.data.ledger import MOVED, PENDING, SendLedger, chunks_table

#: a moved shard is numbered MOVED_SHARD_BASE + the move's id: far above any shard
#: prepare writes, unique across campaigns, and the same on every rerun
MOVED_SHARD_BASE = 1_000_000

_metadata = sa.MetaData()
moves_table = sa.Table(
    "sms_send_moves", _metadata,
    sa.Column("move_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign_id", sa.String(200), nullable=False, index=True),
    sa.Column("source_shard", sa.Integer, nullable=False),
    sa.Column("source_conn", sa.String(250), nullable=False),
    sa.Column("target_conn", sa.String(250), nullable=False),
    sa.Column("chunks", sa.Text, nullable=False),  # JSON list of the source chunk indices
    sa.Column("recipients", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("moved_at", sa.Float, nullable=False),
)
outages_table = sa.Table(
    "sms_send_outages", _metadata,
    sa.Column("campaign_id", sa.String(200), primary_key=True),
    sa.Column("conn_id", sa.String(250), primary_key=True),
    sa.Column("first_failure_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
)


@dataclass(frozen=True)
class Move:
    """Recipients of some chunks of ``source_shard`` that now go through ``target_conn``."""

    move_id: int
    campaign_id: str
    source_shard: int
    source_conn: str
    target_conn: str
    chunks: tuple[int, ...]
    recipients: int
    reason: str
    moved_at: float

    @property
    def target_shard(self) -> int:
        return MOVED_SHARD_BASE + self.move_id

    def as_dict(self) -> dict[str, object]:
        return {"move_id": self.move_id, "campaign_id": self.campaign_id,
                "source_shard": self.source_shard, "source_conn": self.source_conn,
                "target_conn": self.target_conn, "target_shard": self.target_shard,
                "chunks": list(self.chunks), "recipients": self.recipients,
                "reason": self.reason, "moved_at": self.moved_at}


class MoveBook:
    """The moves and outages of every campaign, beside the chunks in the ledger."""

    def __init__(self, ledger: SendLedger) -> None:
        self.ledger = ledger
        self.engine = ledger.engine
        _metadata.create_all(self.engine)

    # --- moves -----------------------------------------------------------------
    def moves(self, campaign_id: str, source_shard: int | None = None) -> list[Move]:
        t = moves_table.c
        query = sa.select(moves_table).where(t.campaign_id == campaign_id)
        if source_shard is not None:
            query = query.where(t.source_shard == source_shard)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.move_id)).all()
        return [Move(r.move_id, r.campaign_id, r.source_shard, r.source_conn, r.target_conn,
                     tuple(json.loads(r.chunks)), r.recipients, r.reason, r.moved_at)
                for r in rows]

    def move(self, campaign_id: str, shard: int, source_conn: str,
             targets: Mapping[int, str], sizes: Mapping[int, Mapping[str, int]],
             fingerprints: Mapping[int, tuple[str, int]], reason: str) -> list[Move]:
        """Move the chunks of ``targets`` (chunk index → target connection) that are
        still unsent; the moves made (none when every one was taken meanwhile).

        ``sizes`` says, per chunk, how many of its recipients go to each target (a
        chunk may split: foreign numbers to one, mainland to another);
        ``fingerprints`` the chunk's fingerprint and size, for a chunk the ledger has
        not seen yet. One transaction: either all of it happens or none.
        """
        t = chunks_table.c
        now = time.time()
        with self.engine.begin() as conn:
            moved: list[int] = []
            for index in sorted(targets):
                key = sa.and_(t.campaign_id == campaign_id, t.shard == shard,
                              t.chunk == index)
                changed = conn.execute(chunks_table.update().where(key, t.state == PENDING)
                                       .values(state=MOVED, updated_at=now,
                                               last_error=f"moved: {reason}")).rowcount
                if not changed:
                    exists = conn.execute(sa.select(t.state).where(key)).first()
                    if exists is not None:
                        continue  # sent, in flight, ambiguous, rejected or moved: not ours
                    fingerprint, recipients = fingerprints[index]
                    conn.execute(chunks_table.insert().values(
                        campaign_id=campaign_id, shard=shard, chunk=index,
                        fingerprint=fingerprint, recipients=recipients, state=MOVED,
                        attempts=0, updated_at=now, last_error=f"moved: {reason}"))
                moved.append(index)
            by_target: dict[str, list[int]] = {}
            for index in moved:
                for target in sizes[index]:
                    by_target.setdefault(target, []).append(index)
            out = []
            for target, chunks in by_target.items():
                recipients = sum(sizes[i][target] for i in chunks)
                move_id = conn.execute(moves_table.insert().values(
                    campaign_id=campaign_id, source_shard=shard, source_conn=source_conn,
                    target_conn=target, chunks=json.dumps(chunks), recipients=recipients,
                    reason=reason, moved_at=now)).inserted_primary_key[0]
                out.append(Move(int(move_id), campaign_id, shard, source_conn, target,
                                tuple(chunks), recipients, reason, now))
        return out

    # --- outages ---------------------------------------------------------------
    def outage_began(self, campaign_id: str, conn_id: str, error: str,
                     now: float | None = None) -> float:
        """When retryable errors through ``conn_id`` began for the campaign (now, if
        this is the first one since it last sent)."""
        now = time.time() if now is None else now
        t = outages_table.c
        key = sa.and_(t.campaign_id == campaign_id, t.conn_id == conn_id)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t.first_failure_at).where(key)).first()
            if row is not None:
                conn.execute(outages_table.update().where(key).values(last_error=error))
                return float(row.first_failure_at)
            try:
                with conn.begin_nested():
                    conn.execute(outages_table.insert().values(
                        campaign_id=campaign_id, conn_id=conn_id, first_failure_at=now,
                        last_error=error))
            except sa.exc.IntegrityError:  # another sender marked it first
                return float(conn.execute(sa.select(t.first_failure_at).where(key)).scalar_one())
        return now

    def outage_over(self, campaign_id: str, conn_id: str) -> None:
        t = outages_table.c
        with self.engine.begin() as conn:
            conn.execute(outages_table.delete().where(t.campaign_id == campaign_id,
                                                      t.conn_id == conn_id))


def chunk_sizes(chunk_rows: Sequence[int], target_of_row: Mapping[int, str]
                ) -> dict[str, int]:
    """How many of a chunk's rows (by row number) go to each target."""
    out: dict[str, int] = {}
    for row in chunk_rows:
        out[target_of_row[row]] = out.get(target_of_row[row], 0) + 1
    return out
