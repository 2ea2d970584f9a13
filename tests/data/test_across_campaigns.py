"""Across campaigns: the hive-partitioned ``reconciliation`` dataset read by pandas, pyarrow
and DuckDB (the analyst guide's own queries), and the index page."""

from __future__ import annotations

import html.parser
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest

from sms_provider.data.prices import PriceBook
from sms_provider.data.reconcile import reconcile_all
from sms_provider.data.storage import DataRoot
from tests.data.test_reconcile import (
    DELIVERED,
    FAILED,
    NOW,
    mobile_for,
    report,
    write_campaign,
    write_reports,
)

GUIDE = Path(__file__).parents[2] / "docs" / "analyst-guide.md"
FEB, MAR = datetime(2026, 2, 20, 2, tzinfo=UTC), datetime(2026, 3, 2, 2, tzinfo=UTC)
PRICES = {"sms_eims": "0.05", "sms_eums": "0.04"}


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    data = DataRoot(tmp_path / "data")
    # "20260301": a campaign id of digits only stays text in every reader
    for cid, vendor, conn, when in (("20260301", "eims", "sms_eims", MAR),
                                    ("feb-eums", "eums", "sms_eums", FEB),
                                    ("mar-eums", "eums", "sms_eums", MAR)):
        write_campaign(data, cid, vendor, conn, [
            {"row_number": i, "submitted_at": when, "message_id": f"{cid}-{i}"}
            for i in range(1, 11)], prepared=12)          # two prepared, never sent
        write_reports(data, conn, vendor, [
            report(f"{cid}-{i}", mobile_for(vendor, i), FAILED if i > 8 else DELIVERED, when,
                   description="blacklisted" if i > 8 else "") for i in range(1, 11)], when)
    return data


def run(root: DataRoot) -> None:
    reconcile_all(root, now=NOW, prices=PriceBook.constant(PRICES))


def guide_queries() -> dict[str, str]:
    """The DuckDB queries of the analyst guide, by their ``--`` title."""
    text = GUIDE.read_text()
    block = text[text.index("The classic questions in DuckDB"):]
    sql = block[block.index("```sql") + 6:block.index("```", block.index("```sql") + 6)]
    out = {}
    for chunk in sql.split(";"):
        chunk = chunk.strip()
        if chunk:
            title, _, body = chunk.partition("\n")
            out[title.lstrip("- ").strip()] = body
    return out


def test_one_dataset_for_all_campaigns_in_pandas_and_pyarrow(root: DataRoot) -> None:
    run(root)
    base = Path(root.path("reconciliation"))
    assert sorted(str(p.relative_to(base)) for p in base.rglob("*.parquet")) == [
        "month=2026-02/vendor=eums/feb-eums.parquet",
        "month=2026-03/vendor=eims/20260301.parquet",
        "month=2026-03/vendor=eums/mar-eums.parquet"]
    df = pd.read_parquet(base)
    assert len(df) == 36 and df["campaign_id"].map(type).eq(str).all()
    assert set(df["month"].astype(str)) == {"2026-02", "2026-03"}
    spend = df.groupby(["vendor"], observed=True).charge_amount.sum()
    assert spend["eims"] == Decimal("0.60") and spend["eums"] == Decimal("0.96")
    table = ds.dataset(base, partitioning="hive").to_table(
        filter=ds.field("vendor") == "eims")
    assert table.num_rows == 12 and set(table["campaign_id"].to_pylist()) == {"20260301"}
    run(root)  # a rerun replaces, never adds
    assert len(pd.read_parquet(base)) == 36


def test_the_guides_duckdb_queries(root: DataRoot) -> None:
    run(root)
    queries = guide_queries()
    assert set(queries) == {"spend per vendor per month", "delivery rate per vendor and carrier",
                            "top failure reasons"}
    data = root.path("")
    con = duckdb.connect()

    def q(name: str) -> list[tuple]:
        return con.sql(queries[name].replace("'data/", f"'{data}/")).fetchall()

    rows = q("spend per vendor per month")
    spend = {(r[0], r[1]): r for r in rows}
    assert len(rows) == len(spend) == 3                             # one row each
    assert set(spend) == {("2026-02", "eums"), ("2026-03", "eims"), ("2026-03", "eums")}
    *_, currency, items, amount, per_delivered = spend[("2026-03", "eims")]
    assert (currency, items, amount) == ("CNY", 12, Decimal("0.60"))
    assert per_delivered == pytest.approx(0.075)                   # 0.60 / 8 delivered
    rates = {(r[0], r[1]): r for r in q("delivery rate per vendor and carrier")}
    assert rates[("eums", "China Mobile")][2:5] == (20, 16, pytest.approx(0.8))
    [top, *_] = q("top failure reasons")
    assert top[2] == "UNDELIV: blacklisted" and top[3] == 4       # eums, two campaigns
    assert con.execute("SELECT DISTINCT typeof(campaign_id) FROM read_parquet(?, "
                       "hive_partitioning = true)", [f"{data}/reconciliation/**/*.parquet"]
                       ).fetchall() == [("VARCHAR",)]


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.svgs = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self.links.append(dict(attrs)["href"])
        self.svgs += tag == "svg"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_index_lists_every_campaign_with_its_report(root: DataRoot) -> None:
    run(root)
    path = Path(root.path("campaigns", "index.html"))
    page = _Page()
    page.feed(path.read_text())
    assert page.links == ["20260301/report.html", "mar-eums/report.html",
                          "feb-eums/report.html"]    # newest first
    for link in page.links:
        assert (path.parent / link).exists()
    assert page.svgs == 2                              # spend and delivery rate over time
    text = re.sub(r"\s+", " ", " ".join(page.text))
    assert "0.60 CNY" in text and "80.0%" in text and "2026-02-20" in text
    assert "<script" not in path.read_text() and "http" not in path.read_text().replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # the campaign report links back
    report_html = (path.parent / "feb-eums" / "report.html").read_text()
    assert 'href="../index.html"' in report_html and "Money" in report_html
    assert "cost per delivered" in report_html


def test_the_index_keeps_campaigns_reconciled_earlier(root: DataRoot) -> None:
    run(root)
    reconcile_all(root, ["feb-eums"], now=NOW + timedelta(hours=1))
    page = _Page()
    page.feed(Path(root.path("campaigns", "index.html")).read_text())
    assert len(page.links) == 3
