"""Recipient files as spreadsheets and data tools really write them, and every way they go wrong."""

from __future__ import annotations

import codecs
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sms_provider.data import recipients
from sms_provider.data.numbers import check_numbers
from sms_provider.data.recipients import (
    ENCODING_KEY,
    FORMAT_KEY,
    ROW_NUMBER,
    RecipientFileError,
    load_recipients,
    read_recipients,
)

ROWS = [("13800138000", "张三", "北京"), ("013800138000", "李四", "上海"),
        ("+86 139 0013 9000", "王五", "广州"), ("1.3800138E+10", "赵六", "深圳"),
        ("", "钱七", "杭州"), ("0086 186 0000 0000", "孙八", "")]


def csv_text(rows: list[tuple[str, ...]] = ROWS, header: str = "mobile,name,city",
             newline: str = "\n") -> str:
    return newline.join([header, *(",".join(row) for row in rows)]) + newline


def test_utf8_csv_keeps_every_value_as_written(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(csv_text(), encoding="utf-8")
    loaded = load_recipients(path)
    assert (loaded.format, loaded.encoding) == ("csv", "utf-8")
    table = loaded.table
    assert table.column_names == ["mobile", "name", "city", ROW_NUMBER]
    assert all(table.schema.field(name).type == pa.string()
               for name in ("mobile", "name", "city"))
    assert table.column("mobile").to_pylist() == [row[0] for row in ROWS]  # "" stays ""
    assert table.column("name").to_pylist() == [row[1] for row in ROWS]
    assert table.column(ROW_NUMBER).to_pylist() == [1, 2, 3, 4, 5, 6]
    assert table.schema.metadata == {FORMAT_KEY: b"csv", ENCODING_KEY: b"utf-8"}
    assert read_recipients(path).equals(table)


def test_numbers_that_look_numeric_are_not_inferred(tmp_path: Path) -> None:
    path = tmp_path / "digits.csv"
    path.write_text("mobile,code\n13800138000,007\n13900139000,010\n", encoding="utf-8")
    table = read_recipients(path)
    assert table.column("mobile").to_pylist() == ["13800138000", "13900139000"]
    assert table.column("code").to_pylist() == ["007", "010"]


def test_utf8_with_bom_from_excel(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(csv_text(newline="\r\n").encode("utf-8-sig"))
    loaded = load_recipients(path)
    assert loaded.encoding == "utf-8-sig"
    assert loaded.table.column_names[0] == "mobile"
    assert loaded.table.column("city").to_pylist() == [row[2] for row in ROWS]


def test_gbk_export_with_chinese_header(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes(csv_text(header="手机号,姓名,城市", newline="\r\n").encode("gbk"))
    loaded = load_recipients(path, mobile_column="手机号")
    assert loaded.encoding == "gb18030"
    assert loaded.table.column_names == ["手机号", "姓名", "城市", ROW_NUMBER]
    assert loaded.table.column("姓名").to_pylist() == [row[1] for row in ROWS]
    check = check_numbers(loaded.table.column("手机号"))
    assert check.e164.to_pylist() == ["8613800138000", "8613800138000", "8613900139000",
                                      None, None, "8618600000000"]  # 1.3800138E+10 refused


def test_gb18030_only_characters(tmp_path: Path) -> None:
    path = tmp_path / "gb18030.csv"
    path.write_bytes("mobile,name\n13800138000,𠀀€\n".encode("gb18030"))
    table = read_recipients(path)
    assert table.column("name").to_pylist() == ["𠀀€"]


def test_quoted_fields_with_commas_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_text('mobile,note\n"138 0013 8000","a, b"\n13900139000,"line one\nline two"\n'
                    '13700137000,""\n', encoding="utf-8")
    table = read_recipients(path)
    assert table.column("note").to_pylist() == ["a, b", "line one\nline two", ""]
    assert table.column(ROW_NUMBER).to_pylist() == [1, 2, 3]


def test_many_blocks_keep_row_order_and_numbers(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recipients, "CSV_BLOCK_SIZE", 1 << 14)
    monkeypatch.setattr(recipients, "_SCAN_BLOCK", 1 << 12)
    path = tmp_path / "big.csv"
    rows = 30_000
    path.write_bytes(("mobile,name\n" + "".join(f"1380{i:07d},名{i}\n" for i in range(rows)))
                     .encode("gbk"))
    table = read_recipients(path)
    assert table.num_rows == rows
    assert table.column("mobile").to_pylist()[-1] == f"1380{rows - 1:07d}"
    assert table.column(ROW_NUMBER).to_pylist() == list(range(1, rows + 1))
    assert table.schema.metadata[ENCODING_KEY] == b"gb18030"


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "none.csv"
    path.write_text("mobile,name\n", encoding="utf-8")
    table = read_recipients(path)
    assert table.num_rows == 0 and table.column_names == ["mobile", "name", ROW_NUMBER]


def test_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "名单 1.csv"
    path.write_text(csv_text(), encoding="utf-8")
    assert read_recipients(path.as_uri()).num_rows == len(ROWS)
    assert read_recipients(str(path)).num_rows == len(ROWS)


# --- Parquet -----------------------------------------------------------------------------


def test_parquet_with_integer_mobiles(tmp_path: Path) -> None:
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"mobile": pa.array([13800138000, None, 8613900139000]),
                             "amount": [1.5, 2.0, 3.0]}), path)
    loaded = load_recipients(path)
    assert (loaded.format, loaded.encoding) == ("parquet", None)
    table = loaded.table
    assert table.schema.field("mobile").type == pa.string()
    assert table.column("mobile").to_pylist() == ["13800138000", None, "8613900139000"]
    assert table.column("amount").to_pylist() == [1.5, 2.0, 3.0]  # other columns untouched
    assert table.column(ROW_NUMBER).to_pylist() == [1, 2, 3]
    assert table.schema.metadata == {FORMAT_KEY: b"parquet"}


def test_parquet_with_float_mobiles_loses_no_digits_and_gains_no_fraction(
        tmp_path: Path) -> None:
    path = tmp_path / "floats.pq"
    pq.write_table(pa.table({"mobile": pa.array([13800138000.0, 8613900139000.0, math.nan,
                                                 None, 1.5])}), path)
    table = read_recipients(path)
    assert table.column("mobile").to_pylist() == ["13800138000", "8613900139000", None, None,
                                                  "1.5"]
    check = check_numbers(table.column("mobile"))
    assert check.e164.to_pylist() == ["8613800138000", "8613900139000", None, None, None]
    assert check.reason.to_pylist() == [None, None, "empty", "empty", "not_a_number"]


def test_parquet_recognised_by_its_magic_bytes(tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    pq.write_table(pa.table({"mobile": pa.array(["13800138000"]).dictionary_encode()}), path)
    assert read_recipients(path).column("mobile").to_pylist() == ["13800138000"]


def test_parquet_mobile_of_an_unusable_type(tmp_path: Path) -> None:
    path = tmp_path / "dates.parquet"
    pq.write_table(pa.table({"mobile": pa.array([0], pa.timestamp("s"))}), path)
    with pytest.raises(RecipientFileError, match=r"column 'mobile': has type timestamp"):
        read_recipients(path)


def test_broken_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(RecipientFileError, match="not a readable Parquet file"):
        read_recipients(path)


# --- what goes wrong -------------------------------------------------------------------------


def error(path: Path | str, **kwargs: str) -> RecipientFileError:
    with pytest.raises(RecipientFileError) as caught:
        read_recipients(path, **kwargs)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    return caught.value


def test_missing_file(tmp_path: Path) -> None:
    assert "file not found" in str(error(tmp_path / "absent.csv"))


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in str(error(tmp_path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty" in str(error(path))


def test_blank_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_bytes(b"\r\n\n")
    assert "empty" in str(error(path))


def test_header_without_names(tmp_path: Path) -> None:
    path = tmp_path / "unnamed.csv"
    path.write_text(" , ,\n13800138000,a,b\n", encoding="utf-8")
    caught = error(path)
    assert "no header" in str(caught) and caught.line == 1


def test_no_header_row(tmp_path: Path) -> None:
    path = tmp_path / "headless.csv"
    path.write_text("13800138000,张三\n13900139000,李四\n", encoding="utf-8")
    caught = error(path)
    assert "no header" in str(caught) and "'13800138000'" in str(caught)


def test_mobile_column_missing_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "phone.csv"
    path.write_text("phone,name\n13800138000,张三\n", encoding="utf-8")
    caught = error(path)
    assert caught.column == "mobile"
    assert "['phone', 'name']" in str(caught)


def test_mobile_column_twice(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("mobile,mobile\n1,2\n", encoding="utf-8")
    assert "2 times" in str(error(path))


def test_wrong_number_of_fields_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("mobile,name\n13800138000,张三\n13900139000,李四,extra\n1,2\n",
                    encoding="utf-8")
    caught = error(path)
    assert caught.line == 3
    assert "expected 2 fields" in str(caught) and "found 3" in str(caught)
    assert "13900139000,李四,extra" in str(caught)


def test_wrong_number_of_fields_in_a_gbk_file(tmp_path: Path) -> None:
    path = tmp_path / "ragged-gbk.csv"
    path.write_bytes("手机,姓名\n13800138000\n".encode("gbk"))
    caught = error(path, mobile_column="手机")
    assert caught.line == 2 and "found 1" in str(caught)


def test_undecodable_bytes_name_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setattr(recipients, "_SCAN_BLOCK", 64)
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"mobile,name\n" + b"13800138000,ok\n" * 20 + b"13800138000,\xff\xfe\xff\n")
    caught = error(path)
    assert caught.line == 22
    assert "undecodable" in str(caught)


def test_bom_promises_utf8_and_is_held_to_it(tmp_path: Path) -> None:
    path = tmp_path / "liar.csv"
    path.write_bytes(codecs.BOM_UTF8 + "mobile,name\n13800138000,张三\n".encode("gbk"))
    caught = error(path)
    assert caught.line == 2 and "byte order mark" in str(caught)


def test_utf16_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "unicode.csv"
    path.write_bytes(csv_text().encode("utf-16"))
    assert "UTF-16" in str(error(path))


def test_reserved_row_number_column(tmp_path: Path) -> None:
    path = tmp_path / "reserved.csv"
    path.write_text("mobile,row_number\n13800138000,1\n", encoding="utf-8")
    assert error(path).column == ROW_NUMBER


def test_unsupported_locations() -> None:
    assert "s3://" in str(error("s3://bucket/list.csv"))
    assert "host" in str(error("file://server/share/list.csv"))
