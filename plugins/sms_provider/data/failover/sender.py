"""Send a shard through its connection, and when that connection is down for the
campaign, move its unsent chunks to the next connection that can take them.

"Down" is one of two things, both certain not to have sent the chunks moved:
an account-level permanent error (authentication, insufficient balance: the
sender stops with ``sending stopped``), or retryable errors that persist past
the connection's ``failover_after_s`` (measured in the ledger from the first
one, across tasks and hosts). Only chunks still ``pending`` move (see
:mod:`.moves`); a chunk whose recipients no later connection can take stays
where it is. Each move's recipients are re-rendered in the target vendor's
number format and sent as a shard of their own through the same ledger, so a
rerun after SIGKILL resumes every leg and sends nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.failover.moves import Move, MoveBook, chunk_sizes
from sms_provider.data.routing import Route
from sms_provider.data.send import Chunk, ShardResult, plan_chunks
from sms_provider.vendors.base import VendorClient
from sms_provider.vendors.profile import NumberStyle
from sms_provider.vendors.profiles import profile_of

log = logging.getLogger(__name__)

STOPPED = "sending stopped"
HELD = "is being sent by another sender"
DEFAULT_FAILOVER_AFTER_S = 120.0


class Sender(Protocol):
    def run(self, table: pa.Table) -> ShardResult: ...


#: makes the sender of one leg: (client, conn_id, shard, retries); ``retries`` False
#: means one request per chunk and pass, the failover loop doing the retrying (so the
#: window is looked at between passes, not after every chunk's backoff)
MakeSender = Callable[[VendorClient, str, int, bool], Sender]


@dataclass
class Leg:
    """One shard through one connection, and what came of it."""

    shard: int
    conn_id: str
    vendor: str
    result: ShardResult
    moves: list[Move] = field(default_factory=list)


def vendor_numbers(e164: pa.Array | pa.ChunkedArray, vendor: str) -> pa.Array:
    """E.164 digits in ``vendor``'s number style (mainland style: mainland numbers only,
    which is all a mainland-only route is ever given)."""
    style = profile_of(vendor).number_style
    if style is NumberStyle.MAINLAND:
        return pc.utf8_slice_codeunits(e164, 2)
    if style is NumberStyle.E164:
        return e164
    return pc.binary_join_element_wise(pa.scalar("00"), e164, "")


def _targets(table: pa.Table, routes: Sequence[Route], source: str) -> list[str | None]:
    """Per row, the first connection after ``source`` that can take it, else None.

    Asked of the profiles as prepare asks them: abroad only where the vendor sends
    abroad, content within the connection's limit. A connection with templates is
    no target: its template was approved for the recipients routed there, not these.
    """
    names = [route.conn_id for route in routes]
    later = routes[names.index(source) + 1:] if source in names else []
    home = np.asarray(pc.fill_null(pc.starts_with(table["e164"], "86"), False)
                      .to_numpy(zero_copy_only=False), dtype=bool)
    length = np.asarray(pc.fill_null(pc.utf8_length(table["content"]), 0)
                        .to_numpy(zero_copy_only=False))
    chosen: list[str | None] = [None] * table.num_rows
    open_ = np.ones(table.num_rows, dtype=bool)
    for route in later:
        if route.templates:
            continue
        fits = (length <= route.max_content_chars) if route.max_content_chars else True
        takes = open_ & (True if route.sends_abroad else home) & fits
        for row in np.flatnonzero(takes).tolist():
            chosen[row] = route.conn_id
        open_ &= ~takes
    return chosen


class FailoverSender:
    """Sends a shard and, where its connection is down, the legs its moves make."""

    def __init__(self, *, campaign_id: str, routes: Sequence[Route], book: MoveBook,
                 open_client: Callable[[str], AbstractContextManager[VendorClient]],
                 make_sender: MakeSender,
                 failover_after: Callable[[str], float],
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, retry_wait_s: float = 1.0) -> None:
        self.campaign_id = campaign_id
        self.routes = list(routes)
        self.book = book
        self.open_client = open_client
        self.make_sender = make_sender
        self.failover_after = failover_after
        self.sleep = sleep
        self.clock = clock
        self.retry_wait_s = retry_wait_s

    def run(self, shard: int, conn_id: str, table: pa.Table) -> list[Leg]:
        """Every leg of the shard, the first through ``conn_id``, then any moves'."""
        legs: list[Leg] = []
        work: list[tuple[int, str, pa.Table]] = [(shard, conn_id, table)]
        while work:
            leg_shard, leg_conn, leg_table = work.pop(0)
            with self.open_client(leg_conn) as client:
                leg, moved = self._leg(client, leg_shard, leg_conn, leg_table)
            legs.append(leg)
            work.extend(moved)
        return legs

    def _can_fail_over(self, conn_id: str, table: pa.Table) -> bool:
        return any(target is not None for target in _targets(table, self.routes, conn_id))

    def _leg(self, client: VendorClient, shard: int, conn_id: str, table: pa.Table
             ) -> tuple[Leg, list[tuple[int, str, pa.Table]]]:
        """Send one leg; fail over when its connection is down; the moved legs to send."""
        movable = len(self.routes) > 1 and self._can_fail_over(conn_id, table)
        while True:
            result = self.make_sender(client, conn_id, shard, not movable).run(table)
            if result.complete:
                if movable:
                    self.book.outage_over(self.campaign_id, conn_id)
                break
            first = result.errors[0] if result.errors else "not sent"
            if not movable or HELD in first:
                break
            if first.startswith(STOPPED):
                reason = f"{conn_id}: {first.removeprefix(STOPPED).lstrip(': ')}"
            else:
                window = self.failover_after(conn_id)
                began = self.book.outage_began(self.campaign_id, conn_id, first)
                waited = self.clock() - began
                if waited < window:
                    self.sleep(min(self.retry_wait_s, window - waited))
                    continue
                reason = (f"{conn_id}: retryable errors for {waited:.0f} s "
                          f"(failover_after_s {window:g}): {first}")
            if not self._move(client, shard, conn_id, table, reason):
                break  # nothing left to move: what is unsent stays with this connection
            # the leg's own outcome without the moved chunks (they are not its to send)
            result = self.make_sender(client, conn_id, shard, False).run(table)
            break
        moves = self.book.moves(self.campaign_id, shard)
        leg = Leg(shard, conn_id, client.vendor, result, moves)
        return leg, [(move.target_shard, move.target_conn,
                      self._moved_rows(client, shard, conn_id, table, move))
                     for move in moves]

    def _plan(self, client: VendorClient, shard: int, table: pa.Table) -> list[Chunk]:
        return plan_chunks(table, campaign_id=self.campaign_id, shard=shard,
                           max_batch=client.max_batch, personalised=client.personalised_batches,
                           custom_id_scope=client.custom_id_scope)

    def _move(self, client: VendorClient, shard: int, conn_id: str, table: pa.Table,
              reason: str) -> list[Move]:
        chunks = self._plan(client, shard, table)
        target = dict(zip(table["row_number"].to_pylist(), _targets(table, self.routes, conn_id),
                          strict=True))
        targets, sizes, prints = {}, {}, {}
        for chunk in chunks:
            rows = chunk.row_numbers
            if any(target[row] is None for row in rows):
                continue  # some recipient no later connection can take: the chunk stays
            targets[chunk.index] = target[rows[0]] or ""
            sizes[chunk.index] = chunk_sizes(rows, target)
            prints[chunk.index] = (chunk.fingerprint, len(chunk))
        if not targets:
            return []
        moves = self.book.move(self.campaign_id, shard, conn_id, targets, sizes, prints, reason)
        for move in moves:
            log.warning("campaign %s shard %d: %d recipient(s) in %d chunk(s) moved from %s "
                        "to %s (shard %d): %s", self.campaign_id, shard, move.recipients,
                        len(move.chunks), move.source_conn, move.target_conn,
                        move.target_shard, reason)
        return moves

    def _moved_rows(self, client: VendorClient, shard: int, conn_id: str, table: pa.Table,
                    move: Move) -> pa.Table:
        """The move's recipients as a prepared shard of the target: the same rows, the
        number in the target vendor's style, the shard number the move's."""
        chunks = {chunk.index: chunk for chunk in self._plan(client, shard, table)}
        rows = {row for index in move.chunks for row in chunks[index].row_numbers}
        target = _targets(table, self.routes, conn_id)
        keep = pa.array([row in rows and target[i] == move.target_conn
                         for i, row in enumerate(table["row_number"].to_pylist())])
        part = table.filter(keep)
        vendor = next(r.vendor for r in self.routes if r.conn_id == move.target_conn)
        part = part.set_column(part.schema.get_field_index("mobile"), "mobile",
                               vendor_numbers(part["e164"], vendor))
        shard_column = pa.array(np.full(part.num_rows, move.target_shard, dtype=np.int32))
        return part.set_column(part.schema.get_field_index("shard"), "shard", shard_column)


def leg_summary(legs: Sequence[Leg]) -> dict[str, Any]:
    """What a send task reports of its legs: counts per leg and the moves."""
    return {"legs": [{"shard": leg.shard, "conn_id": leg.conn_id, **leg.result.counts}
                     for leg in legs],
            "moves": [{k: v for k, v in move.as_dict().items() if k != "campaign_id"}
                      for leg in legs for move in leg.moves]}
