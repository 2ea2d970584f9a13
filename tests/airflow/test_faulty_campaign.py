"""A 10,000-recipient campaign run for real while a tenth of its send requests meet a
fault (every kind at once): nobody gets a message twice, everyone is accounted for
with a reason, and a rerun over the same ledger changes nothing."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import ROOT, connection_env, load_dag
from tests.simulator_harness import SimulatorProcess

RECIPIENTS = 10_000
INVALID = ["12345", "1380000000", "not a number", "+1 212 555 0100"]
#: six kinds, each drawn for about 1.75% of send requests: 10% of them meet a fault
FAULTS = [
    {"kind": "status", "status": 503, "probability": 0.0175, "seed": 1},  # not processed
    {"kind": "status", "status": 500, "probability": 0.0178, "seed": 2},  # unknown
    {"kind": "drop", "probability": 0.0181, "seed": 3},
    {"kind": "accept_drop", "probability": 0.0185, "seed": 4},
    {"kind": "garble", "probability": 0.0188, "seed": 5},
    {"kind": "rate_limit", "probability": 0.0192, "seed": 6},
]


def write_recipients(path: Path) -> list[str]:
    mobiles = [f"139{i:08d}" for i in range(20_000_000, 20_000_000 + RECIPIENTS)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name"])
        writer.writerows([m, f"user{i}"] for i, m in enumerate(mobiles))
        writer.writerows([bad, "bad"] for bad in INVALID)
    return mobiles


def counts(table, column: str) -> dict[str, int]:
    return {row["values"]: row["counts"] for row in pc.value_counts(table[column]).to_pylist()}


@pytest.mark.slow
def test_faults_on_a_tenth_of_the_requests_lose_nobody_and_duplicate_nobody(
        sim: SimulatorProcess, campaign_env: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in connection_env(sim, sim.config, extras={
            "eums": {"max_batch": 20, "send_concurrency": 4}}).items():
        monkeypatch.setenv(key, value)
    mobiles = write_recipients(tmp_path / "recipients.csv")
    sim.faults(*({"vendor": "eums", "path": "send", **rule} for rule in FAULTS))
    conf = {"campaign_id": "stormy-1", "recipients": str(tmp_path / "recipients.csv"),
            "conn_id": "sms_eums", "content": "【Shop】Storm sale, {name}"}  # 500 requests

    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    first = dag.test(run_conf=conf)
    assert first.state == "success", {ti.task_id: ti.state for ti in first.get_task_instances()}
    fired = {(r["kind"], r["status"]): r["fired"] for r in sim.fault_rules()}
    assert all(fired.values()), fired  # every kind really happened

    received = Counter(m["mobile"] for m in sim.messages("eums"))
    assert set(received.values()) == {1}            # nobody twice
    assert set(received) <= set(mobiles)
    campaign = campaign_env / "campaigns" / "stormy-1"
    rejected = ds.dataset(campaign / "rejected").to_table()
    assert rejected.num_rows == len(INVALID)
    assert all(rejected["reason"].to_pylist())      # each with its reason
    submissions = ds.dataset(campaign / "submissions").to_table().sort_by("row_number")
    assert submissions.num_rows == RECIPIENTS       # every valid recipient, once
    assert set(submissions["mobile"].to_pylist()) == set(mobiles)
    statuses = counts(submissions, "status")
    assert set(statuses) <= {"submitted", "ambiguous"} and statuses.get("ambiguous", 0) > 0
    ids = {m["mobile"]: m["message_id"] for m in sim.messages("eums")}
    for row in submissions.to_pylist():
        if row["status"] == "submitted":            # what we recorded as sent was sent
            assert ids.get(row["mobile"]) == row["message_id"], row
        else:                                       # the rest say why they are unsure
            assert row["status"] == "ambiguous" and row["description"], row
    missing = set(mobiles) - set(received)
    assert missing and all(
        row["status"] == "ambiguous" for row in submissions.to_pylist()
        if row["mobile"] in missing)

    # the same campaign again over the same ledger, faults still on: nothing changes
    rerun = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign").test(run_conf=conf)
    assert rerun.state == "success"
    assert Counter(m["mobile"] for m in sim.messages("eums")) == received
    again = ds.dataset(campaign / "submissions").to_table().sort_by("row_number")
    assert again.drop_columns(["submitted_at"]).equals(
        submissions.drop_columns(["submitted_at"]))
