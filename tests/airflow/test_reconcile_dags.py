"""Reconciliation, run for real (``dag.test()``), finds what the simulator seeded.

The simulator is told to stay silent on some messages, report out of order,
report message ids it never issued, overstate its statistics and take more from
the balance than it bills per message; ``sms_reconcile`` must flag each of these
and still give every prepared recipient exactly one final status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import ROOT, load_dag
from tests.simulator_harness import SimulatorProcess

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"
CONTENT = "【Shop】Hi {name}, your code is {code}"
JITTER_S = 1.5
FINAL = {"delivered": "DELIVERED", "failed": "FAILED", "silent": "UNKNOWN"}


def table(root: Path, *parts: str):
    path = root.joinpath(*parts)
    return ds.dataset(path, format="parquet").to_table() if path.exists() else None


def run_ok(dag, **conf):
    run = dag.test(run_conf=conf) if conf else dag.test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    return run


def strays(sim: SimulatorProcess, vendor: str) -> list[dict]:
    resp = sim.http.get(sim.base_url + "/_sim/strays", params={"vendor": vendor}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def test_stray_reports_are_neither_listed_nor_charged(sim: SimulatorProcess) -> None:
    """The knobs themselves, straight at the simulator: off by default, seeded when on."""
    assert strays(sim, "eums") == []
    sim.reset(eums={"simulation": {"stray_report_rate": 0.5, "overcharge_items": 3}})
    from sms_provider.simulator.state import STRAY_SUFFIX, SimState

    state = SimState(sim.config)
    vs = state.vendor("eums")
    before = vs.balance
    accepted = vs.accept([f"1380000{i:04d}" for i in range(20)], ["hi"] * 20, [None] * 20,
                         lambda seq: f"{seq:019d}")
    assert before - vs.balance == 20 + 3
    issued = {m.message_id for m in accepted}
    seeded = {m.message_id for m in vs.strays}
    assert 0 < len(seeded) < 20 and not seeded & issued
    assert all(s.removesuffix(STRAY_SUFFIX) in issued for s in seeded)
    reported = {m.message_id for m in vs.take_due_reports(100, now=time.time() + 1)}
    assert seeded <= reported
    assert sum(row["submit"] for row in vs.daily_counts().values()) == 20
    again = SimState(sim.config).vendor("eums")  # same seed: the same strays
    again.accept([f"1380000{i:04d}" for i in range(20)], ["hi"] * 20, [None] * 20,
                 lambda seq: f"{seq:019d}")
    assert {m.message_id for m in again.strays} == seeded


def _window_hours(root: Path, campaign_id: str, pulled_at: float) -> tuple[float, float]:
    """A final window that has passed for every submission yet still covers the reports.

    Stray reports count only when received within the window after the last
    submission; silent messages become UNKNOWN only once it has passed since theirs.
    """
    subs = table(root, "campaigns", campaign_id, "submissions")
    sent = [t.timestamp() for t in subs["submitted_at"].to_pylist() if t is not None]
    window_s = pulled_at - min(sent) + 0.5
    ready_at = max(sent) + window_s + 1.0
    return window_s / 3600, ready_at


def test_reconcile_flags_every_seeded_discrepancy_eums(
        campaign_env: Path, sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.reset(simulation={"outcomes": {"delivered": 0.65, "failed": 0.15, "silent": 0.2},
                          "report_jitter_s": JITTER_S},
              eums={"simulation": {"stray_report_rate": 0.2, "statistics_extra_submitted": 3,
                                   "overcharge_items": 2}})
    reports = load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")
    campaign = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    only_eums = {"conn_ids": ["sms_eums"]}
    run_ok(reports, **only_eums)  # the balance before the campaign
    run_ok(campaign, campaign_id="seeded-eums", conn_id="sms_eums",
           recipients=str(SAMPLE), content=CONTENT)
    run_ok(reports, **only_eums)  # early: only some reports are due yet
    time.sleep(JITTER_S + 0.5)
    run_ok(reports, **only_eums)  # the rest, delayed and out of order
    hours, ready_at = _window_hours(campaign_env, "seeded-eums", time.time())
    time.sleep(max(0.0, ready_at - time.time()))
    monkeypatch.setenv("SMS_FINAL_WINDOW_HOURS", f"{hours:.9f}")
    reconcile = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    run_ok(reconcile, campaign_id="seeded-eums")

    messages = sim.messages("eums")
    seeded = {m["message_id"] for m in strays(sim, "eums")}
    silent = {m["message_id"] for m in messages if m["outcome"] == "silent"}
    assert seeded and silent and len(messages) == 40
    all_reports = table(campaign_env, "reports", "sms_eums")
    assert seeded <= set(all_reports["message_id"].to_pylist())

    recon = table(campaign_env, "campaigns", "seeded-eums", "reconciliation")
    prepared = table(campaign_env, "campaigns", "seeded-eums", "prepared")
    assert recon.num_rows == prepared.num_rows == 40
    assert sorted(recon["row_number"].to_pylist()) == sorted(prepared["row_number"].to_pylist())
    expected = {m["message_id"]: FINAL[m["outcome"]] for m in messages}
    got = dict(zip(recon["message_id"].to_pylist(), recon["final_status"].to_pylist(),
                   strict=True))
    assert got == expected

    found = table(campaign_env, "campaigns", "seeded-eums", "discrepancies").to_pylist()
    kinds: dict[str, list[dict]] = {}
    for row in found:
        kinds.setdefault(row["kind"], []).append(row)
    assert {r["key"] for r in kinds["charged_never_reported"]} == silent
    assert {r["key"] for r in kinds["report_for_unknown_message"]} == seeded
    assert all(r["count"] == 1 for r in kinds["report_for_unknown_message"])
    stats = kinds["statistics_mismatch"]
    assert len(stats) == 1 and "submitted: vendor 43, ours 40" in stats[0]["detail"]
    requests = len({m["message_id"][:15] for m in messages})  # one serial per request
    balance = kinds["balance_mismatch"]
    assert len(balance) == 1 and balance[0]["count"] == 2 * requests
    reported = pc.filter(recon["reports_seen"], pc.not_equal(recon["final_status"], "UNKNOWN"))
    assert pc.min(reported).as_py() >= 1


def test_reconcile_flags_seeded_discrepancies_chuanglan_pushed(
        campaign_env: Path, sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Reports only pushed, some twice and out of order, through the push receiver."""
    from tests.receiver.test_receiver import CONFIG, ThreadedReceiver, push_config

    config_path = tmp_path / "receiver.json"
    config_path.write_text(json.dumps(CONFIG))
    monkeypatch.setenv("SMS_RECEIVER_CONFIG", str(config_path))
    receiver = ThreadedReceiver(campaign_env).start()
    try:
        pushes = push_config(receiver, duplicate_report_rate=0.4, report_jitter_s=JITTER_S,
                             outcomes={"delivered": 0.65, "failed": 0.15, "silent": 0.2})
        pushes["chuanglan"]["simulation"] = {"stray_report_rate": 0.2, "overcharge_items": 2}
        sim.reset(**pushes)
        reports = load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")
        campaign = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
        only = {"conn_ids": ["sms_chuanglan"]}
        run_ok(reports, **only)  # the balance before the campaign
        run_ok(campaign, campaign_id="seeded-cl", conn_id="sms_chuanglan",
               recipients=str(SAMPLE), content=CONTENT)
        messages = sim.messages("chuanglan")
        seeded = strays(sim, "chuanglan")
        want = (len([m for m in messages if m["outcome"] != "silent"]) + len(seeded))
        deadline = time.monotonic() + 15
        time.sleep(JITTER_S)
        while True:  # every report pushed (the receiver lands each on arrival)
            run_ok(reports, **only)
            raw = table(campaign_env, "reports", "sms_chuanglan")
            got = 0 if raw is None else pc.count_distinct(raw["report_key"]).as_py()
            if got >= want or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        receiver.stop()
    assert got == want and raw.num_rows > want  # duplicates arrived, and are copies
    hours, ready_at = _window_hours(campaign_env, "seeded-cl", time.time())
    time.sleep(max(0.0, ready_at - time.time()))
    monkeypatch.setenv("SMS_FINAL_WINDOW_HOURS", f"{hours:.9f}")
    reconcile = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    run_ok(reconcile, campaign_id="seeded-cl")

    recon = table(campaign_env, "campaigns", "seeded-cl", "reconciliation")
    prepared = table(campaign_env, "campaigns", "seeded-cl", "prepared")
    assert recon.num_rows == prepared.num_rows == len(messages) == 40
    assert pc.count_distinct(recon["row_number"]).as_py() == 40
    expected = {m["mobile"]: FINAL[m["outcome"]] for m in messages}
    got_final = dict(zip(recon["mobile"].to_pylist(), recon["final_status"].to_pylist(),
                         strict=True))
    assert got_final == expected

    found = table(campaign_env, "campaigns", "seeded-cl", "discrepancies").to_pylist()
    kinds: dict[str, list[dict]] = {}
    for row in found:
        kinds.setdefault(row["kind"], []).append(row)
    silent = [m for m in messages if m["outcome"] == "silent"]
    assert len(kinds["charged_never_reported"]) == len(silent) > 0
    unknown = kinds["report_for_unknown_message"]
    assert len(unknown) == len(seeded) > 0
    assert {r["key"].split("/")[0] for r in unknown} == {s["batch_id"] for s in seeded}
    assert all(r["count"] == 1 for r in unknown)  # a duplicated push is still one report
    requests = len({m["batch_id"] for m in messages})
    balance = kinds["balance_mismatch"]
    assert len(balance) == 1 and balance[0]["count"] == 2 * requests


def test_reconcile_prices_a_money_balance_and_writes_the_index(
        campaign_env: Path, sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """EIMS keeps its balance in money: the fall is priced against our charge items at the
    price file's price, and the vendor taking two items more per request shows in money."""
    from decimal import Decimal

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps([{"conn_id": "sms_eims", "price_per_item": "0.05",
                                   "currency": "CNY", "valid_from": "2026-01-01"}]))
    monkeypatch.setenv("SMS_PRICES_FILE", str(prices))
    sim.reset(simulation={"outcomes": {"delivered": 1.0}},
              eims={"simulation": {"overcharge_items": 2}})
    reports = load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")
    campaign = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    only = {"conn_ids": ["sms_eims"]}
    run_ok(reports, **only)  # the balance before the campaign
    run = run_ok(campaign, campaign_id="priced-eims", conn_id="sms_eims",
                 recipients=str(SAMPLE), content=CONTENT)
    check = next(ti for ti in run.get_task_instances() if ti.task_id == "check_balance")
    assert check.state == "success"
    time.sleep(1.5)
    run_ok(reports, **only)
    reconcile = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    run_ok(reconcile, campaign_id="priced-eims")

    recon = table(campaign_env, "campaigns", "priced-eims", "reconciliation")
    assert set(recon["price_per_item"].to_pylist()) == {Decimal("0.05")}
    items = pc.sum(recon["charge_items"]).as_py()
    [overview] = table(campaign_env, "campaigns", "priced-eims", "overview").to_pylist()
    assert overview["spend"] == Decimal("0.05") * items and overview["balance_unit"] == "money"
    subs = table(campaign_env, "campaigns", "priced-eims", "submissions")
    requests = len(set(zip(subs["shard"].to_pylist(), subs["chunk"].to_pylist(), strict=True)))
    [flag] = [d for d in table(campaign_env, "campaigns", "priced-eims",
                               "discrepancies").to_pylist() if d["kind"] == "balance_mismatch"]
    assert flag["amount"] == Decimal("0.10") * requests and flag["count"] == 2 * requests
    index = (campaign_env / "campaigns" / "index.html").read_text()
    assert 'href="priced-eims/report.html"' in index
    shared = ds.dataset(campaign_env / "reconciliation", partitioning="hive").to_table()
    assert set(shared["vendor"].to_pylist()) == {"eims"} and shared.num_rows == recon.num_rows
