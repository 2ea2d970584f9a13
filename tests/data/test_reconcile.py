"""Reconciliation on hand-built campaign and delivery data (no simulator needed).

Each test writes ``prepared/``, ``rejected/`` and ``submissions/`` with the
dataset schemas and reports through ``reports.report_table``/``append`` (the
same path pulls and pushes take), then checks what ``reconcile_campaign``
wrote.
"""

from __future__ import annotations

import ast
import html.parser
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from sms_provider.data import reconcile as reconcile_package
from sms_provider.data import reports as report_store
from sms_provider.data.reconcile import (
    DISCREPANCY_SCHEMA,
    SUMMARY_SCHEMA,
    AccountCache,
    reconcile_all,
    reconcile_campaign,
)
from sms_provider.data.reconcile import writer as reconcile_writer
from sms_provider.data.schemas import (
    BALANCE_SCHEMA,
    DAILY_STATISTIC_SCHEMA,
    PREPARED_SCHEMA,
    RECONCILIATION_SCHEMA,
    REJECTED_SCHEMA,
    SUBMISSION_SCHEMA,
)
from sms_provider.data.storage import DataRoot
from sms_provider.models import DeliveryReport, DeliveryStatus

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RECENT = NOW - timedelta(hours=2)      # still inside the 72 h window
OLD = NOW - timedelta(hours=100)       # past it
CHINA = timedelta(hours=8)

DELIVERED, FAILED = DeliveryStatus.DELIVERED, DeliveryStatus.FAILED
PENDING, UNKNOWN = DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN


# --- building datasets ------------------------------------------------------------------

def mobile_for(vendor: str, i: int) -> str:
    number = f"1380013{i:04d}"
    return {"emay_ims": "0086" + number, "eims": "86" + number}.get(vendor, number)


def write_campaign(root: DataRoot, campaign_id: str, vendor: str, conn_id: str,
                   subs: list[dict[str, Any]], *, prepared: int | None = None,
                   invalid: int = 0, shard_files: int = 1) -> None:
    """``subs``: per submission row (row_number given), overrides of the defaults.

    ``prepared`` recipients (default: one per submission) get rows 1..n; rows
    without a submission are prepared but not sent yet.
    """
    n = prepared if prepared is not None else len(subs)
    root.write_table(pa.Table.from_pylist([{
        "row_number": i, "mobile": mobile_for(vendor, i), "e164": "86" + f"1380013{i:04d}",
        "content": "【Shop】hello", "variables": None, "charge_items": 2 if i % 5 == 0 else 1,
        "custom_id": f"cafe{i:04d}", "shard": 0} for i in range(1, n + 1)],
        schema=PREPARED_SCHEMA), *root.campaign(campaign_id, "prepared", "part-00000.parquet"))
    root.write_table(pa.Table.from_pylist([{
        "row_number": n + i, "raw_value": "1.38E+10", "reason": "mangled_number",
        "detail": ""} for i in range(1, invalid + 1)], schema=REJECTED_SCHEMA),
        *root.campaign(campaign_id, "rejected", "part-00000.parquet"))
    rows = [submission(campaign_id, vendor, conn_id, **s) for s in subs]
    step = -(-len(rows) // shard_files) if rows else 1
    for k in range(shard_files):
        write_submissions(root, campaign_id, rows[k * step:(k + 1) * step], shard=k)


def submission(campaign_id: str, vendor: str, conn_id: str, *, row_number: int,
               **overrides: Any) -> dict[str, Any]:
    row = {"campaign_id": campaign_id, "conn_id": conn_id, "vendor": vendor, "shard": 0,
           "chunk": 0, "row_number": row_number, "mobile": mobile_for(vendor, row_number),
           "message_id": f"{campaign_id}-m{row_number}", "custom_id": f"cafe{row_number:04d}",
           "charge_items": 2 if row_number % 5 == 0 else 1, "vendor_code": "0",
           "status": "submitted", "description": "", "submitted_at": OLD}
    row.update(overrides)
    return row


def write_submissions(root: DataRoot, campaign_id: str, rows: list[dict[str, Any]], *,
                      shard: int = 0) -> None:
    root.write_table(pa.Table.from_pylist(rows, schema=SUBMISSION_SCHEMA),
                     *root.campaign(campaign_id, "submissions", f"part-{shard:05d}.parquet"))


def report(message_id: str | None, mobile: str, status: DeliveryStatus, at: datetime, *,
           raw_state: str | None = None, custom_id: str | None = None,
           description: str = "") -> DeliveryReport:
    states = {DELIVERED: "DELIVRD", FAILED: "UNDELIV", PENDING: "ACCEPTD", UNKNOWN: "???"}
    return DeliveryReport(message_id=message_id, mobile=mobile,
                          raw_state=raw_state or states[status], status=status,
                          custom_id=custom_id, description=description, report_time=at,
                          raw={"id": message_id})


def write_reports(root: DataRoot, conn_id: str, vendor: str, reports: list[DeliveryReport],
                  received_at: datetime, source: str = "push") -> None:
    table = report_store.report_table(reports, conn_id=conn_id, vendor=vendor, source=source,
                                      received_at=received_at)
    report_store.append(root, "reports", conn_id, table, prefix=source)


def read(root: DataRoot, campaign_id: str, name: str) -> pa.Table:
    return ds.dataset(root.path(*root.campaign(campaign_id, name)), filesystem=root.fs,
                      format="parquet").to_table()


def by_row(table: pa.Table) -> dict[int, dict[str, Any]]:
    return {r["row_number"]: r for r in table.to_pylist()}


def discrepancies(root: DataRoot, campaign_id: str) -> list[dict[str, Any]]:
    return read(root, campaign_id, "discrepancies").to_pylist()


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "data")


# --- matching and final states -------------------------------------------------------------

def test_a_report_stamped_before_the_submission_has_no_negative_latency(root: DataRoot
                                                                         ) -> None:
    """Chuanglan stamps its reports to the minute (``reportTime`` YYMMDDhhmm): a message
    delivered within the minute it was sent reads as reported before it left."""
    conn, vendor = "sms_cl", "chuanglan"
    sent = OLD.replace(second=40)
    write_campaign(root, "c1", vendor, conn, [{"row_number": 1, "submitted_at": sent},
                                              {"row_number": 2, "submitted_at": sent}])
    write_reports(root, conn, vendor, [
        report("c1-m1", mobile_for(vendor, 1), DELIVERED, sent.replace(second=0)),
        report("c1-m2", mobile_for(vendor, 2), DELIVERED, sent + timedelta(seconds=80))],
        sent + timedelta(minutes=2))
    reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert rows[1]["final_status"] == "DELIVERED" and rows[1]["latency_s"] == 0.0
    assert rows[2]["latency_s"] == pytest.approx(80.0)


def test_delayed_duplicated_out_of_order_reports(root: DataRoot) -> None:
    conn, vendor = "sms_ims", "emay_ims"
    write_campaign(root, "c1", vendor, conn, [{"row_number": i} for i in range(1, 7)])
    m = {i: mobile_for(vendor, i) for i in range(1, 7)}
    t0 = OLD + timedelta(minutes=1)
    # 1: delivered, pushed twice and pulled once (three copies, one report: seen once)
    # 2: FAILED then DELIVERED by report time, arriving the other way round
    # 3: DELIVERED then FAILED by report time: the later FAILED wins
    # 4: PENDING after the DELIVERED (never overrides a final report)
    # 5: only PENDING so far, past the window: UNKNOWN with the vendor's last state
    # 6: nothing at all, past the window: UNKNOWN, charged and never reported
    later = [report("c1-m2", m[2], FAILED, t0, description="blocked"),
             report("c1-m3", m[3], FAILED, t0 + timedelta(minutes=5), raw_state="MK:0001"),
             report("c1-m4", m[4], PENDING, t0 + timedelta(minutes=9))]
    first = [report("c1-m1", m[1], DELIVERED, t0),
             report("c1-m2", m[2], DELIVERED, t0 + timedelta(minutes=3)),
             report("c1-m3", m[3], DELIVERED, t0),
             report("c1-m4", m[4], DELIVERED, t0),
             report("c1-m5", m[5], PENDING, t0)]
    write_reports(root, conn, vendor, first, OLD + timedelta(hours=1))
    write_reports(root, conn, vendor, first[:1], OLD + timedelta(hours=2))  # replayed push
    write_reports(root, conn, vendor, first[:1], OLD + timedelta(hours=30), source="pull")
    write_reports(root, conn, vendor, later, OLD + timedelta(hours=40))     # delayed a day

    result = reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert [rows[i]["final_status"] for i in range(1, 7)] == [
        "DELIVERED", "DELIVERED", "FAILED", "DELIVERED", "UNKNOWN", "UNKNOWN"]
    assert rows[1]["reports_seen"] == 1 and rows[2]["reports_seen"] == 2
    assert rows[1]["settled_by"] == "message_id" and rows[6]["settled_by"] == "none"
    assert rows[3]["reason"] == "MK:0001"
    assert rows[5]["reason"] == "ACCEPTD"  # the last thing the vendor said
    assert rows[2]["report_time"] == t0 + timedelta(minutes=3)
    assert rows[1]["latency_s"] == pytest.approx(60.0)
    assert rows[6]["latency_s"] is None and rows[6]["report_time"] is None
    assert result.counts["delivered"] == 3 and result.counts["unknown"] == 2
    flagged = discrepancies(root, "c1")
    assert [(d["kind"], d["key"], d["count"]) for d in flagged] == [
        ("charged_never_reported", "c1-m5", 2), ("charged_never_reported", "c1-m6", 1)]


def test_reports_seen_counts_distinct_reports_not_copies(root: DataRoot) -> None:
    """100 reports, each pushed, replayed and pulled: 100 DELIVERED seen once each; a
    genuine earlier report (a PENDING before the DELIVERED) is a second one."""
    conn, vendor = "sms_ims", "emay_ims"
    write_campaign(root, "c1", vendor, conn, [{"row_number": i} for i in range(1, 101)])
    delivered = [report(f"c1-m{i}", mobile_for(vendor, i), DELIVERED,
                        OLD + timedelta(minutes=1)) for i in range(1, 101)]
    pending = [report(f"c1-m{i}", mobile_for(vendor, i), PENDING, OLD) for i in range(1, 11)]
    write_reports(root, conn, vendor, pending, OLD + timedelta(seconds=30))
    for copy, source in enumerate(["push", "push", "pull"]):
        write_reports(root, conn, vendor, delivered, OLD + timedelta(hours=copy + 1), source)

    result = reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert result.counts["delivered"] == 100
    assert {rows[i]["final_status"] for i in rows} == {"DELIVERED"}
    assert [rows[i]["reports_seen"] for i in range(1, 101)] == [2] * 10 + [1] * 90


def test_failed_reason_keeps_vendor_words(root: DataRoot) -> None:
    conn, vendor = "sms_ims", "emay_ims"
    write_campaign(root, "c1", vendor, conn, [{"row_number": 1}])
    write_reports(root, conn, vendor, [report("c1-m1", mobile_for(vendor, 1), FAILED, OLD,
                                              raw_state="UNDELIV", description="空号")], OLD)
    reconcile_campaign(root, "c1", now=NOW)
    assert by_row(read(root, "c1", "reconciliation"))[1]["reason"] == "UNDELIV: 空号"


def test_reports_before_the_submission_file_settle_on_the_next_run(root: DataRoot) -> None:
    conn, vendor = "sms_eims", "eims"
    subs = [submission("c1", vendor, conn, row_number=i, submitted_at=RECENT)
            for i in range(1, 5)]
    write_campaign(root, "c1", vendor, conn, [], prepared=4)
    write_submissions(root, "c1", subs[:2], shard=0)  # shard 1 has not written its file yet
    # the vendor pushed for every message, shard 1's before its file exists (EIMS: no time)
    reports = [DeliveryReport(message_id=s["message_id"], mobile=s["mobile"], raw_state="0",
                              status=DELIVERED) for s in subs]
    write_reports(root, conn, vendor, reports, RECENT + timedelta(seconds=5))

    first = reconcile_campaign(root, "c1", now=NOW)
    assert first.counts["delivered"] == 2 and first.counts["not_submitted"] == 2
    unknown = [d for d in discrepancies(root, "c1")
               if d["kind"] == "report_for_unknown_message"]
    assert sorted(d["key"] for d in unknown) == ["c1-m3", "c1-m4"]

    write_submissions(root, "c1", subs[2:], shard=1)
    second = reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert {r["final_status"] for r in rows.values()} == {"DELIVERED"}
    assert rows[3]["latency_s"] == pytest.approx(5.0)  # no vendor time: when it reached us
    assert second.discrepancies["report_for_unknown_message"] == 0
    assert discrepancies(root, "c1") == []


def test_ambiguous_settled_by_per_message_custom_id(root: DataRoot) -> None:
    conn, vendor = "sms_ims", "emay_ims"
    write_campaign(root, "c1", vendor, conn, [
        {"row_number": 1},
        # the answer to this request was lost: no message id, charge unknown
        {"row_number": 2, "status": "ambiguous", "message_id": None, "charge_items": 0},
        {"row_number": 3, "status": "ambiguous", "message_id": None, "charge_items": 0},
        {"row_number": 4, "status": "ambiguous", "message_id": None, "charge_items": 0,
         "submitted_at": RECENT},
        {"row_number": 5, "status": "ambiguous", "message_id": None, "charge_items": 0}])
    m = {i: mobile_for(vendor, i) for i in range(1, 6)}
    write_reports(root, conn, vendor, [
        report("c1-m1", m[1], DELIVERED, OLD),
        report("V-2", m[2], DELIVERED, OLD, custom_id="cafe0002"),
        report("V-5", m[5], FAILED, OLD, custom_id="cafe0005")], OLD + timedelta(minutes=1))
    result = reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert rows[2]["final_status"] == "DELIVERED" and rows[2]["settled_by"] == "custom_id"
    assert rows[2]["message_id"] == "V-2"            # learnt from the report
    assert rows[5]["final_status"] == "FAILED" and rows[5]["charge_items"] == 2
    assert rows[2]["charge_items"] == 1              # the prepared estimate: it went out
    assert rows[3]["final_status"] == "UNKNOWN" and rows[3]["charge_items"] == 0
    assert rows[4]["final_status"] == "PENDING"      # never settled, still in the window
    assert {r["submission_status"] for r in rows.values()} == {"submitted", "ambiguous"}
    assert result.counts["ambiguous"] == 4
    kinds = {d["kind"] for d in discrepancies(root, "c1")}
    assert "report_for_unknown_message" not in kinds
    assert "charged_never_reported" not in kinds     # ambiguous: we do not know it was charged


def test_eums_reference_is_per_request_and_settles_with_the_mobile(root: DataRoot) -> None:
    conn, vendor = "sms_eums", "eums"
    ref = "0a1b2c3d4e-0-7"  # one reference for the whole request
    write_campaign(root, "c1", vendor, conn, [
        {"row_number": i, "status": "ambiguous", "message_id": None, "custom_id": ref,
         "charge_items": 0} for i in range(1, 4)])
    write_reports(root, conn, vendor, [
        report("E1", "86" + mobile_for(vendor, 1), DELIVERED, OLD, custom_id=ref),
        report("E2", mobile_for(vendor, 2), FAILED, OLD, custom_id=ref)], OLD)
    reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert [rows[i]["final_status"] for i in (1, 2, 3)] == ["DELIVERED", "FAILED", "UNKNOWN"]
    assert [rows[i]["message_id"] for i in (1, 2, 3)] == ["E1", "E2", None]
    assert {rows[i]["settled_by"] for i in (1, 2)} == {"custom_id"}


@pytest.mark.parametrize("vendor", ["eims", "chuanglan"])
def test_without_an_id_of_ours_ambiguous_settles_by_its_number(root: DataRoot, vendor) -> None:
    """EIMS and Chuanglan echo no custom id: an unclaimed report for the number, after the
    submission, settles it when no other open submission has that number."""
    conn = "sms_" + vendor
    ambiguous = {"status": "ambiguous", "message_id": None, "custom_id": None,
                 "charge_items": 0}
    write_campaign(root, "c1", vendor, conn, [
        {"row_number": 1, "custom_id": None},
        {"row_number": 2, **ambiguous},
        {"row_number": 3, **ambiguous},
        {"row_number": 4, **ambiguous},
        {"row_number": 5, **ambiguous, "mobile": mobile_for(vendor, 4)},  # the same number
        {"row_number": 6, **ambiguous}])
    m = {i: mobile_for(vendor, i) for i in range(1, 7)}
    write_reports(root, conn, vendor, [
        report("c1-m1", m[1], DELIVERED, OLD),
        report("V-2", m[2], DELIVERED, OLD + timedelta(minutes=1)),
        report("V-3", m[3], FAILED, OLD + timedelta(minutes=2)),
        report("V-4", m[4], DELIVERED, OLD + timedelta(minutes=1)),   # rows 4 or 5?
        report("V-6", m[6], DELIVERED, OLD - timedelta(hours=1)),     # before it was sent
    ], OLD + timedelta(minutes=3))
    reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert [rows[i]["final_status"] for i in range(1, 7)] == [
        "DELIVERED", "DELIVERED", "FAILED", "UNKNOWN", "UNKNOWN", "UNKNOWN"]
    assert [rows[i]["settled_by"] for i in range(1, 7)] == [
        "message_id", "mobile", "mobile", "none", "none", "none"]
    assert rows[2]["message_id"] == "V-2" and rows[2]["charge_items"] == 1  # it went out
    unknown = sorted(d["key"] for d in discrepancies(root, "c1")
                     if d["kind"] == "report_for_unknown_message")
    assert [key.split("/")[0] for key in unknown] == ["V-4", "V-6"]


def test_chuanglan_one_msgid_per_request(root: DataRoot) -> None:
    conn, vendor = "sms_cl", "chuanglan"
    write_campaign(root, "c1", vendor, conn, [
        {"row_number": i, "message_id": "17041010383624511" if i <= 3 else "17041010383624999",
         "custom_id": None} for i in range(1, 6)])
    m = {i: mobile_for(vendor, i) for i in range(1, 6)}
    write_reports(root, conn, vendor, [
        report("17041010383624511", m[1], DELIVERED, OLD),
        report("17041010383624511", m[2], FAILED, OLD),
        report("17041010383624999", m[4], DELIVERED, OLD),
        # the right msgid for another number than we sent it to: not one of ours
        report("17041010383624999", mobile_for(vendor, 9), DELIVERED, OLD)], OLD)
    reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert [rows[i]["final_status"] for i in range(1, 6)] == [
        "DELIVERED", "FAILED", "UNKNOWN", "DELIVERED", "UNKNOWN"]
    unknown = [d for d in discrepancies(root, "c1")
               if d["kind"] == "report_for_unknown_message"]
    assert [d["key"] for d in unknown] == [f"17041010383624999/{mobile_for(vendor, 9)}"]


def test_final_window_is_configurable(root: DataRoot) -> None:
    conn, vendor = "sms_ims", "emay_ims"
    write_campaign(root, "c1", vendor, conn, [{"row_number": 1, "submitted_at": RECENT}])
    reconcile_campaign(root, "c1", now=NOW)
    assert by_row(read(root, "c1", "reconciliation"))[1]["final_status"] == "PENDING"
    assert discrepancies(root, "c1") == []
    reconcile_campaign(root, "c1", now=NOW, final_window=timedelta(hours=1))
    assert by_row(read(root, "c1", "reconciliation"))[1]["final_status"] == "UNKNOWN"
    assert [d["kind"] for d in discrepancies(root, "c1")] == ["charged_never_reported"]


def test_rejected_unsent_and_dry_run(root: DataRoot) -> None:
    conn, vendor = "sms_eums", "eums"
    write_campaign(root, "c1", vendor, conn, [
        {"row_number": 1, "status": "rejected", "vendor_code": "105", "message_id": None},
        {"row_number": 2, "status": "rejected", "vendor_code": "", "message_id": None,
         "description": "dropped by gateway"},
        {"row_number": 3, "status": "dry_run", "message_id": None, "submitted_at": None}],
        prepared=4, invalid=3)
    result = reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert [(rows[i]["final_status"], rows[i]["reason"]) for i in range(1, 5)] == [
        ("REJECTED", "105"), ("REJECTED", "dropped by gateway"), ("PENDING", "dry_run"),
        ("PENDING", "not_submitted")]
    assert rows[3]["submission_status"] is None and rows[4]["conn_id"] == conn
    assert result.counts == {
        "input_rows": 7, "invalid": 3, "valid": 4, "submitted": 0, "rejected": 2,
        "ambiguous": 0, "not_submitted": 2, "delivered": 0, "failed": 0, "pending": 0,
        "unknown": 0, "charge_items_submitted": 0}


def test_sparse_row_numbers_and_two_connections(root: DataRoot) -> None:
    """A campaign sent partly through another connection (say, after a vendor outage)."""
    write_campaign(root, "c1", "emay_ims", "sms_ims", [], prepared=0)
    root.write_table(pa.Table.from_pylist([{
        "row_number": rn, "mobile": "13800130001", "e164": "8613800130001", "content": "x",
        "variables": None, "charge_items": 1, "custom_id": f"cafe{rn}", "shard": 0}
        for rn in (7, 2_000_000, 3_000_000)], schema=PREPARED_SCHEMA),
        *root.campaign("c1", "prepared", "part-00000.parquet"))
    write_submissions(root, "c1", [
        submission("c1", "emay_ims", "sms_ims", row_number=2_000_000, message_id="I1"),
        submission("c1", "eums", "sms_eums", row_number=7, message_id="E7",
                   mobile="13800130001")])
    write_reports(root, "sms_ims", "emay_ims", [report("I1", "0086", FAILED, OLD)], OLD)
    write_reports(root, "sms_eums", "eums", [report("E7", "13800130001", DELIVERED, OLD)], OLD)
    reconcile_campaign(root, "c1", now=NOW)
    rows = by_row(read(root, "c1", "reconciliation"))
    assert [(rows[rn]["conn_id"], rows[rn]["vendor"], rows[rn]["final_status"])
            for rn in (7, 2_000_000, 3_000_000)] == [
        ("sms_eums", "eums", "DELIVERED"), ("sms_ims", "emay_ims", "FAILED"),
        (None, None, "PENDING")]
    assert rows[3_000_000]["custom_id"] == "cafe3000000"  # never sent: our own id


# --- invariants over a larger mixed campaign ---------------------------------------------

def mixed_campaign(root: DataRoot, n: int = 3000, seed: int = 7) -> None:
    """Every kind of row at once, shuffled report files, several shards."""
    rng = np.random.default_rng(seed)
    conn, vendor = "sms_ims", "emay_ims"
    status = rng.choice(["submitted", "rejected", "ambiguous", "unsent"], n,
                        p=[0.85, 0.05, 0.05, 0.05])
    when = [OLD if rng.random() < 0.5 else RECENT for _ in range(n)]
    subs = []
    for i in range(1, n + 1):
        s = status[i - 1]
        if s == "unsent":
            continue
        subs.append({"row_number": i, "status": str(s), "submitted_at": when[i - 1],
                     "message_id": None if s in ("ambiguous", "rejected") else f"c1-m{i}",
                     "charge_items": 0 if s == "ambiguous" else 1})
    write_campaign(root, "c1", vendor, conn, subs, prepared=n, invalid=17, shard_files=3)
    reports = []
    for s in subs:
        i = s["row_number"]
        if s["status"] == "rejected" or rng.random() < 0.1:
            continue
        mid = s["message_id"] or f"V{i}"
        at = s["submitted_at"] + timedelta(seconds=int(rng.integers(1, 600)))
        kinds = rng.choice([DELIVERED, FAILED, PENDING], size=int(rng.integers(1, 4)))
        for k, st in enumerate(kinds):
            reports.append(report(mid, mobile_for(vendor, i), DeliveryStatus(st),
                                  at + timedelta(seconds=k), custom_id=f"cafe{i:04d}"))
    order = rng.permutation(len(reports))
    batches = np.array_split(order, 7)
    for b, batch in enumerate(batches):
        picked = [reports[j] for j in batch]
        write_reports(root, conn, vendor, picked, OLD + timedelta(hours=b))
        if b % 2:
            write_reports(root, conn, vendor, picked[:20], NOW - timedelta(minutes=b))


def test_every_prepared_recipient_has_exactly_one_final_status(root: DataRoot) -> None:
    mixed_campaign(root)
    result = reconcile_campaign(root, "c1", now=NOW)
    table = read(root, "c1", "reconciliation")
    assert table.schema == RECONCILIATION_SCHEMA
    assert table.num_rows == 3000
    assert sorted(table["row_number"].to_pylist()) == list(range(1, 3001))
    statuses = table["final_status"].to_pylist()
    assert set(statuses) <= {"DELIVERED", "FAILED", "PENDING", "UNKNOWN", "REJECTED"}
    assert None not in statuses

    summary = read(root, "c1", "reconciliation_summary")
    assert summary.schema == SUMMARY_SCHEMA
    totals = {name: sum(summary[name].to_pylist()) for name in SUMMARY_SCHEMA.names[2:]}
    assert totals == result.counts
    assert totals["input_rows"] == 3000 + 17 and totals["valid"] == 3000
    assert totals["valid"] == (totals["submitted"] + totals["rejected"] + totals["ambiguous"]
                               + totals["not_submitted"])
    assert (totals["delivered"] + totals["failed"] + totals["pending"] + totals["unknown"]
            == totals["submitted"] + totals["ambiguous"])
    assert statuses.count("REJECTED") == totals["rejected"]
    # days are China days of submission; the unsent and invalid rows have none
    days = summary["day"].to_pylist()
    assert days[-1] is None
    assert set(days[:-1]) == {(OLD + CHINA).date(), (RECENT + CHINA).date()}


def test_rerun_replaces_outputs(root: DataRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    mixed_campaign(root, n=400)
    monkeypatch.setattr(reconcile_writer, "ROWS_PER_FILE", 100)  # big-table path: 2 files
    reconcile_campaign(root, "c1", now=NOW)
    first = read(root, "c1", "reconciliation")
    assert first.num_rows == 400
    assert len(root.list_files(*root.campaign("c1", "reconciliation"))) == min(
        4, os.cpu_count() or 1)
    monkeypatch.setattr(reconcile_writer, "ROWS_PER_FILE", 1_000_000)
    reconcile_campaign(root, "c1", now=NOW)
    assert read(root, "c1", "reconciliation").equals(first)
    for name in ("reconciliation", "reconciliation_summary", "discrepancies"):
        assert [Path(p).name for p in root.list_files(*root.campaign("c1", name))] == [
            "part-00000.parquet"]


# --- account-level discrepancies ---------------------------------------------------------

def seed_eums_account(root: DataRoot, *, clean: bool) -> None:
    """Two EUMS campaigns on one connection with vendor statistics and balance snapshots."""
    conn, vendor = "sms_eums", "eums"
    day1 = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)  # 10:00 China time
    write_campaign(root, "a", vendor, conn, [
        {"row_number": i, "message_id": f"a-{i}", "submitted_at": day1} for i in range(1, 6)])
    write_campaign(root, "b", vendor, conn, [
        {"row_number": i, "message_id": f"b-{i}", "submitted_at": day1 + timedelta(hours=1)}
        for i in range(1, 4)])
    reports = [report(f"a-{i}", mobile_for(vendor, i), DELIVERED, day1) for i in range(1, 6)]
    reports += [report(f"b-{i}", mobile_for(vendor, i), DELIVERED, day1) for i in range(1, 3)]
    reports.append(report("b-3", mobile_for(vendor, 3), FAILED, day1))
    if not clean:
        reports.append(report("x-1", mobile_for(vendor, 9), DELIVERED, day1))  # not ours
    write_reports(root, conn, vendor, reports, day1 + timedelta(minutes=5))
    # ours: 8 submitted (a: 6 items: rows 1-4 one, row 5 two; b: 3), 7 delivered, 1 failed
    stats = [{"conn_id": conn, "day": date(2026, 3, 5), "submitted": 8, "delivered": 7,
              "failed": 1, "unknown": 0, "fetched_at": day1 + timedelta(hours=20)},
             # an earlier fetch of the same day, superseded
             {"conn_id": conn, "day": date(2026, 3, 5), "submitted": 3, "delivered": 0,
              "failed": 0, "unknown": 3, "fetched_at": day1 + timedelta(minutes=30)}]
    if not clean:
        stats[0]["submitted"] = 10
    root.write_table(pa.Table.from_pylist(stats, schema=DAILY_STATISTIC_SCHEMA),
                     "statistics", conn, "daily", "part-1.parquet")
    snaps = [(day1 - timedelta(minutes=10), "1000"),
             (day1 + timedelta(minutes=30), "994" if clean else "990"),  # campaign a: 6 items
             (day1 + timedelta(hours=2), "991"),                         # campaign b: 3 items
             (day1 + timedelta(hours=3), "5991")]                        # a top-up
    root.write_table(pa.Table.from_pylist([
        {"conn_id": conn, "amount": amount, "unit": "items", "product": None, "gift": None,
         "taken_at": at} for at, amount in snaps], schema=BALANCE_SCHEMA),
        "statistics", conn, "balance", "part-1.parquet")


def test_clean_campaign_flags_nothing(root: DataRoot) -> None:
    seed_eums_account(root, clean=True)
    results = reconcile_all(root, now=NOW)
    assert set(results) == {"a", "b"}
    for cid, result in results.items():
        assert discrepancies(root, cid) == [], cid
        assert set(result.discrepancies.values()) == {0}
    assert results["a"].counts["delivered"] == 5 and results["b"].counts["failed"] == 1
    assert list(reconcile_all(root, ["b"], now=NOW)) == ["b"]


def test_every_discrepancy_kind_is_flagged(root: DataRoot) -> None:
    seed_eums_account(root, clean=False)
    old = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    # a third campaign on the same account: charged, never reported
    write_campaign(root, "c", "eums", "sms_eums", [
        {"row_number": 1, "message_id": "c-1", "submitted_at": old + timedelta(minutes=1)}])
    result = reconcile_campaign(root, "c", now=NOW)
    found = {d["kind"]: d for d in discrepancies(root, "c")}
    assert set(found) == {"charged_never_reported", "report_for_unknown_message",
                          "statistics_mismatch", "balance_mismatch"}
    assert result.discrepancies == {k: 1 for k in found}
    assert found["charged_never_reported"]["key"] == "c-1"
    assert found["report_for_unknown_message"]["key"] == "x-1"
    stats = found["statistics_mismatch"]
    assert stats["key"] == "2026-03-05" and stats["count"] == 1
    assert "submitted: vendor 10, ours 9" in stats["detail"]
    balance = found["balance_mismatch"]
    assert balance["count"] == 3  # fell by 10, we sent 7 items in that step (a: 6, c: 1)
    assert "balance fell by 10 items, we submitted 7 charge items" in balance["detail"]
    assert read(root, "c", "discrepancies").schema == DISCREPANCY_SCHEMA


def test_statistics_tolerate_unsettled_ambiguous_and_in_flight_reports(root: DataRoot) -> None:
    conn, vendor = "sms_eums", "eums"
    at = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    write_campaign(root, "a", vendor, conn, [
        {"row_number": i, "message_id": f"a-{i}", "submitted_at": at} for i in range(1, 200)]
        + [{"row_number": 200, "status": "ambiguous", "message_id": None, "submitted_at": at}])
    write_reports(root, conn, vendor, [report(f"a-{i}", mobile_for(vendor, i), DELIVERED, at)
                                       for i in range(1, 199)], at)
    root.write_table(pa.Table.from_pylist([
        {"conn_id": conn, "day": date(2026, 3, 5), "submitted": 200, "delivered": 199,
         "failed": 0, "unknown": 1, "fetched_at": at + timedelta(hours=1)}],
        schema=DAILY_STATISTIC_SCHEMA), "statistics", conn, "daily", "part-1.parquet")
    reconcile_campaign(root, "a", now=NOW)
    assert [d["kind"] for d in discrepancies(root, "a")] == ["charged_never_reported"]
    reconcile_campaign(root, "a", now=NOW, statistics_tolerance=0.0)
    assert "statistics_mismatch" in {d["kind"] for d in discrepancies(root, "a")}


def test_money_balance_needs_a_price(root: DataRoot) -> None:
    conn, vendor = "sms_eims", "eims"
    at = datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    write_campaign(root, "a", vendor, conn, [
        {"row_number": i, "submitted_at": at} for i in range(1, 5)])  # 4 items
    write_reports(root, conn, vendor, [
        report(f"a-m{i}", mobile_for(vendor, i), DELIVERED, at) for i in range(1, 5)], at)
    root.write_table(pa.Table.from_pylist([
        {"conn_id": conn, "amount": amount, "unit": "money", "product": None, "gift": gift,
         "taken_at": when} for when, amount, gift in [
            (at - timedelta(minutes=1), "10.000", "1.000"),
            (at + timedelta(minutes=1), "9.820", "1.000")]],  # 0.180 = 4 items at 0.045
        schema=BALANCE_SCHEMA), "statistics", conn, "balance", "part-1.parquet")
    reconcile_campaign(root, "a", now=NOW)
    assert discrepancies(root, "a") == []  # money: skipped without a price
    reconcile_campaign(root, "a", now=NOW, price_per_item={conn: "0.045"})
    assert discrepancies(root, "a") == []
    reconcile_campaign(root, "a", now=NOW, price_per_item=Decimal("0.03"))
    [flag] = discrepancies(root, "a")
    assert flag["kind"] == "balance_mismatch" and flag["count"] == 2  # 6 items' worth


def test_unknown_reports_are_account_wide(root: DataRoot) -> None:
    conn, vendor = "sms_ims", "emay_ims"
    write_campaign(root, "a", vendor, conn, [{"row_number": 1, "message_id": "A1"}])
    write_campaign(root, "b", vendor, conn, [{"row_number": 1, "message_id": "B1"}])
    write_campaign(root, "other", vendor, "sms_ims_2", [{"row_number": 1, "message_id": "Z1"}])
    write_reports(root, conn, vendor, [
        report("A1", mobile_for(vendor, 1), DELIVERED, OLD),
        report("B1", mobile_for(vendor, 1), DELIVERED, OLD),
        report("Z1", mobile_for(vendor, 1), DELIVERED, OLD)], OLD)  # another connection's id
    cache = AccountCache()
    reconcile_campaign(root, "a", now=NOW, accounts=cache)
    assert [d["key"] for d in discrepancies(root, "a")] == ["Z1"]
    assert set(cache) == {conn}
    result = reconcile_campaign(root, "b", now=NOW, accounts=cache)
    assert result.counts["delivered"] == 1


# --- the analyst's report ------------------------------------------------------------------

class _Tags(html.parser.HTMLParser):
    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.seen.append(tag)
        if tag == "script":
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def test_report_html_is_self_contained_and_escaped(root: DataRoot) -> None:
    conn, vendor = "sms_ims", "emay_ims"
    campaign = "spring<img src=x onerror=alert(1)>&'\""
    write_campaign(root, campaign, vendor, conn,
                   [{"row_number": i} for i in range(1, 1235)], invalid=12)
    write_reports(root, conn, vendor, [
        report(f"{campaign}-m{i}", mobile_for(vendor, i), FAILED if i % 10 == 0 else DELIVERED,
               OLD + timedelta(seconds=i), description="<b>blocked</b> & co" if i % 10 == 0
               else "") for i in range(1, 1234)], OLD + timedelta(hours=1))
    result = reconcile_campaign(root, campaign, now=NOW)
    path = Path(result.paths["report_html"])
    assert path == Path(root.path(*root.campaign(campaign, "report.html")))
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    parser = _Tags()
    parser.feed(text)
    parser.close()
    assert parser.stack == [] and parser.scripts == 0
    assert {"svg", "rect", "table", "style"} <= set(parser.seen)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;&amp;" in text
    assert "&lt;b&gt;blocked&lt;/b&gt; &amp; co" in text
    for figure in ("1,246", "1,234", "1,110", "123"):  # input, valid, delivered, failed
        assert figure in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "charged_never_reported" in text
    assert len(text) < 60_000


# --- the package's layering ----------------------------------------------------------------

def test_reconcile_modules_form_layers_without_airflow() -> None:
    """Each module imports only modules of the package that do not import it back (so any
    may be imported first), and none imports Airflow (the data plane stays pure)."""
    folder = Path(reconcile_package.__file__).parent
    prefix = "sms_provider.data.reconcile."
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        assert not {n for n in names if n.split(".")[0] == "airflow"}, path.name
        graph[path.stem] = {n.removeprefix(prefix) for n in names if n.startswith(prefix)}
    done: list[str] = []
    while len(done) < len(graph):  # peel off the modules whose imports are all done
        ready = sorted(m for m, deps in graph.items() if m not in done and deps <= set(done))
        assert ready, f"import loop among {sorted(set(graph) - set(done))}"
        done.extend(ready)
    assert done[-1] == "__init__" and len(graph) >= 8
