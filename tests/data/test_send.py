"""Exactly-once sending of a shard: ledger states, reruns, lost answers, retries.

Runs the real send path against the simulator; what the vendor received is
read back from ``/_sim/messages``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pyarrow as pa
import pytest

from sms_provider.data.ledger import (
    ChunkState,
    LedgerMismatchError,
    SenderIdentity,
    SendLedger,
    chunks_table,
)
from sms_provider.data.schemas import PREPARED_SCHEMA
from sms_provider.data.send import (
    ID_RUN,
    ShardSender,
    _for_ledger,
    _outcome,
    build_result,
    plan_chunks,
    request_reference,
)
from sms_provider.models import AcceptedBatch, Submission, SubmissionStatus
from tests.simulator_harness import ROOT, SimulatorProcess


def shard_table(n: int, *, content: str = "【Shop】hello", start: int = 1,
                mobile=lambda i: f"138{i:08d}") -> pa.Table:
    rows = range(start, start + n)
    return pa.table({
        "row_number": list(rows), "mobile": [mobile(i) for i in rows],
        "e164": [f"86{mobile(i)}" for i in rows], "content": [content] * n,
        "variables": [None] * n, "charge_items": [1] * n,
        "custom_id": [f"c{i}" for i in rows], "shard": [0] * n, "carrier": [None] * n},
        schema=PREPARED_SCHEMA)


def eums(sim: SimulatorProcess, **extras) -> object:
    return sim.client("eums", max_batch="10", **extras)


@pytest.fixture
def ledger(tmp_path) -> SendLedger:
    led = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield led
    led.close()


def sender(client, ledger, **kw) -> ShardSender:
    return ShardSender(client, ledger, "camp-1", 0, backoff_s=0.01, **kw)


def test_every_recipient_once_and_a_rerun_sends_nothing(sim, ledger) -> None:
    table = shard_table(35)
    first = sender(eums(sim), ledger).run(table)
    assert first.complete and first.counts == {"submitted": 35}
    assert len(sim.messages("eums")) == 35
    again = sender(eums(sim), ledger).run(table)
    assert again.counts == {"submitted": 35}
    assert len(sim.messages("eums")) == 35
    assert again.table.equals(first.table)  # the same result, from the ledger
    assert {c.state for c in ledger.chunks("camp-1")} == {ChunkState.SENT}


def test_the_table_built_in_blocks_is_the_table_read_back(sim, ledger, monkeypatch) -> None:
    """Blocks of chunks joined while sending give what a rerun reads from the ledger."""
    import sms_provider.data.send.sender as send_module

    monkeypatch.setattr(send_module, "RESULT_BLOCK_CHUNKS", 2)
    table = shard_table(45)
    first = sender(eums(sim), ledger).run(table)
    assert first.complete and first.counts == {"submitted": 45}
    monkeypatch.setattr(send_module, "RESULT_BLOCK_CHUNKS", 1000)
    again = sender(eums(sim), ledger).run(table)
    assert again.table.equals(first.table)
    sent = {m["mobile"]: m["message_id"] for m in sim.messages("eums")}
    assert dict(zip(first.table["mobile"].to_pylist(), first.table["message_id"].to_pylist(),
                    strict=True)) == sent
    assert first.table["row_number"].to_pylist() == list(range(1, 46))


def test_lost_answer_is_ambiguous_and_never_resent(sim, ledger) -> None:
    sim.faults({"kind": "accept_drop", "vendor": "eums", "path": "send", "count": 2})
    table = shard_table(40)
    result = sender(eums(sim), ledger, concurrency=1).run(table)
    assert result.counts == {"submitted": 20, "ambiguous": 20}
    sim.clear_faults()
    rerun = sender(eums(sim), ledger).run(table)
    assert rerun.counts == {"submitted": 20, "ambiguous": 20}
    received = Counter(m["mobile"] for m in sim.messages("eums"))
    assert len(received) == 40 and set(received.values()) == {1}
    ambiguous = rerun.table.filter(pa.compute.equal(rerun.table["status"], "ambiguous"))
    assert set(ambiguous["custom_id"].to_pylist()) == {
        request_reference("camp-1", 0, 0), request_reference("camp-1", 0, 1)}


def test_retryable_failures_are_retried_and_sent_once(sim, ledger) -> None:
    sim.faults({"kind": "status", "status": 503, "vendor": "eums", "path": "send", "count": 2})
    result = sender(eums(sim), ledger, concurrency=1, max_attempts=3).run(shard_table(20))
    assert result.complete and result.counts == {"submitted": 20}
    assert len(sim.messages("eums")) == 20
    assert max(c.attempts for c in ledger.chunks("camp-1")) >= 2


def test_retries_exhausted_leave_chunks_pending_for_the_next_run(sim, ledger) -> None:
    sim.faults({"kind": "drop", "vendor": "eums", "path": "balance"},  # unrelated path
               {"kind": "status", "status": 503, "vendor": "eums", "path": "send"})
    result = sender(eums(sim), ledger, max_attempts=2).run(shard_table(20))
    assert not result.complete and result.unsent_chunks == 2
    assert result.table.num_rows == 0 and "503" in result.errors[0]
    assert {c.state for c in ledger.chunks("camp-1")} == {ChunkState.PENDING}
    sim.clear_faults()
    assert sender(eums(sim), ledger).run(shard_table(20)).counts == {"submitted": 20}
    assert len(sim.messages("eums")) == 20


def test_a_chunk_left_in_intent_by_a_dead_process_becomes_ambiguous(sim, ledger) -> None:
    table = shard_table(10)
    client = eums(sim)
    chunk = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=10,
                        personalised=False, custom_id_scope="request")[0]
    # another process commits the intent and dies before its request would leave
    subprocess.run([sys.executable, "-c", (
        "import os, sys; from sms_provider.data.ledger import SendLedger; "
        f"ok, _ = SendLedger({ledger.url!r}).begin_send('camp-1', 0, 0, "
        f"{chunk.fingerprint!r}, 10); os._exit(0 if ok else 1)")],
        check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")})
    assert ledger.chunks("camp-1")[0].state == ChunkState.INTENT
    result = sender(client, ledger).run(table)  # at once: its process is gone
    assert result.counts == {"ambiguous": 10}
    assert sim.messages("eums") == []
    assert "may have gone out" in ledger.chunks("camp-1")[0].last_error


def test_changed_prepared_data_is_refused(sim, ledger) -> None:
    sender(eums(sim), ledger).run(shard_table(10))
    with pytest.raises(LedgerMismatchError, match="prepared data changed"):
        sender(eums(sim), ledger).run(shard_table(10, content="【Shop】changed"))
    assert len(sim.messages("eums")) == 10


def test_wrong_credentials_stop_the_shard_and_a_fixed_rerun_sends(sim, ledger) -> None:
    bad = sim.client("eums", password="wrong-password", max_batch="10")
    result = sender(bad, ledger).run(shard_table(30))
    assert not result.complete and result.errors[0].startswith("sending stopped")
    assert "wrong-password" not in " ".join(result.errors)
    assert sim.messages("eums") == []
    assert sender(eums(sim), ledger).run(shard_table(30)).counts == {"submitted": 30}


def test_vendor_refusal_is_final_and_recorded(sim, ledger) -> None:
    sim.reset(eums={"blocked_words": ["forbidden"]})
    result = sender(eums(sim), ledger).run(shard_table(5, content="【Shop】forbidden words"))
    assert result.counts == {"rejected": 5}
    assert set(result.table["vendor_code"].to_pylist()) == {"401"}
    assert sim.messages("eums") == []


def test_two_workers_never_send_one_chunk_twice(sim, ledger) -> None:
    table = shard_table(10)
    chunk = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=10,
                        personalised=False, custom_id_scope="request")[0]
    first, second = SenderIdentity.current(), SenderIdentity.current()
    assert ledger.begin_send("camp-1", 0, 0, chunk.fingerprint, 10, owner=first)[0]
    go, record = ledger.begin_send("camp-1", 0, 0, chunk.fingerprint, 10, owner=second)
    # the first holder may be mid-request: its own
    assert not go and record.state == ChunkState.INTENT
    assert record.owner_identity == first
    retry = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=5,
                        personalised=False, custom_id_scope="request")[0]
    go, record = ledger.begin_send("camp-1", 0, 1, retry.fingerprint, 5, owner=first)
    assert go
    ledger.finish(record, ChunkState.PENDING, error="HTTP 503")
    assert ledger.begin_send("camp-1", 0, 1, retry.fingerprint, 5, owner=second)[0]  # pending


def test_identical_content_is_grouped_and_chunked_by_the_batch_limit() -> None:
    table = pa.concat_tables([shard_table(3, content="A"), shard_table(4, content="B", start=4),
                              shard_table(2, content="A", start=8)])
    chunks = plan_chunks(table, campaign_id="c", shard=0, max_batch=3, personalised=False,
                         custom_id_scope=None)
    assert [[m.content for m in c.messages] for c in chunks] == [
        ["A", "A", "A"], ["A", "A"], ["B", "B", "B"], ["B"]]
    assert [c.row_numbers for c in chunks][:2] == [[1, 2, 3], [8, 9]]
    personal = plan_chunks(table, campaign_id="c", shard=0, max_batch=5, personalised=True,
                           custom_id_scope="message")
    assert [len(c.messages) for c in personal] == [5, 4]
    assert personal[0].messages[0].custom_id == "c1"
    again = plan_chunks(table, campaign_id="c", shard=0, max_batch=3, personalised=False,
                        custom_id_scope=None)
    assert [c.fingerprint for c in again] == [c.fingerprint for c in chunks]


def test_ledger_works_on_postgresql_when_available(sim) -> None:
    sa = pytest.importorskip("sqlalchemy")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 not installed")
    url = "postgresql+psycopg2://postgres@127.0.0.1/test"
    try:
        led = SendLedger(url)
    except sa.exc.OperationalError:
        pytest.skip("no PostgreSQL reachable")
    with led.engine.begin() as conn:
        conn.execute(chunks_table.delete().where(chunks_table.c.campaign_id == "pg-camp"))
    try:
        s = ShardSender(eums(sim), led, "pg-camp", 0, backoff_s=0.01)
        assert s.run(shard_table(12)).counts == {"submitted": 12}
        assert s.run(shard_table(12)).counts == {"submitted": 12}
        assert len(sim.messages("eums")) == 12
    finally:
        led.close()


def test_an_ambiguous_chunk_gives_ambiguous_submissions_in_plain_words(ledger) -> None:
    """A chunk the ledger holds ``ambiguous`` (no answer heard) gives each recipient the
    submission status ``ambiguous``, written and counted as the plain word (counts go
    to XCom), not as the ledger's enum member."""
    table = shard_table(4)
    chunk = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=10,
                        personalised=False, custom_id_scope="request")[0]
    go, record = ledger.begin_send("camp-1", 0, 0, chunk.fingerprint, 4)
    assert go
    record = ledger.finish(record, ChunkState.AMBIGUOUS, error="connection reset")
    assert ledger.chunks("camp-1")[0].state is ChunkState.AMBIGUOUS
    result = build_result("camp-1", 0, [chunk], [record])
    assert result.table["status"].to_pylist() == [SubmissionStatus.AMBIGUOUS.value] * 4
    assert result.counts == {"ambiguous": 4}
    assert all(type(key) is str for key in result.counts)
    assert set(result.table["description"].to_pylist()) == {"connection reset"}


def _mixed_shard() -> pa.Table:
    """Two contents interleaved, one row with variables, rows out of order."""
    table = pa.concat_tables([shard_table(3, content="A"), shard_table(2, content="B", start=4),
                              shard_table(2, content="A", start=6)])
    table = table.set_column(4, "variables", pa.array(
        [None, '{"code": "1"}', None, None, None, None, None], pa.string()))
    return table.take([6, 0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize(("scope", "expected"), [
    ("request", ["73ea576c34c00fd18b88925dd9ab7b96", "563a6fc7978915384564232e758cba2a",
                 "6b518eca8a77aeba43c27a2f80add414", "ff59335934f90aaf83ed71e1e4424e30"]),
    ("message", ["548924330ac4445f90b2c389353574c8", "84cdcd13e3f0e4271fa47e74b0d09fbf",
                 "a59d10003eddeae9aa08f6ce3bf5fbbd", "e1b4f352aa5204d2928dd16f3c4d1553"]),
    (None, ["d47a31428b0bbf5f511e751ac0b773a5", "cc77a768ad929da62cb8e6c1c194f437",
            "609ec5cf1f9ccc5a39b05c4704e90e7f", "327d536fb06fff6b9a69709a32f12924"]),
])
def test_chunk_fingerprints_stay_what_existing_ledgers_recorded(scope, expected) -> None:
    """A ledger written by an earlier release must still recognise its chunks."""
    chunks = plan_chunks(_mixed_shard(), campaign_id="camp-1", shard=3, max_batch=2,
                         personalised=False, custom_id_scope=scope)
    assert [c.fingerprint for c in chunks] == expected
    assert [c.row_numbers for c in chunks] == [[1, 2], [3, 6], [7], [4, 5]]
    assert chunks[0].messages[1].variables == {"code": "1"}


def test_outcomes_stored_as_full_lists_are_still_read(sim, ledger) -> None:
    """Earlier releases kept every outcome column as a list; such chunks are not resent."""
    table = shard_table(20)
    first = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=10,
                        personalised=False, custom_id_scope="request")[0]
    go, record = ledger.begin_send("camp-1", 0, 0, first.fingerprint, 10)
    assert go
    ledger.finish(record, ChunkState.SENT, outcome={
        "message_id": [f"old-{i}" for i in range(10)], "custom_id": [None] * 10,
        "charge_items": [2] * 10, "vendor_code": ["0"] * 10, "status": ["submitted"] * 10,
        "description": [None] * 10})
    result = sender(eums(sim), ledger).run(table)
    assert result.counts == {"submitted": 20}
    assert len(sim.messages("eums")) == 10  # only the second chunk went out
    rows = result.table.filter(pa.compute.equal(result.table["chunk"], 0)).to_pylist()
    assert [r["message_id"] for r in rows] == [f"old-{i}" for i in range(10)]
    assert {r["custom_id"] for r in rows} == {first.custom_ids[0]}
    assert {(r["charge_items"], r["description"]) for r in rows} == {(2, "")}


def test_sending_leaves_the_collector_as_it_found_it(sim, ledger) -> None:
    import gc

    before = gc.get_threshold(), gc.get_freeze_count()
    sender(eums(sim), ledger).run(shard_table(30))
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


@pytest.mark.parametrize("ids, run", [
    (["0603015522454756885", "0603015522454756886", "0603015522454756887"],
     "0603015522454756885"),                                     # the document's own ids
    (["98", "99"], "98"),
    (["8", "9"], "8"),
    (["0998", "0999", "1000"], "0998"),
    (["0603015522454756885", "0603015522454756887", "0603015522454756886"], None),
    (["99", "100"], None),                                        # widths differ
    (["a1", "a2"], None),
    (["9223372036854775807", "9223372036854775808"], None),      # beyond int64
    (["20180392833833891100", "20180392833833891101"], None),    # Emay's 20 digits
    (["00180392833833891100", "00180392833833891101"],           # 20 digits, leading zeros
     "00180392833833891100"),
    (["2601011200001234567", "2601011200001234568"],              # EIMS-wide, in int64
     "2601011200001234567"),
    (["12", None], None),
    (["19", "2", "201", "22"], None),                            # lengths make up the span
    (["11", "1a"], None),
    (["11", "١٢"], None),                                         # digits, not ASCII ones
    (["", "12"], None),
])
def test_consecutive_message_ids_are_kept_as_their_first(ledger, ids, run) -> None:
    """A request's ids in sequence are stored as the first one and read back whole."""
    batch = AcceptedBatch(list(ids), list(ids), "ref", [1] * len(ids)) if None not in ids \
        else [Submission("1", i, "ref", 1) for i in ids]
    outcome = _for_ledger(_outcome(batch))
    assert outcome["message_id"] == ({ID_RUN: run} if run else ids)
    go, record = ledger.begin_send("camp-ids", 0, 0, "f", len(ids))
    assert go
    ledger.finish(record, ChunkState.SENT, outcome=outcome)
    (stored,) = ledger.chunks("camp-ids")
    chunk = plan_chunks(shard_table(len(ids)), campaign_id="camp-ids", shard=0,
                        max_batch=len(ids), personalised=False, custom_id_scope="request")[0]
    table = build_result("camp-ids", 0, [chunk], [stored]).table
    assert table["message_id"].to_pylist() == ids
    assert table["custom_id"].to_pylist() == ["ref"] * len(ids)


def test_mixed_chunks_make_one_table(ledger) -> None:
    """Uniform and per-recipient columns of different chunks join into one table."""
    table = shard_table(4)
    chunks = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=2,
                         personalised=False, custom_id_scope="request")
    records = []
    for chunk, outcome in zip(chunks, [
            {"message_id": ["m1", "m0"], "custom_id": None, "charge_items": [1, 2],
             "vendor_code": "0", "status": ["submitted", "rejected"], "description": None},
            {"message_id": "m", "custom_id": "x", "charge_items": 3, "vendor_code": None,
             "status": "submitted", "description": "d"}], strict=True):
        go, record = ledger.begin_send("camp-1", 0, chunk.index, chunk.fingerprint, 2)
        assert go
        records.append(ledger.finish(record, ChunkState.SENT, outcome=outcome))
    result = build_result("camp-1", 0, chunks, records)
    rows = [(r["message_id"], r["custom_id"], r["charge_items"], r["vendor_code"], r["status"],
             r["description"]) for r in result.table.to_pylist()]
    ours = chunks[0].custom_ids
    assert rows == [("m1", ours[0], 1, "0", "submitted", ""),
                    ("m0", ours[1], 2, "0", "rejected", ""),
                    ("m", "x", 3, None, "submitted", "d"), ("m", "x", 3, None, "submitted", "d")]
    assert result.counts == {"submitted": 3, "rejected": 1}
