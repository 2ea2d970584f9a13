"""Collecting delivery data by pulling: real HTTP against the simulator, real files on disk."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sms_provider.data.collect import (
    CollectResult,
    collect_inbound,
    collect_reports,
    collect_statistics,
    pending_message_ids,
    snapshot_balance,
)
from sms_provider.data.opt_outs import load_suppressed
from sms_provider.data.prepare import PrepareSettings, prepare
from sms_provider.data.reports import read_all
from sms_provider.data.schemas import (
    BALANCE_SCHEMA,
    DAILY_STATISTIC_SCHEMA,
    INBOUND_SCHEMA,
    REPORT_SCHEMA,
    SUBMISSION_SCHEMA,
    SUPPRESSION_SCHEMA,
)
from sms_provider.data.storage import DataRoot
from sms_provider.errors import AmbiguousError, RetryableError
from sms_provider.models import SubmissionStatus
from sms_provider.vendors.base import OutboundMessage, VendorClient
from sms_provider.vendors.clock import china_now
from sms_provider.vendors.profiles import PROFILES
from tests.simulator_harness import SimulatorProcess

ALL_REPORTED = {"delivered": 0.8, "failed": 0.2, "silent": 0.0}
EUMS_TEXT = "【测试】您的验证码是123456"


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "data")


@pytest.fixture
def eums(sim: SimulatorProcess) -> Iterator[VendorClient]:
    sim.reset(eums={"pull_batch": 7}, simulation={"outcomes": ALL_REPORTED})
    with sim.client("eums") as client:
        yield client


def send_eums(client: VendorClient, count: int, per_request: int = 10) -> list[str]:
    ids = []
    for start in range(0, count, per_request):
        batch = [OutboundMessage(f"1380000{i:04d}", EUMS_TEXT, custom_id=f"req-{start}")
                 for i in range(start, min(count, start + per_request))]
        ids += [s.message_id for s in client.send(batch)]
    return ids


def stored(root: DataRoot, conn_id: str, dataset: str = "reports") -> pa.Table:
    schema = REPORT_SCHEMA if dataset == "reports" else INBOUND_SCHEMA
    return read_all(root, dataset, schema, conn_id)


# --- draining a consume-once queue -----------------------------------------------------
def test_eums_drains_every_page_each_written_before_the_next(sim, eums, root):
    sent = send_eums(eums, 30)

    result = collect_reports(eums, root, "sms_eums")

    assert result.pages == math.ceil(30 / 7) and result.calls == result.pages + 1
    assert result.rows == 30 and sum(result.statuses.values()) == 30
    assert len(result.paths) >= result.pages and result.skipped == {}
    table = stored(root, "sms_eums")
    assert sorted(table["message_id"].to_pylist()) == sorted(sent)
    assert set(table["source"].to_pylist()) == {"pull"}
    assert all(ref for ref in table["custom_id"].to_pylist())  # EUMS reference kept
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert all(f"/reports/sms_eums/date={day}/pull-" in p for p in result.paths)

    again = collect_reports(eums, root, "sms_eums")
    assert (again.calls, again.pages, again.rows, again.paths) == (1, 0, 0, [])


def test_max_pages_stops_and_says_more_may_wait(sim, eums, root):
    send_eums(eums, 30)
    first = collect_reports(eums, root, "sms_eums", max_pages=2)
    assert (first.pages, first.rows, first.skipped) == (2, 14, {"max_pages": 1})
    rest = collect_reports(eums, root, "sms_eums")
    assert rest.rows == 16 and stored(root, "sms_eums").num_rows == 30


def test_lost_answer_surfaces_and_keeps_what_was_saved(sim, eums, root, caplog):
    sim.reset(eums={"pull_batch": 5}, simulation={"outcomes": ALL_REPORTED})
    send_eums(eums, 20)
    # the first pull is answered, the second is processed (handed out) and its answer lost
    sim.faults({"kind": "latency", "vendor": "eums", "path": "report.do", "count": 1},
               {"kind": "accept_drop", "vendor": "eums", "path": "report.do", "count": 1})

    with caplog.at_level(logging.ERROR), pytest.raises(AmbiguousError) as info:
        collect_reports(eums, root, "sms_eums")

    assert stored(root, "sms_eums").num_rows == 5  # the first page is on disk
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "saved before the error: 1 pages, 5 rows in 1 files" in notes
    assert "interrupted after 1 calls" in caplog.text and "5 rows" in caplog.text
    assert sim.config["eums"]["password"] not in caplog.text + notes

    after = collect_reports(eums, root, "sms_eums")
    assert after.rows == 10  # the lost page is gone at the vendor: 5 + 10 of 20
    assert stored(root, "sms_eums").num_rows == 15


def test_emay_pulls_drain_pages_of_500(sim, root):
    sim.reset(simulation={"outcomes": ALL_REPORTED})
    with sim.client("emay_ims") as ims:
        for chunk in range(2):
            ims.send([OutboundMessage(f"0061422{chunk}{i:05d}", "Your code is 1234",
                                      custom_id=f"c{chunk}-{i}") for i in range(300)])
        result = collect_reports(ims, root, "sms_emay_ims")
    assert (result.calls, result.pages, result.rows) == (3, 2, 600)
    table = stored(root, "sms_emay_ims")
    assert table.num_rows == 600 and table["custom_id"].null_count == 0


def test_emay_fms_reports_are_pulled(sim, root):
    text = "【测试】${name}您好，验证码${code}"
    with sim.client("emay_fms") as fms:
        template_id = fms.register_template(text).template_id
        subs = fms.send([OutboundMessage(f"1390000{i:04d}", custom_id=f"f{i}",
                                         variables={"name": "李雷", "code": "1"})
                         for i in range(20)], template_id=template_id)
        result = collect_reports(fms, root, "sms_emay_fms")
    reported = {r for r in stored(root, "sms_emay_fms")["message_id"].to_pylist()}
    assert result.rows == len(reported) and reported <= {s.message_id for s in subs}
    assert result.rows >= 15  # all but the few the simulation keeps silent


def test_push_only_vendor_is_skipped(sim, root):
    with sim.client("chuanglan") as client:
        result = collect_reports(client, root, "sms_chuanglan")
        inbound = collect_inbound(client, root, "sms_chuanglan")
    assert result.skipped == {"no_pull": 1}
    assert inbound.skipped == {"no_inbound_pull": 1} and not root.list_files()


# --- EIMS: querying still-open message ids ---------------------------------------------
def write_submissions(root: DataRoot, campaign_id: str, conn_id: str, ids: Sequence[str | None],
                      mobiles: Sequence[str], *, status: str = "submitted",
                      submitted_at: datetime | None = None, part: int = 0) -> None:
    at = int((submitted_at or datetime.now(UTC)).timestamp() * 1000)
    n = len(ids)
    table = pa.table({
        "campaign_id": [campaign_id] * n, "conn_id": [conn_id] * n, "vendor": ["eims"] * n,
        "shard": [0] * n, "chunk": [0] * n, "row_number": list(range(1, n + 1)),
        "mobile": list(mobiles), "message_id": list(ids), "custom_id": [None] * n,
        "charge_items": [1] * n, "vendor_code": ["0"] * n, "status": [status] * n,
        "description": [""] * n, "submitted_at": [at] * n,
    }, schema=SUBMISSION_SCHEMA)
    root.write_table(table, *root.campaign(campaign_id, "submissions",
                                           f"part-{part:05d}.parquet"))


class QuerySpy:
    """Records the ids of each getreport call, passing it on to the real client."""

    def __init__(self, client: VendorClient) -> None:
        self.calls: list[list[str]] = []
        self._query = client.query_reports
        client.query_reports = self  # type: ignore[method-assign]

    def __call__(self, ids: Sequence[str]) -> Any:
        self.calls.append(list(ids))
        return self._query(ids)

    @property
    def ids(self) -> list[str]:
        return [i for call in self.calls for i in call]


def test_eims_queries_open_ids_in_pages_of_200_and_never_final_ones_again(sim, root):
    sim.reset(simulation={"outcomes": {"delivered": 0.6, "failed": 0.2, "silent": 0.2}})
    mobiles = [f"86139{i:08d}" for i in range(450)]
    with sim.client("eims") as client:
        subs = client.send([OutboundMessage(m, "Your code is 1234") for m in mobiles])
        assert all(s.status is SubmissionStatus.SUBMITTED for s in subs)
        ids = [s.message_id for s in subs]
        write_submissions(root, "spring", "sms_eims", ids, mobiles)
        # neither another connection's rows nor rejected ones are asked about
        write_submissions(root, "other", "sms_eims_2", ids[:5], mobiles[:5])
        write_submissions(root, "spring", "sms_eims", ["999999"], ["8613900000999"],
                          status="rejected", part=1)
        spy = QuerySpy(client)

        first = collect_reports(client, root, "sms_eims")

        assert [len(c) for c in spy.calls] == [200, 200, 50] and sorted(spy.ids) == sorted(ids)
        assert (first.calls, first.pages, first.queried, first.rows) == (3, 3, 450, 450)
        table = stored(root, "sms_eims")
        pending = set(table.filter(pa.compute.equal(table["status"], "PENDING"))
                      ["message_id"].to_pylist())
        assert 30 < len(pending) < 150 and first.statuses["PENDING"] == len(pending)

        spy.calls.clear()
        second = collect_reports(client, root, "sms_eims")
        assert set(spy.ids) == pending and len(spy.ids) == len(pending)
        # still pending: same answer as before, not written twice
        assert second.rows == 0 and second.skipped == {"already_stored": len(pending)}
        assert stored(root, "sms_eims").num_rows == 450

        spy.calls.clear()
        later = datetime.now(UTC) + timedelta(hours=73)
        third = collect_reports(client, root, "sms_eims", now=later)
        assert spy.calls == [] and third.skipped == {"given_up": len(pending)}
    assert pending_message_ids(root, "sms_eims").ids == sorted(
        pending, key=ids.index)  # oldest submission first (one request: request order)


def test_eims_failed_query_keeps_earlier_pages_and_the_rerun_goes_on(sim, root, caplog):
    sim.reset(simulation={"outcomes": ALL_REPORTED})
    mobiles = [f"86135{i:08d}" for i in range(450)]
    with sim.client("eims") as client:
        ids = [s.message_id for s in client.send([OutboundMessage(m, "hi") for m in mobiles])]
        write_submissions(root, "c2", "sms_eims", ids, mobiles)
        sim.faults({"kind": "latency", "vendor": "eims", "path": "getreport", "count": 1},
                   {"kind": "status", "vendor": "eims", "path": "getreport", "count": 1})
        with caplog.at_level(logging.ERROR), pytest.raises(RetryableError) as info:
            collect_reports(client, root, "sms_eims")
        assert stored(root, "sms_eims").num_rows == 200
        assert "saved before the error: 1 pages, 200 rows" in " ".join(info.value.__notes__)
        assert "lost" not in " ".join(info.value.__notes__)  # nothing was handed out
        spy = QuerySpy(client)
        rerun = collect_reports(client, root, "sms_eims")
    assert sorted(spy.ids) == sorted(ids[200:]) and rerun.rows == 250
    assert stored(root, "sms_eims").num_rows == 450


def test_eims_pushed_final_reports_stop_queries(sim, root):
    mobiles = [f"86137{i:08d}" for i in range(3)]
    with sim.client("eims") as client:
        ids = [s.message_id for s in client.send([OutboundMessage(m, "hi") for m in mobiles])]
        write_submissions(root, "c1", "sms_eims", ids, mobiles)
        assert pending_message_ids(root, "sms_eims").ids == ids
        collect_reports(client, root, "sms_eims")
        left = pending_message_ids(root, "sms_eims")
    final = set(stored(root, "sms_eims").filter(pa.compute.is_in(
        stored(root, "sms_eims")["status"], pa.array(["DELIVERED", "FAILED"])))
        ["message_id"].to_pylist())
    assert set(left.ids) == set(ids) - final


# --- replies and the suppression list -------------------------------------------------
def test_opt_out_replies_reach_the_suppression_list_and_prepare_drops_them(sim, root, tmp_path):
    for i in range(50):
        sim.inject_mo("eims", f"86136{i:08d}", "好的")
    sim.inject_mo("eims", "85291234567", "TD")
    sim.inject_mo("eims", "8613900139000", "退订！")
    sim.inject_mo("eims", "8613800138000", "收到")
    sim.inject_mo("eums", "13700137000", "td")
    sim.inject_mo("eums", "13700137001", "好的，谢谢")

    with sim.client("eims") as eims:
        from_eims = collect_inbound(eims, root, "sms_eims")
    with sim.client("eums") as eums:
        from_eums = collect_inbound(eums, root, "sms_eums")

    assert (from_eims.calls, from_eims.pages, from_eims.rows) == (3, 2, 53)
    assert (from_eims.opt_outs, from_eims.suppressed) == (2, 2)
    assert (from_eums.rows, from_eums.opt_outs, from_eums.suppressed) == (2, 1, 1)
    inbound = stored(root, "sms_eims", "inbound")
    assert inbound.num_rows == 53 and sum(inbound["opt_out"].to_pylist()) == 2
    assert "退订！" in inbound["content"].to_pylist()

    suppressed = set(load_suppressed(root).to_pylist())
    assert suppressed == {"85291234567", "8613900139000", "8613700137000"}
    rows = pa.concat_tables(pq.read_table(p, schema=SUPPRESSION_SCHEMA)
                            for p in root.list_files("suppression"))
    reasons = dict(zip(rows["e164"].to_pylist(), rows["reason"].to_pylist(), strict=True))
    assert reasons["8613900139000"] == "opt_out: 退订！" and reasons["85291234567"] == "opt_out: TD"
    assert set(rows["conn_id"].to_pylist()) == {"sms_eims", "sms_eums"}

    csv = tmp_path / "recipients.csv"
    csv.write_text("mobile\n+85291234567\n13900139000\n13700137000\n13800138000\n")
    summary = prepare(root, str(csv), PrepareSettings("next", "eims", "hello"))
    assert (summary.prepared, summary.reasons) == (1, {"suppressed": 3})


# --- vendor statistics ----------------------------------------------------------------
def test_eums_statistics_written_and_rate_limit_skipped(sim, eums, root, caplog):
    send_eums(eums, 12)
    today = china_now().date()

    result = collect_statistics(eums, root, "sms_eums", days=7)

    assert (result.calls, result.rows, len(result.paths)) == (1, 1, 1)
    assert "/statistics/sms_eums/daily/daily-" in result.paths[0]
    table = pq.read_table(result.paths[0])
    assert table.schema.equals(DAILY_STATISTIC_SCHEMA)
    [row] = table.to_pylist()
    assert (row["day"], row["submitted"], row["conn_id"]) == (today, 12, "sms_eums")
    assert row["delivered"] + row["failed"] + row["unknown"] == 12

    for _ in range(2):  # three calls a minute: the client refuses the fourth itself
        assert collect_statistics(eums, root, "sms_eums").rows == 1
    with caplog.at_level(logging.WARNING):
        limited = collect_statistics(eums, root, "sms_eums")
    assert (limited.calls, limited.paths, limited.skipped) == (0, [], {"rate_limited": 1})
    assert "rate limited" in caplog.text
    with sim.client("eums") as fresh:  # a new process: the gateway says 131
        assert collect_statistics(fresh, root, "sms_eums").skipped == {"rate_limited": 1}
    assert len(root.list_files("statistics", "sms_eums", "daily")) == 3


def test_statistics_window_limits(sim, eums, root):
    assert collect_statistics(eums, root, "sms_eums").skipped == {"no_data": 1}
    with pytest.raises(ValueError, match="between 1 and 31"):
        collect_statistics(eums, root, "sms_eums", days=32)
    with sim.client("eims") as eims:
        assert collect_statistics(eims, root, "sms_eims").skipped == {"no_statistics": 1}


# --- balances ------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", sorted(PROFILES))
def test_balance_snapshot(sim, root, vendor):
    conn_id = f"sms_{vendor}"
    with sim.client(vendor) as client:
        result = snapshot_balance(client, root, conn_id)
    if vendor == "emay_ims":
        assert result.skipped == {"no_balance_call": 1} and result.paths == []
        return
    [path] = result.paths
    assert f"/statistics/{conn_id}/balance/balance-" in path
    table = pq.read_table(path)
    assert table.schema.equals(BALANCE_SCHEMA) and table.num_rows == result.rows >= 1
    for row in table.to_pylist():
        assert row["conn_id"] == conn_id and Decimal(row["amount"]) > 0
        assert row["unit"] == ("money" if vendor == "eims" else "items")


def test_result_summary_and_dict():
    result = CollectResult("sms_eums", "eums", "reports", calls=2, pages=1, rows=3,
                           statuses={"DELIVERED": 3}, skipped={"max_pages": 1})
    assert "2 calls, 1 pages, 3 rows" in result.summary()
    assert result.as_dict()["skipped"] == {"max_pages": 1}
