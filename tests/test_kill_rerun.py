"""Exactly once across a crash: SIGKILL the process running the send task mid-shard,
rerun the campaign, and check what the vendor really received.

The simulator is told to accept some requests and drop their answers (so some
chunks are ambiguous) and to be a little slow (so the kill lands mid-shard).
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
RUNNER = """
import json, sys
sys.path[:0] = [{root!r}, {plugins!r}]
from tests.airflow_harness import load_dag
dag = load_dag(__import__("pathlib").Path({dagfile!r}), "sms_campaign")
run = dag.test(run_conf=json.loads({conf!r}))
print("RUN-STATE", run.state, flush=True)
"""


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
    sim.faults({"kind": "accept_drop", "vendor": "eums", "path": "send", "probability": 0.2,
                "seed": 11},
               {"kind": "latency", "vendor": "eums", "path": "send", "latency_s": 0.03})
    env = {**os.environ, "SMS_DATA_ROOT": str(tmp_path / "data"),
           **connection_env(sim.base_url, sim.config,
                            extras={"eums": {"max_batch": 20, "send_concurrency": 2}})}
    env.pop("SMS_LEDGER_URL", None)
    conf = {"campaign_id": "crash-1", "recipients": str(tmp_path / "recipients.csv"),
            "conn_id": "sms_eums", "content": "【Shop】Flash sale today"}  # 150 requests of 20

    first = start_run(conf, env, tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while sim.count("eums") < RECIPIENTS * 0.3:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)  # the task process dies mid-shard
    first.wait()
    killed_at = sim.count("eums")
    assert killed_at < RECIPIENTS, "the kill came too late to test anything"

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
