"""The result of a check: one verdict per input row, as Arrow columns."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class NumberCheck:
    """Per-row verdicts, aligned with the input.

    ``e164`` holds digits without the ``+``; ``e164``, ``country_code`` and
    ``national`` are null for rejected rows, ``reason`` is null for kept ones.
    ``region`` is set whenever the number could be placed, kept or not, so a
    report can say "valid UK landline" rather than just "rejected".
    """

    e164: pa.Array
    country_code: pa.Array
    national: pa.Array
    region: pa.Array
    reason: pa.Array

    def __len__(self) -> int:
        return len(self.reason)

    @property
    def valid(self) -> pa.BooleanArray:
        return self.reason.is_null()

    def to_table(self) -> pa.Table:
        return pa.table({"e164": self.e164, "country_code": self.country_code,
                         "national": self.national, "region": self.region,
                         "reason": self.reason})
