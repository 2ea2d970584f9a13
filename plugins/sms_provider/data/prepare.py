"""Recipients file in, ``prepared/`` and ``rejected/`` out: every input row accounted for.

Each input row ends in exactly one of the two datasets; a rejected row keeps
its row number, raw value and the first reason it failed (number, content,
duplicate, suppression, in that order). The output is a pure function of the
input, so a rerun writes the same files and the send ledger's fingerprints
still match. Both datasets are written under :mod:`sms_provider.data.completion`'s
marker: a prepare that fails partway leaves nothing a later run reads as whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.carriers import carrier_column
from sms_provider.data.completion import mark_finished, mark_unfinished, require_finished
from sms_provider.data.content import (
    ContentTemplate,
    ContentTemplateError,
    charge_items,
    first_control_character,
    holds_control_character,
)
from sms_provider.data.duplicates import e164_keys, later_repeats
from sms_provider.data.memory import returned_memory
from sms_provider.data.numbers import check_numbers, format_for_vendor
from sms_provider.data.numbers.reasons import MAINLAND_CALLING_CODE
from sms_provider.data.opt_outs import load_suppressed
from sms_provider.data.recipients import load_recipients, require_single, text_columns
from sms_provider.data.routing import (
    Route,
    assign,
    no_route_detail,
    split_points,
)
from sms_provider.data.schemas import PREPARED_SCHEMA, REJECTED_SCHEMA, ROUTING_SCHEMA
from sms_provider.data.storage import DataRoot


@dataclass(frozen=True)
class PrepareSettings:
    campaign_id: str
    vendor: str
    content: str
    mobile_column: str = "mobile"
    max_content_chars: int | None = None
    template_variables: Sequence[str] | None = None  # templates: send these columns as variables
    default_region: str = "CN"
    max_shards: int = 8
    min_shard_rows: int = 5000
    #: the connections to route over, in preference order (None: ``vendor`` alone, the
    #: fields above describing it); see :mod:`sms_provider.data.routing`
    routes: Sequence[Route] | None = None
    #: a template campaign (``template_id`` given): only routes with templates take it
    template_campaign: bool = False

    def route_list(self) -> list[Route]:
        if self.routes:
            return list(self.routes)
        return [Route("", self.vendor, self.max_content_chars,
                      self.template_variables is not None, self.template_variables)]


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
    #: per route: conn_id, vendor, shards, prepared, estimated_items
    routes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def custom_id_prefix(campaign_id: str) -> str:
    """8 hex characters: with a row number, a custom id stays well under 32."""
    return hashlib.sha256(campaign_id.encode("utf-8")).hexdigest()[:8]


def shard_count(rows: int, max_shards: int, min_shard_rows: int) -> int:
    return max(1, min(max_shards, math.ceil(rows / max(1, min_shard_rows))))


#: reason codes, in the order they are judged (the first one that applies wins)
_NUMBER, _MISSING, _CONTROL, _TOO_LONG, _NO_ROUTE, _DUPLICATE, _SUPPRESSED = range(1, 8)
_REASONS = pa.array([None, None, "missing_value", "control_character", "content_too_long",
                     "no_route", "duplicate", "suppressed"], pa.string())
_DETAILS = pa.array([None, "", None, None, None, None,
                     "number already listed in an earlier row",
                     "number is on the suppression list"], pa.string())


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow column as numpy, null counted as false."""
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def _first_reason(*masks: np.ndarray, rows: int) -> np.ndarray:
    """Per row, 1 + the index of the first mask that is true there, 0 where none is (int8)."""
    codes = np.zeros(rows, dtype=np.int8)
    for code in range(len(masks), 0, -1):
        codes[masks[code - 1]] = code
    return codes


def prepare(root: DataRoot, recipients: str, settings: PrepareSettings) -> PrepareSummary:
    """Validate, personalise, deduplicate, route and shard; write the datasets.

    Run with the allocator that returns freed memory at once (``data.memory``): the
    steps allocate and drop whole columns one after another (10M rows: peak 2.5 GiB
    rather than 2.7).
    """
    with returned_memory():
        return _prepare(root, recipients, settings)


def _prepare(root: DataRoot, recipients: str, settings: PrepareSettings) -> PrepareSummary:
    """The body of :func:`prepare`."""
    template = ContentTemplate.parse(settings.content)
    routes = settings.route_list()
    loaded = load_recipients(recipients, mobile_column=settings.mobile_column)
    columns = loaded.table.column_names
    try:
        template.check_columns(columns)
    except ContentTemplateError as exc:
        raise ContentTemplateError(f"{recipients}: {exc}") from None
    wanted = list(dict.fromkeys(name for route in routes
                                for name in route.template_variables or ()))
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise ContentTemplateError(f"{recipients}: template variable(s) {', '.join(missing)} "
                                   f"have no column; its columns are: {', '.join(columns)}")
    # the columns whose values go out: text, one column per name, no control characters
    personal = list(dict.fromkeys([*template.variables, *wanted]))
    require_single(loaded, [settings.mobile_column, *personal])
    table = text_columns(loaded, personal)
    raw = table[settings.mobile_column]
    mainland = not any(route.sends_abroad for route in routes)
    check = check_numbers(raw, settings.default_region, mainland=mainland)
    empties = template.empties(table)
    content = template.render(table, empties)
    length = pc.utf8_length(content)
    rows = table.num_rows
    first_control = _first_reason(*(_mask(holds_control_character(table[name]))
                                    for name in personal), rows=rows)
    number_bad = _mask(pc.is_valid(check.reason))
    eligible, room = _eligibility(routes, check, length, settings.template_campaign, rows)
    too_long = ~number_bad & ~room.any(axis=1)
    no_route = ~number_bad & ~too_long & ~eligible.any(axis=1)
    content_ok = _mask(pc.is_valid(content)) & ~too_long & ~no_route & (first_control == 0)
    # Duplicates are judged among rows that would otherwise go out; the first row wins.
    candidate = ~number_bad & content_ok
    # Each vendor format maps one-to-one onto E.164, so duplicates are judged there.
    keys = e164_keys(check.e164)
    dup = later_repeats(keys, candidate)
    suppressed = _mask(pc.is_in(check.e164, value_set=load_suppressed(root)))
    first_empty = _first_reason(*(_mask(empties[name]) for name in template.variables),
                                rows=rows)
    codes = _first_reason(number_bad, first_empty > 0, first_control > 0, too_long, no_route,
                          dup, suppressed, rows=rows)
    limits = [route.max_content_chars for route in routes]
    limit = max(limits) if None not in limits else None
    rejected = _rejected(table, raw, codes, check.reason, first_empty, template.variables,
                         length, limit)
    abroad = _mask(pc.equal(check.reason, "not_mainland"))
    if (codes == _NO_ROUTE).any() or abroad.any():
        foreign = abroad | _mask(pc.not_equal(check.country_code, MAINLAND_CALLING_CODE))
        rejected = _no_route_details(rejected, codes, foreign, routes)
    if (codes == _CONTROL).any():
        rejected = _control_details(rejected, table, codes, first_control, personal)
    kept_rows = np.flatnonzero(codes == 0)
    chosen = assign(eligible[kept_rows], [route.weight for route in routes],
                    split_points(settings.campaign_id, keys[kept_rows]))
    kept = [(route, _Kept(table, kept_rows[chosen == index],
                          _vendor_mobile(check, route, single=len(routes) == 1 and mainland),
                          check.e164, content))
            for index, route in enumerate(routes)]
    prepared, shards, items, routed = _write(root, settings, kept, rejected)
    reasons = {r["values"]: r["counts"] for r in
               pc.value_counts(rejected["reason"]).to_pylist()} if rejected.num_rows else {}
    return PrepareSummary(
        campaign_id=settings.campaign_id, input_rows=rows,
        prepared=prepared, rejected=rejected.num_rows, shards=list(range(shards)),
        estimated_items=items, reasons=reasons, encoding=loaded.encoding, routes=routed)


def _eligibility(routes: Sequence[Route], check: Any, length: pa.Array | pa.ChunkedArray,
                 template_campaign: bool, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows × routes: which route can take each row, and which has room for its content
    among the routes its number may go to (the profile asked, never the vendor's name)."""
    home = _mask(pc.equal(check.country_code, MAINLAND_CALLING_CODE))
    eligible = np.zeros((rows, len(routes)), dtype=bool)
    room = np.zeros((rows, len(routes)), dtype=bool)
    for index, route in enumerate(routes):
        number_ok = np.ones(rows, bool) if route.sends_abroad else home
        fits = (~_mask(pc.greater(length, route.max_content_chars))
                if route.max_content_chars else np.ones(rows, bool))
        room[:, index] = number_ok & fits
        eligible[:, index] = room[:, index] & (route.templates or not template_campaign)
    return eligible, room


def _vendor_mobile(check: Any, route: Route, *, single: bool) -> pa.Array | pa.ChunkedArray:
    """The numbers in the route's vendor format (one mainland route: the mainland check
    already gave the national format, without a second pass)."""
    return check.national if single else format_for_vendor(check, route.vendor)


def _no_route_details(rejected: pa.Table, codes: np.ndarray, foreign: np.ndarray,
                      routes: Sequence[Route]) -> pa.Table:
    """The detail of rows no connection can take (no route, or a foreign number where
    none sends abroad): the connections that were asked."""
    rows = np.flatnonzero((codes == _NO_ROUTE) | ((codes == _NUMBER) & foreign))
    positions = np.searchsorted(np.flatnonzero(codes), rows)
    detail = rejected["detail"].to_pylist()
    for position, row in zip(positions.tolist(), rows.tolist(), strict=True):
        detail[position] = no_route_detail(routes, bool(foreign[row]))
    return rejected.set_column(rejected.schema.get_field_index("detail"), "detail",
                               _chunked_like(pa.array(detail, pa.string()),
                                             rejected["row_number"]))


def _rejected(table: pa.Table, raw: pa.ChunkedArray | pa.Array, codes: np.ndarray,
              number_reason: pa.ChunkedArray | pa.Array, first_empty: np.ndarray,
              variables: list[str], length: pa.ChunkedArray | pa.Array,
              limit: int | None) -> pa.Table:
    """The rejected rows with their reason and detail, strings built for those rows only."""
    rows = pa.array(np.flatnonzero(codes), pa.int64())
    code = pa.array(codes[rows.to_numpy()], pa.int8())
    reason = pc.take(_REASONS, code)
    detail = pc.take(_DETAILS, code)
    reason = pc.if_else(pc.equal(code, _NUMBER), pc.take(number_reason, rows), reason)
    if variables:
        names = pa.array([None, *variables], pa.string())
        empty = pc.take(names, pa.array(first_empty[rows.to_numpy()], pa.int8()))
        detail = pc.if_else(pc.equal(code, _MISSING),
                            pc.binary_join_element_wise("empty column ", empty, ""), detail)
    if limit:
        chars = pc.cast(pc.take(length, rows), pa.string())
        detail = pc.if_else(pc.equal(code, _TOO_LONG), pc.binary_join_element_wise(
            chars, f" characters, the limit is {limit}", ""), detail)
    # Filtered (not taken), the columns keep the source's chunks, and so the Parquet
    # pages (cut at chunk boundaries too) come out as they always have.
    rejected = pa.array(codes != 0, pa.bool_())
    raw_value = pc.filter(pc.cast(raw, pa.string()), rejected)
    return pa.table({
        "row_number": pc.filter(table["row_number"], rejected),
        "raw_value": raw_value,
        "reason": _chunked_like(reason, raw_value), "detail": _chunked_like(detail, raw_value),
    }, schema=REJECTED_SCHEMA)


def _control_details(rejected: pa.Table, table: pa.Table, codes: np.ndarray,
                     first_control: np.ndarray, columns: list[str]) -> pa.Table:
    """The detail of rows rejected for a control character: which column, which character
    (built in Python for those rows only; they are few)."""
    rows = np.flatnonzero(codes == _CONTROL)
    which = first_control[rows]
    details = np.empty(rows.size, dtype=object)
    for code, name in enumerate(columns, 1):
        chosen = which == code
        if chosen.any():
            values = pc.take(table[name], pa.array(rows[chosen])).to_pylist()
            details[chosen] = [f"column {name!r} holds the control character "
                               f"{first_control_character(value)}" for value in values]
    positions = np.searchsorted(np.flatnonzero(codes), rows)  # rejected rows, ascending
    detail = rejected["detail"].to_pylist()
    for position, text in zip(positions.tolist(), details.tolist(), strict=True):
        detail[position] = text
    return rejected.set_column(rejected.schema.get_field_index("detail"), "detail",
                               _chunked_like(pa.array(detail, pa.string()),
                                             rejected["row_number"]))


def _chunked_like(values: pa.Array | pa.ChunkedArray, like: pa.Array | pa.ChunkedArray
                  ) -> pa.ChunkedArray:
    """``values`` cut into chunks of the same lengths as ``like``'s (no copies)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(like, pa.ChunkedArray):
        return pa.chunked_array([values], values.type)
    chunks, offset = [], 0
    for chunk in like.chunks:
        chunks.append(values.slice(offset, len(chunk)))
        offset += len(chunk)
    return pa.chunked_array(chunks, values.type)


@dataclass(frozen=True)
class _Kept:
    """The source columns and the positions of the rows that go out (ascending)."""

    table: pa.Table
    rows: np.ndarray
    mobile: pa.ChunkedArray | pa.Array
    e164: pa.ChunkedArray | pa.Array
    content: pa.ChunkedArray | pa.Array


def _prepared(kept: _Kept, settings: PrepareSettings, route: Route, shard: int, start: int,
              stop: int) -> pa.Table:
    """Shard ``shard``: kept rows ``start`` to ``stop``, taken from the source columns.

    Shards are contiguous runs of kept rows, so each is a filter of one contiguous
    range of source rows.
    """
    n = stop - start
    first, last = int(kept.rows[start]), int(kept.rows[stop - 1]) + 1
    mask = np.zeros(last - first, dtype=bool)
    mask[kept.rows[start:stop] - first] = True
    keep = pa.array(mask, pa.bool_())

    def take(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
        return pc.filter(column.slice(first, last - first), keep)

    row_number = take(kept.table["row_number"])
    content = take(kept.content)
    variables: pa.Array | pa.ChunkedArray
    if route.template_variables is not None:
        variables_of = ContentTemplate.parse(
            "".join("{" + v + "}" for v in route.template_variables) or "x")
        variables = (variables_of.variables_json(
                         kept.table.slice(first, last - first).filter(keep))
                     if route.template_variables else pa.array(["{}"] * n, pa.string()))
    else:
        variables = pa.nulls(n, pa.string())
    custom_ids = pc.binary_join_element_wise(
        custom_id_prefix(settings.campaign_id), pc.cast(row_number, pa.string()), "")
    return pa.table({
        "row_number": row_number,
        "mobile": take(kept.mobile),
        "e164": take(kept.e164),
        "content": content,
        "variables": variables,
        "charge_items": charge_items(content),
        "custom_id": custom_ids,
        "shard": pa.array(np.full(n, shard, dtype=np.int32)),
        "carrier": carrier_column(take(kept.e164)),
    }, schema=PREPARED_SCHEMA)


def _write(root: DataRoot, settings: PrepareSettings, kept: list[tuple[Route, _Kept]],
           rejected: pa.Table) -> tuple[int, int, int, list[dict[str, Any]]]:
    """Replace the datasets under the unfinished-prepare marker (see ``completion``).

    Should any write fail (a full disk), what was written goes again, best effort,
    and the marker stays: readers refuse the campaign until a prepare finishes.
    """
    campaign_id = settings.campaign_id
    mark_unfinished(root, campaign_id)
    try:
        result = _write_datasets(root, settings, kept, rejected)
    except BaseException:
        for name in ("prepared", "rejected", "routing"):
            with contextlib.suppress(Exception):
                root.remove_dir(*root.campaign(campaign_id, name))
        raise
    mark_finished(root, campaign_id)
    return result


def _route_shards(rows: int, total: int, settings: PrepareSettings, routes: int) -> int:
    """A route's share of the shards: in proportion to its rows, at least one where it
    has any, so a campaign's send tasks stay about ``max_shards`` however it is routed."""
    if rows == 0:
        return 0
    share = settings.max_shards if routes == 1 else max(
        1, round(settings.max_shards * rows / max(1, total)))
    return shard_count(rows, share, settings.min_shard_rows)


#: rows of a shard built and written at once (a row group of its file)
SHARD_PIECE_ROWS = 250_000


def _write_datasets(root: DataRoot, settings: PrepareSettings,
                    kept: list[tuple[Route, _Kept]], rejected: pa.Table
                    ) -> tuple[int, int, int, list[dict[str, Any]]]:
    """Replace the datasets; stale shard files of an earlier, larger run go too.

    Shards are numbered across routes (the first route's first), each one route's
    only, in that vendor's number format; ``routing/`` says which connection sends
    which shard. Each shard is built and written by one job on a two-thread pool
    (Arrow and the Parquet writer release the GIL). Returns the prepared rows, the
    number of shards, the charge items and the per-route figures.
    """
    campaign_id = settings.campaign_id
    for name in ("prepared", "rejected", "routing"):
        root.remove_dir(*root.campaign(campaign_id, name))
    n = sum(len(part.rows) for _, part in kept)
    jobs: list[tuple[int, Route, _Kept, int, int]] = []
    plan: list[tuple[Route, list[int], int]] = []
    next_shard = 0
    for route, part in kept:
        rows = len(part.rows)
        count = _route_shards(rows, n, settings, len(kept))
        per_shard = max(1, math.ceil(rows / count)) if count else 0
        shards = []
        for start in range(0, rows, per_shard or 1):
            jobs.append((next_shard, route, part, start, min(rows, start + per_shard)))
            shards.append(next_shard)
            next_shard += 1
        plan.append((route, shards, rows))

    def job(shard: int, route: Route, part: _Kept, start: int, stop: int) -> int:
        # a shard is built and written a piece at a time: two whole shards of a big
        # campaign in flight were the peak of the whole step
        sink = root.open_parquet(PREPARED_SCHEMA, *root.campaign(
            campaign_id, "prepared", f"part-{shard:05d}.parquet"))
        items = 0
        try:
            for lo in range(start, stop, SHARD_PIECE_ROWS):
                table = _prepared(part, settings, route, shard, lo,
                                  min(stop, lo + SHARD_PIECE_ROWS))
                sink.write(table)
                items += int(pc.sum(table["charge_items"]).as_py() or 0)
                del table
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the first error is the one
                sink.abort()
            raise
        sink.close()
        return items

    def write_rejected() -> int:
        root.write_table(rejected, *root.campaign(campaign_id, "rejected", "part-00000.parquet"))
        return 0

    if not jobs:
        root.write_table(PREPARED_SCHEMA.empty_table(),
                         *root.campaign(campaign_id, "prepared", "part-00000.parquet"))
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="prepare-shard") as pool:
        futures = [pool.submit(job, *spec) for spec in jobs]
        rejected_done = pool.submit(write_rejected)
        shard_items = [future.result() for future in futures]
        rejected_done.result()
    by_shard = dict(zip([spec[0] for spec in jobs], shard_items, strict=True))
    routed = [{"conn_id": route.conn_id, "vendor": route.vendor, "shards": shards,
               "prepared": rows, "estimated_items": sum(by_shard[s] for s in shards)}
              for route, shards, rows in plan]
    root.write_table(_routing_table(jobs, by_shard),
                     *root.campaign(campaign_id, "routing", "part-00000.parquet"))
    return n, next_shard, sum(shard_items), routed


def _routing_table(jobs: list[tuple[int, Route, _Kept, int, int]],
                   items: dict[int, int]) -> pa.Table:
    return pa.table({
        "shard": pa.array([spec[0] for spec in jobs], pa.int32()),
        "conn_id": pa.array([spec[1].conn_id for spec in jobs], pa.string()),
        "vendor": pa.array([spec[1].vendor for spec in jobs], pa.string()),
        "prepared": pa.array([spec[4] - spec[3] for spec in jobs], pa.int64()),
        "estimated_items": pa.array([items[spec[0]] for spec in jobs], pa.int64()),
    }, schema=ROUTING_SCHEMA)


def read_routing(root: DataRoot, campaign_id: str) -> pa.Table:
    """Which connection sends which shard (``routing/``); empty for a campaign prepared
    before routing existed (its one connection sends every shard)."""
    require_finished(root, campaign_id)
    if not root.parquet_files(*root.campaign(campaign_id, "routing")):
        return ROUTING_SCHEMA.empty_table()
    return root.read_dataset(*root.campaign(campaign_id, "routing"))


def read_shard(root: DataRoot, campaign_id: str, shard: int) -> pa.Table:
    """One shard of ``prepared/``; refused while the campaign's prepare is unfinished."""
    require_finished(root, campaign_id)
    return root.read_table(*root.campaign(campaign_id, "prepared", f"part-{shard:05d}.parquet"))
