"""Who a resend sends again, on real files: a campaign's prepared recipients and its
reconciliation written as the pipeline writes them, then ``select_for_resend``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from sms_provider.data.resend.across import across_attempts
from sms_provider.data.resend.select import ResendError, ResendRequest, select_for_resend
from sms_provider.data.routing import Route
from sms_provider.data.schemas import PREPARED_SCHEMA, RECONCILIATION_SCHEMA
from sms_provider.data.storage import DataRoot

EUMS = Route("sms_eums", "eums", max_content_chars=500)
IMS = Route("sms_emay_ims", "emay_ims", max_content_chars=1000)
#: row number -> (E.164, final status, reason) of attempt 1 through Emay IMS
ROWS = {
    1: ("8613800000001", "DELIVERED", None),
    2: ("8613800000002", "FAILED", "TIMEOUT: 运营商状态报告超时"),
    3: ("8613800000003", "FAILED", "FAIL_MOBILE: 手机号错误"),
    4: ("8613800000004", "FAILED", "FAIL_BLACK_DICT: 黑字典失败"),
    5: ("8613800000005", "FAILED", "FAIL_MOBILE_REPEAT: 手机号重复"),
    6: ("8613800000006", "FAILED", "FAIL_UNKNOW: 未知失败"),
    7: ("447400123456", "FAILED", "FAIL_RESPONSE: 运营商响应失败"),
    8: ("8613800000008", "UNKNOWN", None),
}


def write_campaign(root: DataRoot, campaign: str = "c1") -> None:
    n = len(ROWS)
    numbers = list(ROWS)
    e164 = [ROWS[k][0] for k in numbers]
    prepared = pa.table({
        "row_number": pa.array(numbers, pa.int64()), "mobile": ["00" + e for e in e164],
        "e164": e164, "content": ["【Shop】Hi"] * n, "variables": pa.nulls(n, pa.string()),
        "charge_items": pa.array([1] * n, pa.int32()), "custom_id": [f"x{k}" for k in numbers],
        "shard": pa.array([0] * n, pa.int32()), "carrier": ["China Mobile"] * n,
    }, schema=PREPARED_SCHEMA)
    root.write_table(prepared, *root.campaign(campaign, "prepared", "part-00000.parquet"))
    recon = {f.name: pa.nulls(n, f.type) for f in RECONCILIATION_SCHEMA}
    recon |= {"campaign_id": pa.array([campaign] * n), "conn_id": pa.array(["sms_emay_ims"] * n),
              "vendor": pa.array(["emay_ims"] * n),
              "row_number": pa.array(numbers, pa.int64()),
              "mobile": pa.array(["00" + e for e in e164]),
              "message_id": pa.array([f"m{k}" for k in numbers]),
              "submission_status": pa.array(["submitted"] * n),
              "final_status": pa.array([ROWS[k][1] for k in numbers]),
              "reason": pa.array([ROWS[k][2] for k in numbers], pa.string()),
              "charge_items": pa.array([1] * n, pa.int32())}
    root.write_table(pa.table(recon, schema=RECONCILIATION_SCHEMA),
                     *root.campaign(campaign, "reconciliation", "part-00000.parquet"))


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    data = DataRoot(str(tmp_path / "data"))
    write_campaign(data)
    return data


def selected(root: DataRoot, attempt: str = "c1/attempt-2") -> dict[int, dict]:
    table = root.read_dataset(*root.campaign(attempt, "prepared"))
    return {r["row_number"]: r for r in table.to_pylist()}


def skipped(root: DataRoot, attempt: str = "c1/attempt-2") -> dict[int, str]:
    table = root.read_dataset(*root.campaign(attempt, "rejected"))
    return {r["row_number"]: r["reason"] for r in table.to_pylist()}


def test_only_carrier_and_vendor_failures_go_again_in_the_new_vendors_format(root) -> None:
    summary = select_for_resend(root, ResendRequest("c1", EUMS))
    rows = selected(root)
    assert set(rows) == {2, 6} and summary.selected == 2 and summary.shards == [0]
    assert rows[2]["mobile"] == "13800000002"  # EUMS: 11 digits, not Emay's 0086…
    assert (rows[2]["attempt"], rows[2]["previous_message_id"],
            rows[2]["previous_conn_id"]) == (2, "m2", "sms_emay_ims")
    assert rows[2]["custom_id"] != "x2"  # the attempt's own ids
    assert skipped(root) == {1: "delivered", 3: "invalid_number", 4: "blacklisted",
                             5: "not_retry_worthy", 7: "no_route",
                             8: "status_not_selected"}


def test_reasons_narrow_or_widen_the_choice_but_never_to_the_numbers_at_fault(root) -> None:
    select_for_resend(root, ResendRequest("c1", IMS, include_reasons=["frequency", "carrier"],
                                          exclude_reasons=["FAIL_RESPONSE"]))
    assert set(selected(root)) == {2, 5}
    assert skipped(root)[6] == "not_retry_worthy" and skipped(root)[7] == "excluded"
    with pytest.raises(ResendError, match="blacklisted are never resent"):
        select_for_resend(root, ResendRequest("c1", IMS, attempt=3,
                                              include_reasons=["blacklisted"]))


def test_the_selection_is_made_once_and_another_conf_needs_the_next_attempt(root) -> None:
    first = select_for_resend(root, ResendRequest("c1", EUMS, statuses=["FAILED", "UNKNOWN"]))
    assert set(selected(root)) == {2, 6, 8} and not first.reused
    # what reconciliation says later does not change an attempt made already
    again = select_for_resend(root, ResendRequest("c1", EUMS, statuses=["UNKNOWN", "FAILED"]))
    assert again.reused and again.selected == 3
    with pytest.raises(ResendError, match=r"needs the next attempt number \(3\)"):
        select_for_resend(root, ResendRequest("c1", IMS))
    # attempt 3 follows attempt 2 only once attempt 2 is reconciled
    with pytest.raises(ResendError, match="attempt 2 of campaign c1 is not reconciled"):
        select_for_resend(root, ResendRequest("c1", IMS, attempt=3))
    with pytest.raises(ResendError, match="attempt 3 was not made"):
        select_for_resend(root, ResendRequest("c1", IMS, attempt=4))


def test_across_attempts_a_delivery_in_any_attempt_decides(root) -> None:
    select_for_resend(root, ResendRequest("c1", EUMS))
    n = 2
    recon = {f.name: pa.nulls(n, f.type) for f in RECONCILIATION_SCHEMA}
    recon |= {"conn_id": pa.array(["sms_eums"] * n), "vendor": pa.array(["eums"] * n),
              "row_number": pa.array([2, 6], pa.int64()),
              "message_id": pa.array(["e2", "e6"]),
              "submission_status": pa.array(["submitted"] * n),
              "final_status": pa.array(["DELIVERED", "FAILED"]),
              "reason": pa.array([None, "UNDELIV: undeliverable"], pa.string()),
              "charge_items": pa.array([1, 2], pa.int32())}
    root.write_table(pa.table(recon, schema=RECONCILIATION_SCHEMA),
                     *root.campaign("c1/attempt-2", "reconciliation", "part-00000.parquet"))
    final, rows = across_attempts(root, "c1", [2])
    by_row = {r["row_number"]: r for r in final.to_pylist()}
    assert by_row[1]["final_status"] == "DELIVERED" and by_row[1]["delivered_attempt"] == 1
    assert (by_row[2]["final_status"], by_row[2]["delivered_attempt"], by_row[2]["attempts"],
            by_row[2]["message_id"]) == ("DELIVERED", 2, 2, "e2")
    assert by_row[6]["final_status"] == "FAILED" and by_row[6]["last_attempt"] == 2
    assert by_row[6]["charge_items_per_attempt"] == [1, 2] and by_row[6]["charge_items"] == 3
    assert by_row[3]["charge_items_per_attempt"] == [1, 0]
    second = [r for r in rows.to_pylist() if r["attempt"] == 2]
    assert {r["row_number"]: r["previous_message_id"] for r in second} == {2: "m2", 6: "m6"}
