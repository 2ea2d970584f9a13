"""The reasons of FAILED recipients, counted a slice of ``reconciliation/`` rows at a time.

The report's failure reasons, ``carriers/``' top failure reason and the report's
reasons per carrier all count the same thing: FAILED rows by connection,
carrier and reason. The rows are built and written in slices (the whole table
never is in memory), so the counts are summed as the slices go by; the
answers are what counting the whole table at once gives, ties included (keys
keep the order in which they first appear).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sms_provider.data.carriers import CARRIERS
from sms_provider.data.reconcile.outcomes import Rows
from sms_provider.data.reconcile.statuses import FinalStatus

#: (part index, carrier, reason) of a FAILED row
Key = tuple[int, str | None, str | None]


class FailureTally:
    """FAILED rows counted by (part, carrier, reason), in order of first appearance."""

    def __init__(self) -> None:
        self.counts: dict[Key, int] = {}

    def add(self, table: pa.Table, rows: Rows, owner: np.ndarray) -> None:
        """Count one slice: ``table`` its rows, ``rows`` and ``owner`` (part) the same rows'."""
        failed = rows.final == FinalStatus.FAILED
        if not failed.any():
            return
        mask = pa.array(failed)
        piece = pa.table({"part": pa.array(owner[failed].astype(np.int64)),
                          "carrier": table["carrier"].filter(mask),
                          "reason": table["reason"].filter(mask)})
        groups = piece.group_by(["part", "carrier", "reason"], use_threads=False).aggregate(
            [([], "count_all")])
        for part, carrier, reason, count in zip(*(groups[c].to_pylist() for c in (
                "part", "carrier", "reason", "count_all")), strict=True):
            key = (part, carrier, reason)
            self.counts[key] = self.counts.get(key, 0) + count

    def reasons(self, top: int = 10) -> list[tuple[str, int]]:
        """The commonest reasons of FAILED rows, the rest as ``other`` (for the report)."""
        by_reason: dict[str | None, int] = {}
        for (_, _, reason), count in self.counts.items():
            by_reason[reason] = by_reason.get(reason, 0) + count
        counts = sorted(((r or "(none)", c) for r, c in by_reason.items()),
                        key=lambda item: (-item[1], item[0]))
        if len(counts) > top:
            counts = [*counts[:top - 1], ("other", sum(c for _, c in counts[top - 1:]))]
        return counts

    def by_carrier(self, top: int = 3) -> dict[str, list[tuple[str, int]]]:
        """Per carrier its commonest failure reasons (for the report)."""
        pairs: dict[tuple[str | None, str | None], int] = {}
        for (_, carrier, reason), count in self.counts.items():
            pairs[(carrier, reason)] = pairs.get((carrier, reason), 0) + count
        out: dict[str, list[tuple[str, int]]] = {}
        for (carrier, reason), count in sorted(pairs.items(),
                                               key=lambda kv: (-kv[1], kv[0][1] or "")):
            items = out.setdefault(carrier or "other", [])
            if len(items) < top:
                items.append((reason or "(none)", count))
        return out

    def top_reason(self, part: int, carrier: int) -> str | None:
        """``carriers/``' top failure reason of one part and carrier (index in CARRIERS)."""
        counts: dict[str | None, int] = {}
        for (p, name, reason), count in self.counts.items():
            if p == part and carrier_index(name) == carrier:
                counts[reason] = counts.get(reason, 0) + count
        if not counts:
            return None
        reason, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0] or ""))
        return f"{reason or '(none)'} ({count})"


def carrier_index(name: str | None) -> int:
    """A ``carrier`` value's index in ``CARRIERS`` (anything else, null too: the last)."""
    return CARRIERS.index(name) if name in CARRIERS else len(CARRIERS) - 1
