"""Failover, run for real (``dag.test()``): the preferred connection goes down (refuses
connections, starts failing after N requests, runs out of balance) and the unsent
recipients go through the next one. Across every vendor of the simulator each valid
recipient arrives exactly once, and the submissions and the reconciliation account
for each."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import ROOT, load_dag
from tests.simulator_harness import SimulatorProcess, free_port

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"
CONTENT = "【Shop】Hi {name}, your code is {code}"


def dataset(root: Path, campaign: str, name: str):
    path = root / "campaigns" / campaign / name
    return ds.dataset(path).to_table() if path.exists() else None


def states(dr) -> dict[str, str]:
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
            for ti in dr.get_task_instances()}


def run(**conf):
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    return dag.test(run_conf={"recipients": str(SAMPLE), "content": CONTENT, **conf})


def set_extra(monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra) -> None:
    """Add extras (and, with ``port``, a port) to a connection the fixture set up."""
    key = f"AIRFLOW_CONN_{conn_id.upper()}"
    import os

    conn = json.loads(os.environ[key])
    port = extra.pop("port", None)
    if port is not None:
        conn["port"] = port
    conn["extra"] = {**conn.get("extra", {}), **extra}
    monkeypatch.setenv(key, json.dumps(conn))


def e164_of(message: dict) -> str:
    mobile = message["mobile"]
    return mobile[2:] if mobile.startswith("00") else (
        mobile if mobile.startswith("86") else "86" + mobile)


def assert_each_once(root: Path, campaign: str, sim: SimulatorProcess, vendors: list[str]
                     ) -> dict[str, int]:
    """Every prepared recipient arrived exactly once across ``vendors``, and has exactly
    one submission row naming the connection it went through; per connection counts."""
    prepared = dataset(root, campaign, "prepared")
    arrived = Counter(e164_of(m) for vendor in vendors for m in sim.messages(vendor))
    assert set(arrived.values()) == {1}, arrived
    assert set(arrived) == set(prepared["e164"].to_pylist())
    subs = dataset(root, campaign, "submissions")
    assert sorted(subs["row_number"].to_pylist()) == sorted(prepared["row_number"].to_pylist())
    assert set(subs["status"].to_pylist()) == {"submitted"}
    return dict(Counter(subs["conn_id"].to_pylist()))


def reconcile(root: Path, campaign: str, conn_ids: list[str],
              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SMS_FINAL_WINDOW_HOURS", "72")
    time.sleep(0.5)
    reports = load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")
    assert reports.test(run_conf={"conn_ids": conn_ids}).state == "success"
    dag = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    assert dag.test(run_conf={"campaign_id": campaign}).state == "success"
    recon = dataset(root, campaign, "reconciliation")
    assert recon.num_rows == dataset(root, campaign, "prepared").num_rows
    assert recon["final_status"].null_count == 0
    return recon


def test_primary_refusing_connections_from_the_start(campaign_env: Path, sim: SimulatorProcess,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    set_extra(monkeypatch, "sms_eums", port=free_port(), failover_after_s=1)
    dr = run(campaign_id="fo-refuse", conn_ids=["sms_eums", "sms_chuanglan"])
    assert dr.state == "success", states(dr)
    assert assert_each_once(campaign_env, "fo-refuse", sim, ["eums", "chuanglan"]) == {
        "sms_chuanglan": 40}
    moves = dataset(campaign_env, "fo-refuse", "moves").to_pylist()
    assert {(m["source_conn"], m["target_conn"]) for m in moves} == {
        ("sms_eums", "sms_chuanglan")}
    assert sum(m["recipients"] for m in moves) == 40
    assert all("retryable errors" in m["reason"] for m in moves)
    recon = reconcile(campaign_env, "fo-refuse", ["sms_chuanglan"], monkeypatch)
    assert set(recon["conn_id"].to_pylist()) == {"sms_chuanglan"}


def test_primary_going_down_after_its_first_requests(campaign_env: Path, sim: SimulatorProcess,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # each recipient has a content of its own: one request each, in row order
    set_extra(monkeypatch, "sms_eums", send_concurrency=1, failover_after_s=1)
    sim.faults({"kind": "status", "status": 503, "vendor": "eums", "path": "send.do",
                "skip": 5})
    dr = run(campaign_id="fo-down", conn_ids=["sms_eums", "sms_chuanglan"])
    assert dr.state == "success", states(dr)
    by_conn = assert_each_once(campaign_env, "fo-down", sim, ["eums", "chuanglan"])
    assert by_conn == {"sms_eums": 5, "sms_chuanglan": 35}
    assert len(sim.messages("eums")) == 5
    recon = reconcile(campaign_env, "fo-down", ["sms_eums", "sms_chuanglan"], monkeypatch)
    assert Counter(recon["conn_id"].to_pylist()) == by_conn
    # a rerun sends nothing and finds the same moves
    again = run(campaign_id="fo-down", conn_ids=["sms_eums", "sms_chuanglan"])
    assert again.state == "success", states(again)
    assert len(sim.messages()) == 40
    assert dataset(campaign_env, "fo-down", "moves").num_rows == 1


def test_primary_running_out_of_balance_mid_campaign(campaign_env: Path,
                                                     sim: SimulatorProcess,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Emay IMS has no balance call: the campaign starts, and the balance runs out
    sim.reset(emay_ims={"balance": 20})
    set_extra(monkeypatch, "sms_emay_ims", max_batch=10, send_concurrency=1)
    # Emay IMS personalises: a request carries 10 recipients, the balance covers two
    dr = run(campaign_id="fo-poor", conn_ids=["sms_emay_ims", "sms_chuanglan"])
    assert dr.state == "success", states(dr)
    by_conn = assert_each_once(campaign_env, "fo-poor", sim, ["emay_ims", "chuanglan"])
    assert by_conn == {"sms_emay_ims": 20, "sms_chuanglan": 20}
    moves = dataset(campaign_env, "fo-poor", "moves").to_pylist()
    assert [m["target_conn"] for m in moves] == ["sms_chuanglan"]
    assert "balance" in moves[0]["reason"]
    # the moved recipients went in the target's own number format (mainland, 11 digits)
    assert {len(m["mobile"]) for m in sim.messages("chuanglan")} == {11}
    reconcile(campaign_env, "fo-poor", ["sms_emay_ims", "sms_chuanglan"], monkeypatch)
