"""Report collection and reconciliation run for real (``dag.test()``) after campaigns."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import ROOT, load_dag
from tests.simulator_harness import SimulatorProcess

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"
CONTENT = "【Shop】Hi {name}, your code is {code}"


def campaign(campaign_id: str, conn_id: str):
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    return dag.test(run_conf={"campaign_id": campaign_id, "conn_id": conn_id,
                              "recipients": str(SAMPLE), "content": CONTENT})


def table(root: Path, *parts: str):
    path = root.joinpath(*parts)
    return ds.dataset(path, format="parquet").to_table() if path.exists() else None


@pytest.fixture
def reports_dag():
    return load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")


def test_collect_pulls_reports_replies_statistics_and_balances(
        campaign_env: Path, sim: SimulatorProcess, reports_dag) -> None:
    sim.reset(simulation={"mo_reply_rate": 0.5, "mo_texts": ["TD"]})
    for conn_id in ("sms_eums", "sms_eims", "sms_emay_ims"):
        assert campaign(f"c-{conn_id}", conn_id).state == "success"
    run = reports_dag.test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    root = campaign_env
    for conn_id in ("sms_eums", "sms_eims", "sms_emay_ims"):
        reports = table(root, "reports", conn_id)
        assert reports is not None and reports.num_rows >= 30, conn_id
    eums_ids = set(table(root, "campaigns", "c-sms_eums", "submissions")["message_id"]
                   .to_pylist())
    assert set(table(root, "reports", "sms_eums")["message_id"].to_pylist()) <= eums_ids
    inbound = table(root, "inbound", "sms_eums")
    assert inbound is not None and pc.all(inbound["opt_out"]).as_py()
    suppression = table(root, "suppression")
    assert suppression is not None and suppression.num_rows >= inbound.num_rows
    assert table(root, "statistics", "sms_eums", "daily").num_rows >= 1
    for conn_id in ("sms_eums", "sms_eims", "sms_emay_fms", "sms_chuanglan"):
        assert table(root, "statistics", conn_id, "balance").num_rows >= 1, conn_id
    again = reports_dag.test()  # nothing new to pull: no duplicates written
    assert again.state == "success"
    reports = table(root, "reports", "sms_eums")
    assert pc.count_distinct(reports["report_key"]).as_py() == reports.num_rows


def test_reconcile_gives_every_recipient_one_final_status(
        campaign_env: Path, sim: SimulatorProcess, reports_dag) -> None:
    sim.reset(simulation={"outcomes": {"delivered": 0.7, "failed": 0.2, "silent": 0.1}})
    for conn_id in ("sms_eums", "sms_emay_ims"):
        assert campaign(f"r-{conn_id}", conn_id).state == "success"
    assert reports_dag.test().state == "success"
    reconcile = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    run = reconcile.test(run_conf={"campaign_id": None})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    for conn_id in ("sms_eums", "sms_emay_ims"):
        campaign_dir = campaign_env / "campaigns" / f"r-{conn_id}"
        recon = table(campaign_env, "campaigns", f"r-{conn_id}", "reconciliation")
        prepared = table(campaign_env, "campaigns", f"r-{conn_id}", "prepared")
        assert recon.num_rows == prepared.num_rows == 40
        assert pc.count_distinct(recon["row_number"]).as_py() == 40
        finals = set(recon["final_status"].to_pylist())
        assert finals <= {"DELIVERED", "FAILED", "PENDING"} and "DELIVERED" in finals
        silent = {m["mobile"] for m in sim.messages(conn_id.removeprefix("sms_"))
                  if m["outcome"] == "silent"}
        pending = {r["mobile"] for r in recon.to_pylist() if r["final_status"] == "PENDING"}
        assert pending == silent  # never reported: pending within the 72-hour window
        html = (campaign_dir / "report.html").read_text(encoding="utf-8")
        assert "<svg" in html and f"r-{conn_id}" in html
