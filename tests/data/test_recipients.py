"""Recipient files as spreadsheets and data tools really write them, and every way they go wrong."""

from __future__ import annotations

import codecs
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sms_provider.data import csv_scan, recipients
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
    monkeypatch.setattr(csv_scan, "SCAN_BLOCK", 1 << 12)
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
    monkeypatch.setattr(csv_scan, "SCAN_BLOCK", 64)
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


# --- robustness: what analysts' files really hold --------------------------------------------


def test_a_utf8_file_with_a_gbk_line_is_refused_naming_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes("mobile,name\n13800138000,张三\n".encode()
                     + "13900139000,李四\n".encode("gbk")
                     + "13700137000,王五\n".encode())
    caught = error(path)
    assert caught.line == 3  # the GBK line
    assert "mixes encodings" in str(caught) and "line(s) 2, 4 are UTF-8" in str(caught)


def test_gbk_names_whose_bytes_happen_to_be_utf8_are_still_gbk(tmp_path: Path) -> None:
    # 卢 is C2 AC in GBK, which is also UTF-8 for "¬": a GBK line, not a UTF-8 one
    names = ["卢", "楼", "张三", "漏"]
    path = tmp_path / "gbk.csv"
    path.write_bytes(("mobile,name\n" + "".join(f"1380013800{i},{n}\n"
                                                for i, n in enumerate(names))).encode("gbk"))
    loaded = load_recipients(path)
    assert loaded.encoding == "gb18030"
    assert loaded.table.column("name").to_pylist() == names


def test_the_mixed_line_scan_finds_utf8_lines_across_blocks(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(csv_scan, "SCAN_BLOCK", 256)
    path = tmp_path / "mixed-late.csv"
    path.write_bytes(("mobile,name\n13700137000,李四\n" + "13800138000,卢\n" * 200)
                     .encode("gbk") + "13900139000,张三\n".encode() * 7)
    caught = error(path)
    assert caught.line == 2 and "line(s) 203, 204, 205, 206, 207 and 2 more are UTF-8" in str(
        caught)


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_delimited_files(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(csv_text(header="mobile,name,city").replace(",", delimiter),
                    encoding="utf-8")
    table = read_recipients(path)
    assert table.column_names == ["mobile", "name", "city", ROW_NUMBER]
    assert table.column("name").to_pylist() == [row[1] for row in ROWS]


def test_a_comma_file_keeps_semicolons_in_its_values(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("mobile,name\n13800138000,a;b\n", encoding="utf-8")
    assert read_recipients(path).column("name").to_pylist() == ["a;b"]


def test_an_unterminated_quote_in_the_header(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_bytes(b'"mobile,name\n13800138000,a\n')
    caught = error(path)
    assert caught.line == 1 and "quote" in str(caught)


def test_a_header_cell_over_the_csv_field_limit(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(b"mobile," + b"x" * (200 << 10) + b"\n13800138000,a\n")
    caught = error(path)
    assert caught.line == 1 and "header cell is longer than" in str(caught)


def test_a_header_row_that_does_not_end_in_the_first_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "endless.csv"
    path.write_bytes(b"mobile," + b"x," * (600 << 10) + b"\n13800138000\n")
    caught = error(path)
    assert caught.line == 1 and "header row is longer than 1 MiB" in str(caught)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_quote_that_never_closes_would_swallow_the_rows_after_it(tmp_path: Path,
                                                                  newline: str) -> None:
    path = tmp_path / "swallow.csv"
    lines = ["mobile,name", "13800138000,a", '13900139000,"b', "13700137000,c",
             "13600136000,d", ""]
    path.write_text(newline.join(lines), encoding="utf-8", newline="")
    caught = error(path)
    assert caught.line == 3 and caught.column == "name" and "never closes" in str(caught)


def test_a_closed_multi_line_value_at_the_end_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "closed.csv"
    path.write_bytes(b'mobile,name\n13800138000,"a\nb ""q"""\n\n')
    assert read_recipients(path).column("name").to_pylist() == ['a\nb "q"']


def test_nul_bytes_in_the_header_are_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "utf16-no-bom.csv"
    path.write_bytes("mobile,name\n13800138000,a\n".encode("utf-16-le"))
    caught = error(path)
    assert caught.line == 1 and "NUL" in str(caught)


def test_nul_bytes_in_a_value_are_read_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"mobile,name\n13800138000,a\x00b\n")
    assert read_recipients(path).column("name").to_pylist() == ["a\x00b"]  # prepare rejects


def test_an_excel_workbook_is_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    assert "Excel .xlsx" in str(error(path))


def test_a_binary_file_names_its_first_undecodable_line(tmp_path: Path) -> None:
    import random

    path = tmp_path / "random.bin"
    path.write_bytes(random.Random(7).randbytes(20_000).replace(b"\x00", b"\x01"))
    caught = error(path)
    assert caught.line is not None and "undecodable" in str(caught)


def test_a_line_over_the_limit_is_refused_with_bounded_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 MiB line against a 256 KiB limit: refused, naming it, having held no more than
    the limit and a block or two in memory (the file is never read whole)."""
    import tracemalloc

    monkeypatch.setattr(csv_scan, "MAX_LINE_BYTES", 256 << 10)
    monkeypatch.setattr(csv_scan, "SCAN_BLOCK", 16 << 10)
    for name, body in (("utf8.csv", "张三".encode()), ("gbk.csv", "张三".encode("gbk"))):
        path = tmp_path / name
        path.write_bytes(b"mobile,name\n13800138000," + body + b"\n13900139000,"
                         + b"x" * (4 << 20))
        tracemalloc.start()
        try:
            caught = error(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert caught.line == 3 and "longer than 0.25 MiB" in str(caught)
        assert peak < 1 << 20


def test_the_byte_scan_holds_one_line_at_most_and_joins_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_scan, "MAX_LINE_BYTES", 256 << 10)
    monkeypatch.setattr(csv_scan, "SCAN_BLOCK", 1 << 10)
    path = tmp_path / "long.csv"
    long_line = b"13900139000," + b"y" * (200 << 10) + b"\n"
    path.write_bytes(b"mobile,name\n" + long_line + b"13800138000,z\n")
    blocks = list(csv_scan.blocks(path))
    assert b"".join(block for _, block in blocks) == path.read_bytes()
    assert [line for line, _ in blocks][:2] == [1, 2]
    assert max(len(block) for _, block in blocks) <= len(long_line) + (1 << 10)
    path.write_bytes(b"mobile,name\n" + b"y" * (300 << 10))
    with pytest.raises(RecipientFileError, match="line 2: the line is longer"):
        list(csv_scan.blocks(path))


def test_a_10_mb_value_is_read(tmp_path: Path) -> None:
    for encoding in ("utf-8", "gbk"):
        path = tmp_path / f"big-{encoding}.csv"
        path.write_bytes(("mobile,name\n13800138000,张" + "x" * (10 << 20) + "\n13900139000,b\n")
                         .encode(encoding))
        table = read_recipients(path)
        assert [len(v) for v in table.column("name").to_pylist()] == [(10 << 20) + 1, 1]


def test_a_row_longer_than_a_parse_block_is_a_clear_error(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(recipients, "CSV_BLOCK_SIZE", 1 << 16)
    path = tmp_path / "many-lines.csv"
    path.write_bytes(b'mobile,name\n13800138000,"' + b"line\n" * 40_000 + b'"\n')
    assert "a row is longer than" in str(error(path))


def test_parquet_with_a_duplicated_column_reads(tmp_path: Path) -> None:
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["13800138000"]), pa.array(["a"]),
                                         pa.array(["b"])], names=["mobile", "name", "name"]),
                   path)
    assert read_recipients(path).column_names == ["mobile", "name", "name", ROW_NUMBER]


def test_truncated_parquet(tmp_path: Path) -> None:
    path = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"mobile": ["13800138000"] * 1000}), path)
    path.write_bytes(path.read_bytes()[:-100])
    assert "not a readable Parquet file" in str(error(path))


def test_every_unreadable_file_is_bad_input(tmp_path: Path) -> None:
    from sms_provider.data.errors import BadInputError

    path = tmp_path / "quote.csv"
    path.write_bytes(b'"mobile,name\n13800138000,a\n')
    with pytest.raises(BadInputError):
        read_recipients(path)


@pytest.mark.parametrize(("data", "line"), [
    (b"a\n" + b"x" * 100 + b"\nb\n", None),        # exactly the limit
    (b"a\n" + b"x" * 101 + b"\nb\n", 2),
    (b"a\n" + b"x" * 150, 2),                      # the last line, no break after it
    (b"a\n" * 80 + b"x" * 100, None),
    (b"a\n" * 80 + b"y" * 99 + b"\n" + b"z" * 101 + b"\n", 82),  # a long one, then longer
    (b"x" * 250, 1),
    ((b"x" * 99 + b"\n") * 5, None),
])
def test_the_line_length_check_finds_exactly_the_lines_over_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, line: int | None) -> None:
    monkeypatch.setattr(csv_scan, "MAX_LINE_BYTES", 100)
    path = tmp_path / "lines.csv"
    path.write_bytes(data)
    if line is None:
        csv_scan.check_line_lengths(path)
    else:
        with pytest.raises(RecipientFileError) as caught:
            csv_scan.check_line_lengths(path)
        assert caught.value.line == line
