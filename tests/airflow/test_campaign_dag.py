"""The campaign DAG run for real (``dag.test()``) against the simulator."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tests.airflow_harness import CONN_IDS, ROOT, load_dag
from tests.simulator_harness import SimulatorProcess

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"
CONTENT = "【Shop】Hi {name}, your code is {code}"
#: every vendor's default connection, from the profiles (a new vendor runs here too)
VENDOR_CONNS = CONN_IDS


@pytest.fixture
def campaign_dag():
    """A fresh DAG object per test: ``dag.test(run_conf=...)`` leaves the conf in the
    DAG's params, which would leak into the next test's run."""
    return load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")


def run(dag, **conf):
    conf = {"recipients": str(SAMPLE), "content": CONTENT, **conf}
    return dag.test(run_conf=conf)


def output(capfd) -> str:
    """Task logs go to the process's stdout/stderr, not to pytest's log capture."""
    captured = capfd.readouterr()
    return captured.out + captured.err


def states(dr) -> dict[str, str]:
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
            for ti in dr.get_task_instances()}


def dataset(root: Path, campaign: str, name: str):
    return ds.dataset(root / "campaigns" / campaign / name).to_table()


@pytest.mark.parametrize("vendor", sorted(VENDOR_CONNS))
def test_campaign_sends_every_valid_recipient_once(vendor, campaign_dag, campaign_env: Path,
                                                   sim: SimulatorProcess) -> None:
    dr = run(campaign_dag, campaign_id=f"spring-{vendor}", conn_id=VENDOR_CONNS[vendor])
    assert dr.state == "success", states(dr)
    prepared = dataset(campaign_env, f"spring-{vendor}", "prepared")
    rejected = dataset(campaign_env, f"spring-{vendor}", "rejected")
    submissions = dataset(campaign_env, f"spring-{vendor}", "submissions")
    assert prepared.num_rows + rejected.num_rows == 46  # every input row accounted for
    assert prepared.num_rows == 40 and submissions.num_rows == 40
    assert set(submissions["status"].to_pylist()) == {"submitted"}
    received = Counter(m["mobile"] for m in sim.messages(vendor))
    assert set(received.values()) == {1}
    assert set(received) == set(prepared["mobile"].to_pylist())
    if vendor == "emay_fms":
        assert {m["template_id"] for m in sim.messages(vendor)} != {None}
    else:
        texts = {m["content"] for m in sim.messages(vendor)}
        assert "【Shop】Hi Liu0, your code is 100000" in texts


def test_rerunning_the_whole_campaign_sends_nothing_again(campaign_dag, campaign_env,
                                                          sim) -> None:
    first = run(campaign_dag, campaign_id="rerun-1", conn_id="sms_eums")
    assert first.state == "success"
    before = dataset(campaign_env, "rerun-1", "submissions").sort_by("row_number")
    second = run(campaign_dag, campaign_id="rerun-1", conn_id="sms_eums")
    assert second.state == "success"
    assert len(sim.messages("eums")) == 40
    after = dataset(campaign_env, "rerun-1", "submissions").sort_by("row_number")
    assert after.equals(before)


def test_dry_run_sends_nothing(campaign_dag, campaign_env, sim) -> None:
    dr = run(campaign_dag, campaign_id="dry-1", conn_id="sms_chuanglan", dry_run=True)
    assert dr.state == "success"
    assert sim.messages() == []
    submissions = dataset(campaign_env, "dry-1", "submissions")
    assert submissions.num_rows == 40 and set(submissions["status"].to_pylist()) == {"dry_run"}


def test_balance_too_low_fails_early_with_the_figures(campaign_dag, campaign_env, sim,
                                                      capfd) -> None:
    sim.reset(eums={"balance": 10})
    dr = run(campaign_dag, campaign_id="poor-1", conn_id="sms_eums")
    assert dr.state == "failed"
    st = states(dr)
    assert st["prepare"] == "success" and st["check_balance"] == "failed"
    assert sim.messages() == []
    assert "cannot cover the estimate of 40 charge items" in output(capfd)


def test_fms_waits_deferred_for_template_approval(campaign_dag, campaign_env, sim) -> None:
    sim.reset(emay_fms={"simulation": {"template_decision_s": 1.0}})
    dr = run(campaign_dag, campaign_id="fms-wait", conn_id="sms_emay_fms")
    assert dr.state == "success", states(dr)
    msgs = sim.messages("emay_fms")
    assert len(msgs) == 40
    by_mobile = {m["mobile"]: m for m in msgs}
    prepared = dataset(campaign_env, "fms-wait", "prepared").to_pylist()
    first = by_mobile[prepared[0]["mobile"]]
    assert first["variables"] == json.loads(prepared[0]["variables"])


def test_fms_template_rejected_by_every_carrier_fails(campaign_dag, campaign_env, sim,
                                                      capfd) -> None:
    sim.reset(emay_fms={"simulation": {"template_rejection_rate": 1.0}})
    dr = run(campaign_dag, campaign_id="fms-rejected", conn_id="sms_emay_fms")
    assert dr.state == "failed"
    assert states(dr)["fms_template"] == "failed"
    assert "approved by no carrier" in output(capfd)
    assert sim.messages() == []


def test_a_bad_recipient_file_is_a_clear_error(campaign_dag, campaign_env, tmp_path,
                                               capfd) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,name\n13800138000,Li\n", encoding="utf-8")
    dr = run(campaign_dag, campaign_id="bad-file", conn_id="sms_eums", recipients=str(bad))
    assert dr.state == "failed"
    text = output(capfd)
    assert "mobile" in text and "bad.csv" in text


@pytest.mark.parametrize(("name", "data", "says"), [
    ("quote.csv", b'"mobile,name\n13800138000,a\n', "quote"),
    ("wide.csv", b"mobile," + b"x" * (200 << 10) + b"\n13800138000,a\n", "header cell"),
    ("dup.csv", b"mobile,name,code,name\n13800138000,a,1,b\n", "column 'name'"),
])
def test_bad_input_fails_prepare_at_once_without_retries(campaign_dag, campaign_env, tmp_path,
                                                         capfd, name, data, says) -> None:
    bad = tmp_path / name
    bad.write_bytes(data)
    dr = run(campaign_dag, campaign_id="bad-input", conn_id="sms_eums", recipients=str(bad))
    assert dr.state == "failed"
    prepare = next(ti for ti in dr.get_task_instances() if ti.task_id == "prepare")
    assert prepare.state == "failed" and prepare.try_number == 1  # not up_for_retry
    text = output(capfd)
    assert name in text and says in text
    assert "_csv.Error" not in text and "KeyError" not in text


def write_campaign(folder: Path, name: str, **fields) -> Path:
    data = {"campaign_id": name, "recipients": str(SAMPLE), "conn_id": "sms_eums",
            "content": CONTENT, "schedule": "2026-01-01T09:00:00+08:00", **fields}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_campaign_files_become_dags_and_a_broken_one_is_an_import_error(
        tmp_path, monkeypatch, airflow_db) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "campaigns"
    folder.mkdir()
    write_campaign(folder, "weekly", schedule="0 9 * * 1")
    write_campaign(folder, "oneoff")
    write_campaign(folder, "broken", schedule="every monday")
    monkeypatch.setenv("SMS_CAMPAIGNS_DIR", str(folder))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert {"sms_campaign", "sms_campaign__weekly", "sms_campaign__oneoff"} <= set(bag.dags)
    errors = "\n".join(bag.import_errors.values())
    assert "broken.json" in errors and "field 'schedule'" in errors
    assert bag.dags["sms_campaign__weekly"].params["campaign_id"] == "weekly"


def test_scheduled_campaign_waits_out_quiet_hours(tmp_path, campaign_env, sim,
                                                  monkeypatch) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(seconds=4)
    folder = tmp_path / "campaigns"
    folder.mkdir()
    write_campaign(folder, "quiet", quiet_hours={
        "start": start.strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S"),
        "timezone": "UTC"})
    monkeypatch.setenv("SMS_CAMPAIGNS_DIR", str(folder))
    dag = load_dag(ROOT / "dags" / "sms_scheduled_campaigns.py", "sms_campaign__quiet")
    dr = dag.test()
    assert dr.state == "success", states(dr)
    sent = sim.messages("eums")
    assert len(sent) == 40
    first_sent = datetime.fromtimestamp(min(m["submitted_at"] for m in sent), UTC)
    assert first_sent >= end.replace(microsecond=0)


def test_reasons_of_rejected_rows(campaign_dag, campaign_env) -> None:
    dr = run(campaign_dag, campaign_id="reasons", conn_id="sms_eums")
    assert dr.state == "success"
    rejected = dataset(campaign_env, "reasons", "rejected")
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(
        rejected["reason"]).flatten()], strict=True))
    assert counts == {"not_a_number": 1, "invalid_number": 1, "not_mobile": 2, "duplicate": 1,
                      "missing_value": 1}


def test_dag_files_parse_without_the_data_plane() -> None:
    """Scheduled campaign DAGs must stay cheap to parse: no pandas, pyarrow, phonenumbers."""
    import subprocess
    import sys

    code = ("import runpy, sys\n"
            "for f in ('sms_campaign', 'sms_scheduled_campaigns', 'sms_reports', "
            "'sms_reconcile'):\n"
            f"    runpy.run_path({str(ROOT / 'dags')!r} + '/' + f + '.py')\n"
            "print(sorted(m for m in ('pandas', 'pyarrow', 'phonenumbers') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ,
                                          "PYTHONPATH": str(ROOT / "plugins")})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_partial_prepare_fails_the_send_without_retries(campaign_env: Path, sim,
                                                          tmp_path: Path, monkeypatch) -> None:
    """A prepare that left its marker behind fails the send at once (a retry would find
    the same marker) and nothing is sent."""
    from sms_provider.data.completion import mark_unfinished
    from sms_provider.data.storage import DataRoot

    mark_unfinished(DataRoot(campaign_env), "half")
    dags = tmp_path / "dags"  # dag.test() runs only DAGs of a bundle: a folder of its own
    dags.mkdir()
    from airflow import settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))  # where the local bundle looks
    dag_file = dags / "send_after_partial_prepare.py"
    dag_file.write_text(
        "from datetime import UTC, datetime, timedelta\n"
        "from airflow.sdk import DAG\n"
        "from sms_provider.operators.campaign import SendShardOperator\n"
        "with DAG('send_after_partial_prepare', schedule=None,\n"
        "         start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:\n"
        "    SendShardOperator(task_id='send', campaign_id='half', sms_conn_id='sms_eums',\n"
        "                      shard=0, retries=3, retry_delay=timedelta(seconds=0))\n")
    dr = load_dag(dag_file, "send_after_partial_prepare").test()
    [ti] = dr.get_task_instances()
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert sim.messages("eums") == []
