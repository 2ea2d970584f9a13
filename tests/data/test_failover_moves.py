"""Moves in the real send ledger (SQLite file): only chunks certainly unsent move, once."""

from __future__ import annotations

from sms_provider.data.failover import MOVED, MOVED_SHARD_BASE, MoveBook
from sms_provider.data.ledger import AMBIGUOUS, INTENT, PENDING, REJECTED, SENT, SendLedger


def test_only_pending_or_unseen_chunks_move_and_only_once(tmp_path) -> None:
    ledger = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        book = MoveBook(ledger)
        # chunk 0 sent, 1 rejected (the number), 2 ambiguous, 3 on the wire, 4 pending,
        # 5 never seen by the ledger
        for chunk, state in enumerate((SENT, REJECTED, AMBIGUOUS, INTENT, PENDING)):
            record = ledger.claim("c", 0, chunk, f"f{chunk}", 2)
            if state != PENDING:
                go, record = ledger.begin_send("c", 0, chunk, f"f{chunk}", 2)
                assert go
                if state != INTENT:
                    ledger.finish(record, state, outcome={"status": state})
        targets = {i: "sms_b" for i in range(6)}
        sizes = {i: {"sms_b": 2} for i in range(6)}
        prints = {i: (f"f{i}", 2) for i in range(6)}
        [move] = book.move("c", 0, "sms_a", targets, sizes, prints, "sms_a: down")
        assert move.chunks == (4, 5) and move.recipients == 4
        assert move.target_shard == MOVED_SHARD_BASE + move.move_id
        states = {r.chunk: r.state for r in ledger.chunks("c", 0)}
        assert states == {0: SENT, 1: REJECTED, 2: AMBIGUOUS, 3: INTENT, 4: MOVED, 5: MOVED}
        # a second failover of the same shard (a rerun, a retry) finds nothing to move
        assert book.move("c", 0, "sms_a", targets, sizes, prints, "again") == []
        assert [m.move_id for m in book.moves("c", 0)] == [move.move_id]
        # a moved chunk is never sent through its first connection
        go, record = ledger.begin_send("c", 0, 4, "f4", 2)
        assert not go and record.state == MOVED
        # a chunk split between two targets (foreign and mainland numbers)
        ledger.claim("c", 1, 0, "g0", 3)
        moves = book.move("c", 1, "sms_a", {0: "sms_b"}, {0: {"sms_b": 2, "sms_c": 1}},
                          {0: ("g0", 3)}, "split")
        assert {(m.target_conn, m.recipients) for m in moves} == {("sms_b", 2), ("sms_c", 1)}
    finally:
        ledger.close()


def test_an_outage_is_measured_from_its_first_error_until_the_connection_sends(tmp_path
                                                                              ) -> None:
    ledger = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        book = MoveBook(ledger)
        assert book.outage_began("c", "sms_a", "503", now=100.0) == 100.0
        assert book.outage_began("c", "sms_a", "503", now=160.0) == 100.0
        assert book.outage_began("other", "sms_a", "503", now=150.0) == 150.0
        book.outage_over("c", "sms_a")
        assert book.outage_began("c", "sms_a", "503", now=200.0) == 200.0
    finally:
        ledger.close()
