"""Checks of documented limits, shared by the clients, raised before sending."""

from __future__ import annotations

from sms_provider.errors import LimitExceededError

CUSTOM_ID_MAX = 32


def check_content(vendor: str, content: str, max_chars: int, *, where: str = "") -> None:
    if not content:
        raise LimitExceededError(f"content is empty{where}", vendor=vendor)
    if len(content) > max_chars:
        raise LimitExceededError(
            f"content is {len(content)} characters{where}, the limit is {max_chars}",
            vendor=vendor)


def check_custom_id(vendor: str, custom_id: str | None, *, max_len: int = CUSTOM_ID_MAX,
                    where: str = "") -> None:
    if custom_id is not None and len(custom_id) > max_len:
        raise LimitExceededError(
            f"custom id {custom_id!r}{where} is {len(custom_id)} characters, "
            f"the limit is {max_len}", vendor=vendor)


def same_content(vendor: str, contents: list[str]) -> str:
    """The single content of a same-content batch; refuse mixed contents."""
    first = contents[0]
    if contents.count(first) == len(contents):
        return first
    for i, c in enumerate(contents):
        if c != first:
            raise LimitExceededError(
                f"message {i} has different content; this vendor sends one content per request",
                vendor=vendor)
    return first
