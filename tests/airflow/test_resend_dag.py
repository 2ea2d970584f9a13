"""Resending failures, run for real (``dag.test()``): a campaign through Emay IMS with a
seeded failure share, its reports and reconciliation, then ``sms_resend`` through EIMS
(whose reports are queried by message id: the resent ones must be found).
Across the simulator's vendors each valid recipient arrives once per attempt; only
carrier and vendor failures go again (never invalid numbers, blacklisted numbers or
opt-outs); a second run sends nothing; reconciliation accounts for every attempt."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from sms_provider.data.schemas import SUPPRESSION_SCHEMA
from sms_provider.data.storage import DataRoot
from sms_provider.vendors.profiles import profile_of
from tests.airflow.test_failover_dag import dataset, e164_of, reconcile, run, states
from tests.airflow_harness import ROOT, load_dag
from tests.simulator_harness import SimulatorProcess

HALF_FAIL = {"simulation": {"outcomes": {"delivered": 0.5, "failed": 0.5, "silent": 0.0}}}
ALL_DELIVER = {"simulation": {"outcomes": {"delivered": 1.0, "failed": 0.0, "silent": 0.0}}}


def resend(**conf):
    dag = load_dag(ROOT / "dags" / "sms_resend.py", "sms_resend")
    return dag.test(run_conf=conf)


def suppress(root: Path, e164: str) -> None:
    """An opt-out that arrived after the campaign: the number is on the list now."""
    DataRoot(str(root)).write_table(pa.table({
        "e164": [e164], "reason": ["opt_out: TD"], "conn_id": ["sms_emay_ims"],
        "added_at": pa.array([datetime.now(UTC)], pa.timestamp("ms", tz="UTC"))},
        schema=SUPPRESSION_SCHEMA), "suppression", "part-test.parquet")


def test_a_resend_sends_the_retry_worthy_failures_once_through_another_connection(
        campaign_env: Path, sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    sim.reset(emay_ims=HALF_FAIL, eims=ALL_DELIVER)
    dr = run(campaign_id="rs-1", conn_id="sms_emay_ims")
    assert dr.state == "success", states(dr)
    # a resend before the campaign is reconciled has nothing to go by
    early = resend(campaign_id="rs-1", conn_id="sms_eims")
    assert early.state == "failed" and states(early)["select"] == "failed"
    out = capfd.readouterr()
    assert "run sms_reconcile for it first" in out.out + out.err
    first = reconcile(campaign_env, "rs-1", ["sms_emay_ims"], monkeypatch)
    profile = profile_of("emay_ims")
    failed = [r for r in first.to_pylist() if r["final_status"] == "FAILED"]
    by_class = Counter(profile.failure_class(r["reason"].split(": ")[0]).value
                       for r in failed)
    assert by_class["invalid_number"] + by_class["blacklisted"] > 0, by_class
    worthy = [r for r in failed
              if profile.failure_class(r["reason"].split(": ")[0]).retry_worthy]
    assert len(worthy) >= 3, by_class
    prepared = {r["row_number"]: r for r in dataset(campaign_env, "rs-1", "prepared").to_pylist()}
    opted_out = worthy[0]["row_number"]
    suppress(campaign_env, prepared[opted_out]["e164"])
    expected = {r["row_number"] for r in worthy} - {opted_out}

    dr = resend(campaign_id="rs-1", conn_id="sms_eims", statuses=["FAILED"])
    assert dr.state == "success", states(dr)
    # every valid recipient once in attempt 1; the resent ones once more, through EIMS
    ims, eims = sim.messages("emay_ims"), sim.messages("eims")
    assert Counter(e164_of(m) for m in ims) == Counter(r["e164"] for r in prepared.values())
    assert sorted(e164_of(m) for m in eims) == sorted(prepared[n]["e164"] for n in expected)
    assert len(sim.messages()) == len(ims) + len(eims)
    assert {m["mobile"][:2] for m in eims} == {"86"}  # EIMS's own number format
    attempt = campaign_env / "campaigns" / "rs-1" / "attempt-2"
    subs = dataset(campaign_env, "rs-1/attempt-2", "submissions")
    assert set(subs["row_number"].to_pylist()) == expected
    assert set(subs["attempt"].to_pylist()) == {2}
    earlier = {r["row_number"]: r["message_id"] for r in first.to_pylist()}
    assert all(earlier[n] == previous for n, previous in zip(
        subs["row_number"].to_pylist(), subs["previous_message_id"].to_pylist(), strict=True))
    # what was not resent, each with why: prepared + rejected = the campaign's recipients
    skipped = {r["row_number"]: r["reason"] for r in
               dataset(campaign_env, "rs-1/attempt-2", "rejected").to_pylist()}
    assert len(skipped) + len(expected) == len(prepared)
    assert skipped[opted_out] == "suppressed"
    for r in failed:
        cls = profile.failure_class(r["reason"].split(": ")[0])
        if cls.never_resent:
            assert skipped[r["row_number"]] == cls.value
        elif not cls.retry_worthy:
            assert skipped[r["row_number"]] == "not_retry_worthy"
    assert Counter(skipped.values())["delivered"] == sum(
        r["final_status"] == "DELIVERED" for r in first.to_pylist())

    # the same resend again sends nothing; another connection for it is refused
    again = resend(campaign_id="rs-1", conn_id="sms_eims", statuses=["FAILED"])
    assert again.state == "success", states(again)
    assert len(sim.messages()) == len(ims) + len(eims)
    other = resend(campaign_id="rs-1", conn_id="sms_chuanglan")
    assert other.state == "failed" and states(other)["select"] == "failed"
    assert "needs the next attempt number (3)" in "".join(capfd.readouterr())
    assert len(sim.messages()) == len(ims) + len(eims)

    # reconciliation follows every attempt
    reconcile(campaign_env, "rs-1", ["sms_emay_ims", "sms_eims"], monkeypatch)
    recon2 = dataset(campaign_env, "rs-1/attempt-2", "reconciliation")
    assert recon2.num_rows == len(expected)
    assert set(recon2["final_status"].to_pylist()) == {"DELIVERED"}
    final = {r["row_number"]: r for r in dataset(campaign_env, "rs-1", "final").to_pylist()}
    assert set(final) == set(prepared)
    for number, row in final.items():
        before = next(r for r in first.to_pylist() if r["row_number"] == number)
        if number in expected:
            assert (row["final_status"], row["attempts"], row["delivered_attempt"],
                    row["conn_id"]) == ("DELIVERED", 2, 2, "sms_eims")
            assert row["charge_items_per_attempt"][1] >= 1
        else:
            assert row["final_status"] == before["final_status"]
            assert row["attempts"] == 1 and row["charge_items_per_attempt"][1] == 0
    attempts = dataset(campaign_env, "rs-1", "attempts")
    assert Counter(attempts["attempt"].to_pylist()) == {1: len(prepared), 2: len(expected)}
    html = (campaign_env / "campaigns" / "rs-1" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Attempts</h2>" in html
    assert f"The resends recovered <strong>{len(expected)}</strong>" in html
    assert (attempt / "report.html").exists()
