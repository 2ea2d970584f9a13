"""Carriers: the vectorised lookup against ``phonenumbers.carrier.name_for_number`` per row,
prepare writing it, and reconciliation breaking delivery down by it."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import phonenumbers
import pyarrow as pa
import pytest

from sms_provider.data.carriers import CARRIERS, carrier_baseline, carrier_column
from sms_provider.data.prepare import PrepareSettings, prepare
from sms_provider.data.reconcile import reconcile_campaign
from sms_provider.data.schemas import PREPARED_SCHEMA, SUBMISSION_SCHEMA
from sms_provider.data.storage import DataRoot
from tests.data.test_reconcile import DELIVERED, FAILED, NOW, OLD, read, report, write_reports


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "data")


def recipients(tmp_path: Path, count: int = 4000) -> Path:
    """Random numbers over every mainland mobile range, and mobiles of other countries."""
    rng = np.random.default_rng(7)
    numbers = [str(n) for n in rng.integers(13_000_000_000, 19_999_999_999, count)]
    for region in ("US", "GB", "HK", "SG", "JP", "DE"):
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        numbers.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    path = tmp_path / "recipients.csv"
    path.write_text("mobile,name\n" + "".join(f"{n},x\n" for n in numbers))
    return path


def test_prepared_carrier_matches_phonenumbers_per_row(root: DataRoot, tmp_path: Path) -> None:
    prepare(root, str(recipients(tmp_path)), PrepareSettings(
        campaign_id="c", vendor="emay_ims", content="【Shop】hi {name}"))
    table = read(root, "c", "prepared")
    assert table.schema.field("carrier").type == pa.string()
    expected = [carrier_baseline(e) for e in table["e164"].to_pylist()]
    assert table["carrier"].to_pylist() == expected
    seen = collections.Counter(expected)
    assert set(seen) == set(CARRIERS), seen  # all four, abroad among "other"
    assert table.num_rows > 1000


def test_carrier_column_on_unique_prefixes_scales_to_many_rows() -> None:
    # a million rows of a few hundred prefixes: the same answer as per prefix, per row
    rng = np.random.default_rng(3)
    prefixes = [f"86{p}" for p in (130, 133, 134, 138, 147, 166, 170, 176, 180, 189, 192, 199)]
    rows = [prefixes[i] + f"{n:08d}" for i, n in zip(rng.integers(0, len(prefixes), 1_000_000),
                                                      rng.integers(0, 10**8, 1_000_000),
                                                      strict=True)]
    got = carrier_column(pa.array(rows)).to_pylist()
    sample = rng.integers(0, len(rows), 2000)
    mismatched = [rows[i] for i in sample
                  if phonenumbers.is_valid_number(phonenumbers.parse("+" + rows[i]))
                  and got[i] != carrier_baseline(rows[i])]
    assert mismatched == []


def test_reconciliation_breaks_delivery_down_by_carrier(root: DataRoot) -> None:
    conn, vendor = "sms_eums", "eums"
    # 138: China Mobile, 130: Unicom, 133: Telecom, 192: Broadnet (other)
    prefixes = ["138", "130", "133", "192"]
    n = 40
    mobiles = [f"{prefixes[i % 4]}0013{i:04d}" for i in range(1, n + 1)]
    root.write_table(pa.Table.from_pylist([{
        "row_number": i, "mobile": m, "e164": "86" + m, "content": "【Shop】hello",
        "charge_items": 1, "custom_id": f"cafe{i}", "shard": 0}   # carrier left to reconcile
        for i, m in enumerate(mobiles, 1)], schema=PREPARED_SCHEMA),
        *root.campaign("a", "prepared", "part-00000.parquet"))
    root.write_table(pa.Table.from_pylist([], schema=pa.schema([
        ("row_number", pa.int64()), ("raw_value", pa.string()), ("reason", pa.string()),
        ("detail", pa.string())])), *root.campaign("a", "rejected", "part-00000.parquet"))
    root.write_table(pa.Table.from_pylist([{
        "campaign_id": "a", "conn_id": conn, "vendor": vendor, "shard": 0, "chunk": 0,
        "row_number": i, "mobile": m, "message_id": f"m{i}", "charge_items": 1,
        "status": "submitted", "submitted_at": OLD} for i, m in enumerate(mobiles, 1)],
        schema=SUBMISSION_SCHEMA), *root.campaign("a", "submissions", "part-00000.parquet"))
    # Unicom fails every third message, the others deliver
    outcome = {i: FAILED if mobiles[i - 1].startswith("130") and i % 3 == 0 else DELIVERED
               for i in range(1, n + 1)}
    write_reports(root, conn, vendor, [
        report(f"m{i}", m, outcome[i], OLD, description="blocked" if outcome[i] == FAILED
               else "") for i, m in enumerate(mobiles, 1)], OLD)
    result = reconcile_campaign(root, "a", now=NOW)

    expected: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for i, m in enumerate(mobiles, 1):
        c = carrier_baseline("86" + m)
        expected[c]["sent"] += 1
        expected[c]["delivered" if outcome[i] == DELIVERED else "failed"] += 1
    rows = {r["carrier"]: r for r in read(root, "a", "carriers").to_pylist()}
    assert set(rows) == set(expected)
    for name, counts in expected.items():
        assert (rows[name]["sent"], rows[name]["delivered"], rows[name]["failed"]) == (
            counts["sent"], counts["delivered"], counts["failed"]), name
        assert rows[name]["delivery_rate"] == pytest.approx(counts["delivered"] / counts["sent"])
    assert rows["China Unicom"]["top_failure_reason"].startswith("UNDELIV: blocked")
    assert rows["China Mobile"]["top_failure_reason"] is None
    recon = read(root, "a", "reconciliation")
    assert recon["carrier"].to_pylist() == [carrier_baseline("86" + m) for m in mobiles]
    assert {c["carrier"] for c in result.carriers} == set(expected)
    html = Path(result.paths["report_html"]).read_text()
    assert "Delivery rate per carrier" in html and "China Unicom" in html
