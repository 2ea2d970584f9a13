"""Checks over a whole request's numbers or ids at C speed, for the clients' usual chunk.

A client checks every recipient before sending; for the usual chunk (plain
digits, no blanks) one pass over the joined text settles it, and only a chunk
that fails the quick check gets the per-recipient check that names the culprit.
A quick check therefore accepts nothing its client's own check would refuse.
"""

from __future__ import annotations

from collections.abc import Sequence

#: the ASCII characters ``str.strip`` removes
_ASCII_BLANKS = bytes(c for c in range(128) if chr(c).isspace())


def plain_digit_numbers(mobiles: Sequence[str]) -> bool:
    """True when every number is non-empty ASCII digits."""
    if "" in mobiles:
        return False
    try:
        joined = ",".join(mobiles)
    except TypeError:  # a number that is not a string
        return False
    # as bytes: str.isdigit looks each character up in the Unicode tables
    return (joined.count(",") == len(mobiles) - 1 and joined.isascii()
            and joined.encode("ascii").replace(b",", b"").isdigit())


def digit_numbers(mobiles: Sequence[str], *, prefix: str = "", min_len: int = 1,
                  max_len: int | None = None) -> bool:
    """True when every number is ASCII digits starting with ``prefix``, of
    ``min_len``..``max_len`` characters (an empty chunk is not one)."""
    if not mobiles or not plain_digit_numbers(mobiles):
        return False
    lengths = set(map(len, mobiles))
    if min(lengths) < min_len or (max_len is not None and max(lengths) > max_len):
        return False
    if prefix:
        joined = ",".join(mobiles)
        return (joined.startswith(prefix)
                and joined.count("," + prefix) == len(mobiles) - 1)
    return True


def blank_in(text: str) -> bool:
    """Whether ``text`` holds whitespace (non-ASCII text counts as if it did): one C
    pass over the bytes, several times faster than a regular expression's search."""
    if not text.isascii():
        return True
    raw = text.encode("ascii")
    return len(raw.translate(None, _ASCII_BLANKS)) != len(raw)


def longest(values: Sequence[str | None]) -> int:
    """The length of the longest value, ``None`` counting as empty."""
    return max(map(len, filter(None, values)), default=0)
