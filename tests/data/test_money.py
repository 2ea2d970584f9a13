"""Prices and money: the price file, each row priced at the price in force when sent,
money balances reconciled in money, the per-connection overview."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from sms_provider.data.prices import CHINA, PriceBook, PriceFileError
from sms_provider.data.reconcile import reconcile_campaign
from sms_provider.data.schemas import BALANCE_SCHEMA
from sms_provider.data.storage import DataRoot
from tests.data.test_reconcile import (
    DELIVERED,
    NOW,
    by_row,
    discrepancies,
    mobile_for,
    read,
    report,
    write_campaign,
    write_reports,
)

#: the price changes at 10:00 China time on 5 March; five messages go before, five after
CHANGE = datetime(2026, 3, 5, 10, 0, tzinfo=CHINA)
BEFORE, AFTER = CHANGE - timedelta(minutes=30), CHANGE + timedelta(minutes=30)


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot(tmp_path / "data")


def price_file(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(entries))
    return path


def eims_prices(tmp_path: Path) -> PriceBook:
    return PriceBook.from_file(price_file(tmp_path, [
        {"conn_id": "sms_eims", "price_per_item": "0.05", "currency": "CNY",
         "valid_from": "2026-01-01"},
        {"conn_id": "sms_eims", "price_per_item": "0.04", "currency": "CNY",
         "valid_from": "2026-03-05T10:00:00"},   # China time: no offset given
        {"conn_id": "sms_eums", "price_per_item": "0.035", "currency": "CNY",
         "valid_from": "2026-01-01"}]))


def ten_sent(root: DataRoot, vendor: str, conn: str) -> None:
    """Rows 1-5 before the change, 6-10 after (rows 5 and 10 are two items each)."""
    write_campaign(root, "a", vendor, conn, [
        {"row_number": i, "submitted_at": BEFORE if i <= 5 else AFTER}
        for i in range(1, 11)])
    write_reports(root, conn, vendor, [
        report(f"a-m{i}", mobile_for(vendor, i), DELIVERED, AFTER) for i in range(1, 10)],
        AFTER)


def balance(root: DataRoot, conn: str, unit: str, amounts: list[str]) -> None:
    times = [BEFORE - timedelta(minutes=5), AFTER + timedelta(minutes=5)]
    root.write_table(pa.Table.from_pylist([
        {"conn_id": conn, "amount": amount, "unit": unit, "product": None, "gift": "0",
         "taken_at": when} for when, amount in zip(times, amounts, strict=True)],
        schema=BALANCE_SCHEMA), "statistics", conn, "balance", "part-1.parquet")


def test_each_row_is_priced_at_the_price_in_force_when_sent(root: DataRoot,
                                                            tmp_path: Path) -> None:
    ten_sent(root, "eims", "sms_eims")
    result = reconcile_campaign(root, "a", now=NOW, prices=eims_prices(tmp_path))
    rows = by_row(read(root, "a", "reconciliation"))
    assert rows[1]["price_per_item"] == Decimal("0.05") and rows[1]["currency"] == "CNY"
    assert rows[5]["charge_amount"] == Decimal("0.10")            # two items at 0.05
    assert rows[6]["price_per_item"] == Decimal("0.04")
    assert rows[10]["charge_amount"] == Decimal("0.08")
    [overview] = result.money
    # 6 items at 0.05 + 6 items at 0.04, exactly
    assert overview["spend"] == Decimal("0.54") and overview["charge_items"] == 12
    assert overview["cost_per_delivered"] == Decimal("0.06")      # 0.54 / 9 delivered
    assert overview["estimated_amount"] == Decimal("0.60")        # 12 items at the first price
    assert overview["balance_unit"] == "money"
    assert read(root, "a", "overview").to_pylist()[0]["spend"] == Decimal("0.54")


def test_a_row_sent_before_any_price_has_no_amount(root: DataRoot, tmp_path: Path) -> None:
    ten_sent(root, "eims", "sms_eims")
    book = PriceBook.from_file(price_file(tmp_path, [
        {"conn_id": "sms_eims", "price_per_item": "0.04", "valid_from": CHANGE.isoformat()}]))
    result = reconcile_campaign(root, "a", now=NOW, prices=book)
    rows = by_row(read(root, "a", "reconciliation"))
    assert rows[1]["price_per_item"] is None and rows[1]["charge_amount"] is None
    assert rows[6]["charge_amount"] == Decimal("0.04")
    assert result.money[0]["spend"] is None  # part of it unpriced: no total that looks whole


def test_money_balance_reconciles_across_a_price_change(root: DataRoot,
                                                        tmp_path: Path) -> None:
    ten_sent(root, "eims", "sms_eims")
    balance(root, "sms_eims", "money", ["100.000000", "99.460000"])   # fell by exactly 0.54
    reconcile_campaign(root, "a", now=NOW, prices=eims_prices(tmp_path))
    assert [d for d in discrepancies(root, "a") if d["kind"] == "balance_mismatch"] == []
    # one price for all (what the old single option would have said) finds a gap that is not
    reconcile_campaign(root, "a", now=NOW, price_per_item={"sms_eims": "0.05"})
    [flag] = [d for d in discrepancies(root, "a") if d["kind"] == "balance_mismatch"]
    assert flag["amount"] == Decimal("-0.06")


def test_money_balance_with_a_seeded_discrepancy(root: DataRoot, tmp_path: Path) -> None:
    ten_sent(root, "eims", "sms_eims")
    balance(root, "sms_eims", "money", ["100.000000", "99.380000"])   # 0.08 more than ours
    reconcile_campaign(root, "a", now=NOW, prices=eims_prices(tmp_path))
    [flag] = [d for d in discrepancies(root, "a") if d["kind"] == "balance_mismatch"]
    assert flag["amount"] == Decimal("0.08")
    assert flag["count"] == 2                                 # at the price at its end, 0.04
    assert "fell by 0.620000 money" in flag["detail"]
    assert "12 charge items = 0.540000 CNY" in flag["detail"]
    html = Path(reconcile_campaign(root, "a", now=NOW, prices=eims_prices(tmp_path))
                .paths["report_html"]).read_text()
    assert "Balance movements" in html and "0.62 CNY" in html and "0.54 CNY" in html


def test_item_balance_reconciles_in_items_with_money_beside(root: DataRoot,
                                                            tmp_path: Path) -> None:
    ten_sent(root, "eums", "sms_eums")
    balance(root, "sms_eums", "items", ["1000", "988"])
    result = reconcile_campaign(root, "a", now=NOW, prices=eims_prices(tmp_path))
    assert [d for d in discrepancies(root, "a") if d["kind"] == "balance_mismatch"] == []
    assert result.money[0]["balance_unit"] == "items"
    assert result.money[0]["spend"] == Decimal("0.42")        # 12 items at 0.035
    balance(root, "sms_eums", "items", ["1000", "985"])       # three items unexplained
    reconcile_campaign(root, "a", now=NOW, prices=eims_prices(tmp_path))
    [flag] = [d for d in discrepancies(root, "a") if d["kind"] == "balance_mismatch"]
    assert flag["count"] == 3 and flag["amount"] == Decimal("0.105")


def test_price_file_validity_dates_and_formats(tmp_path: Path) -> None:
    book = eims_prices(tmp_path)
    assert book.price_at("sms_eims", CHANGE - timedelta(seconds=1)).price_per_item == \
        Decimal("0.05")
    assert book.price_at("sms_eims", CHANGE).price_per_item == Decimal("0.04")
    # a bare date is midnight China time: 16:00 UTC the day before
    assert book.price_at("sms_eums", datetime(2025, 12, 31, 15, 59, tzinfo=UTC)) is None
    assert book.price_at("sms_eums", datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) is not None
    assert book.price_at("sms_other", CHANGE) is None
    csv = tmp_path / "prices.csv"
    csv.write_text("conn_id,price_per_item,currency,valid_from\n"
                   "sms_eims,0.05,CNY,2026-01-01\nsms_eims,0.04,CNY,2026-03-05T10:00:00\n")
    assert PriceBook.from_file(csv).price_at("sms_eims", CHANGE).price_per_item == \
        Decimal("0.04")


@pytest.mark.parametrize(("entries", "message"), [
    ([{"conn_id": "c", "price_per_item": "x", "valid_from": "2026-01-01"}],
     "entry 1: price_per_item 'x' is not a decimal number"),
    ([{"conn_id": "c", "price_per_item": "0.1"}], "entry 1: missing valid_from"),
    ([{"conn_id": "c", "price_per_item": "0.1", "valid_from": "March"}],
     "valid_from 'March' is not an ISO date"),
    ([{"conn_id": "c", "price_per_item": "0.0000001", "valid_from": "2026-01-01"}],
     "more than six decimal places"),
    ([{"conn_id": "c", "price_per_item": "0.1", "valid_from": "2026-01-01"},
      {"conn_id": "c", "price_per_item": "0.2", "valid_from": "2026-01-01T00:00:00+08:00"}],
     "two prices valid from the same moment"),
])
def test_price_file_errors_name_the_file_and_entry(tmp_path: Path, entries: list,
                                                   message: str) -> None:
    path = price_file(tmp_path, entries)
    with pytest.raises(PriceFileError, match=str(path)) as info:
        PriceBook.from_file(path)
    assert message in str(info.value)


def test_the_shipped_price_file_covers_the_demo_connections() -> None:
    book = PriceBook.from_file(Path(__file__).parents[2] / "include" / "prices.json")
    for conn in ("sms_emay_ims", "sms_emay_fms", "sms_eims", "sms_eums", "sms_chuanglan"):
        assert book.price_at(conn, datetime.now(UTC)) is not None, conn
