"""Recipient files, read without letting anything reinterpret the phone numbers.

Analysts hand over CSV exported from Excel or WPS -- UTF-8, UTF-8 with a BOM,
or GBK/GB18030 when the export used the Chinese locale's code page -- or
Parquet written by a data tool. Every CSV column is read as text: type
inference is exactly what turns ``13800138000`` into ``1.38E+10`` and drops
leading zeros. A numeric Parquet mobile column is rendered as text the way
:func:`sms_provider.data.numbers.as_phone_text` repairs spreadsheet floats.

Each table gains ``row_number``, the 1-based data row in the file, so every
rejection can be reported against the line the analyst sees in their editor.
Anything unusable raises :class:`RecipientFileError` naming the file and, when
known, the line and column.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sms_provider.data.numbers import as_phone_text

ROW_NUMBER = "row_number"
PARQUET_SUFFIXES = (".parquet", ".pq")

#: how the source was read, kept in the table's schema metadata
FORMAT_KEY = b"sms_provider.format"
ENCODING_KEY = b"sms_provider.encoding"

#: bytes per block the CSV reader parses on one thread
CSV_BLOCK_SIZE = 16 << 20
_SCAN_BLOCK = 8 << 20
_HEAD_BYTES = 1 << 20

_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_WRONG_FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")
_LOOKS_LIKE_NUMBER = re.compile(r"[+\d\s().\-]{5,}")


class RecipientFileError(ValueError):
    """A recipient file cannot be used; the message says which file, where and why."""

    def __init__(self, path: str | os.PathLike[str], message: str, *,
                 line: int | None = None, column: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        where = [self.path]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}")


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
    if local.suffix.lower() in PARQUET_SUFFIXES or head == _PARQUET_MAGIC:
        table = _read_parquet(local, mobile_column)
        fmt, encoding = "parquet", None
    else:
        table = _read_utf8_csv(local, mobile_column)
        encoding = "utf-8"
        if table is None:  # a BOM, bytes that are not UTF-8, or a problem to report
            encoding = _detect_encoding(local)
            table = _read_csv(local, encoding, mobile_column)
        fmt = "csv"
    table = _with_row_numbers(local, table)
    metadata = {FORMAT_KEY: fmt.encode()}
    if encoding is not None:
        metadata[ENCODING_KEY] = encoding.encode()
    return RecipientFile(table.replace_schema_metadata(metadata), local, fmt, encoding)


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
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise RecipientFileError(path, f"not a readable Parquet file: {exc}") from None
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


def _blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file in large blocks, each ending at a line break (yields offset and bytes).

    A line break never falls inside a UTF-8 or GB18030 character, so each block
    decodes on its own.
    """
    offset = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_SCAN_BLOCK)
            data = carry + chunk
            if not chunk:
                if data:
                    yield offset, data
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            yield offset, data[:cut]
            offset += cut
            carry = data[cut:]


def _valid_utf8(block: bytes) -> bool:
    """Arrow's UTF-8 validation, several times faster than ``bytes.decode``."""
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(block)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _first_undecodable(path: Path, encoding: str) -> tuple[int, bytes] | None:
    """Line and bytes of the first thing ``encoding`` cannot decode, or None."""
    lines = 0
    for _, block in _blocks(path):
        if encoding == "utf-8" and _valid_utf8(block):
            lines += block.count(b"\n")
            continue
        try:
            block.decode(encoding)
        except UnicodeDecodeError as exc:
            return lines + block.count(b"\n", 0, exc.start) + 1, block[exc.start:exc.end]
        lines += block.count(b"\n")
    return None


def _detect_encoding(path: Path) -> str:
    """BOM, else strict UTF-8 over every byte, else GB18030 (what Chinese Excel writes).

    Every byte is checked here, so the reader need not check again. A plain UTF-8
    file never comes here: :func:`_read_utf8_csv` reads it, Arrow checking the bytes.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(_UTF16_BOMS):
        raise RecipientFileError(path, "is UTF-16 text (Excel's \"Unicode text\"); save it as "
                                       "\"CSV UTF-8\" instead")
    bom = head.startswith(_UTF8_BOM)
    bad = _first_undecodable(path, "utf-8")
    if bad is None:
        return "utf-8-sig" if bom else "utf-8"
    if not bom:
        bad = _first_undecodable(path, "gb18030")
        if bad is None:
            return "gb18030"
    line, raw = bad
    expected = "UTF-8, as its byte order mark says" if bom else "UTF-8 nor GBK/GB18030"
    raise RecipientFileError(path, f"undecodable bytes {raw!r}: the file is "
                                   f"{'not ' if bom else 'neither '}{expected}", line=line)


def _header(path: Path, encoding: str) -> list[str]:
    """The column names, parsed like the reader will (blank lines before it skipped)."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    text = codecs.getincrementaldecoder(encoding)("replace").decode(head, final=False)
    for row in csv.reader(io.StringIO(text, newline="")):
        if row:
            if not any(name.strip() for name in row):
                raise RecipientFileError(path, "no header: the first row names no columns",
                                         line=1)
            return row
    raise RecipientFileError(path, "the file is empty (no header row)")


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
    if cut == 0 or not _valid_utf8(head[:cut]):
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
    names = _header(path, encoding)
    _require_column(path, names, mobile_column)
    convert = _convert_options(names, check_utf8=check_utf8)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    if check_utf8:
        return pacsv.read_csv(path, read_options=_read_options(encoding),
                              parse_options=parse, convert_options=convert)
    try:
        return pacsv.read_csv(path, read_options=_read_options(encoding),
                              parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, encoding, convert, exc) from None


def _read_options(encoding: str, *, use_threads: bool = True) -> pacsv.ReadOptions:
    # Arrow skips a UTF-8 BOM itself and reads UTF-8 natively; other codecs are transcoded
    arrow_encoding = "utf8" if encoding.startswith("utf-8") else encoding
    return pacsv.ReadOptions(encoding=arrow_encoding, block_size=CSV_BLOCK_SIZE,
                             use_threads=use_threads, autogenerate_column_names=False)


def _csv_error(path: Path, encoding: str, convert: pacsv.ConvertOptions,
               exc: pa.ArrowInvalid) -> RecipientFileError:
    """A parse failure with its line: the threaded reader does not know it, so re-read."""
    message = str(exc).removeprefix("CSV parse error: ")
    if not _WRONG_FIELD_COUNT.search(message):
        return RecipientFileError(path, f"malformed CSV: {message}")
    bad: list[pacsv.InvalidRow] = []

    def first_bad_row(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "error"

    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=first_bad_row)
    with contextlib.suppress(pa.ArrowInvalid):
        pacsv.read_csv(path, read_options=_read_options(encoding, use_threads=False),
                       parse_options=parse, convert_options=convert)
    if not bad:
        return RecipientFileError(path, f"malformed CSV: {message}")
    row = bad[0]
    return RecipientFileError(
        path, f"expected {row.expected_columns} fields like the header, found "
              f"{row.actual_columns}: {row.text[:80]!r}", line=row.number)
