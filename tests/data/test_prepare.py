"""The prepare step: every input row accounted for, deterministic output, any storage."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from sms_provider.data.content import ContentTemplateError
from sms_provider.data.duplicates import _repeats
from sms_provider.data.prepare import (
    PrepareSettings,
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
    from sms_provider.data.locations import ledger_url

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


# --- robustness: every row accounted for, whatever the file -----------------------------------


def _accounted(root: DataRoot, summary, rows: int) -> None:
    """input = prepared + rejected, in the summary and in the datasets, row by row."""
    assert summary.input_rows == rows == summary.prepared + summary.rejected
    prepared = root.read_dataset("campaigns/c1/prepared")["row_number"].to_pylist()
    rejected = root.read_dataset("campaigns/c1/rejected")["row_number"].to_pylist()
    assert (len(prepared), len(rejected)) == (summary.prepared, summary.rejected)
    assert sorted(prepared + rejected) == list(range(1, rows + 1))


def _parquet(path: Path) -> Path:
    pq.write_table(pa.table({"mobile": pa.array([13800138000, 13900139000, None], pa.int64()),
                             "name": ["李", "王", "x"], "code": pa.array([1, 2, 3])}), path)
    return path


ACCEPTED = {  # name: (file bytes or a writer, rows, the first content)
    "gbk": ("mobile,name,code\n13800138000,张三,1\n13900139000,李四,2\n".encode("gbk"), 2,
            "【Shop】Hi 张三, code 1"),
    "bom": ("\ufeffmobile,name,code\r\n13800138000,张三,1\r\n".encode(), 1,
            "【Shop】Hi 张三, code 1"),
    "semicolon": (b"mobile;name;code\n13800138000;a,b;1\n13900139000;c;2\n", 2,
                  "【Shop】Hi a,b, code 1"),
    "tab": (b"mobile\tname\tcode\n13800138000\ta\t1\n", 1, "【Shop】Hi a, code 1"),
    "quoted-newline": (b'mobile,name,code\n13800138000,"a\nb",1\n13900139000,"c ""d""",2\n', 2,
                       "【Shop】Hi a\nb, code 1"),
    "header-only": (b"mobile,name,code\n", 0, None),
    "nul-and-control": (b"mobile,name,code\n13800138000,a\x00b,1\n13900139000,c\x07,2\n"
                        b"13700137000,ok,3\n", 3, "【Shop】Hi ok, code 3"),
    "parquet-int64": (_parquet, 3, "【Shop】Hi 李, code 1"),
    "10-mb-value": (b"mobile,name,code\n13800138000," + b"x" * (10 << 20) + b",1\n", 1,
                    "【Shop】Hi " + "x" * (10 << 20) + ", code 1"),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_every_accepted_file_accounts_for_every_row(tmp_path, case) -> None:
    data, rows, first = ACCEPTED[case]
    path = tmp_path / ("r.parquet" if callable(data) else "r.csv")
    if callable(data):
        data(path)
    else:
        path.write_bytes(data)
    root = DataRoot(tmp_path / "data")
    summary = prepare(root, str(path), settings())
    _accounted(root, summary, rows)
    contents = root.read_dataset("campaigns/c1/prepared").sort_by("row_number")["content"]
    assert (contents[0].as_py() if len(contents) else None) == first


def test_control_characters_in_a_personalised_value_reject_the_row(tmp_path) -> None:
    rows = [("13800138000", "a\x00b", "1"), ("13900139000", "tab\tand\nline", "2"),
            ("13700137000", "esc\x1b", "3"), ("13600136000", "ok", "del\x7f"),
            ("13500135000", "c1\x85", "5")]
    path = tmp_path / "r.csv"
    path.write_bytes(("mobile,name,code\n" + "".join(
        f'{m},"{n}",{c}\n' for m, n, c in rows)).encode())
    root = DataRoot(tmp_path / "data")
    summary = prepare(root, str(path), settings())
    _accounted(root, summary, 5)
    assert summary.reasons == {"control_character": 4}
    prepared = root.read_dataset("campaigns/c1/prepared")["content"].to_pylist()
    assert prepared == ["【Shop】Hi tab\tand\nline, code 2"]  # tab and line breaks may go
    detail = {r["row_number"]: r["detail"]
              for r in root.read_dataset("campaigns/c1/rejected").to_pylist()}
    assert detail == {1: "column 'name' holds the control character U+0000",
                      3: "column 'name' holds the control character U+001B",
                      4: "column 'code' holds the control character U+007F",
                      5: "column 'name' holds the control character U+0085"}


def test_control_characters_in_fms_variables_and_parquet(tmp_path) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"mobile": ["13800138000", "13900139000"], "name": ["a", "b"],
                             "extra": ["x\x00", "y"]}), path)
    root = DataRoot(tmp_path / "data")
    summary = prepare(root, str(path), settings(content="Hi {name}", vendor="emay_fms",
                                                template_variables=["name", "extra"]))
    assert summary.reasons == {"control_character": 1}
    assert root.read_dataset("campaigns/c1/prepared")["row_number"].to_pylist() == [2]


def test_a_control_character_in_the_content_is_refused(tmp_path) -> None:
    path = str(csv_file(tmp_path / "r.csv", [("13800138000", "a", "1")]))
    with pytest.raises(ContentTemplateError, match=r"U\+0000 at character 4"):
        prepare(DataRoot(tmp_path / "data"), path, settings(content="Hi \x00{name}"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_duplicated_column_the_content_uses_is_named(tmp_path, fmt) -> None:
    if fmt == "csv":
        path = tmp_path / "dup.csv"
        path.write_bytes(b"mobile,name,code,name\n13800138000,a,1,b\n")
    else:
        path = tmp_path / "dup.parquet"
        pq.write_table(pa.Table.from_arrays(
            [pa.array(["13800138000"]), pa.array(["a"]), pa.array(["1"]), pa.array(["b"])],
            names=["mobile", "name", "code", "name"]), path)
    with pytest.raises(RecipientFileError) as caught:
        prepare(DataRoot(tmp_path / "data"), str(path), settings())
    assert caught.value.column == "name" and str(path) in str(caught.value)
    assert "2 times" in str(caught.value)
    # a duplicated column the campaign does not use is no obstacle
    summary = prepare(DataRoot(tmp_path / "data"), str(path), settings(content="Hi {code}"))
    assert summary.prepared == 1


def test_a_missing_template_variable_is_bad_input_naming_the_file(tmp_path) -> None:
    from sms_provider.data.errors import BadInputError

    path = str(csv_file(tmp_path / "r.csv", [("13800138000", "a", "1")]))
    with pytest.raises(BadInputError, match=r"r\.csv: template variable\(s\) city"):
        prepare(DataRoot(tmp_path / "data"), path,
                settings(vendor="emay_fms", template_variables=["name", "city"]))
    with pytest.raises(BadInputError, match=r"r\.csv: content names column\(s\) city"):
        prepare(DataRoot(tmp_path / "data"), path, settings(content="Hi {city}"))


# --- a write that fails partway ---------------------------------------------------------------


class _DiskFills(pafs.FileSystemHandler):
    """The local disk, filling up: the ``fail_at``-th Parquet file written gets ENOSPC
    after its first bytes (and, with ``deletes_fail``, nothing can be removed after that).
    """

    def __init__(self, fail_at: int, deletes_fail: bool = False) -> None:
        self.local = pafs.LocalFileSystem()
        self.fail_at = fail_at
        self.deletes_fail = deletes_fail
        self.parquet_files = 0
        self.full = False

    def open_output_stream(self, path, metadata):
        handle = open(path, "wb")  # noqa: SIM115 -- the stream below owns it
        if path.endswith(".parquet"):
            self.parquet_files += 1
            if self.parquet_files >= self.fail_at:
                handle = _FullAfter(self, handle, 64)
        return pa.PythonFile(handle, mode="w")

    def _deleting(self) -> None:
        if self.deletes_fail and self.full:
            raise OSError(errno.EIO, "Input/output error")

    def delete_dir(self, path):
        self._deleting()
        self.local.delete_dir(path)

    def delete_file(self, path):
        self._deleting()
        self.local.delete_file(path)

    # everything else as the local disk does it
    def get_type_name(self):
        return "disk-fills"

    def equals(self, other):
        return self is other

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self._deleting()
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError("not here")

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        self.local.copy_file(src, dest)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)


class _FullAfter:
    """A file object that takes ``room`` bytes, then says the disk is full."""

    def __init__(self, disk: _DiskFills, handle, room: int) -> None:
        self.disk, self.handle, self.room, self.closed = disk, handle, room, False

    def write(self, data) -> int:
        if len(data) > self.room:
            self.disk.full = True
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.closed = True
        self.handle.close()


def _four_shards(tmp_path: Path) -> tuple[str, PrepareSettings]:
    rows = [(f"138{i:08d}", f"n{i}", str(i)) for i in range(2000)] + [("junk", "x", "1")]
    return str(csv_file(tmp_path / "r.csv", rows)), settings(max_shards=4, min_shard_rows=500)


def _parquet_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet")) if folder.exists() else []


@pytest.mark.parametrize("deletes_fail", [False, True])
@pytest.mark.parametrize("earlier_run", [False, True])
def test_a_prepare_that_fails_partway_leaves_nothing_a_later_run_reads(
        tmp_path, earlier_run, deletes_fail) -> None:
    from sms_provider.data.completion import UnfinishedPrepareError
    from sms_provider.data.reconcile import reconcile_all, reconcile_campaign

    path, shards = _four_shards(tmp_path)
    folder = tmp_path / "data"
    root = DataRoot(folder)
    if earlier_run:  # a complete dataset from before must not be read as this run's either
        assert prepare(root, path, shards).shards == [0, 1, 2, 3]
    disk = _DiskFills(fail_at=2, deletes_fail=deletes_fail)
    full = DataRoot(str(folder), pafs.PyFileSystem(disk))
    with pytest.raises(OSError, match="No space left") as caught:
        prepare(full, path, shards)
    assert caught.value.errno == errno.ENOSPC
    campaign = folder / "campaigns" / "c1"
    if not deletes_fail:  # what was written is gone ...
        assert _parquet_under(campaign / "prepared") == _parquet_under(campaign / "rejected") == []
    else:  # ... or, where it cannot go, is there but refused
        assert _parquet_under(campaign / "prepared")
    with pytest.raises(UnfinishedPrepareError, match="c1: the last prepare did not finish"):
        read_shard(root, "c1", 0)
    with pytest.raises(UnfinishedPrepareError):
        reconcile_campaign(root, "c1")
    assert "c1" not in reconcile_all(root)
    again = prepare(root, path, shards)  # a prepare that finishes makes it whole again
    assert again.shards == [0, 1, 2, 3] and not (campaign / "_prepare_unfinished").exists()
    assert sum(read_shard(root, "c1", s).num_rows for s in again.shards) == 2000
    assert root.read_dataset("campaigns/c1/rejected").num_rows == 1
    assert reconcile_campaign(root, "c1").counts["input_rows"] == 2001


def test_control_characters_are_found_in_any_chunk_and_slice() -> None:
    from sms_provider.data.content import holds_control_character

    clean = pa.array(["张三", "tab\tline\n", "nbsp\u00a0", None, ""])
    dirty = pa.array(["ok", "nul\x00", "c1\u009f", "del\x7f", "é"])
    column = pa.chunked_array([clean, dirty, dirty.slice(3)])
    assert holds_control_character(column).to_pylist() == [
        False] * 5 + [False, True, True, True, False] + [True, False]
    assert holds_control_character(clean).to_pylist() == [False] * 5
