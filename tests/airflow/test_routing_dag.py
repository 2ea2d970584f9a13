"""A campaign routed over several connections, run for real (``dag.test()``) against the
simulator: each recipient through exactly one connection, as prepare routed it."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import ROOT, load_dag
from tests.simulator_harness import SimulatorProcess

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"
CONTENT = "【Shop】Hi {name}, your code is {code}"
FOREIGN = ["+44 7400 123456", "+1 415 555 2671", "+81 90 1234 5678"]


def dataset(root: Path, campaign: str, name: str):
    return ds.dataset(root / "campaigns" / campaign / name).to_table()


def states(dr) -> dict[str, str]:
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
            for ti in dr.get_task_instances()}


def run(**conf):
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    return dag.test(run_conf={"recipients": str(SAMPLE), "content": CONTENT, **conf})


def with_foreign(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([*lines, *(f"{m},Abroad{i},9{i}" for i, m in enumerate(FOREIGN))])
                    + "\n", encoding="utf-8")
    return path


def test_foreign_numbers_go_abroad_and_the_rest_to_the_preferred(
        campaign_env: Path, sim: SimulatorProcess, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    dr = run(campaign_id="route-1", recipients=str(with_foreign(tmp_path)),
             conn_ids=["sms_eums", "sms_emay_ims"])
    assert dr.state == "success", states(dr)
    submissions = dataset(campaign_env, "route-1", "submissions")
    prepared = dataset(campaign_env, "route-1", "prepared")
    assert prepared.num_rows == submissions.num_rows == 43
    by_conn = Counter(submissions["conn_id"].to_pylist())
    assert by_conn == {"sms_eums": 40, "sms_emay_ims": 3}
    eums, ims = sim.messages("eums"), sim.messages("emay_ims")
    assert len(eums) == 40 and len({m["mobile"] for m in eums}) == 40
    assert sorted(m["mobile"] for m in ims) == sorted(
        ["00447400123456", "0014155552671", "00819012345678"])
    # reports and reconciliation, per connection
    monkeypatch.setenv("SMS_FINAL_WINDOW_HOURS", "72")
    reports = load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")
    time.sleep(0.5)
    assert reports.test(run_conf={"conn_ids": ["sms_eums", "sms_emay_ims"]}).state == "success"
    reconcile = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    assert reconcile.test(run_conf={"campaign_id": "route-1"}).state == "success"
    recon = dataset(campaign_env, "route-1", "reconciliation")
    assert recon.num_rows == 43
    assert Counter(recon["conn_id"].to_pylist()) == by_conn
    outcome = {m["message_id"]: m["outcome"] for m in eums + ims}
    got = dict(zip(recon["message_id"].to_pylist(), recon["final_status"].to_pylist(),
                   strict=True))
    assert {k: v for k, v in got.items() if outcome[k] != "silent"} == {
        k: v.upper() for k, v in outcome.items() if v != "silent"}


def test_weights_split_the_same_way_on_a_rerun_and_send_nothing_twice(
        campaign_env: Path, sim: SimulatorProcess) -> None:
    conf = {"campaign_id": "route-w", "conn_ids": ["sms_eums", "sms_chuanglan"],
            "weights": {"sms_eums": 50, "sms_chuanglan": 50}}
    dr = run(**conf)
    assert dr.state == "success", states(dr)
    first = dataset(campaign_env, "route-w", "submissions").sort_by("row_number")
    split = Counter(first["conn_id"].to_pylist())
    assert split["sms_eums"] > 5 and split["sms_chuanglan"] > 5 and first.num_rows == 40
    assert len(sim.messages("eums")) == split["sms_eums"]
    assert len(sim.messages("chuanglan")) == split["sms_chuanglan"]
    again = run(**conf)
    assert again.state == "success", states(again)
    after = dataset(campaign_env, "route-w", "submissions").sort_by("row_number")
    assert after.equals(first)
    assert len(sim.messages()) == 40


def test_check_balance_checks_each_connection_against_its_share(
        campaign_env: Path, sim: SimulatorProcess, capfd) -> None:
    sim.reset(chuanglan={"balance": 3})
    dr = run(campaign_id="route-poor", conn_ids=["sms_eums", "sms_chuanglan"],
             weights={"sms_eums": 1, "sms_chuanglan": 1})
    assert dr.state == "failed"
    st = states(dr)
    assert st["prepare"] == "success" and st["check_balance"] == "failed"
    out = capfd.readouterr()
    text = out.out + out.err
    [line] = [line for line in text.splitlines() if "cannot cover" in line][-1:]
    assert "sms_chuanglan: balance 3 items cannot cover the estimate of" in line
    assert "sms_eums" not in line  # its share is covered
    assert sim.messages() == []


def test_a_conf_naming_a_connection_twice_fails_prepare(campaign_env: Path, sim, capfd
                                                       ) -> None:
    dr = run(campaign_id="route-bad", conn_ids=["sms_eums", "sms_eums"])
    assert dr.state == "failed" and states(dr)["prepare"] == "failed"
    out = capfd.readouterr()
    assert "conn_ids names sms_eums more than once" in out.out + out.err
