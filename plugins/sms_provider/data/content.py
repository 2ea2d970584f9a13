"""Message content: ``{column}`` placeholders filled from recipient columns, vectorised.

The same template drives three things: the text each recipient receives, the
FMS template variables (``{name}`` becomes ``${name}`` on the vendor side),
and the charge-item estimate (70 characters one item, 67 a piece beyond).

Control characters never reach a message: a template holding one is refused,
and a row whose value holds one is rejected (see :data:`CONTROL_CHARACTERS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.errors import BadInputError
from sms_provider.segments import MULTI_SEGMENT, SINGLE_SEGMENT

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}\s]+)\}")

#: what a message may not carry: the C0 controls but tab, line feed and carriage
#: return (NUL ends the text at many a gateway), DEL and the C1 controls (which
#: mostly mark text decoded in the wrong code page). A pattern for Python and RE2.
CONTROL_CHARACTERS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"
_CONTROL = re.compile(CONTROL_CHARACTERS)


def describe_character(char: str) -> str:
    """``U+0000`` and the like: a control character printed as itself would vanish."""
    return f"U+{ord(char):04X}"


class ContentTemplateError(BadInputError):
    """The content template is malformed or names a column the file lacks."""


@dataclass(frozen=True)
class ContentTemplate:
    """A parsed template: literal pieces and the column names between them."""

    text: str
    pieces: tuple[str | tuple[str], ...]  # a str is literal, a 1-tuple names a column

    @classmethod
    def parse(cls, text: str) -> ContentTemplate:
        if not text or not text.strip():
            raise ContentTemplateError("content is empty")
        control = _CONTROL.search(text)
        if control:
            raise ContentTemplateError(
                f"content holds the control character {describe_character(control.group())} "
                f"at character {control.start() + 1}; remove it")
        pieces: list[str | tuple[str]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            literal = text[pos:match.start()]
            token = match.group(0)
            if token in ("{{", "}}"):
                literal += token[0]
            if literal:
                pieces.append(literal)
            if match.group(1):
                pieces.append((match.group(1),))
            pos = match.end()
        tail = text[pos:]
        if "{" in tail or "}" in tail:
            raise ContentTemplateError(
                f"content has an unmatched brace near {tail[:20]!r}; write {{{{ or }}}} "
                "for a literal brace")
        if tail:
            pieces.append(tail)
        return cls(text, tuple(pieces))

    @property
    def variables(self) -> list[str]:
        """Column names in order of first use."""
        seen: dict[str, None] = {}
        for piece in self.pieces:
            if isinstance(piece, tuple):
                seen.setdefault(piece[0], None)
        return list(seen)

    def vendor_template(self) -> str:
        """The text as Emay FMS registers it: ``${name}`` placeholders."""
        return "".join(p if isinstance(p, str) else "${" + p[0] + "}" for p in self.pieces)

    def check_columns(self, columns: list[str]) -> None:
        missing = [v for v in self.variables if v not in columns]
        if missing:
            raise ContentTemplateError(
                f"content names column(s) {', '.join(missing)} that the recipient file lacks; "
                f"its columns are: {', '.join(columns)}")

    def empties(self, table: pa.Table) -> dict[str, pa.ChunkedArray]:
        """Per named column, true where its value is null, empty or only whitespace.

        :meth:`render` and :meth:`empty_column` both need it: compute it once and
        pass it to both.
        """
        result: dict[str, pa.ChunkedArray] = {}
        for name in self.variables:
            col = pc.cast(table[name], pa.string())
            # all whitespace <=> trimming leaves nothing (same Unicode whitespace set)
            blank = pc.or_(pc.equal(col, ""), pc.utf8_is_space(col))
            result[name] = pc.fill_null(blank, True)
        return result

    def render(self, table: pa.Table,
               empties: dict[str, pa.ChunkedArray] | None = None) -> pa.ChunkedArray:
        """Every row's text (null where a named column is empty)."""
        n = table.num_rows
        if not self.variables:
            return pa.chunked_array([pa.array([self.text.replace("{{", "{").replace("}}", "}")]
                                              * n if n else [], pa.string())])
        if empties is None:
            empties = self.empties(table)
        values = {name: pc.if_else(empty, None, pc.cast(table[name], pa.string()))
                  for name, empty in empties.items()}
        args = [piece if isinstance(piece, str) else values[piece[0]] for piece in self.pieces]
        # null_handling="emit_null": one empty value makes the whole text null.
        return pc.binary_join_element_wise(*args, "", null_handling="emit_null")

    def empty_column(self, table: pa.Table,
                     empties: dict[str, pa.ChunkedArray] | None = None) -> pa.ChunkedArray:
        """Per row, the first named column that is empty (null where none is)."""
        if empties is None:
            empties = self.empties(table)
        result = pa.nulls(table.num_rows, pa.string())
        for name in reversed(self.variables):
            result = pc.if_else(empties[name], name, result)
        return result

    def variables_json(self, table: pa.Table) -> pa.ChunkedArray:
        """Per row, a JSON object string of the variables (the FMS ``content`` field)."""
        args: list[object] = ["{"]
        for i, name in enumerate(self.variables):
            value = pc.cast(table[name], pa.string())
            for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"),
                                 ("\t", "\\t")):
                value = pc.replace_substring(value, raw, escaped)
            args += [("," if i else "") + '"' + name.replace('"', '\\"') + '":"', value, '"']
        args.append("}")
        return pc.binary_join_element_wise(*args, "", null_handling="emit_null")


def holds_control_character(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Per value of a text column, whether it holds a control character (null: false).

    Almost no column holds one, so the bytes of each chunk are looked at first, at
    numpy speed; only a chunk with a suspicious byte goes through the regex.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    masks = [pc.fill_null(pc.match_substring_regex(chunk, CONTROL_CHARACTERS), False)
             if _may_hold_control(chunk) else pa.array(np.zeros(len(chunk), dtype=bool))
             for chunk in chunks]
    return pa.chunked_array(masks, pa.bool_()) if isinstance(column, pa.ChunkedArray) \
        else masks[0]


def _may_hold_control(chunk: pa.Array) -> bool:
    """Whether the chunk's character data has a C0 control but tab, LF and CR, DEL, or
    a C1 control (UTF-8 ``C2 80``..``C2 9F``). Bytes beyond a slice only err on the
    side of the regex."""
    if chunk.type != pa.string():
        return True  # not plain text: leave it to the regex
    data = chunk.buffers()[2]
    if data is None:
        return False  # no characters at all
    a = np.frombuffer(data, dtype=np.uint8)
    low = a < 0x20
    if low.any() and (low & (a != 0x09) & (a != 0x0A) & (a != 0x0D)).any():
        return True
    if (a == 0x7F).any():
        return True
    lead = np.flatnonzero(a[:-1] == 0xC2)
    return bool(lead.size and ((a[lead + 1] >= 0x80) & (a[lead + 1] <= 0x9F)).any())


def first_control_character(text: str) -> str | None:
    """The first control character of ``text``, described (None when there is none)."""
    found = _CONTROL.search(text)
    return describe_character(found.group()) if found else None


def charge_items(content: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Vectorised :func:`sms_provider.segments.charge_items`."""
    length = pc.utf8_length(content)
    multi = pc.divide(pc.add(length, MULTI_SEGMENT - 1), MULTI_SEGMENT)
    return pc.cast(pc.if_else(pc.less_equal(length, SINGLE_SEGMENT), 1, multi), pa.int32())
