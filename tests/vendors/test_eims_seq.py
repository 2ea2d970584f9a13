"""EIMS md5 mode under concurrency: every request reaches the platform in ``seq`` order.

The platform refuses a ``seq`` that is not above the last one it accepted
(-1), so requests of one account must leave in the order their seqs were
handed out. These run the real send path, two real processes sharing one seq
file and a real campaign DAG against the simulator, whose latency fault makes
requests that overlap arrive out of order.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import requests

from sms_provider.data.ledger import SendLedger
from sms_provider.data.schemas import PREPARED_SCHEMA
from sms_provider.data.send import ShardSender
from sms_provider.errors import AuthenticationError
from sms_provider.vendors.base import OutboundMessage
from sms_provider.vendors.eims import SEQ_ATTEMPTS, EimsClient
from tests import airflow_harness
from tests.simulator_harness import (
    DEFAULT_CONFIG,
    ROOT,
    SimulatorProcess,
    credentials,
    vendor_client,
)

MD5_KEY = "negotiated-md5-key"
#: half the requests wait before the platform looks at them: overlapping ones overtake
JITTER = {"kind": "latency", "vendor": "eims", "latency_s": 0.05, "probability": 0.5,
          "seed": 3}


ACCOUNT, PASSWORD = credentials("eims")


def eims_client(base_url: str, seq_path: Path | str | None, **extras: Any) -> EimsClient:
    """The client as a connection builds it: md5 mode with the seq file, or plain."""
    md5 = {"md5_key": MD5_KEY, "seq_path": str(seq_path)} if seq_path else {}
    return vendor_client("eims", base_url, **md5, **extras)


def md5_params(seq: int, *, account: str = ACCOUNT, key: str = MD5_KEY) -> dict[str, Any]:
    """Credentials for one hand-made md5 request."""
    stamp = int(time.time())
    digest = hashlib.md5(f"{account}{PASSWORD}{seq}{stamp}{key}".encode()).hexdigest()
    return {"account": account, "password": digest, "seq": seq, "time": stamp}


def personalised_shard(n: int, *, start: int = 1) -> pa.Table:
    """One text per recipient: each becomes a request of its own."""
    rows = range(start, start + n)
    return pa.table({
        "row_number": list(rows), "mobile": [f"86138{i:08d}" for i in rows],
        "e164": [f"+86138{i:08d}" for i in rows],
        "content": [f"【Shop】Hi guest {i}, your code is {100000 + i}" for i in rows],
        "variables": [json.dumps({"n": str(i)}) for i in rows], "charge_items": [1] * n,
        "custom_id": [None] * n, "shard": [0] * n, "carrier": [None] * n},
        schema=PREPARED_SCHEMA)


@pytest.fixture
def md5_sim(sim: SimulatorProcess) -> SimulatorProcess:
    sim.reset(eims={"md5_key": MD5_KEY})
    return sim


@pytest.fixture
def ledger(tmp_path: Path):
    led = SendLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield led
    led.close()


def assert_each_once(sim: SimulatorProcess, table: pa.Table) -> None:
    received = Counter(m["mobile"] for m in sim.messages("eims"))
    assert received == Counter(table["mobile"].to_pylist())


# --- one process, four requests in flight ----------------------------------------------
def test_personalised_md5_shard_with_four_in_flight_sends_everyone(
        md5_sim: SimulatorProcess, ledger: SendLedger, tmp_path: Path) -> None:
    md5_sim.faults(JITTER)
    seq_path = tmp_path / "eims.seq"
    seq_path.write_text("1000")
    table = personalised_shard(10)
    with eims_client(md5_sim.base_url, seq_path) as client:
        result = ShardSender(client, ledger, "md5-camp", 0, concurrency=4,
                             backoff_s=0.01).run(table)
    assert result.errors == [] and result.complete
    assert result.counts == {"submitted": 10}
    assert_each_once(md5_sim, table)
    assert max(c.attempts for c in ledger.chunks("md5-camp")) == 1
    assert int(seq_path.read_text()) == 1010  # one seq a request: none was refused


# --- two processes, one seq file ---------------------------------------------------------
def send_from_child() -> None:
    """A process sending one personalised shard: ``base_url seq_path ledger start
    concurrency`` on the command line; waits for a line on stdin before sending."""
    base_url, seq_path, ledger_path, start, concurrency = sys.argv[1:6]
    table = personalised_shard(10, start=int(start))
    led = SendLedger(f"sqlite:///{ledger_path}")
    with eims_client(base_url, seq_path) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        result = ShardSender(client, led, f"camp-{start}", 0, concurrency=int(concurrency),
                             backoff_s=0.01).run(table)
    attempts = max(c.attempts for c in led.chunks(f"camp-{start}"))
    led.close()
    print(json.dumps({"counts": result.counts, "errors": result.errors,
                      "complete": result.complete, "attempts": attempts}), flush=True)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_two_processes_sharing_the_seq_file_send_everyone_once(
        md5_sim: SimulatorProcess, tmp_path: Path, concurrency: int) -> None:
    md5_sim.faults(JITTER)
    seq_path = tmp_path / "eims.seq"
    seq_path.write_text("1000")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
    code = "from tests.vendors.test_eims_seq import send_from_child; send_from_child()"
    procs = [subprocess.Popen(
        [sys.executable, "-c", code, md5_sim.base_url, str(seq_path),
         str(tmp_path / f"ledger-{start}.sqlite"), str(start), str(concurrency)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for start in (1, 101)]
    try:
        for proc in procs:  # both are up before either sends
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for result in results:
        assert result == {"counts": {"submitted": 10}, "errors": [], "complete": True,
                          "attempts": 1}
    assert_each_once(md5_sim, pa.concat_tables([personalised_shard(10, start=1),
                                                personalised_shard(10, start=101)]))
    assert int(seq_path.read_text()) == 1020  # twenty requests, not one refused


# --- a refused seq -----------------------------------------------------------------------
def test_a_refused_seq_is_retried_with_a_fresh_one_and_sent_once(
        md5_sim: SimulatorProcess, tmp_path: Path) -> None:
    seq_path = tmp_path / "eims.seq"
    seq_path.write_text("1000")
    # a sender that does not share our seq file got seq 1001 in first
    other = requests.get(md5_sim.base_url + "/getbalance", params=md5_params(1001), timeout=5)
    assert other.json()["status"] == 0
    before = md5_sim.balance("eims")
    mobiles = ["8613800138000", "8613900139000"]
    with eims_client(md5_sim.base_url, seq_path) as client:
        subs = client.send([OutboundMessage(mobile=m, content="【Shop】Hi") for m in mobiles])
    assert [s.status.value for s in subs] == ["submitted", "submitted"]
    assert int(seq_path.read_text()) == 1002  # 1001 refused, 1002 accepted
    assert sorted(m["mobile"] for m in md5_sim.messages("eims")) == mobiles  # once each
    assert md5_sim.balance("eims") == before - 2  # charged once


def test_wrong_md5_key_gives_up_after_the_bounded_tries(md5_sim: SimulatorProcess,
                                                        tmp_path: Path) -> None:
    seq_path = tmp_path / "eims.seq"
    seq_path.write_text("1000")
    client = md5_sim.client("eims", md5_key="not-the-key", seq_path=str(seq_path))
    with pytest.raises(AuthenticationError) as err:
        client.send([OutboundMessage(mobile="8613800138000", content="【Shop】Hi")])
    assert err.value.code == "-1" and "not-the-key" not in str(err.value)
    assert int(seq_path.read_text()) == 1000 + SEQ_ATTEMPTS
    assert md5_sim.messages("eims") == []


def test_plain_mode_refusal_is_not_retried(sim: SimulatorProcess) -> None:
    sim.reset(eims={"password": "changed"})
    client = eims_client(sim.base_url, None)
    with pytest.raises(AuthenticationError):
        client.balance()
    assert sim.messages("eims") == []


# --- the simulator is as strict as the document ------------------------------------------
def test_simulator_acts_on_no_refused_seq_and_refusals_move_no_seq(
        md5_sim: SimulatorProcess) -> None:
    send = md5_sim.base_url + "/sendsms"
    balance = md5_sim.base_url + "/getbalance"

    def status(url: str, params: dict[str, Any], **fields: Any) -> int:
        if url == send:
            return requests.post(url, json={**params, **fields}, timeout=5).json()["status"]
        return requests.get(url, params=params, timeout=5).json()["status"]

    text = {"numbers": "8613800138000", "content": "【Shop】Hi"}
    assert status(send, md5_params(500), **text) == 0
    charged = md5_sim.balance("eims")
    for seq in (500, 499, 0, -1):  # the same, smaller, below the initial 1
        assert status(send, md5_params(seq), **text) == -1, seq
    assert len(md5_sim.messages("eims")) == 1 and md5_sim.balance("eims") == charged
    # refused requests do not move the account's seq: not a wrong digest nor another account
    assert status(balance, md5_params(900, key="other-key")) == -1
    assert status(balance, md5_params(901, account="someone-else")) == -1
    assert status(balance, md5_params(501)) == 0


# --- plain mode is not serialized ----------------------------------------------------------
class FakeEims:
    """A bare EIMS sendsms that holds each request until ``parties`` are in at once
    (None: never holds), and records the seqs in the order they arrived."""

    def __init__(self, parties: int | None) -> None:
        self.barrier = threading.Barrier(parties, timeout=30) if parties else None
        self.seqs: list[int] = []
        self.in_flight = self.most_in_flight = 0
        lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.in_flight += 1
                    fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                    if "seq" in body:
                        fake.seqs.append(int(body["seq"]))
                try:
                    if fake.barrier:
                        fake.barrier.wait()
                    else:
                        time.sleep(0.02)  # room for an overlapping request to arrive
                    answer = {"status": 0, "success": 1, "fail": 0,
                              "array": [[int(body["numbers"]), len(fake.seqs) + 1]]}
                except threading.BrokenBarrierError:
                    answer = {"status": -12}
                finally:
                    with lock:
                        fake.in_flight -= 1
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_eims(request: pytest.FixtureRequest) -> Iterator[FakeEims]:
    fake = FakeEims(request.param)
    yield fake
    fake.stop()


@pytest.mark.parametrize("fake_eims", [4], indirect=True)
def test_plain_mode_keeps_four_requests_in_flight(fake_eims: FakeEims,
                                                  ledger: SendLedger) -> None:
    """The platform holds each request until four are in: only overlapping ones pass."""
    with eims_client(fake_eims.base_url, None) as client:
        result = ShardSender(client, ledger, "plain", 0, concurrency=4,
                             backoff_s=0.01).run(personalised_shard(8))
    assert result.counts == {"submitted": 8} and fake_eims.most_in_flight == 4


@pytest.mark.parametrize("fake_eims", [None], indirect=True)
def test_md5_requests_of_one_seq_file_never_overlap(fake_eims: FakeEims, ledger: SendLedger,
                                                    tmp_path: Path) -> None:
    with eims_client(fake_eims.base_url, tmp_path / "eims.seq") as client:
        result = ShardSender(client, ledger, "md5", 0, concurrency=4,
                             backoff_s=0.01).run(personalised_shard(8))
    assert result.counts == {"submitted": 8}
    assert fake_eims.most_in_flight == 1
    assert fake_eims.seqs == sorted(fake_eims.seqs) and len(set(fake_eims.seqs)) == 8


# --- a real campaign run ------------------------------------------------------------------
def test_md5_campaign_dag_sends_every_personalised_text_once(
        md5_sim: SimulatorProcess, campaign_env: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    md5_sim.faults(JITTER)
    seq_path = tmp_path / "eims.seq"
    extras = {"eims": {"md5_key": MD5_KEY, "seq_path": str(seq_path)}}
    for key, value in airflow_harness.connection_env(md5_sim, DEFAULT_CONFIG,
                                                     extras).items():
        monkeypatch.setenv(key, value)
    dag = airflow_harness.load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={
        "recipients": str(ROOT / "include" / "recipients" / "sample.csv"),
        "content": "【Shop】Hi {name}, your code is {code}", "campaign_id": "md5-spring",
        "conn_id": "sms_eims"})
    assert dr.state == "success", {ti.task_id: ti.state for ti in dr.get_task_instances()}
    submissions = ds.dataset(
        campaign_env / "campaigns" / "md5-spring" / "submissions").to_table()
    assert submissions.num_rows == 40
    assert set(submissions["status"].to_pylist()) == {"submitted"}
    received = Counter(m["mobile"] for m in md5_sim.messages("eims"))
    assert set(received.values()) == {1}
    assert set(received) == set(submissions["mobile"].to_pylist())
    assert len({m["content"] for m in md5_sim.messages("eims")}) == 40  # one text each
