"""A dry run's submissions and a campaign's summary, without Airflow (real files)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sms_provider.data.dry_run import dry_run_submissions
from sms_provider.data.prepare import PrepareSettings, prepare, read_shard
from sms_provider.data.schemas import SUBMISSION_SCHEMA
from sms_provider.data.send import plan_chunks
from sms_provider.data.storage import DataRoot
from sms_provider.data.summary import campaign_summary
from sms_provider.models import SubmissionStatus
from sms_provider.vendors.profiles import PROFILES


def prepared(tmp_path: Path, vendor: str = "eums") -> tuple[DataRoot, pa.Table]:
    root = DataRoot(tmp_path / "data")
    csv = tmp_path / "recipients.csv"
    lines = ["mobile,name", *(f"1380013{i:04d},n{i % 3}" for i in range(25)), "12345,bad"]
    csv.write_text("\n".join(lines) + "\n")
    summary = prepare(root, str(csv), PrepareSettings("c1", vendor, "【Shop】hi {name}"))
    assert summary.shards == [0]
    return root, read_shard(root, "c1", 0)


def test_a_dry_run_plans_each_recipient_as_the_send_would(tmp_path) -> None:
    _, table = prepared(tmp_path)
    profile = PROFILES["eums"]
    args = dict(campaign_id="c1", shard=0, max_batch=4,
                personalised=profile.personalised_batches,
                custom_id_scope=profile.custom_id_scope.value)
    rows = dry_run_submissions(table, conn_id="sms_eums", vendor="eums", **args)
    assert rows.schema == SUBMISSION_SCHEMA and rows.num_rows == table.num_rows == 25
    assert set(rows["status"].to_pylist()) == {SubmissionStatus.DRY_RUN.value} == {"dry_run"}
    assert set(rows["description"].to_pylist()) == {"dry run: not sent"}
    assert rows["message_id"].null_count == 25 and rows["submitted_at"].null_count == 25
    chunks = plan_chunks(table, **args)
    assert rows["chunk"].to_pylist() == [c.index for c in chunks for _ in range(len(c))]
    assert rows["custom_id"].to_pylist() == [i for c in chunks for i in c.custom_ids]
    by_row = dict(zip(table["row_number"].to_pylist(), table["charge_items"].to_pylist(),
                      strict=True))
    assert rows["charge_items"].to_pylist() == [by_row[r] for r in rows["row_number"].to_pylist()]
    assert sorted(rows["mobile"].to_pylist()) == sorted(table["mobile"].to_pylist())
    empty = dry_run_submissions(table.slice(0, 0), conn_id="x", vendor="eums", **args)
    assert empty.num_rows == 0 and empty.schema == SUBMISSION_SCHEMA


def test_the_summary_counts_every_dataset_and_each_status(tmp_path) -> None:
    root, table = prepared(tmp_path)
    before = campaign_summary(root, "c1")
    assert (before["prepared"], before["rejected"], before["submissions"]) == (25, 1, 0)
    assert before["input_rows"] == 26 and "by_status" not in before
    rows = dry_run_submissions(table, campaign_id="c1", conn_id="sms_eums", vendor="eums",
                               shard=0, max_batch=10, personalised=False,
                               custom_id_scope="request")
    root.write_table(rows, *root.campaign("c1", "submissions", "part-00000.parquet"))
    after = campaign_summary(root, "c1")
    assert after["submissions"] == 25 and after["by_status"] == {"dry_run": 25}
    assert after["submissions_path"] == root.path(*root.campaign("c1", "submissions"))
