"""Recipient files, read without letting anything reinterpret the phone numbers.

Analysts hand over CSV exported from Excel or WPS -- UTF-8, UTF-8 with a BOM,
or GBK/GB18030 when the export used the Chinese locale's code page -- or
Parquet written by a data tool. Every CSV column is read as text: type
inference is exactly what turns ``13800138000`` into ``1.38E+10`` and drops
leading zeros. A numeric Parquet mobile column is rendered as text the way
:func:`sms_provider.data.numbers.as_phone_text` repairs spreadsheet floats.

CSV may be delimited by commas, semicolons or tabs (what the header shows,
commas first); lines are limited to :data:`csv_scan.MAX_LINE_BYTES`, a file
mixing UTF-8 and GBK lines is refused (it cannot be decoded without garbling
one of them), and so is a quote that never closes.

Each table gains ``row_number``, the 1-based data row in the file, so every
rejection can be reported against the line the analyst sees in their editor.
Anything unusable raises :class:`RecipientFileError` naming the file and, when
known, the line and column. docs/recipient-files.md lists what is accepted.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sms_provider.data import csv_scan
from sms_provider.data.errors import RecipientFileError
from sms_provider.data.numbers import as_phone_text

__all__ = ["ENCODING_KEY", "FORMAT_KEY", "ROW_NUMBER", "RecipientFile", "RecipientFileError",
           "load_recipients", "read_recipients", "require_single", "text_columns"]

ROW_NUMBER = "row_number"
PARQUET_SUFFIXES = (".parquet", ".pq")

#: how the source was read, kept in the table's schema metadata
FORMAT_KEY = b"sms_provider.format"
ENCODING_KEY = b"sms_provider.encoding"

#: bytes per block the CSV reader parses on one thread (a row must fit in one)
CSV_BLOCK_SIZE = 16 << 20
#: the header row must end within the file's first this many bytes
_HEAD_BYTES = 1 << 20
#: what may separate the columns, in the order the header is tried with them
DELIMITERS = (",", ";", "\t")

_PARQUET_MAGIC = b"PAR1"
_NOT_CSV = ((b"PK\x03\x04", "is a ZIP archive (an Excel .xlsx workbook?), not CSV text"),
            (b"\xd0\xcf\x11\xe0", "is an Excel .xls workbook, not CSV text"))
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_WRONG_FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")
_LOOKS_LIKE_NUMBER = re.compile(r"[+\d\s().\-]{5,}")


@dataclass(frozen=True)
class RecipientFile:
    """A read recipient file and how it was read."""

    table: pa.Table
    path: Path
    format: str             # "csv" or "parquet"
    encoding: str | None    # "utf-8", "utf-8-sig" or "gb18030" for CSV; None for Parquet


def read_recipients(path: str | os.PathLike[str], *, mobile_column: str = "mobile") -> pa.Table:
    """The recipients as a table of text columns plus ``row_number``.

    The schema metadata records the format and encoding (``FORMAT_KEY``,
    ``ENCODING_KEY``); :func:`load_recipients` returns them as attributes.
    """
    return load_recipients(path, mobile_column=mobile_column).table


def load_recipients(path: str | os.PathLike[str], *,
                    mobile_column: str = "mobile") -> RecipientFile:
    """Read a CSV or Parquet recipient file (see the module docstring)."""
    local = _local_path(path)
    try:
        size = local.stat().st_size
    except FileNotFoundError:
        raise RecipientFileError(path, "file not found") from None
    except OSError as exc:
        raise RecipientFileError(path, f"cannot open: {exc.strerror or exc}") from None
    if local.is_dir():
        raise RecipientFileError(path, "is a directory, not a file")
    if size == 0:
        raise RecipientFileError(path, "the file is empty")
    with local.open("rb") as handle:
        head = handle.read(4)
    try:
        if local.suffix.lower() in PARQUET_SUFFIXES or head == _PARQUET_MAGIC:
            table = _read_parquet(local, mobile_column)
            fmt, encoding = "parquet", None
        else:
            table, encoding = _read_any_csv(local, head, mobile_column)
            fmt = "csv"
    except (pa.ArrowException, csv.Error, UnicodeError) as exc:
        if isinstance(exc, OSError):
            raise  # the disk or the store, not the file: a retry may succeed
        raise RecipientFileError(path, f"cannot be read: {exc}") from None
    table = _with_row_numbers(local, table)
    metadata = {FORMAT_KEY: fmt.encode()}
    if encoding is not None:
        metadata[ENCODING_KEY] = encoding.encode()
    return RecipientFile(table.replace_schema_metadata(metadata), local, fmt, encoding)


def require_single(file: RecipientFile, names: Iterable[str]) -> None:
    """Refuse a column that the header names more than once when the campaign uses it:
    which of the two the content meant cannot be known."""
    columns = file.table.column_names
    for name in dict.fromkeys(names):
        count = columns.count(name)
        if count > 1:
            raise RecipientFileError(
                file.path, f"the header names column {name!r} {count} times and the campaign "
                           "uses it; rename or remove the other ones",
                line=1 if file.format == "csv" else None, column=name)


def text_columns(file: RecipientFile, names: Iterable[str]) -> pa.Table:
    """The table with the named columns as text (Parquet may hold numbers, dates, bytes)."""
    table = file.table
    for name in dict.fromkeys(names):
        index = table.column_names.index(name)
        column = table.column(index)
        if column.type == pa.string():
            continue
        try:
            text = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise RecipientFileError(file.path, f"has type {column.type}, which cannot be "
                                                "used as text (bytes that are not UTF-8?)",
                                     column=name) from None
        table = table.set_column(index, pa.field(name, pa.string()), text)
    return table


def _local_path(path: str | os.PathLike[str]) -> Path:
    """A filesystem path from a path or a ``file://`` URI; object stores come later."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "://" not in text:
        return Path(text)
    parsed = urlparse(text)
    if parsed.scheme != "file":
        raise RecipientFileError(path, f"{parsed.scheme}:// locations are not supported; "
                                       "use a local path or a file:// URI")
    if parsed.netloc not in ("", "localhost"):
        raise RecipientFileError(path, f"file:// URI names host {parsed.netloc!r}; "
                                       "only local files can be read")
    return Path(url2pathname(unquote(parsed.path)))


def _with_row_numbers(path: Path, table: pa.Table) -> pa.Table:
    if ROW_NUMBER in table.column_names:
        raise RecipientFileError(path, f"a column is named {ROW_NUMBER!r}, which is reserved "
                                       "for the row number; rename it", column=ROW_NUMBER)
    numbers = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    return table.append_column(ROW_NUMBER, numbers)


def _require_column(path: Path, names: list[str], mobile_column: str) -> None:
    count = names.count(mobile_column)
    if count == 1:
        return
    if count > 1:
        raise RecipientFileError(path, f"the header names column {mobile_column!r} "
                                       f"{count} times", line=1, column=mobile_column)
    data = [name for name in names if _LOOKS_LIKE_NUMBER.fullmatch(name.strip())]
    if data:
        raise RecipientFileError(path, f"no header: the first row looks like data ({data[0]!r});"
                                       " add a header row naming the columns, with "
                                       f"{mobile_column!r} for the phone numbers", line=1)
    raise RecipientFileError(path, f"no {mobile_column!r} column; the columns are "
                                   f"{names}", column=mobile_column)


# --- Parquet -----------------------------------------------------------------------------


def _read_parquet(path: Path, mobile_column: str) -> pa.Table:
    try:  # ParquetFile, not read_table: the dataset reader refuses duplicated names
        with pq.ParquetFile(path) as parquet:
            table = parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise RecipientFileError(path, f"not a readable Parquet file (truncated or not "
                                       f"Parquet?): {exc}") from None
    _require_column(path, table.column_names, mobile_column)
    index = table.column_names.index(mobile_column)
    text = _as_text(path, mobile_column, table.column(index))
    return table.set_column(index, pa.field(mobile_column, pa.string()), text)


def _as_text(path: Path, name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A mobile column as text, numbers rendered without a spurious ``.0``."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind)
            or pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_null(kind)):
        return as_phone_text(column)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            return as_phone_text(column)
        except pa.ArrowInvalid:
            raise RecipientFileError(path, "holds bytes that are not UTF-8 text",
                                     column=name) from None
    raise RecipientFileError(path, f"has type {kind}; phone numbers must be text or numbers",
                             column=name)


# --- CSV ---------------------------------------------------------------------------------


def _read_any_csv(path: Path, head: bytes, mobile_column: str) -> tuple[pa.Table, str]:
    """The table and the encoding it was read in."""
    for magic, what in _NOT_CSV:
        if head.startswith(magic):
            raise RecipientFileError(path, f"{what}; save it as \"CSV UTF-8\" and use that")
    csv_scan.check_line_lengths(path)
    table = _read_utf8_csv(path, mobile_column)
    if table is not None:
        return table, "utf-8"
    encoding = _detect_encoding(path)  # a BOM, bytes that are not UTF-8, or a problem
    return _read_csv(path, encoding, mobile_column), encoding


def _detect_encoding(path: Path) -> str:
    """BOM, else strict UTF-8 over every byte, else GB18030 (what Chinese Excel writes).

    Every byte is checked here, so the reader need not check again. A plain UTF-8
    file never comes here: :func:`_read_utf8_csv` reads it, Arrow checking the bytes.
    A file with both UTF-8 and GBK lines is refused: whichever one encoding it were
    read in, the other lines would go out garbled.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(_UTF16_BOMS):
        raise RecipientFileError(path, "is UTF-16 text (Excel's \"Unicode text\"); save it as "
                                       "\"CSV UTF-8\" instead")
    bom = head.startswith(_UTF8_BOM)
    bad = csv_scan.first_undecodable(path, "utf-8")
    if bad is None:
        return "utf-8-sig" if bom else "utf-8"
    if not bom:
        scan = csv_scan.scan_gb18030(path)
        if scan.undecodable is None and not scan.utf8_lines:
            return "gb18030"
        if scan.undecodable is None:
            raise _mixed_encodings(path, bad[0], scan)
        bad = scan.undecodable
    line, raw = bad
    expected = "UTF-8, as its byte order mark says" if bom else "UTF-8 nor GBK/GB18030"
    raise RecipientFileError(path, f"undecodable bytes {raw!r}: the file is "
                                   f"{'not ' if bom else 'neither '}{expected}", line=line)


def _mixed_encodings(path: Path, gbk_line: int, scan: csv_scan.Gb18030Scan
                     ) -> RecipientFileError:
    listed = ", ".join(map(str, scan.utf8_lines))
    more = scan.utf8_count - len(scan.utf8_lines)
    if more:
        listed += f" and {more} more"
    return RecipientFileError(
        path, f"mixes encodings: this line is not UTF-8 (GBK?) but line(s) {listed} are "
              "UTF-8, so one of them would be garbled whichever way the file is read; save "
              "the whole file in one encoding (\"CSV UTF-8\")", line=gbk_line)


def _header(path: Path, encoding: str, mobile_column: str) -> tuple[list[str], str]:
    """The column names and the delimiter, parsed like the reader will (blank lines
    before the header skipped). The delimiter is the first of :data:`DELIMITERS`
    with which the header names the mobile column (a comma when none does)."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if b"\x00" in head.split(b"\n", 1)[0]:
        raise RecipientFileError(path, "the header holds NUL bytes: this is not CSV text "
                                       "(UTF-16 without a byte order mark, or binary data?)",
                                 line=1)
    whole = len(head) < _HEAD_BYTES
    text = codecs.getincrementaldecoder(encoding)("replace").decode(head, final=whole)
    names = _first_row(path, text, ",", whole)
    delimiter = ","
    if mobile_column not in names:
        for other in DELIMITERS[1:]:
            row = _first_row(path, text, other, whole)
            if mobile_column in row:
                names, delimiter = row, other
                break
    return names, delimiter


def _first_row(path: Path, text: str, delimiter: str, whole: bool) -> list[str]:
    """The first non-blank row of the file's head, which must end within it."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        row = next((row for row in reader if row), None)
    except csv.Error as exc:
        if "field limit" in str(exc):
            message = (f"a header cell is longer than {csv.field_size_limit()} characters "
                       "(an unterminated quote?)")
        else:
            message = f"the header row is not valid CSV: {exc}"
        raise RecipientFileError(path, message, line=reader.line_num) from None
    if row is None:
        raise RecipientFileError(path, "the file is empty (no header row)")
    if not whole and not _another_row(reader):
        raise RecipientFileError(path, f"the header row is longer than "
                                       f"{csv_scan.mib(_HEAD_BYTES)} (an unterminated quote?)",
                                 line=1)
    if any("\n" in name or "\r" in name for name in row):
        raise RecipientFileError(path, "a quote (\") in the header opens a column name that "
                                       "runs over a line break: close the quote", line=1)
    if not any(name.strip() for name in row):
        raise RecipientFileError(path, "no header: the first row names no columns", line=1)
    return row


def _another_row(reader: Iterator[list[str]]) -> bool:
    """Whether a row follows (one that fails to parse still starts after the header)."""
    try:
        return next(reader, None) is not None
    except csv.Error:
        return True


def _convert_options(names: list[str], *, check_utf8: bool) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                strings_can_be_null=False,
                                quoted_strings_can_be_null=False,
                                check_utf8=check_utf8)


def _read_utf8_csv(path: Path, mobile_column: str) -> pa.Table | None:
    """The common case, a plain UTF-8 file, with Arrow checking the bytes on its threads.

    None when the file needs :func:`_detect_encoding`'s byte scan (a BOM, a head
    that is not UTF-8, any value that is not) or fails in any other way: the full
    path then reads it again and reports the problem with its line, as it always has.
    Every byte outside the values is a delimiter, quote or line break, so checking
    the header and the values checks the whole file.
    """
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if head.startswith((_UTF8_BOM, *_UTF16_BOMS)):
        return None
    cut = head.rfind(b"\n") + 1 if len(head) == _HEAD_BYTES else len(head)
    if cut == 0 or not csv_scan.valid_utf8(head[:cut]):
        return None  # the header is not UTF-8 (or longer than the head)
    try:
        return _read_csv(path, "utf-8", mobile_column, check_utf8=True)
    except (RecipientFileError, pa.ArrowException):
        return None


def _read_csv(path: Path, encoding: str, mobile_column: str, *,
              check_utf8: bool = False) -> pa.Table:
    """Read with Arrow; ``check_utf8`` unless :func:`_detect_encoding` checked every byte.

    With ``check_utf8`` a failure raises Arrow's own error (the caller falls back).
    """
    names, delimiter = _header(path, encoding, mobile_column)
    _require_column(path, names, mobile_column)
    convert = _convert_options(names, check_utf8=check_utf8)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    if check_utf8:
        table = pacsv.read_csv(path, read_options=_read_options(encoding),
                               parse_options=parse, convert_options=convert)
    else:
        try:
            table = pacsv.read_csv(path, read_options=_read_options(encoding),
                                   parse_options=parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise _csv_error(path, encoding, parse, convert, exc) from None
    _check_last_quote(path, table)
    return table


def _read_options(encoding: str, *, use_threads: bool = True) -> pacsv.ReadOptions:
    # Arrow skips a UTF-8 BOM itself and reads UTF-8 natively; other codecs are transcoded
    arrow_encoding = "utf8" if encoding.startswith("utf-8") else encoding
    return pacsv.ReadOptions(encoding=arrow_encoding, block_size=CSV_BLOCK_SIZE,
                             use_threads=use_threads, autogenerate_column_names=False)


def _check_last_quote(path: Path, table: pa.Table) -> None:
    """Refuse a quote that opens in the last row and never closes.

    Arrow, like most CSV readers, takes everything from such a quote to the end of
    the file as one value: the rows after it would silently vanish into it. Only the
    last value of the last row can be one, and only if it holds a line break; it was
    then quoted, so the file must end (line breaks aside) with its closing quote: an
    odd run of quotes, the escaped ones coming in pairs.
    """
    if not table.num_rows or not table.num_columns:
        return
    column = table.column(table.num_columns - 1)
    value = column[len(column) - 1].as_py()
    if not value or ("\n" not in value and "\r" not in value):
        return
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 4096))
        tail = handle.read().rstrip(b"\r\n")
    if (len(tail) - len(tail.rstrip(b'"'))) % 2:
        return
    breaks = sum(block.count(b"\n") for _, block in csv_scan.blocks(path))
    opened = breaks - value.count("\n") + 1
    raise RecipientFileError(path, "a quote (\") opens a value on this line and never closes, "
                                   "so every line after it would be read into that value; "
                                   "close the quote or remove it", line=opened,
                             column=table.column_names[-1])


def _csv_error(path: Path, encoding: str, parse: pacsv.ParseOptions,
               convert: pacsv.ConvertOptions, exc: pa.ArrowInvalid) -> RecipientFileError:
    """A parse failure with its line: the threaded reader does not know it, so re-read."""
    message = str(exc).removeprefix("CSV parse error: ")
    if "straddling" in message:
        return RecipientFileError(path, f"a row is longer than {csv_scan.mib(CSV_BLOCK_SIZE)}, "
                                        "the most one row may hold (a quoted value running "
                                        "over many lines, or a quote that never closes?)")
    if not _WRONG_FIELD_COUNT.search(message):
        return RecipientFileError(path, f"malformed CSV: {message}")
    bad: list[pacsv.InvalidRow] = []

    def first_bad_row(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "error"

    parse = pacsv.ParseOptions(delimiter=parse.delimiter, newlines_in_values=True,
                               invalid_row_handler=first_bad_row)
    with contextlib.suppress(pa.ArrowInvalid):
        pacsv.read_csv(path, read_options=_read_options(encoding, use_threads=False),
                       parse_options=parse, convert_options=convert)
    if not bad:
        return RecipientFileError(path, f"malformed CSV: {message}")
    row = bad[0]
    return RecipientFileError(
        path, f"expected {row.expected_columns} fields like the header, found "
              f"{row.actual_columns}: {row.text[:80]!r}", line=row.number)
