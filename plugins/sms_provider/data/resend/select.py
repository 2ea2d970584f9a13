"""Which recipients a resend sends again, written as the attempt's ``prepared/``.

A recipient is resent when no attempt so far delivered it, its last attempt's
reconciled final status is one of ``statuses``, and, for a FAILED one, its
vendor's profile classes the failure as worth another try (a carrier or vendor
failure; :class:`~sms_provider.vendors.profile.FailureClass`). Invalid numbers,
opt-outs and blacklisted numbers are never resent, whatever the conf asks, and
neither is a number on the suppression list now. Every other recipient goes to
the attempt's ``rejected/`` with the reason, so prepared + rejected of an
attempt is the campaign's prepared recipients, each accounted for.

The selection is made once: a second run of the same attempt finds it and
sends from it (the ledger then sends nothing twice); a run asking for the same
attempt with another connection or other filters is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.completion import is_unfinished, mark_finished, mark_unfinished
from sms_provider.data.numbers import check_numbers, format_for_vendor
from sms_provider.data.opt_outs import load_suppressed
from sms_provider.data.prepare import custom_id_prefix, read_routing, shard_count
from sms_provider.data.reconcile.reading import read
from sms_provider.data.resend.attempts import ATTEMPT_FIELDS, attempt_id, attempts_of
from sms_provider.data.routing import Route
from sms_provider.data.schemas import (
    PREPARED_SCHEMA,
    RECONCILIATION_SCHEMA,
    REJECTED_SCHEMA,
    ROUTING_SCHEMA,
)
from sms_provider.data.storage import DataRoot
from sms_provider.vendors.profile import FailureClass
from sms_provider.vendors.profiles import profile_of

#: what the conf may name in ``statuses``
STATUSES = ("FAILED", "UNKNOWN", "PENDING")
CONF_FILE = "resend.json"
#: why a recipient is not resent (``reason`` in the attempt's ``rejected/``)
DELIVERED, NOT_SELECTED, NOT_RETRY_WORTHY, EXCLUDED = (
    "delivered", "status_not_selected", "not_retry_worthy", "excluded")
SUPPRESSED, NO_ROUTE, TOO_LONG = "suppressed", "no_route", "content_too_long"


class ResendError(ValueError):
    """The resend cannot be made as asked (no reconciliation yet, another conf...)."""


@dataclass(frozen=True)
class ResendRequest:
    """What ``sms_resend``'s conf asks for."""

    campaign_id: str
    target: Route
    attempt: int = 2
    statuses: Sequence[str] = ("FAILED",)
    #: failure classes or raw states to resend instead of the retry-worthy classes
    include_reasons: Sequence[str] = ()
    #: failure classes or raw states never to resend
    exclude_reasons: Sequence[str] = ()
    max_shards: int = 8
    min_shard_rows: int = 5000

    def conf(self) -> dict[str, Any]:
        """What must be the same on a second run of the same attempt."""
        return {"conn_id": self.target.conn_id, "statuses": sorted(self.statuses),
                "include_reasons": sorted(self.include_reasons),
                "exclude_reasons": sorted(self.exclude_reasons)}


@dataclass
class ResendSummary:
    campaign_id: str
    attempt: int
    attempt_campaign_id: str
    conn_id: str
    vendor: str
    selected: int
    not_resent: int
    reasons: dict[str, int] = field(default_factory=dict)
    shards: list[int] = field(default_factory=list)
    estimated_items: int = 0
    #: as prepare's ``routes`` (check_balance reads them)
    routes: list[dict[str, Any]] = field(default_factory=list)
    #: True when an earlier run had made this selection already
    reused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_request(request: ResendRequest) -> None:
    if request.attempt < 2:
        raise ResendError(f"attempt must be 2 or more (the campaign itself is attempt 1), "
                          f"not {request.attempt}")
    unknown = [s for s in request.statuses if s not in STATUSES]
    if not request.statuses or unknown:
        raise ResendError(f"statuses: expected some of {', '.join(STATUSES)}, "
                          f"not {list(request.statuses)!r}")
    if request.target.templates:
        raise ResendError(f"{request.target.conn_id}: a resend goes through a connection "
                          "without templates (the rendered text is sent again)")
    forced = sorted(set(request.include_reasons) & {c.value for c in FailureClass
                                                     if c.never_resent})
    if forced:
        raise ResendError(f"include_reasons: {', '.join(forced)} are never resent")


def select_for_resend(root: DataRoot, request: ResendRequest) -> ResendSummary:
    """Write (or find) the attempt's ``prepared/``, ``rejected/`` and ``routing/``."""
    check_request(request)
    campaign_id, attempt = request.campaign_id, request.attempt
    target_id = attempt_id(campaign_id, attempt)
    earlier = [1, *attempts_of(root, campaign_id)]
    if attempt - 1 not in earlier:
        raise ResendError(f"campaign {campaign_id}: attempt {attempt - 1} was not made, so "
                          f"attempt {attempt} cannot follow it")
    conf_path = root.campaign(target_id, CONF_FILE)
    if root.exists(*conf_path) and not is_unfinished(root, target_id):
        return _reused(root, request, target_id, conf_path)

    prepared = read(root, root.campaign(campaign_id, "prepared"), PREPARED_SCHEMA,
                    [f.name for f in PREPARED_SCHEMA])
    last = _last_attempts(root, campaign_id, prepared["row_number"], attempt)
    reason, detail = _decide(root, request, prepared, last)
    target = request.target
    mobile = _target_numbers(prepared["e164"], target)
    reason = _first(reason, pc.is_null(mobile), NO_ROUTE)
    if target.max_content_chars is not None:
        reason = _first(reason, pc.greater(pc.utf8_length(prepared["content"]),
                                           target.max_content_chars), TOO_LONG)
    keep = pc.is_null(reason)
    chosen = prepared.filter(keep)
    rows = chosen.num_rows
    custom = pc.binary_join_element_wise(custom_id_prefix(target_id),
                                         pc.cast(chosen["row_number"], pa.string()), "")
    chosen = chosen.set_column(chosen.schema.get_field_index("mobile"), "mobile",
                               pc.filter(mobile, keep))
    chosen = chosen.set_column(chosen.schema.get_field_index("custom_id"), "custom_id", custom)
    chosen = chosen.set_column(chosen.schema.get_field_index("variables"), "variables",
                               pa.nulls(rows, pa.string()))
    chosen = (chosen.append_column(ATTEMPT_FIELDS[0], pa.array(np.full(rows, attempt,
                                                                       np.int32)))
              .append_column(ATTEMPT_FIELDS[1], pc.filter(last["message_id"], keep))
              .append_column(ATTEMPT_FIELDS[2], pc.filter(last["conn_id"], keep)))
    dropped = pc.invert(keep)
    rejected = pa.table({"row_number": pc.filter(prepared["row_number"], dropped),
                         "raw_value": pc.filter(prepared["mobile"], dropped),
                         "reason": pc.filter(reason, dropped),
                         "detail": pc.filter(detail, dropped)}, schema=REJECTED_SCHEMA)
    shards = _write(root, request, target_id, chosen, rejected)
    return _summary(request, target_id, shards, rejected, reused=False)


def _reused(root: DataRoot, request: ResendRequest, target_id: str,
            conf_path: tuple[str, ...]) -> ResendSummary:
    with root.fs.open_input_stream(root.path(*conf_path)) as handle:
        made = json.loads(handle.read().decode("utf-8"))
    if made != request.conf():
        raise ResendError(
            f"attempt {request.attempt} of campaign {request.campaign_id} was made with "
            f"{made}, not {request.conf()}; a different resend needs the next attempt "
            f"number ({request.attempt + 1})")
    routing = read_routing(root, target_id)
    rejected = read(root, root.campaign(target_id, "rejected"), REJECTED_SCHEMA,
                    ["row_number", "reason"])
    return _summary(request, target_id, routing, rejected, reused=True)


def _summary(request: ResendRequest, target_id: str, routing: pa.Table,
             rejected: pa.Table, *, reused: bool) -> ResendSummary:
    shards = [int(s) for s in routing["shard"].to_pylist()]
    prepared = int(pc.sum(routing["prepared"]).as_py() or 0)
    items = int(pc.sum(routing["estimated_items"]).as_py() or 0)
    reasons = {r["values"]: r["counts"] for r in
               pc.value_counts(rejected["reason"]).to_pylist()} if rejected.num_rows else {}
    target = request.target
    return ResendSummary(
        campaign_id=request.campaign_id, attempt=request.attempt,
        attempt_campaign_id=target_id, conn_id=target.conn_id, vendor=target.vendor,
        selected=prepared, not_resent=rejected.num_rows, reasons=reasons, shards=shards,
        estimated_items=items, reused=reused,
        routes=[{"conn_id": target.conn_id, "vendor": target.vendor, "shards": shards,
                 "prepared": prepared, "estimated_items": items}])


def _last_attempts(root: DataRoot, campaign_id: str, row_number: pa.ChunkedArray,
                   attempt: int) -> dict[str, Any]:
    """Per prepared recipient, its last attempt's reconciled row; and whether any
    attempt delivered it. Every earlier attempt must have been reconciled."""
    wanted = ["row_number", "conn_id", "vendor", "message_id", "final_status", "reason"]
    n = len(row_number)
    out: dict[str, Any] = {name: pa.nulls(n, pa.string()) for name in wanted[1:]}
    delivered = np.zeros(n, bool)
    for k in range(1, attempt):
        source = attempt_id(campaign_id, k)
        recon = read(root, root.campaign(source, "reconciliation"), RECONCILIATION_SCHEMA,
                     wanted)
        if k == 1 and recon.num_rows != n:
            raise ResendError(f"campaign {campaign_id}: reconciliation/ has {recon.num_rows} "
                              f"of its {n} recipients; run sms_reconcile for it first")
        if k > 1 and not root.parquet_files(*root.campaign(source, "reconciliation")):
            raise ResendError(f"attempt {k} of campaign {campaign_id} is not reconciled yet; "
                              "run sms_reconcile for the campaign first")
        where = pc.index_in(row_number, value_set=recon["row_number"])
        found = pc.is_valid(where)
        for name in wanted[1:]:
            column = pc.cast(recon[name], pa.string())
            out[name] = pc.if_else(found, pc.take(column, where), out[name])
        delivered |= np.asarray(pc.fill_null(pc.equal(pc.take(
            pc.cast(recon["final_status"], pa.string()), where), "DELIVERED"), False))
    out["delivered"] = delivered
    return out


def _decide(root: DataRoot, request: ResendRequest, prepared: pa.Table,
            last: dict[str, Any]) -> tuple[pa.Array, pa.Array]:
    """Per recipient why it is not resent (null: it is), and a detail."""
    n = prepared.num_rows
    status = last["final_status"]
    raw_state = pc.list_element(pc.split_pattern(pc.fill_null(last["reason"], ""), ": ",
                                                 max_splits=1), 0)
    classes = _classes(last["vendor"], raw_state)
    failed = np.asarray(pc.fill_null(pc.equal(status, "FAILED"), False))

    def among(column: Any, names: Sequence[str]) -> np.ndarray:
        if not names:
            return np.zeros(n, bool)
        return np.asarray(pc.fill_null(pc.is_in(column, value_set=pa.array(
            list(names), pa.string())), False))

    def named(names: Sequence[str]) -> np.ndarray:
        return among(classes, names) | among(raw_state, names)

    never = among(classes, [c.value for c in FailureClass if c.never_resent])
    worthy = (named(request.include_reasons) if request.include_reasons else
              among(classes, [c.value for c in FailureClass if c.retry_worthy]))
    reason = pa.nulls(n, pa.string())
    reason = _first(reason, last["delivered"], DELIVERED)
    reason = _first(reason, pc.invert(pc.fill_null(pc.is_in(status, value_set=pa.array(
        list(request.statuses))), False)), NOT_SELECTED)
    reason = _first(reason, failed & never, classes)
    reason = _first(reason, failed & ~worthy, NOT_RETRY_WORTHY)
    reason = _first(reason, failed & named(request.exclude_reasons), EXCLUDED)
    reason = _first(reason, pc.is_in(prepared["e164"], value_set=load_suppressed(root)),
                    SUPPRESSED)
    detail = pc.if_else(pa.array(failed), pc.binary_join_element_wise(
        classes, pc.fill_null(last["reason"], ""), ": "), status)
    return reason, detail


def _classes(vendor: pa.Array, raw_state: pa.Array) -> pa.Array:
    """Each row's failure class from its vendor's profile (few distinct pairs)."""
    key = pc.binary_join_element_wise(pc.fill_null(vendor, ""), pc.fill_null(raw_state, ""),
                                      "\x1f")
    codes = pc.dictionary_encode(key)
    codes = codes.combine_chunks() if isinstance(codes, pa.ChunkedArray) else codes
    names = []
    for pair in codes.dictionary.to_pylist():
        vendor_name, _, state = pair.partition("\x1f")
        names.append((profile_of(vendor_name).failure_class(state) if vendor_name
                      else FailureClass.UNCLASSIFIED).value)
    return pc.take(pa.array(names, pa.string()), codes.indices)


def _first(reason: Any, mask: Any, value: Any) -> Any:
    """``reason`` with ``value`` where ``mask`` holds and no reason was given yet."""
    mask = pa.array(np.asarray(mask, bool)) if isinstance(mask, np.ndarray) else \
        pc.fill_null(mask, False)
    value = pa.scalar(value, pa.string()) if isinstance(value, str) else value
    return pc.if_else(pc.and_(mask, pc.is_null(reason)), value, reason)


def _target_numbers(e164: pa.ChunkedArray, target: Route) -> pa.Array:
    """Each number in the target vendor's format; null where it cannot take it."""
    plus = pc.binary_join_element_wise("+", pc.cast(e164, pa.string()), "")
    check = check_numbers(plus, mainland=not target.sends_abroad)
    mobile = format_for_vendor(check, target.vendor)
    return mobile.combine_chunks() if isinstance(mobile, pa.ChunkedArray) else mobile


def _write(root: DataRoot, request: ResendRequest, target_id: str, chosen: pa.Table,
           rejected: pa.Table) -> pa.Table:
    """The attempt's datasets, under the unfinished-prepare marker; returns ``routing/``."""
    mark_unfinished(root, target_id)
    for name in ("prepared", "rejected", "routing"):
        root.remove_dir(*root.campaign(target_id, name))
    rows = chosen.num_rows
    count = shard_count(rows, request.max_shards, request.min_shard_rows) if rows else 0
    per = max(1, math.ceil(rows / count)) if count else 0
    shards, sizes, items = [], [], []
    for shard, start in enumerate(range(0, rows, per or 1)):
        piece = chosen.slice(start, per)
        piece = piece.set_column(piece.schema.get_field_index("shard"), "shard",
                                 pa.array(np.full(piece.num_rows, shard, np.int32)))
        root.write_table(piece, *root.campaign(target_id, "prepared",
                                               f"part-{shard:05d}.parquet"))
        shards.append(shard)
        sizes.append(piece.num_rows)
        items.append(int(pc.sum(piece["charge_items"]).as_py() or 0))
    if not shards:
        root.write_table(chosen.schema.empty_table(),
                         *root.campaign(target_id, "prepared", "part-00000.parquet"))
    root.write_table(rejected, *root.campaign(target_id, "rejected", "part-00000.parquet"))
    target = request.target
    routing = pa.table({"shard": pa.array(shards, pa.int32()),
                        "conn_id": pa.array([target.conn_id] * len(shards), pa.string()),
                        "vendor": pa.array([target.vendor] * len(shards), pa.string()),
                        "prepared": pa.array(sizes, pa.int64()),
                        "estimated_items": pa.array(items, pa.int64())}, schema=ROUTING_SCHEMA)
    root.write_table(routing, *root.campaign(target_id, "routing", "part-00000.parquet"))
    with root.fs.open_output_stream(root.path(*root.campaign(target_id, CONF_FILE))) as out:
        out.write(json.dumps(request.conf(), sort_keys=True).encode("utf-8"))
    mark_finished(root, target_id)
    return routing
