"""Passes over the raw bytes of a CSV recipient file: line lengths and encodings.

Every pass reads the file in blocks that end at a line break and carries at
most one unfinished line from block to block, so memory is bounded by
``SCAN_BLOCK`` plus ``MAX_LINE_BYTES`` and every byte is copied a bounded
number of times: the time is linear in the file size whatever its lines look
like. A line longer than ``MAX_LINE_BYTES`` is refused, naming it.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sms_provider.data.errors import RecipientFileError

#: the longest line a recipient file may have. The CSV parser reads blocks of the
#: same size, and a row must fit in one: a 10 MB value still does.
MAX_LINE_BYTES = 16 << 20
#: bytes per read of a scan
SCAN_BLOCK = 8 << 20
#: how many lines an error lists by number
LISTED_LINES = 5


def mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def line_too_long(path: Path, line: int) -> RecipientFileError:
    return RecipientFileError(path, f"the line is longer than {mib(MAX_LINE_BYTES)}, the "
                                    "most one line may hold (is this a CSV file?)", line=line)


def valid_utf8(block: bytes) -> bool:
    """Arrow's UTF-8 validation, several times faster than ``bytes.decode``."""
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(block)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def blocks(path: Path) -> Iterator[tuple[int, bytes]]:
    """The file in blocks that each end at a line break: (number of its first line, bytes).

    A line break never falls inside a UTF-8 or GB18030 character, so each block
    decodes on its own. An unfinished line is kept as a list of reads and joined
    once, so a long line costs one copy, not one per read.
    """
    line = 1
    pending: list[bytes] = []
    pending_size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_BLOCK):
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size > MAX_LINE_BYTES:
                    raise line_too_long(path, line)
                continue
            if pending_size + chunk.find(b"\n") > MAX_LINE_BYTES:
                raise line_too_long(path, line)
            block = b"".join((*pending, chunk[:cut])) if pending else chunk[:cut]
            yield line, block
            line += block.count(b"\n")
            rest = chunk[cut:]
            pending, pending_size = ([rest], len(rest)) if rest else ([], 0)
    if pending:
        yield line, b"".join(pending)


def check_line_lengths(path: Path) -> None:
    """Refuse a line longer than ``MAX_LINE_BYTES``, naming it, before any parser sees it.

    The file is mapped, not read: every line that long contains a whole window of
    half that size without a line break, so only one ``find`` per window is needed.
    """
    size = path.stat().st_size
    if size <= MAX_LINE_BYTES:
        return
    window = max(1, MAX_LINE_BYTES // 2)
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 0
        while pos + window <= size:
            if mm.find(b"\n", pos, pos + window) != -1:
                pos += window
                continue
            start = mm.rfind(b"\n", 0, pos) + 1
            limit = start + MAX_LINE_BYTES  # look no further than the line may reach
            stop = mm.find(b"\n", pos + window, limit + 1)
            if stop == -1 and size > limit:
                raise line_too_long(path, _line_at(mm, start))
            pos = (size if stop == -1 else stop) + 1


def _line_at(mm: mmap.mmap, offset: int) -> int:
    """The 1-based line that starts at ``offset`` (an error path: counts the breaks before)."""
    breaks = 0
    for start in range(0, offset, SCAN_BLOCK):
        breaks += mm[start:min(offset, start + SCAN_BLOCK)].count(b"\n")
    return breaks + 1


def first_undecodable(path: Path, encoding: str) -> tuple[int, bytes] | None:
    """Line and bytes of the first thing ``encoding`` cannot decode, or None."""
    for line, block in blocks(path):
        if encoding == "utf-8" and valid_utf8(block):
            continue
        try:
            block.decode(encoding)
        except UnicodeDecodeError as exc:
            return line + block.count(b"\n", 0, exc.start), block[exc.start:exc.end]
    return None


@dataclass(frozen=True)
class Gb18030Scan:
    """What a GB18030 pass found: the first undecodable bytes, and the UTF-8 lines."""

    undecodable: tuple[int, bytes] | None
    utf8_lines: list[int]   # the first LISTED_LINES of them
    utf8_count: int


def scan_gb18030(path: Path) -> Gb18030Scan:
    """Decode every block as GB18030 and find the lines that are UTF-8 among them.

    A GB18030 decoder accepts almost any bytes, UTF-8 included (as mojibake), so a
    clean decode does not prove the file is GBK. A line that is valid UTF-8 and holds
    a character of three or four UTF-8 bytes (all of CJK is) is UTF-8: GBK text
    forms such a line by accident practically never (two-byte UTF-8 sequences it does
    form, which is why those do not count).
    """
    lines: list[int] = []
    count = 0
    for first, block in blocks(path):
        try:
            block.decode("gb18030")
        except UnicodeDecodeError as exc:
            bad = first + block.count(b"\n", 0, exc.start), block[exc.start:exc.end]
            return Gb18030Scan(bad, lines, count)
        found = _utf8_lines(block)
        count += len(found)
        lines.extend(first + i for i in found[:LISTED_LINES - len(lines)])
    return Gb18030Scan(None, lines, count)


def _utf8_lines(block: bytes) -> list[int]:
    """Indexes of the block's lines that are valid UTF-8 with a 3- or 4-byte character.

    Vectorised: lines with a byte pattern no UTF-8 text has (a lead byte not followed
    by a continuation byte, or a continuation byte after an ASCII one) are dropped
    first, and only the few left are decoded to be sure.
    """
    a = np.frombuffer(block, dtype=np.uint8)
    if a.size < 3:
        return []
    cont = (a & 0xC0) == 0x80
    wide = (a[:-2] >= 0xE0) & (a[:-2] <= 0xF4) & cont[1:-1] & cont[2:]
    if not wide.any():
        return []
    breaks = np.flatnonzero(a == 0x0A)
    starts = np.concatenate(([0], breaks + 1))
    starts = starts[starts < a.size]
    lead = a >= 0xC0
    impossible = ~cont[:-1] & (lead[:-1] ^ cont[1:])  # lead, no continuation; or the reverse
    impossible = np.append(impossible, lead[-1])
    has_wide = np.logical_or.reduceat(np.append(wide, [False, False]), starts)
    broken = np.logical_or.reduceat(impossible, starts)
    ends = np.append(breaks, a.size)
    found = []
    for i in np.flatnonzero(has_wide & ~broken).tolist():
        try:
            block[starts[i]:ends[i]].decode("utf-8")
        except UnicodeDecodeError:
            continue
        found.append(i)
    return found
