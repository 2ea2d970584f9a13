"""Exactly once across a crash: SIGKILL the process running the send task mid-shard,
rerun the campaign, and check what the vendor really received.

The simulator accepts some requests and drops their answers (so some chunks
are ambiguous), and holds one request (the 46th) for a few seconds: the test
kills the sender while that request is on the wire, with nothing else in
flight, so the kill lands mid-request every time rather than by chance.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import ROOT, connection_env
from tests.simulator_harness import SimulatorProcess

RECIPIENTS = 3000
HELD = 45  # the request after this many is held by the simulator while the sender dies
RUNNER = """
import json, sys
sys.path[:0] = [{root!r}, {plugins!r}]
from tests.airflow_harness import load_dag
dag = load_dag(__import__("pathlib").Path({dagfile!r}), "sms_campaign")
run = dag.test(run_conf=json.loads({conf!r}))
print("RUN-STATE", run.state, flush=True)
"""


def held_rule(sim: SimulatorProcess) -> dict:
    return next(r for r in sim.fault_rules() if r["skip"] == HELD)


def write_recipients(path: Path) -> list[str]:
    mobiles = [f"138{i:08d}" for i in range(10_000_000, 10_000_000 + RECIPIENTS)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name"])
        writer.writerows([m, f"user{i}"] for i, m in enumerate(mobiles))
        writer.writerow(["12345", "bad"])  # one invalid row, rejected
    return mobiles


def start_run(conf: dict, env: dict, log: Path) -> subprocess.Popen:
    script = RUNNER.format(root=str(ROOT), plugins=str(ROOT / "plugins"),
                           dagfile=str(ROOT / "dags" / "sms_campaign.py"),
                           conf=json.dumps(conf))
    return subprocess.Popen([sys.executable, "-c", script], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_mid_shard_then_rerun_sends_every_recipient_exactly_once(
        sim: SimulatorProcess, airflow_db: None, tmp_path: Path) -> None:
    mobiles = write_recipients(tmp_path / "recipients.csv")
    sim.faults({"kind": "latency", "vendor": "eums", "path": "send", "latency_s": 4.0,
                "skip": HELD, "count": 1},
               {"kind": "accept_drop", "vendor": "eums", "path": "send", "probability": 0.2,
                "seed": 11})
    env = {**os.environ, "SMS_DATA_ROOT": str(tmp_path / "data"),
           **connection_env(sim, sim.config,
                            extras={"eums": {"max_batch": 20, "send_concurrency": 1}})}
    env.pop("SMS_LEDGER_URL", None)
    conf = {"campaign_id": "crash-1", "recipients": str(tmp_path / "recipients.csv"),
            "conn_id": "sms_eums", "content": "【Shop】Flash sale today"}  # 150 requests of 20

    first = start_run(conf, env, tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while held_rule(sim)["fired"] == 0:  # the 46th request has reached the vendor
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)  # the task process dies mid-request, mid-shard
    first.wait()
    assert sim.count("eums") == HELD * 20  # the held request is still being processed
    deadline = time.monotonic() + 30
    while sim.count("eums") < (HELD + 1) * 20:  # ... and the vendor does accept it
        assert time.monotonic() < deadline
        time.sleep(0.1)

    second = start_run(conf, env, tmp_path / "second.log")
    assert second.wait(300) == 0
    log = (tmp_path / "second.log").read_text()
    assert "RUN-STATE success" in log, log[-3000:]

    received = Counter(m["mobile"] for m in sim.messages("eums"))
    assert set(received) == set(mobiles)          # every valid recipient ...
    assert set(received.values()) == {1}          # ... exactly once
    submissions = ds.dataset(tmp_path / "data" / "campaigns" / "crash-1" /
                             "submissions").to_table()
    assert submissions.num_rows == RECIPIENTS
    statuses = dict(zip(*[c.to_pylist() for c in
                          pc.value_counts(submissions["status"]).flatten()], strict=True))
    assert set(statuses) <= {"submitted", "ambiguous"} and statuses.get("ambiguous", 0) > 0
    assert pc.count_distinct(submissions["row_number"]).as_py() == RECIPIENTS

    third = start_run(conf, env, tmp_path / "third.log")  # and once more: nothing new
    assert third.wait(300) == 0
    assert sim.count("eums") == RECIPIENTS


@pytest.mark.slow
def test_sigkill_mid_failover_then_rerun_sends_every_recipient_exactly_once(
        sim: SimulatorProcess, airflow_db: None, tmp_path: Path) -> None:
    """The preferred connection (EUMS) goes down after 30 requests; the rest fail over
    to Chuanglan, and the sender dies in the middle of the moved recipients' requests.
    The rerun resumes the move: nobody twice, across both vendors."""
    mobiles = write_recipients(tmp_path / "recipients.csv")
    down_after, held = 30, 10
    sim.faults({"kind": "status", "status": 503, "vendor": "eums", "path": "send",
                "skip": down_after},
               {"kind": "latency", "vendor": "chuanglan", "path": "HttpBatchSendSM",
                "latency_s": 4.0, "skip": held, "count": 1})
    env = {**os.environ, "SMS_DATA_ROOT": str(tmp_path / "data"),
           **connection_env(sim, sim.config, extras={
               "eums": {"max_batch": 20, "send_concurrency": 1, "failover_after_s": 1},
               "chuanglan": {"max_batch": 20, "send_concurrency": 1}})}
    env.pop("SMS_LEDGER_URL", None)
    conf = {"campaign_id": "crash-fo", "recipients": str(tmp_path / "recipients.csv"),
            "conn_ids": ["sms_eums", "sms_chuanglan"], "content": "【Shop】Flash sale today"}

    first = start_run(conf, env, tmp_path / "first.log")
    deadline = time.monotonic() + 180

    def held_fired() -> bool:
        return any(r["vendor"] == "chuanglan" and r["fired"] for r in sim.fault_rules())

    while not held_fired():  # the moved recipients' 11th request reached Chuanglan
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the failover never got going"
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 30
    while sim.count("chuanglan") < (held + 1) * 20:  # the held request is accepted
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert sim.count("eums") == down_after * 20

    second = start_run(conf, env, tmp_path / "second.log")
    assert second.wait(300) == 0
    log = (tmp_path / "second.log").read_text()
    assert "RUN-STATE success" in log, log[-3000:]

    received = Counter(m["mobile"] for vendor in ("eums", "chuanglan")
                       for m in sim.messages(vendor))
    assert set(received) == set(mobiles)
    assert set(received.values()) == {1}
    campaign = tmp_path / "data" / "campaigns" / "crash-fo"
    submissions = ds.dataset(campaign / "submissions").to_table()
    assert submissions.num_rows == RECIPIENTS
    assert pc.count_distinct(submissions["row_number"]).as_py() == RECIPIENTS
    by_conn = Counter(submissions["conn_id"].to_pylist())
    assert by_conn == {"sms_eums": down_after * 20, "sms_chuanglan": RECIPIENTS - down_after * 20}
    statuses = set(submissions["status"].to_pylist())
    assert statuses <= {"submitted", "ambiguous"}
    moves = ds.dataset(campaign / "moves").to_table().to_pylist()
    assert len(moves) == 1 and moves[0]["recipients"] == RECIPIENTS - down_after * 20

    third = start_run(conf, env, tmp_path / "third.log")  # and once more: nothing new
    assert third.wait(300) == 0
    assert sim.count("eums") + sim.count("chuanglan") == RECIPIENTS
