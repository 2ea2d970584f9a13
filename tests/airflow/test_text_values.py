"""Text stays text through the DAGs, run for real (``dag.test()``) against the simulator.

Ids, contents, paths and column names that look like numbers, lists or None
(``20261207``, ``0086``, ``1e5``, ``[1]``, ``None``, a 20-digit id) must reach
every task, the vendor, Parquet and XCom as the exact strings given: through the
``sms_campaign`` conf, the campaign files, the ``sms_reports`` and
``sms_reconcile`` params, and the XComs between tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from sms_provider.data.content import ContentTemplate
from tests.airflow_harness import ROOT, connection_env, load_dag
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess

SAMPLE = ROOT / "include" / "recipients" / "sample.csv"
FMS_CONTENT = "【Shop】Hi {name}, your code is {code}"
#: (campaign id, text for every other field); campaign ids allow fewer characters
CASES = [
    ("20261207", "20261207"),
    ("0086", "0086"),
    ("1e5", "1e5"),
    ("None", "None"),
    ("1_000", "[1]"),
    ("True", "True"),
    ("0x1F", "1.50"),
    ("17966241338980000001", "17966241338980000001"),
]
IDS = [text for _, text in CASES]


def states(dr) -> dict[str, str]:
    return {ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
            for ti in dr.get_task_instances()}


def xcoms(dr) -> dict[tuple[str, int, str], Any]:
    """Every XCom of the run, decoded as the Task SDK decodes it for the next task.

    (Not ``XComModel.deserialize_value``: it runs a stored string through
    ``json.loads`` once more, so it shows the text ``1e5`` as 100000.0.)
    """
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dr.dag_id,
                                               XComModel.run_id == dr.run_id).all()
        return {(r.task_id, r.map_index, r.key): deserialize(r.value) for r in rows}


def only_text_and_counts(value: Any) -> bool:
    """No float anywhere: a number that is not a whole count means text was converted."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and only_text_and_counts(v) for k, v in value.items())
    if isinstance(value, list):
        return all(only_text_and_counts(v) for v in value)
    return value is None or isinstance(value, str | int)


def dataset(root: Path, *parts: str):
    return ds.dataset(root.joinpath(*parts), format="parquet").to_table()


def recipients_as(folder: Path, name: str, column: str) -> Path:
    """The sample recipients (46 rows; 41 valid for a content without placeholders) in a
    file called ``name`` whose mobile column is called ``column``."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("mobile,")
    path = folder / name
    path.write_text("\n".join([column + lines[0].removeprefix("mobile"), *lines[1:]]) + "\n",
                    encoding="utf-8")
    return path


def connection_as(sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, conn_id: str,
                  vendor: str, extra: dict[str, Any] | None = None) -> None:
    """A connection called ``conn_id`` to the simulator's ``vendor``."""
    env = connection_env(sim, DEFAULT_CONFIG, {vendor: extra or {}})
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}",
                       env[f"AIRFLOW_CONN_SMS_{vendor.upper()}"])


def fms_client(sim: SimulatorProcess, mode: str = "normal"):
    return sim.client("emay_fms", mode=mode)


@pytest.mark.parametrize(("campaign_id", "value"), CASES, ids=IDS)
def test_every_param_and_xcom_keeps_the_text(campaign_id, value, campaign_env: Path,
                                             sim: SimulatorProcess, tmp_path, monkeypatch
                                             ) -> None:
    """One value as the recipients path (relative), the connection id, the content and
    the mobile column, a lookalike as the campaign id; then collect and reconcile it."""
    monkeypatch.chdir(tmp_path)
    recipients_as(tmp_path, value, value)
    connection_as(sim, monkeypatch, value, "eims")
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={"campaign_id": campaign_id, "recipients": value,
                            "conn_id": value, "content": value, "mobile_column": value,
                            "template_id": None, "dry_run": False})
    assert dr.state == "success", states(dr)

    sent = sim.messages("eims")
    prepared = dataset(campaign_env, "campaigns", campaign_id, "prepared")
    submissions = dataset(campaign_env, "campaigns", campaign_id, "submissions")
    assert len(sent) == prepared.num_rows == submissions.num_rows == 41
    assert {m["content"] for m in sent} == {value}
    assert set(submissions["campaign_id"].to_pylist()) == {campaign_id}
    assert set(submissions["conn_id"].to_pylist()) == {value}
    assert set(submissions["status"].to_pylist()) == {"submitted"}
    assert sorted(submissions["message_id"].to_pylist()) == sorted(m["message_id"]
                                                                   for m in sent)

    got = xcoms(dr)
    assert all(only_text_and_counts(v) for v in got.values()), got
    summary = got[("prepare", -1, "summary")]
    assert summary["prepared_path"].endswith(f"/campaigns/{campaign_id}/prepared")
    assert (summary["prepared"], summary["vendor"]) == (41, "eims")
    shards = got[("prepare", -1, "return_value")]
    assert shards == [{"shard": 0, "sms_conn_id": value}]
    assert got[("fms_template", -1, "return_value")] == ""
    assert got[("send", 0, "return_value")] == {"shard": 0, "submitted": 41}
    final = got[("summary", -1, "return_value")]
    assert (final["campaign_id"], final["submissions"], final["input_rows"]) == (
        campaign_id, 41, 46)

    reports = load_dag(ROOT / "dags" / "sms_reports.py", "sms_reports")
    run = reports.test(run_conf={"conn_ids": [value]})
    assert run.state == "success", states(run)
    [collected] = [v for (task, _, key), v in xcoms(run).items()
                   if task == "collect" and key == "return_value"]
    assert collected["conn_id"] == value and only_text_and_counts(collected)
    reported = dataset(campaign_env, "reports", value)
    assert collected["reports"]["rows"] == reported.num_rows > 0
    assert set(reported["message_id"].to_pylist()) <= {m["message_id"] for m in sent}

    reconcile = load_dag(ROOT / "dags" / "sms_reconcile.py", "sms_reconcile")
    run = reconcile.test(run_conf={"campaign_id": campaign_id, "final_window_hours": 72})
    assert run.state == "success", states(run)
    [result] = xcoms(run)[("reconcile", -1, "return_value")]
    assert result["campaign_id"] == campaign_id
    recon = dataset(campaign_env, "campaigns", campaign_id, "reconciliation")
    assert recon.num_rows == 41 and set(recon["message_id"].to_pylist()) == {
        m["message_id"] for m in sent}


@pytest.mark.parametrize("mode", ["normal", "secure"])
@pytest.mark.parametrize("given", [True, False], ids=["given", "registered"])
def test_a_20_digit_fms_template_id_reaches_the_send(mode, given, campaign_env, sim,
                                                     monkeypatch) -> None:
    """The platform's template ids are 20 digits; given in the conf, or registered by
    ``fms_template``, the send uses exactly that id, and the XCom holds it as text."""
    connection_as(sim, monkeypatch, "sms_emay_fms", "emay_fms", {"mode": mode})
    template_id = None
    if given:
        with fms_client(sim, mode) as client:
            template_id = client.register_template(
                ContentTemplate.parse(FMS_CONTENT).vendor_template()).template_id
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={"campaign_id": f"fms-{mode}", "recipients": str(SAMPLE),
                            "conn_id": "sms_emay_fms", "content": FMS_CONTENT,
                            "template_id": template_id})
    assert dr.state == "success", states(dr)
    used = xcoms(dr)[("fms_template", -1, "return_value")]
    assert isinstance(used, str) and len(used) == 20 and used.isdigit()
    assert used == template_id if given else int(used) > 2**63  # past int64, past float
    sent = sim.messages("emay_fms")
    assert len(sent) == 40 and {m["template_id"] for m in sent} == {used}
    submissions = dataset(campaign_env, "campaigns", f"fms-{mode}", "submissions")
    assert set(submissions["status"].to_pylist()) == {"submitted"}
    assert all(len(i) == 20 for i in submissions["message_id"].to_pylist())


@pytest.mark.parametrize("template_id", IDS)
def test_fms_template_ids_of_any_shape_reach_the_send(template_id, campaign_env, sim) -> None:
    """Older deployments issued other ids (the document shows ``125688``): a template
    the account has under a lookalike id is sent with exactly that id."""
    sim.reset(emay_fms={"templates": [{"id": template_id, "text": "【Shop】Hello"}]})
    dag = load_dag(ROOT / "dags" / "sms_campaign.py", "sms_campaign")
    dr = dag.test(run_conf={"campaign_id": "shapes", "recipients": str(SAMPLE),
                            "conn_id": "sms_emay_fms", "content": "【Shop】Hello",
                            "template_id": template_id})
    assert dr.state == "success", states(dr)
    assert xcoms(dr)[("fms_template", -1, "return_value")] == template_id
    sent = sim.messages("emay_fms")
    assert len(sent) == 41 and {m["template_id"] for m in sent} == {template_id}


@pytest.mark.parametrize(("campaign_id", "value", "dry_run"),
                         [("20261207", "0086", False), ("1e5", "None", True)],
                         ids=["20261207", "1e5-dry"])
def test_a_campaign_file_keeps_the_text(campaign_id, value, dry_run, campaign_env, sim,
                                        tmp_path, monkeypatch) -> None:
    """A one-off campaign file: its fields become the DAG's params, rendered as text."""
    sim.reset(emay_fms={"templates": [{"id": value, "text": "【Shop】Hello"}]})
    connection_as(sim, monkeypatch, value, "emay_fms")
    folder = tmp_path / "campaigns"
    folder.mkdir()
    recipients_as(folder, value, value)
    (folder / "c.json").write_text(json.dumps({
        "campaign_id": campaign_id, "recipients": value, "conn_id": value,
        "content": "【Shop】Hello", "mobile_column": value, "template_id": value,
        "dry_run": dry_run, "schedule": "2026-01-01T09:00:00+08:00"}), encoding="utf-8")
    monkeypatch.setenv("SMS_CAMPAIGNS_DIR", str(folder))
    dag = load_dag(ROOT / "dags" / "sms_scheduled_campaigns.py", f"sms_campaign__{campaign_id}")
    dr = dag.test()
    assert dr.state == "success", states(dr)
    got = xcoms(dr)
    assert got[("summary", -1, "return_value")]["campaign_id"] == campaign_id
    assert got[("fms_template", -1, "return_value")] == value
    submissions = dataset(campaign_env, "campaigns", campaign_id, "submissions")
    assert set(submissions["conn_id"].to_pylist()) == {value}
    sent = sim.messages("emay_fms")
    if dry_run:
        assert sent == [] and set(submissions["status"].to_pylist()) == {"dry_run"}
        assert got[("send", 0, "return_value")] == {"shard": 0, "dry_run": 41}
    else:
        assert len(sent) == 41 and {m["template_id"] for m in sent} == {value}
