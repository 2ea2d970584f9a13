"""The prepare step: every input row accounted for, deterministic output, any storage."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from sms_provider.data.content import ContentTemplateError
from sms_provider.data.prepare import (
    PrepareSettings,
    _repeats,
    prepare,
    read_shard,
    shard_count,
)
from sms_provider.data.recipients import RecipientFileError
from sms_provider.data.storage import DataRoot

CONTENT = "【Shop】Hi {name}, code {code}"


def csv_file(path: Path, rows: list[tuple[str, str, str]], encoding: str = "utf-8") -> Path:
    text = "mobile,name,code\n" + "".join(f"{m},{n},{c}\n" for m, n, c in rows)
    path.write_bytes(text.encode(encoding))
    return path


def settings(**kw) -> PrepareSettings:
    return PrepareSettings(**{"campaign_id": "c1", "vendor": "eums", "content": CONTENT, **kw})


def test_every_row_is_prepared_or_rejected_with_a_reason(tmp_path) -> None:
    rows = [("13800138000", "李", "1"), ("+86 139 0013 9000", "王", "2"), ("junk", "x", "3"),
            ("13800138000", "dup", "4"), ("13700137000", "", "5"),
            ("+44 7400 123456", "uk", "6")]
    root = DataRoot(tmp_path / "data")
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", rows, "gbk")), settings())
    assert summary.encoding == "gb18030"
    assert (summary.input_rows, summary.prepared, summary.rejected) == (6, 2, 4)
    assert summary.reasons == {"not_a_number": 1, "duplicate": 1, "missing_value": 1,
                               "not_mainland": 1}
    prepared = root.read_dataset("campaigns/c1/prepared").to_pylist()
    assert [(r["row_number"], r["mobile"], r["content"]) for r in prepared] == [
        (1, "13800138000", "【Shop】Hi 李, code 1"), (2, "13900139000", "【Shop】Hi 王, code 2")]
    rejected = {r["row_number"]: r for r in root.read_dataset("campaigns/c1/rejected").to_pylist()}
    assert rejected[3]["raw_value"] == "junk"
    assert rejected[5]["detail"] == "empty column name"


def test_international_vendors_keep_foreign_numbers(tmp_path) -> None:
    rows = [("+44 7400 123456", "uk", "1"), ("13800138000", "cn", "2")]
    root = DataRoot(tmp_path / "data")
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", rows)), settings(vendor="emay_ims"))
    assert summary.prepared == 2
    mobiles = root.read_dataset("campaigns/c1/prepared")["mobile"].to_pylist()
    assert mobiles == ["00447400123456", "008613800138000"]


def test_suppressed_numbers_and_long_content_are_rejected(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    root.write_table(pa.table({"e164": ["8613800138000"]}), "suppression", "optout.parquet")
    rows = [("13800138000", "a", "1"), ("13900139000", "b" * 600, "2"),
            ("13700137000", "c", "3")]
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", rows)),
                      settings(max_content_chars=500))
    assert summary.reasons == {"suppressed": 1, "content_too_long": 1}
    detail = root.read_dataset("campaigns/c1/rejected").to_pylist()
    assert any("the limit is 500" in r["detail"] for r in detail)


def test_charge_items_and_fms_variables(tmp_path) -> None:
    rows = [("13800138000", "x" * 70, '"q"'), ("13900139000", "y", "2")]
    root = DataRoot(tmp_path / "data")
    prepare(root, str(csv_file(tmp_path / "r.csv", rows)),
            settings(vendor="emay_fms", template_variables=["name", "code"]))
    table = root.read_dataset("campaigns/c1/prepared").sort_by("row_number").to_pylist()
    assert table[0]["charge_items"] == 2 and table[1]["charge_items"] == 1
    assert json.loads(table[1]["variables"]) == {"name": "y", "code": "2"}
    assert json.loads(table[0]["variables"])["code"] == "q"


def test_shards_are_bounded_and_the_output_is_deterministic(tmp_path) -> None:
    rows = [(f"138{i:08d}", f"n{i}", str(i)) for i in range(2500)]
    path = str(csv_file(tmp_path / "r.csv", rows))
    root = DataRoot(tmp_path / "data")
    first = prepare(root, path, settings(max_shards=4, min_shard_rows=500))
    assert first.shards == [0, 1, 2, 3]
    tables = [read_shard(root, "c1", s) for s in first.shards]
    assert sum(t.num_rows for t in tables) == 2500
    again = prepare(root, path, settings(max_shards=4, min_shard_rows=500))
    assert again == first
    assert [read_shard(root, "c1", s) for s in again.shards] == tables
    assert shard_count(10_000_000, 8, 5000) == 8 and shard_count(10, 8, 5000) == 1
    custom_ids = tables[0]["custom_id"].to_pylist()
    assert len(set(custom_ids)) == len(custom_ids) and max(map(len, custom_ids)) <= 32


def test_a_smaller_rerun_removes_stale_shards(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    big = [(f"138{i:08d}", "n", "1") for i in range(1000)]
    prepare(root, str(csv_file(tmp_path / "big.csv", big)), settings(min_shard_rows=100))
    prepare(root, str(csv_file(tmp_path / "small.csv", big[:50])), settings(min_shard_rows=100))
    assert root.read_dataset("campaigns/c1/prepared").num_rows == 50


def test_bad_template_and_missing_column_are_clear(tmp_path) -> None:
    path = str(csv_file(tmp_path / "r.csv", [("13800138000", "a", "1")]))
    root = DataRoot(tmp_path / "data")
    with pytest.raises(ContentTemplateError, match=r"city.*mobile, name, code"):
        prepare(root, path, settings(content="Hi {city}"))
    with pytest.raises(ContentTemplateError, match="unmatched brace"):
        prepare(root, path, settings(content="Hi {name"))
    with pytest.raises(RecipientFileError, match="phone"):
        prepare(root, path, settings(mobile_column="phone"))


def test_an_object_store_root_works_without_renames(tmp_path) -> None:
    memory = fsspec.filesystem("memory")
    root = DataRoot("sms-bucket/root", pafs.PyFileSystem(pafs.FSSpecHandler(memory)))
    assert not root.is_local
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", [("13800138000", "a", "1")])),
                      settings())
    assert summary.prepared == 1
    with memory.open("/sms-bucket/root/campaigns/c1/prepared/part-00000.parquet", "rb") as f:
        assert pq.read_table(f)["mobile"].to_pylist() == ["13800138000"]


def test_the_ledger_needs_a_url_when_the_root_is_remote(monkeypatch) -> None:
    from sms_provider.runtime import ledger_url

    memory = fsspec.filesystem("memory")
    root = DataRoot("b/r", pafs.PyFileSystem(pafs.FSSpecHandler(memory)))
    monkeypatch.delenv("SMS_LEDGER_URL", raising=False)
    with pytest.raises(RuntimeError, match="set SMS_LEDGER_URL"):
        ledger_url(root)
    monkeypatch.setenv("SMS_LEDGER_URL", "postgresql+psycopg2://u@h/db")
    assert ledger_url(root) == "postgresql+psycopg2://u@h/db"


@pytest.mark.parametrize(("rows", "spread"), [
    (2, 1), (7, 3), (5000, 100), (200_000, 10**10),  # packed and sorted
    (300_000, 10**15),  # numbers of many countries: too wide to pack, hashed
])
def test_repeated_numbers_are_found_exactly_as_a_first_seen_scan_finds_them(rows, spread):
    keys = np.random.default_rng(rows).integers(8 * 10**12, 8 * 10**12 + spread, rows)
    seen: set[int] = set()
    expected = []
    for position, key in enumerate(keys.tolist()):
        if key in seen:
            expected.append(position)
        seen.add(key)
    assert sorted(_repeats(keys).tolist()) == expected
