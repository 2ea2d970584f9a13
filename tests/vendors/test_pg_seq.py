"""EIMS md5 ``seq`` shared across hosts in PostgreSQL (``SMS_LEDGER_URL``).

Two real processes with seq files of their own (as on two hosts, where a file
lock orders nothing) send personalised texts in md5 mode against the
simulator, which refuses a seq that is not above the last one it accepted.
Each test gets a PostgreSQL database of its own, created and dropped here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from sms_provider.errors import RetryableError
from sms_provider.vendors.eims_seq import FileSeqSource, MemorySeqSource
from sms_provider.vendors.pg_seq import PgSeqSource, seq_source
from tests.simulator_harness import ROOT, SimulatorProcess, free_port
from tests.vendors.test_eims_seq import JITTER, MD5_KEY, eims_client

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
CHILD = "from tests.vendors.test_eims_seq import send_from_child; send_from_child()"


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"sms_seq_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(ADMIN_DSN)
    except psycopg2.OperationalError:
        pytest.fail("these tests need PostgreSQL on 127.0.0.1:5432 with trust auth for "
                    "user postgres (apt-get install postgresql)")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        from sms_provider.vendors import pg_seq

        for url in [u for u in pg_seq._engines if name in u]:
            pg_seq._engines.pop(url).dispose()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def md5_sim(sim: SimulatorProcess) -> SimulatorProcess:
    sim.reset(eims={"md5_key": MD5_KEY})
    return sim


def run_two_hosts(sim: SimulatorProcess, tmp_path: Path, env: dict[str, str]
                  ) -> list[dict]:
    """Two processes, each with its own seq file and ledger, sending ten texts each."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}", **env}
    procs = []
    for start in (1, 101):
        host = tmp_path / f"host-{start}"
        host.mkdir()
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CHILD, sim.base_url, str(host / "eims.seq"),
             str(host / "ledger.sqlite"), str(start), "3"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT))
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return [json.loads(proc.communicate(timeout=180)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_two_hosts_sharing_the_seq_in_postgresql_are_never_refused(
        md5_sim: SimulatorProcess, pg_url: str, tmp_path: Path) -> None:
    md5_sim.faults(JITTER)  # overlapping requests would overtake each other
    results = run_two_hosts(md5_sim, tmp_path, {"SMS_LEDGER_URL": pg_url})
    for result in results:
        assert result == {"counts": {"submitted": 10}, "errors": [], "complete": True,
                          "attempts": 1}
    sends = [e for e in md5_sim.requests("eims") if e["path"] == "/sendsms"]
    assert len(sends) == 20  # not one refused seq, so not one retry
    assert md5_sim.count("eims") == 20
    assert not any((tmp_path / h / "eims.seq").exists() for h in ("host-1", "host-101"))


def test_two_hosts_with_seq_files_of_their_own_collide(
        md5_sim: SimulatorProcess, tmp_path: Path) -> None:
    """What the shared counter fixes: files on two hosts hand out the same seqs."""
    results = run_two_hosts(md5_sim, tmp_path, {"SMS_LEDGER_URL": ""})
    sends = [e for e in md5_sim.requests("eims") if e["path"] == "/sendsms"]
    assert len(sends) > 20 or any(r["errors"] for r in results)  # refused, then resent


def test_a_seq_never_goes_below_the_file_or_the_clock(pg_url: str, tmp_path: Path) -> None:
    seq_file = tmp_path / "eims.seq"
    seq_file.write_text("90000000000")  # far above the current time
    source = PgSeqSource(pg_url, "acct", floor_path=seq_file)
    assert [source.next(), source.next()] == [90000000001, 90000000002]
    seq_file.write_text("90000000100")  # a host still on its file moved on
    assert source.next() == 90000000101
    fresh = PgSeqSource(pg_url, "other")  # no file: starts at the clock
    before = int(time.time())
    assert fresh.next() >= before
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT account, last_seq FROM sms_eims_seq")).all())
    engine.dispose()
    assert rows["acct"] == 90000000101


def test_a_turn_held_elsewhere_too_long_is_a_retryable_error(pg_url: str) -> None:
    holder = PgSeqSource(pg_url, "acct")
    waiter = PgSeqSource(pg_url, "acct", turn_timeout_s=0.2)
    other_account = PgSeqSource(pg_url, "someone-else", turn_timeout_s=0.2)
    entered, done = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.turn():
            entered.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(30)
        with pytest.raises(RetryableError, match="held the md5 seq turn of EIMS account"):
            waiter.next()
        assert other_account.next() > 0  # accounts do not wait for each other
    finally:
        done.set()
        thread.join(30)
    assert waiter.next() > 0  # the turn is free again


def test_an_unreachable_database_is_a_retryable_error_without_the_password() -> None:
    url = f"postgresql+psycopg2://postgres:hush@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(RetryableError) as caught:
        PgSeqSource(url, "acct").next()
    assert "nothing was sent" in str(caught.value)
    assert "hush" not in str(caught.value)


def test_the_source_follows_the_ledger_url(tmp_path: Path, pg_url: str) -> None:
    seq_file = tmp_path / "eims.seq"
    assert isinstance(seq_source("a", seq_file, {"SMS_LEDGER_URL": pg_url}), PgSeqSource)
    assert isinstance(seq_source("a", seq_file, {"SMS_LEDGER_URL": "sqlite:///x.db"}),
                      FileSeqSource)
    assert isinstance(seq_source("a", None, {}), MemorySeqSource)
    with eims_client("http://127.0.0.1:1", seq_file) as client:
        assert isinstance(client.seq, FileSeqSource if not os.environ.get("SMS_LEDGER_URL")
                          else PgSeqSource)
