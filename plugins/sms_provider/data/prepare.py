"""Recipients file in, ``prepared/`` and ``rejected/`` out: every input row accounted for.

Each input row ends in exactly one of the two datasets; a rejected row keeps
its row number, raw value and the first reason it failed (number, content,
duplicate, suppression, in that order). The output is a pure function of the
input, so a rerun writes the same files and the send ledger's fingerprints
still match.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.content import ContentTemplate, charge_items
from sms_provider.data.numbers import check_numbers, format_for_vendor, mainland_only
from sms_provider.data.recipients import load_recipients
from sms_provider.data.schemas import PREPARED_SCHEMA, REJECTED_SCHEMA
from sms_provider.data.storage import DataRoot

INTERNATIONAL_VENDORS = frozenset({"emay_ims", "eims"})


@dataclass(frozen=True)
class PrepareSettings:
    campaign_id: str
    vendor: str
    content: str
    mobile_column: str = "mobile"
    max_content_chars: int | None = None
    template_variables: Sequence[str] | None = None  # FMS: send these columns as variables
    default_region: str = "CN"
    max_shards: int = 8
    min_shard_rows: int = 5000


@dataclass
class PrepareSummary:
    campaign_id: str
    input_rows: int
    prepared: int
    rejected: int
    shards: list[int]
    estimated_items: int
    reasons: dict[str, int] = field(default_factory=dict)
    encoding: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def custom_id_prefix(campaign_id: str) -> str:
    """8 hex characters: with a row number, a custom id stays well under 32."""
    return hashlib.sha256(campaign_id.encode("utf-8")).hexdigest()[:8]


def shard_count(rows: int, max_shards: int, min_shard_rows: int) -> int:
    return max(1, min(max_shards, math.ceil(rows / max(1, min_shard_rows))))


def _first_reason(*candidates: tuple[pa.ChunkedArray | pa.Array, str | pa.Array]
                  ) -> tuple[pa.Array, pa.Array]:
    """Per row, the reason and detail of the first candidate whose mask is true."""
    reason: pa.Array | pa.ChunkedArray | None = None
    detail: pa.Array | pa.ChunkedArray | None = None
    for mask, (code, extra) in reversed(candidates):  # type: ignore[misc]
        mask = pc.fill_null(mask, False)
        if reason is None:
            reason = pc.if_else(mask, code, None)
            detail = pc.if_else(mask, extra, None)
        else:
            reason = pc.if_else(mask, code, reason)
            detail = pc.if_else(mask, extra, detail)
    return reason, detail  # type: ignore[return-value]


def load_suppressed(root: DataRoot) -> pa.Array:
    """E.164 numbers that must not be messaged (opt-outs and the like)."""
    if not root.list_files("suppression"):
        return pa.array([], pa.string())
    table = root.read_dataset("suppression")
    return pc.unique(pc.cast(table["e164"], pa.string()))


def prepare(root: DataRoot, recipients: str, settings: PrepareSettings) -> PrepareSummary:
    """Validate, personalise, deduplicate and shard; write the two datasets."""
    template = ContentTemplate.parse(settings.content)
    loaded = load_recipients(recipients, mobile_column=settings.mobile_column)
    table = loaded.table
    template.check_columns(table.column_names)
    for name in settings.template_variables or ():
        if name not in table.column_names:
            raise ValueError(f"template variable {name!r} has no column in {recipients}; "
                             f"columns: {', '.join(table.column_names)}")
    raw = table[settings.mobile_column]
    check = check_numbers(raw, settings.default_region)
    if settings.vendor not in INTERNATIONAL_VENDORS:
        check = mainland_only(check)
        mobile = check.national  # the mainland format, without a second mainland pass
    else:
        mobile = format_for_vendor(check, settings.vendor)
    content = template.render(table)
    empty_col = template.empty_column(table)
    limit = settings.max_content_chars
    too_long = (pc.greater(pc.utf8_length(content), limit) if limit
                else pa.array([False] * table.num_rows))
    number_ok = pc.is_null(check.reason)
    content_ok = pc.and_(pc.is_valid(content), pc.invert(pc.fill_null(too_long, False)))
    # Duplicates are judged among rows that would otherwise go out; the first row wins.
    candidate = pc.and_(number_ok, content_ok)
    # Each vendor format maps one-to-one onto E.164, so duplicates are judged there.
    dup = _duplicates(check.e164, candidate)
    suppressed = pc.is_in(check.e164, value_set=load_suppressed(root))
    reason, detail = _first_reason(
        (pc.invert(number_ok), (check.reason, "")),
        (pc.is_valid(empty_col), ("missing_value",
                                  pc.binary_join_element_wise("empty column ", empty_col, ""))),
        (too_long, ("content_too_long",
                    pc.binary_join_element_wise(
                        pc.cast(pc.utf8_length(content), pa.string()),
                        f" characters, the limit is {limit}", ""))),
        (dup, ("duplicate", "number already listed in an earlier row")),
        (pc.fill_null(suppressed, False), ("suppressed", "number is on the suppression list")),
    )
    keep = pc.is_null(reason)
    rejected = pa.table({
        "row_number": table["row_number"], "raw_value": pc.cast(raw, pa.string()),
        "reason": reason, "detail": detail,
    }, schema=REJECTED_SCHEMA).filter(pc.invert(keep))
    prepared = _prepared(table, settings, template, keep, mobile, check.e164, content)
    _write(root, settings.campaign_id, prepared, rejected)
    reasons = {r["values"]: r["counts"] for r in
               pc.value_counts(rejected["reason"]).to_pylist()} if rejected.num_rows else {}
    return PrepareSummary(
        campaign_id=settings.campaign_id, input_rows=table.num_rows,
        prepared=prepared.num_rows, rejected=rejected.num_rows,
        shards=_shard_numbers(prepared),
        estimated_items=int(pc.sum(prepared["charge_items"]).as_py() or 0),
        reasons=reasons, encoding=loaded.encoding)


def _duplicates(e164: pa.ChunkedArray | pa.Array, candidate: pa.ChunkedArray | pa.Array
                ) -> pa.Array:
    """True for every candidate row whose number a candidate row before it already has.

    Keys are the E.164 digits as int64 (at most 15 digits): hashing integers is
    several times cheaper than hashing ten million Python strings.
    """
    import pandas as pd

    mask = pc.fill_null(candidate, False)
    digits = pc.if_else(mask, e164, None)
    keys = pc.fill_null(pc.cast(digits, pa.int64()), -1).to_numpy(zero_copy_only=False)
    seen = pd.Series(keys).duplicated(keep="first").to_numpy() & (keys >= 0)
    return pa.array(seen, pa.bool_())


def _shard_numbers(prepared: pa.Table) -> list[int]:
    """Shards are contiguous runs of rows: their numbers without reading the column."""
    if prepared.num_rows == 0:
        return []
    return list(range(prepared["shard"][-1].as_py() + 1))


def _prepared(table: pa.Table, settings: PrepareSettings, template: ContentTemplate,
              keep: pa.Array, mobile: pa.Array, e164: pa.Array, content: pa.Array) -> pa.Table:
    kept = table.filter(keep)
    content = pc.filter(content, keep)
    n = kept.num_rows
    variables: pa.Array | pa.ChunkedArray
    if settings.template_variables is not None:
        fms = ContentTemplate.parse("".join("{" + v + "}" for v in settings.template_variables)
                                    or "x")
        variables = (fms.variables_json(kept) if settings.template_variables
                     else pa.array(["{}"] * n, pa.string()))
    else:
        variables = pa.nulls(n, pa.string())
    shards = shard_count(n, settings.max_shards, settings.min_shard_rows)
    per_shard = max(1, math.ceil(n / shards))
    position = pa.array(np.arange(n, dtype=np.int64))
    custom_ids = pc.binary_join_element_wise(
        custom_id_prefix(settings.campaign_id), pc.cast(kept["row_number"], pa.string()), "")
    return pa.table({
        "row_number": kept["row_number"],
        "mobile": pc.filter(mobile, keep),
        "e164": pc.filter(e164, keep),
        "content": content,
        "variables": variables,
        "charge_items": charge_items(content) if n else pa.array([], pa.int32()),
        "custom_id": custom_ids,
        "shard": pc.cast(pc.divide(position, per_shard), pa.int32()),
    }, schema=PREPARED_SCHEMA)


def _rows_per_shard(prepared: pa.Table) -> int:
    """Every shard but the last holds this many rows (see ``_prepared``)."""
    shards = prepared["shard"]
    if prepared.num_rows == 0:
        return 1
    last = shards[-1].as_py()
    if last == 0:
        return prepared.num_rows
    return int(pc.sum(pc.equal(shards, 0)).as_py())


def _write(root: DataRoot, campaign_id: str, prepared: pa.Table, rejected: pa.Table) -> None:
    """Replace both datasets; stale shard files of an earlier, larger run go too."""
    for name in ("prepared", "rejected"):
        root.remove_dir(*root.campaign(campaign_id, name))
    if prepared.num_rows == 0:
        root.write_table(prepared, *root.campaign(campaign_id, "prepared", "part-00000.parquet"))
    per_shard = _rows_per_shard(prepared)
    for shard in _shard_numbers(prepared):
        part = prepared.slice(shard * per_shard, per_shard)  # contiguous: no filter copies
        root.write_table(part, *root.campaign(campaign_id, "prepared",
                                              f"part-{shard:05d}.parquet"))
    root.write_table(rejected, *root.campaign(campaign_id, "rejected", "part-00000.parquet"))


def read_shard(root: DataRoot, campaign_id: str, shard: int) -> pa.Table:
    return root.read_table(*root.campaign(campaign_id, "prepared", f"part-{shard:05d}.parquet"))
