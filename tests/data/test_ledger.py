"""The send ledger under concurrent senders: who owns a chunk in flight, and what a
second sender of the same campaign does about it.

Two real senders (each with its own ledger connection, as two task processes
have) send one shard against the simulator; the simulator holds one request
on the wire so that the second sender certainly meets it in flight.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sms_provider.data.ledger import (
    ChunkRecord,
    ChunkState,
    LedgerLockedError,
    SenderIdentity,
    SendLedger,
)
from sms_provider.data.send import ShardResult, ShardSender, plan_chunks
from tests.data.test_send import eums, shard_table
from tests.simulator_harness import ROOT, SimulatorProcess

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database made for the test and dropped after it."""
    sa = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg2")
    name = f"sms_ledger_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        pytest.skip("no PostgreSQL reachable at 127.0.0.1:5432")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return request.getfixturevalue("pg_url")


def _wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class SenderThread(threading.Thread):
    """One sender of the shard, with its own ledger connection, on its own thread."""

    def __init__(self, url: str, sim: SimulatorProcess, table, lease_s: float | None = None,
                 **kwargs) -> None:
        super().__init__(daemon=True)
        self.url, self.sim, self.table, self.kwargs = url, sim, table, kwargs
        self.lease_s = lease_s
        self.result: ShardResult | None = None
        self.error: BaseException | None = None
        self.polled = threading.Event()  # it slept while waiting for the other sender

    def _sleep(self, seconds: float) -> None:
        self.polled.set()
        time.sleep(seconds)

    def run(self) -> None:
        ledger = (SendLedger(self.url, lease_s=self.lease_s) if self.lease_s
                  else SendLedger(self.url))
        try:
            self.result = ShardSender(eums(self.sim), ledger, "camp-1", 0, backoff_s=0.01,
                                      sleep=self._sleep, **self.kwargs).run(self.table)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            ledger.close()


def test_a_second_sender_waits_for_the_first_and_both_keep_the_real_outcomes(
        sim: SimulatorProcess, ledger_url: str) -> None:
    table = shard_table(200)  # 20 requests of 10
    sim.faults({"kind": "hold", "vendor": "eums", "path": "send", "skip": 3, "count": 1})
    first = SenderThread(ledger_url, sim, table, concurrency=2)
    first.start()
    _wait_until(lambda: sim.fault_rules()[0]["held"] == 1, "the 4th request to be held")
    second = SenderThread(ledger_url, sim, table, concurrency=2)
    second.start()
    # the second sender reaches the held chunk and waits for it (or, as before,
    # settles it its own way and finishes)
    _wait_until(lambda: second.polled.is_set() or not second.is_alive(),
                "the second sender to meet the held chunk")
    assert sim.release() == 1
    first.join(60)
    second.join(60)
    assert first.error is None and second.error is None, (first.error, second.error)

    received = Counter(m["mobile"] for m in sim.messages("eums"))
    assert len(received) == 200 and set(received.values()) == {1}  # each one, once
    ids = {m["mobile"]: m["message_id"] for m in sim.messages("eums")}
    for result in (first.result, second.result):
        assert result.complete and result.counts == {"submitted": 200}
        rows = result.table.sort_by("row_number")
        assert pc.sum(pc.is_null(rows["message_id"])).as_py() == 0
        assert dict(zip(rows["mobile"].to_pylist(), rows["message_id"].to_pylist(),
                        strict=True)) == ids  # the vendor's own ids, kept by both


FIRST_SENDER = """
import sys
sys.path[:0] = [{root!r}, {plugins!r}]
import pyarrow.parquet as pq
from sms_provider.data.ledger import SendLedger
from sms_provider.data.send import ShardSender
from tests.simulator_harness import vendor_client
from tests.data.test_send import shard_table
client = vendor_client("eums", "http://127.0.0.1:{port}", max_batch="10")
ledger = SendLedger({url!r})
result = ShardSender(client, ledger, "camp-1", 0, concurrency=2).run(shard_table(200))
pq.write_table(result.table, {out!r})
print("COUNTS", result.counts, flush=True)
"""


def test_a_second_sender_in_another_process_waits_for_the_live_first(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    """Across processes of one machine: the first sender's process runs, so its chunk
    in flight is its own, whatever its lease says."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    table = shard_table(200)
    sim.faults({"kind": "hold", "vendor": "eums", "path": "send", "skip": 3, "count": 1})
    script = FIRST_SENDER.format(root=str(ROOT), plugins=str(ROOT / "plugins"),
                                 port=sim.port, url=url,
                                 out=str(tmp_path / "first.parquet"))
    log = tmp_path / "first.log"
    first = subprocess.Popen([sys.executable, "-c", script], stdout=log.open("wb"),
                             stderr=subprocess.STDOUT)
    _wait_until(lambda: sim.fault_rules()[0]["held"] == 1 or first.poll() is not None,
                "the 4th request to be held")
    assert first.poll() is None, log.read_text()
    second = SenderThread(url, sim, table, concurrency=2)
    second.start()
    _wait_until(lambda: second.polled.is_set() or not second.is_alive(),
                "the second sender to meet the held chunk")
    sim.release()
    assert first.wait(60) == 0, log.read_text()
    second.join(60)
    assert second.error is None, second.error
    assert "COUNTS {'submitted': 200}" in log.read_text()
    assert second.result.counts == {"submitted": 200}
    received = Counter(m["mobile"] for m in sim.messages("eums"))
    assert len(received) == 200 and set(received.values()) == {1}
    theirs = pq.read_table(tmp_path / "first.parquet").sort_by("row_number")
    ours = second.result.table.sort_by("row_number")
    assert theirs["message_id"].to_pylist() == ours["message_id"].to_pylist()
    assert None not in ours["message_id"].to_pylist()


def _intent(ledger: SendLedger, table, owner: SenderIdentity, index: int = 0) -> ChunkRecord:
    chunk = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=10,
                        personalised=False, custom_id_scope="request")[index]
    go, record = ledger.begin_send("camp-1", 0, chunk.index, chunk.fingerprint, len(chunk),
                                   owner=owner)
    assert go
    return record


def test_an_earlier_try_of_the_same_task_is_given_up_at_once(sim, tmp_path) -> None:
    """The kill-and-retry case: Airflow runs try 2 because try 1 is gone, wherever it ran."""
    ledger = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", lease_s=3600)
    table = shard_table(10)
    task = "sms_campaign/manual__1/send/0"
    elsewhere = dataclasses.replace(SenderIdentity.current(task, 1), machine="another-host")
    _intent(ledger, table, elsewhere)
    result = ShardSender(eums(sim), ledger, "camp-1", 0, wait_s=30,
                         owner=SenderIdentity.current(task, 2)).run(table)
    assert result.counts == {"ambiguous": 10}
    assert "try 1 of this task" in ledger.chunks("camp-1")[0].last_error
    assert sim.messages("eums") == []
    ledger.close()


def test_another_senders_expired_lease_makes_its_chunk_ambiguous(sim, tmp_path) -> None:
    """A sender on another host that stops renewing (SIGKILL there) loses the chunk."""
    ledger = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", lease_s=0.5)
    table = shard_table(20)
    remote = dataclasses.replace(SenderIdentity.current("other_dag/run/send/0", 1),
                                 machine="another-host", host="another-host")
    _intent(ledger, table, remote)
    result = ShardSender(eums(sim), ledger, "camp-1", 0, wait_s=30).run(table)
    assert result.complete and result.counts == {"ambiguous": 10, "submitted": 10}
    held = ledger.chunks("camp-1")[0]
    assert held.state == "ambiguous" and "stopped renewing its lease" in held.last_error
    assert "another-host" in held.last_error
    assert len(sim.messages("eums")) == 10  # only the chunk nobody had claimed
    ledger.close()


def test_a_live_sender_past_the_wait_leaves_a_retryable_error_naming_it(sim, tmp_path) -> None:
    ledger = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    table = shard_table(20)
    other = SenderIdentity.current("sms_campaign__daily/scheduled__1/send/0", 1)
    _intent(ledger, table, other, index=1)
    result = ShardSender(eums(sim), ledger, "camp-1", 0, wait_s=0.3).run(table)
    assert not result.complete and result.unsent_chunks == 1
    assert result.counts == {"submitted": 10}
    assert "chunk 1 is being sent by another sender" in result.errors[0]
    assert "sms_campaign__daily/scheduled__1/send/0 try 1" in result.errors[0]
    assert ledger.chunks("camp-1")[1].state == ChunkState.INTENT  # left to its sender
    ledger.close()


def test_a_sender_outliving_its_lease_by_renewing_keeps_its_chunk(
        sim: SimulatorProcess, tmp_path: Path) -> None:
    """The lease is renewed while a request is out, however long it takes."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    table = shard_table(30)
    sim.faults({"kind": "hold", "vendor": "eums", "path": "send", "skip": 1, "count": 1})
    first = SenderThread(url, sim, table, concurrency=1, lease_s=0.3)
    first.start()
    _wait_until(lambda: sim.fault_rules()[0]["held"] == 1, "the 2nd request to be held")
    second = SenderThread(url, sim, table, concurrency=1, lease_s=0.3)
    second.start()
    _wait_until(lambda: second.polled.is_set() or not second.is_alive(),
                "the second sender to meet the held chunk")
    time.sleep(1.5)  # five leases: only renewals keep the held chunk its sender's
    sim.release()
    first.join(60)
    second.join(60)
    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.result.counts == second.result.counts == {"submitted": 30}
    assert len(sim.messages("eums")) == 30


def test_an_outcome_arriving_after_the_chunk_was_given_up_is_kept(sim, tmp_path) -> None:
    """A sender whose lease ran out (it stalled) still records the answer it got."""
    ledger = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}", lease_s=0.01)
    table = shard_table(10)
    stalled = dataclasses.replace(SenderIdentity.current(), machine="another-host")
    record = _intent(ledger, table, stalled)
    time.sleep(0.05)
    given_up = ShardSender(eums(sim), ledger, "camp-1", 0).run(table)
    assert given_up.counts == {"ambiguous": 10}
    outcome = {"message_id": {"consecutive_from": "100"}, "custom_id": None,
               "charge_items": 1, "vendor_code": "0", "status": "submitted",
               "description": None}
    assert ledger.finish(record, "sent", outcome=outcome).state == "sent"
    rerun = ShardSender(eums(sim), ledger, "camp-1", 0).run(table)
    assert rerun.counts == {"submitted": 10}
    assert rerun.table["message_id"].to_pylist() == [str(100 + i) for i in range(10)]
    ledger.close()


def test_a_ledger_written_before_owners_were_recorded_still_works(sim, tmp_path) -> None:
    """The owner and lease columns are added on opening; an old intent is ambiguous."""
    path = tmp_path / "ledger.sqlite"
    table = shard_table(20)
    chunk = plan_chunks(table, campaign_id="camp-1", shard=0, max_batch=10,
                        personalised=False, custom_id_scope="request")[0]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE sms_send_chunks (campaign_id VARCHAR(200) NOT NULL, shard INTEGER "
            "NOT NULL, chunk INTEGER NOT NULL, fingerprint VARCHAR(64) NOT NULL, recipients "
            "INTEGER NOT NULL, state VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, "
            "last_error TEXT, outcome TEXT, intent_at FLOAT, updated_at FLOAT NOT NULL, "
            "PRIMARY KEY (campaign_id, shard, chunk))")
        conn.execute("INSERT INTO sms_send_chunks VALUES ('camp-1', 0, 0, ?, 10, 'intent', 1, "
                     "NULL, NULL, 1.0, 1.0)", (chunk.fingerprint,))
    ledger = SendLedger(f"sqlite:///{path}")
    result = ShardSender(eums(sim), ledger, "camp-1", 0, wait_s=30).run(table)
    assert result.counts == {"ambiguous": 10, "submitted": 10}
    assert len(sim.messages("eums")) == 10
    ledger.close()


def test_a_locked_sqlite_ledger_fails_fast_with_a_clear_retryable_error(
        sim: SimulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection really holds the write lock; the send says what and what to do."""
    from sms_provider.data.locations import open_ledger
    from sms_provider.data.storage import DataRoot

    monkeypatch.setenv("SMS_LEDGER_LOCK_TIMEOUT", "0.5")
    monkeypatch.delenv("SMS_LEDGER_URL", raising=False)
    ledger = open_ledger(DataRoot(str(tmp_path / "data")))
    path = tmp_path / "data" / "ledger.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a write lock, held until the test lets go
    try:
        with pytest.raises(LedgerLockedError) as caught:
            ShardSender(eums(sim), ledger, "camp-1", 0, concurrency=4).run(shard_table(50))
    finally:
        holder.rollback()
        holder.close()
    message = str(caught.value)
    assert str(path) in message and "locked for more than 0.5 s" in message
    assert "SMS_LEDGER_LOCK_TIMEOUT" in message and "retry the task" in message
    assert caught.value.retryable
    assert sim.messages("eums") == []  # no intent, no request
    result = ShardSender(eums(sim), ledger, "camp-1", 0).run(shard_table(50))  # lock gone
    assert result.counts == {"submitted": 50} and len(sim.messages("eums")) == 50
    ledger.close()


def test_a_locked_postgresql_ledger_names_it_without_credentials(
        sim: SimulatorProcess, pg_url: str) -> None:
    import sqlalchemy as sa

    url = pg_url.replace("postgres@", "postgres:not-the-password@")  # trust auth ignores it
    ledger = SendLedger(url, lock_timeout_s=0.5)
    holder = sa.create_engine(pg_url)
    try:
        with holder.begin() as conn:
            conn.execute(sa.text("LOCK TABLE sms_send_chunks IN EXCLUSIVE MODE"))
            with pytest.raises(LedgerLockedError) as caught:
                ShardSender(eums(sim), ledger, "camp-1", 0).run(shard_table(20))
    finally:
        holder.dispose()
    message = str(caught.value)
    assert pg_url.rsplit("/", 1)[1] in message and "127.0.0.1" in message
    assert "not-the-password" not in message and "postgres@" not in message
    assert sim.messages("eums") == []
    ledger.close()


def test_the_lock_timeout_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="lock timeout must be positive"):
        SendLedger("sqlite://", lock_timeout_s=0)
