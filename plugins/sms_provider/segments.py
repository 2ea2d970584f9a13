"""How many charge items a text costs: 70 characters for one, 67 a piece beyond.

The signature (【…】) is part of the text and counts; every vendor here bills
the same way, so the simulator and the estimate share this one rule.
"""

from __future__ import annotations

SINGLE_SEGMENT = 70
MULTI_SEGMENT = 67


def charge_items(text: str) -> int:
    length = len(text)
    if length <= SINGLE_SEGMENT:
        return 1
    return -(-length // MULTI_SEGMENT)
