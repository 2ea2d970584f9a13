"""What became of every prepared recipient, and where the vendor's books and ours disagree.

A campaign's ``submissions/`` say what we asked for; ``reports/<conn_id>/`` (pulled
and pushed, for the whole account) say what the vendor did. Reports arrive late,
twice, out of order and even before the send task has written its file, so
nothing here depends on arrival order: each run reads everything there is and
recomputes the answer, and rerunning later only ever settles more.

Matching is per vendor: by the vendor's message id, except Chuanglan (one
msgid per request, so msgid + mobile); an ``ambiguous`` submission (its answer
was lost, so no message id) is settled by our custom id, per message for
Emay IMS/FMS and per request + mobile for EUMS, and by its number for EIMS and
Chuanglan, which keep no id of ours (see ``Account._settle_by_mobile``). Of all
reports for a message
the last DELIVERED/FAILED one (by report time, then arrival) decides; PENDING
and UNKNOWN reports never override a final one. No final report within
``final_window`` of the submission makes a message UNKNOWN.

Account-level checks (unknown reports, vendor statistics, balance) are computed
over the submissions of every campaign on the connection, then reported for
the days and balance intervals this campaign touched, so a campaign's report
stays about that campaign.

Everything runs column-wise (Arrow and NumPy), never a Python loop per row: ten
million recipients against ten million reports take some 12-20 s on two cores
(``bench/reconcile.py``), most of it reading and writing Parquet and one hash
lookup of the message ids.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from sms_provider.data import html_report
from sms_provider.data.completion import is_unfinished, require_finished
from sms_provider.data.reports import dedupe
from sms_provider.data.schemas import (
    BALANCE_SCHEMA,
    DAILY_STATISTIC_SCHEMA,
    DISCREPANCY_SCHEMA,
    PREPARED_SCHEMA,
    RECONCILIATION_SCHEMA,
    REJECTED_SCHEMA,
    REPORT_SCHEMA,
    SUBMISSION_SCHEMA,
    SUMMARY_SCHEMA,
)
from sms_provider.data.storage import DataRoot

DEFAULT_FINAL_WINDOW = timedelta(hours=72)
#: unknown reports received this long before a campaign's first submission still count
#: for it: a push can beat the send task's own record of the answer
REPORT_LEAD = timedelta(hours=1)
#: China has one time zone and no daylight saving: days are UTC+8 days
CHINA_OFFSET_MS = 8 * 3600 * 1000
DAY_MS = 86_400_000
#: rows per output file at least (files are written in parallel)
ROWS_PER_FILE = 1_000_000
_STRING = pa.string()
_INT64_MAX = str(2**63 - 1)

#: final_status codes (index into this tuple)
STATUSES = ("DELIVERED", "FAILED", "PENDING", "UNKNOWN", "REJECTED")
DELIVERED, FAILED, PENDING, UNKNOWN, REJECTED = range(5)
#: submission status codes
SUB_STATUSES = ("submitted", "rejected", "ambiguous", "dry_run")
S_SUBMITTED, S_REJECTED, S_AMBIGUOUS, S_DRY_RUN, S_OTHER = range(5)
#: how a report found its submission
ROUTES = ("none", "message_id", "custom_id", "mobile")

#: vendors whose message id is shared by a whole request: match on (message id, mobile)
MSGID_PER_REQUEST = frozenset({"chuanglan"})
#: vendors that echo our custom id, per message or per request (then with the mobile)
CUSTOM_ID_PER_MESSAGE = frozenset({"emay_ims", "emay_fms"})
CUSTOM_ID_PER_REQUEST = frozenset({"eums"})
#: vendors that keep no id of ours: an ambiguous submission is settled by its number
SETTLED_BY_MOBILE = frozenset({"eims", "chuanglan"})
#: a report for the number may come this long after the ambiguous submission (the
#: default final window) and, clocks being what they are, this long before it
MOBILE_MATCH_AFTER_MS = 72 * 3_600_000
MOBILE_MATCH_BEFORE_MS = 5 * 60_000


CHARGED_NEVER_REPORTED = "charged_never_reported"
REPORT_FOR_UNKNOWN_MESSAGE = "report_for_unknown_message"
STATISTICS_MISMATCH = "statistics_mismatch"
BALANCE_MISMATCH = "balance_mismatch"
DISCREPANCY_KINDS = (CHARGED_NEVER_REPORTED, REPORT_FOR_UNKNOWN_MESSAGE, STATISTICS_MISMATCH,
                     BALANCE_MISMATCH)

_SUB_COLUMNS = ["conn_id", "vendor", "row_number", "message_id", "custom_id", "charge_items",
                "vendor_code", "status", "description", "submitted_at"]
_REPORT_COLUMNS = ["message_id", "raw_state", "status", "description", "report_time",
                   "received_at", "report_key"]


@dataclass
class ReconcileResult:
    """Counts and output paths of one campaign's reconciliation."""

    campaign_id: str
    counts: dict[str, int] = field(default_factory=dict)
    discrepancies: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Settings:
    final_window_ms: int
    now_ms: int
    statistics_tolerance: float
    balance_tolerance: Decimal
    prices: Mapping[str | None, Decimal]


# --- reading ---------------------------------------------------------------------------

#: low-cardinality text columns, read as Parquet dictionaries: no strings are materialised
_DICTIONARY_COLUMNS = frozenset({"conn_id", "vendor", "vendor_code", "status", "description",
                                 "raw_state"})


def _parquet_files(root: DataRoot, *parts: str) -> list[str]:
    """Finished files only: a ``.tmp-…`` being written beside them is not data yet."""
    return [p for p in root.list_files(*parts) if p.endswith(".parquet")]


def _read(root: DataRoot, parts: tuple[str, ...], schema: pa.Schema, columns: list[str],
          filter: pc.Expression | None = None) -> pa.Table:
    """The columns wanted of a dataset (missing files or columns: empty or null)."""
    wanted = [c for c in columns if c in _DICTIONARY_COLUMNS]
    schema = _dictionary_schema(schema, wanted)
    files = _parquet_files(root, *parts)
    if not files:
        return schema.empty_table().select(columns)
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=wanted))
    data = ds.dataset(files, filesystem=root.fs, format=fmt, schema=schema)
    return data.to_table(columns=columns, filter=filter)


def _dictionary_schema(schema: pa.Schema, names: Iterable[str]) -> pa.Schema:
    names = set(names)
    return pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in names
                      else f for f in schema])


def _empty(schema: pa.Schema, columns: list[str]) -> pa.Table:
    return _dictionary_schema(schema, _DICTIONARY_COLUMNS).empty_table().select(columns)


def list_campaigns(root: DataRoot) -> list[str]:
    """Every campaign folder under ``campaigns/``."""
    selector = pafs.FileSelector(root.path("campaigns"), allow_not_found=True)
    return sorted(info.base_name for info in root.fs.get_file_info(selector)
                  if info.type == pafs.FileType.Directory)


def _ms(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    """A timestamp column as int64 milliseconds, nulls as ``fill``."""
    return _ints(pc.cast(column, pa.int64()), fill)


def _ints(column: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    """An integer column as int64 NumPy, nulls as ``fill`` (copying no more than needed:
    fresh memory is a good part of the cost at ten million rows)."""
    if column.null_count:
        column = pc.fill_null(column, fill)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def _codes_of(column: pa.ChunkedArray, names: tuple[str, ...], default: int) -> np.ndarray:
    """Small integer code of each value (its index in ``names``, else ``default``).

    Dictionary columns are mapped through their few distinct values, not row by row.
    """
    out = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            values = chunk.dictionary.to_pylist()
            lut = np.array([names.index(v) if v in names else default for v in values]
                           + [default], np.int8)
            indices = chunk.indices
            if indices.null_count:
                indices = pc.fill_null(indices, len(values))
            out.append(lut[indices.to_numpy(zero_copy_only=False)])  # no widening copy
        else:
            codes = np.full(len(chunk), default, np.int8)
            for code, name in enumerate(names):
                codes[_bool(pc.equal(chunk, name))] = code
            out.append(codes)
    return np.concatenate(out) if out else np.zeros(0, np.int8)


def _bool(mask: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _text(column: Any) -> Any:
    """Plain strings (a dictionary column decoded)."""
    return pc.cast(column, pa.string()) if pa.types.is_dictionary(column.type) else column


def _distinct(column: pa.ChunkedArray) -> list[Any]:
    return pc.unique(_text(pc.unique(column))).to_pylist() if len(column) else []


# --- matching keys ---------------------------------------------------------------------

def _needs_mobile(vendor: str) -> bool:
    """Whether the mobile is part of a key (unknown vendor: assume it may be)."""
    return not vendor or vendor in MSGID_PER_REQUEST | CUSTOM_ID_PER_REQUEST | SETTLED_BY_MOBILE


def _sub_columns(vendor: str) -> list[str]:
    return [*_SUB_COLUMNS, "mobile"] if _needs_mobile(vendor) else _SUB_COLUMNS


def _report_columns(vendor: str) -> list[str]:
    """Only what matching needs: ids we never compare are not worth reading."""
    columns = list(_REPORT_COLUMNS)
    if not vendor or vendor in CUSTOM_ID_PER_MESSAGE | CUSTOM_ID_PER_REQUEST:
        columns.append("custom_id")
    if _needs_mobile(vendor):
        columns.append("mobile")
    return [*columns, "vendor"] if not vendor else columns


def _column(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return table[name] if name in table.column_names else None


def _mobile_tail(mobile: Any) -> Any:
    """The 11-digit mainland number whatever prefix (86, 0086) a side wrote."""
    if not len(mobile) or (pc.max(pc.binary_length(mobile)).as_py() or 0) <= 11:
        return mobile  # nothing to cut (the usual case): no copy of every number
    return pc.utf8_slice_codeunits(mobile, -11)


def message_key(vendor: str, message_id: Any, mobile: Any) -> list[Any]:
    """The columns that identify one message among the vendor's ids."""
    if vendor in MSGID_PER_REQUEST:  # one msgid for a whole request
        return [message_id, _mobile_tail(mobile)]
    return [message_id]


def custom_key(vendor: str, custom_id: Any, mobile: Any) -> list[Any] | None:
    """The columns that identify one message among our custom ids; None: the vendor has none."""
    if vendor in CUSTOM_ID_PER_MESSAGE:
        return [custom_id]
    if vendor in CUSTOM_ID_PER_REQUEST:  # one reference per request
        return [custom_id, _mobile_tail(mobile)]
    return None


def _canonical_number(column: Any) -> Any:
    """True where the text is a plain decimal number that an int64 gives back unchanged."""
    length = pc.binary_length(column)
    fits = pc.or_(pc.less_equal(length, 18),  # 19 digits: compare as text, same length
                  pc.and_(pc.equal(length, 19), pc.less_equal(column, _INT64_MAX)))
    return pc.and_(pc.and_(pc.ascii_is_decimal(column), fits),
                   pc.or_(pc.equal(length, 1), pc.invert(pc.starts_with(column, "0"))))


def _column_codes(known: Any, probe: Any, dense: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Integers standing for the texts of two columns (equal iff equal), -1 for null; and a
    bound above every code.

    Message ids are mostly plain numbers: then the number itself is the code (cheap).
    Otherwise (or when ``dense`` codes are needed to combine columns) one dictionary
    over both sides numbers the distinct values.
    """
    known, probe = _text(known), _text(probe)
    if not dense and pc.all(_canonical_number(known)).as_py() is not False:
        ok = _canonical_number(probe)
        if pc.all(ok).as_py() is False:
            # a probe that is not a plain number cannot equal one: it matches nothing
            probe = pc.if_else(ok, probe, pa.scalar(None, _STRING))
        left = _ints(pc.cast(known, pa.int64()), -1)
        right = _ints(pc.cast(probe, pa.int64()), -1)
        return left, right, max(int(left.max(initial=-1)), 0) + 1
    # few distinct values (a msgid per request): hashing the text is cheap
    both = pc.dictionary_encode(pa.chunked_array(
        [*_chunks(known), *_chunks(probe)], type=_STRING))
    indices = pa.chunked_array([c.indices for c in both.chunks], type=pa.int32())
    codes = _ints(indices, -1)
    size = len(both.chunk(0).dictionary) if both.num_chunks else 0
    return codes[:len(known)], codes[len(known):], size


def _chunks(column: Any) -> list[pa.Array]:
    return column.chunks if isinstance(column, pa.ChunkedArray) else [column]


def _key_codes(known: list[Any], probe: list[Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """One integer per row for a key of several columns (-1 where any part is null)."""
    if len(known) == 1:
        return _column_codes(known[0], probe[0], dense=False)
    left, right, bound = _column_codes(known[0], probe[0], dense=True)
    for k, p in zip(known[1:], probe[1:], strict=True):
        cl, cr, size = _column_codes(k, p, dense=False)
        if bound * size >= 2**62:  # too wide to combine as numbers: number the pairs instead
            cl, cr, size = _column_codes(k, p, dense=True)
        left, right = _combine(left, cl, size), _combine(right, cr, size)
        bound *= size
    return left, right, bound


def _first_positions(codes: np.ndarray, size: int) -> np.ndarray:
    """An array of ``size``: for each code its first position in ``codes``, else -1."""
    where = np.full(size, -1, np.int64)
    valid = np.flatnonzero(codes >= 0)
    where[codes[valid]] = valid  # with repeated codes, which one lands is not defined …
    repeated = valid[where[codes[valid]] != valid]
    if len(repeated):  # … so settle those few codes explicitly
        np.minimum.at(where, codes[repeated], repeated)
    return where


def _combine(first: np.ndarray, second: np.ndarray, size: int) -> np.ndarray:
    """``first * size + second``, -1 where either is -1 (in place: big arrays are dear)."""
    if not first.flags.writeable:
        first = first.copy()
    missing = first < 0
    missing |= second < 0
    first *= size
    first += second
    first[missing] = -1
    return first


def _lookup(known: list[Any], probe: list[Any]) -> np.ndarray:
    """For each probe row the first known row with the same key, -1 where none."""
    left, right, bound = _key_codes(known, probe)
    if bound <= len(left) + len(right) + 1024:  # dense codes: a plain array is the map
        where = _first_positions(left, bound + 1)
        return where[np.where(right >= 0, right, bound)]
    found = _ints(pc.index_in(pa.array(right), value_set=pa.array(left)), -1)  # -1: "null"
    found[right < 0] = -1
    return found


# --- the account: every submission and report of one connection -----------------------

class Account:
    """Submissions of all campaigns on one connection, matched with its reports.

    Built once per connection (``reconcile_all`` shares it between campaigns):
    for every submission the deciding report (``best``, -1 none) and the copies
    received (``seen``); for every report the submission it belongs to
    (``report_sub``, -1 none) and how it was found (``report_route``).
    """

    def __init__(self, root: DataRoot, conn_id: str | None, campaigns: Iterable[str],
                 loaded: Mapping[str, pa.Table] | None = None, vendor: str = "") -> None:
        self.conn_id = conn_id
        self.campaigns: list[str] = []
        columns = _sub_columns(vendor)
        loaded = loaded or {}
        where = ((pc.field("conn_id").is_null() | (pc.field("conn_id") == ""))
                 if conn_id is None else pc.field("conn_id") == conn_id)
        tables = []
        for cid in dict.fromkeys([*loaded, *campaigns]):
            t = (_on_connection(loaded[cid], conn_id) if cid in loaded
                 else _read(root, ("campaigns", cid, "submissions"), SUBMISSION_SCHEMA,
                            columns, where))
            if t.num_rows:
                tables.append(t.append_column("_campaign", pa.array(
                    np.full(t.num_rows, len(self.campaigns), np.int32))))
                self.campaigns.append(cid)
        self.subs = (pa.concat_tables(tables, promote_options="permissive") if tables
                     else _empty(SUBMISSION_SCHEMA, columns).append_column(
                         "_campaign", pa.array([], pa.int32())))
        self.campaign_code = self.subs["_campaign"].to_numpy()
        columns = _report_columns(vendor)
        self.reports = (_read(root, ("reports", conn_id), REPORT_SCHEMA, columns)
                        if conn_id else _empty(REPORT_SCHEMA, columns))
        self.vendor = vendor or next((v for v in _distinct(self.reports["vendor"]) if v), "")
        self.status = _codes_of(self.subs["status"], SUB_STATUSES, S_OTHER)
        self.submitted_ms = _ms(self.subs["submitted_at"], -1)
        self.charge = _ints(self.subs["charge_items"])
        self._daily: dict[int, dict[str, int]] | None = None
        self._match()

    def _match(self) -> None:
        subs, reports = self.subs, self.reports
        idx = np.full(reports.num_rows, -1, np.int64)
        route = np.zeros(reports.num_rows, np.int8)
        if subs.num_rows and reports.num_rows:
            idx = _lookup(
                message_key(self.vendor, subs["message_id"], _column(subs, "mobile")),
                message_key(self.vendor, reports["message_id"], _column(reports, "mobile")))
        self.report_received = _ms(reports["received_at"], 0)
        # a report without the vendor's time (EIMS pulls) is placed when it reached us
        self.report_when = np.where(pc.is_null(reports["report_time"]).to_numpy(
            zero_copy_only=False), self.report_received, _ms(reports["report_time"], 0))
        if subs.num_rows and reports.num_rows:
            route[idx >= 0] = 1
            self._settle_by_custom_id(idx, route)
            self._settle_by_mobile(idx, route)
        self.report_sub, self.report_route = idx, route
        matched = idx >= 0
        self.seen = np.bincount(idx[matched], minlength=subs.num_rows).astype(np.int32)
        self.report_code = _codes_of(reports["status"], STATUSES[:3], UNKNOWN)
        self.best = self._best(idx, matched)
        self._slim()

    def _slim(self) -> None:
        """Keep only what the outputs read: a big account is most of the memory."""
        stray = np.flatnonzero(self.report_sub < 0)
        names = [c for c in ("message_id", "custom_id", "mobile", "received_at", "report_key")
                 if c in self.reports.column_names]
        #: reports that match no submission of any campaign (usually few)
        self.strays = self.reports.select(names).take(stray)
        self.strays_received = self.report_received[stray]
        self.reports = self.reports.select(["message_id", "raw_state", "description",
                                            "report_time"])
        self.subs = self.subs.select(["conn_id", "vendor", "row_number", "message_id",
                                      "custom_id", "vendor_code", "description"])

    def _settle_by_custom_id(self, idx: np.ndarray, route: np.ndarray) -> None:
        """Reports of ambiguous submissions (no message id of theirs known) by custom id."""
        subs, reports = self.subs, self.reports
        if self.vendor not in CUSTOM_ID_PER_MESSAGE | CUSTOM_ID_PER_REQUEST:
            return
        open_subs = np.flatnonzero(_bool(pc.and_(pc.is_null(subs["message_id"]),
                                                 pc.is_valid(subs["custom_id"]))))
        left = np.flatnonzero((idx < 0) & _bool(pc.is_valid(reports["custom_id"])))
        if not len(open_subs) or not len(left):
            return
        names = ["custom_id", "mobile"] if _needs_mobile(self.vendor) else ["custom_id"]
        known = subs.select(names).take(open_subs)
        probe = reports.select(names).take(left)
        found = _lookup(
            custom_key(self.vendor, known["custom_id"], _column(known, "mobile")) or [],
            custom_key(self.vendor, probe["custom_id"], _column(probe, "mobile")) or [])
        hit = found >= 0
        idx[left[hit]] = open_subs[found[hit]]
        route[left[hit]] = 2

    def _settle_by_mobile(self, idx: np.ndarray, route: np.ndarray) -> None:
        """Vendors that keep no id of ours (EIMS, Chuanglan): an ambiguous submission takes
        the unclaimed reports for its number that came after it.

        Only a number with one open ambiguous submission on the connection is
        settled this way: with two, nothing tells which one a report is for.
        The route is kept (``settled_by = mobile``) so an analyst can tell these
        apart from id matches; an unrelated message to the number from outside
        the pipeline in the same window would be taken for ours.
        """
        if self.vendor not in SETTLED_BY_MOBILE:
            return
        subs, reports = self.subs, self.reports
        open_subs = np.flatnonzero((self.status == S_AMBIGUOUS)
                                   & _bool(pc.is_null(subs["message_id"])))
        left = np.flatnonzero(idx < 0)
        if not len(open_subs) or not len(left):
            return
        known = _mobile_tail(subs["mobile"].take(open_subs))
        numbered = pc.dictionary_encode(known).combine_chunks() if isinstance(
            known, pa.ChunkedArray) else pc.dictionary_encode(known)
        codes = _ints(numbered.indices, -1)
        alone = np.bincount(codes[codes >= 0], minlength=len(numbered.dictionary)) == 1
        found = _lookup([known], [_mobile_tail(reports["mobile"].take(left))])
        hit = found >= 0
        hit[hit] = alone[codes[found[hit]]]
        sub = open_subs[np.where(hit, found, 0)]
        submitted, when = self.submitted_ms[sub], self.report_when[left]
        hit &= (submitted >= 0) & (when >= submitted - MOBILE_MATCH_BEFORE_MS)
        hit &= when <= submitted + MOBILE_MATCH_AFTER_MS
        idx[left[hit]] = sub[hit]
        route[left[hit]] = 3

    def _best(self, idx: np.ndarray, matched: np.ndarray) -> np.ndarray:
        """Per submission the deciding report: the last final one, else the last of any."""
        best = np.full(self.subs.num_rows, -1, np.int64)
        if not matched.any():
            return best
        multi = matched & (self.seen[np.where(matched, idx, 0)] > 1)
        single = np.flatnonzero(matched & ~multi)
        best[idx[single]] = single  # one report: nothing to order (most messages)
        rows = np.flatnonzero(multi)
        if len(rows):
            copies = self.reports.select(["report_key", "received_at"]).take(rows)
            copies = dedupe(copies.append_column("_row", pa.array(rows)), "report_key")
            rows = copies["_row"].to_numpy()
            final = self.report_code[rows] <= FAILED
            rows = rows[np.lexsort((self.report_received[rows], self.report_when[rows], final,
                                    idx[rows]))]
            group = idx[rows]
            last = np.ones(len(rows), bool)
            last[:-1] = group[1:] != group[:-1]
            best[group[last]] = rows[last]
        return best

    def daily(self) -> dict[int, dict[str, int]]:
        """China day -> our submitted / delivered / failed / unsettled ambiguous counts."""
        if self._daily is None:
            self._daily = self._count_daily()
        return self._daily

    def _count_daily(self) -> dict[int, dict[str, int]]:
        has = self.best >= 0
        code = _at(self.report_code, self.best, PENDING)
        settled = (self.status == S_AMBIGUOUS) & has
        sent = ((self.status == S_SUBMITTED) | settled) & (self.submitted_ms >= 0)
        unsettled = (self.status == S_AMBIGUOUS) & ~has & (self.submitted_ms >= 0)
        bucket, days = _day_buckets(self.submitted_ms, self.submitted_ms >= 0)
        out: dict[int, dict[str, int]] = {}
        for name, mask in (("submitted", sent), ("delivered", sent & (code == DELIVERED)),
                           ("failed", sent & (code == FAILED)), ("unsettled", unsettled)):
            counts = np.bincount(bucket[mask], minlength=len(days))
            for i in np.flatnonzero(counts[1:]).tolist():
                out.setdefault(days[i + 1], {"submitted": 0, "delivered": 0, "failed": 0,
                                             "unsettled": 0})[name] = int(counts[i + 1])
        return out


def _on_connection(table: pa.Table, conn_id: str | None) -> pa.Table:
    conn = table["conn_id"]
    mask = (_codes_of(conn, ("",), 1) == 0) | _bool(pc.is_null(conn)) if conn_id is None \
        else _codes_of(conn, (conn_id,), 1) == 0
    return table if mask.all() else table.filter(pa.array(mask))


class AccountCache(dict[str | None, Account]):
    """Accounts already loaded, keyed by conn_id: reconciling many campaigns reads once."""

    def get_account(self, root: DataRoot, conn_id: str | None, campaign_id: str,
                    submissions: pa.Table) -> Account:
        """The account of ``conn_id``, built with this campaign's submissions already read."""
        if conn_id not in self:
            mine = _on_connection(submissions, conn_id)
            vendor = next((v for v in _distinct(mine["vendor"]) if v), "")
            if _needs_mobile(vendor) and "mobile" not in mine.column_names:
                mobile = _read(root, root.campaign(campaign_id, "submissions"),
                               SUBMISSION_SCHEMA, ["mobile"])["mobile"]  # same files, same order
                mine = _on_connection(submissions.append_column("mobile", mobile), conn_id)
            self[conn_id] = Account(root, conn_id, list_campaigns(root), {campaign_id: mine},
                                    vendor)
        return self[conn_id]


# --- one campaign ----------------------------------------------------------------------

def reconcile_campaign(root: DataRoot, campaign_id: str, *,
                       final_window: timedelta = DEFAULT_FINAL_WINDOW,
                       now: datetime | None = None,
                       statistics_tolerance: float = 0.01,
                       balance_tolerance: Decimal | int = 0,
                       price_per_item: Mapping[str, Any] | Decimal | str | float | None = None,
                       accounts: AccountCache | None = None) -> ReconcileResult:
    """Write ``reconciliation/``, ``reconciliation_summary/``, ``discrepancies/`` and
    ``report.html`` for one campaign; return the counts and paths.

    ``statistics_tolerance``: share of the vendor's daily submitted count by which
    its delivered/failed may differ from ours (reports still in flight on either
    side). ``balance_tolerance``: charge items a balance step may be off by.
    ``price_per_item`` (one price, or per conn_id) lets money balances (EIMS) be
    checked; without it they are skipped.
    """
    now = now or datetime.now(UTC)
    settings = _Settings(
        final_window_ms=int(final_window.total_seconds() * 1000),
        now_ms=int(now.timestamp() * 1000),
        statistics_tolerance=statistics_tolerance,
        balance_tolerance=Decimal(balance_tolerance),
        prices=_prices(price_per_item))
    require_finished(root, campaign_id)  # a partial prepared/ would count rows as unsent
    own_cache = accounts is None
    accounts = accounts if accounts is not None else AccountCache()

    prepared = _read(root, root.campaign(campaign_id, "prepared"), PREPARED_SCHEMA,
                     ["row_number", "mobile", "charge_items"])
    invalid = _read(root, root.campaign(campaign_id, "rejected"), REJECTED_SCHEMA,
                    ["row_number"]).num_rows
    own = _read(root, root.campaign(campaign_id, "submissions"), SUBMISSION_SCHEMA,
                _SUB_COLUMNS)
    parts = [_CampaignPart(accounts.get_account(root, conn, campaign_id, own), campaign_id)
             for conn in _connections(own["conn_id"])]
    del own  # the accounts hold what they need

    rows = _reconcile_rows(prepared, parts, settings)
    table = _reconciliation_table(root, campaign_id, prepared, parts, rows)
    summary = _summary(campaign_id, rows, invalid)
    discrepancies = _discrepancies(root, parts, table, rows, settings)
    failure_reasons, latency = _failure_reasons(table, rows), _latency_histogram(rows)
    del parts, rows
    if own_cache:
        accounts.clear()  # what the outputs still need, they hold: let the rest go first

    paths = {
        "reconciliation": _write(root, table, campaign_id, "reconciliation"),
        "reconciliation_summary": _write(root, summary, campaign_id, "reconciliation_summary"),
        "discrepancies": _write(root, discrepancies, campaign_id, "discrepancies"),
    }
    totals = {name: int(pc.sum(summary[name]).as_py() or 0)
              for name in SUMMARY_SCHEMA.names[2:]}
    by_kind = {kind: 0 for kind in DISCREPANCY_KINDS}
    for kind in discrepancies["kind"].to_pylist():
        by_kind[kind] += 1
    html = html_report.render(
        campaign_id=campaign_id, generated_at=now, totals=totals,
        failure_reasons=failure_reasons,
        latency_counts=latency, latency_edges=html_report.LATENCY_EDGES_S,
        summary=summary.to_pylist(), discrepancies=_discrepancy_preview(discrepancies),
        discrepancy_totals=by_kind, final_window_hours=final_window.total_seconds() / 3600)
    paths["report_html"] = _write_text(root, html, *root.campaign(campaign_id, "report.html"))
    return ReconcileResult(campaign_id=campaign_id, counts=totals, discrepancies=by_kind,
                           paths=paths)


def reconcile_all(root: DataRoot, campaign_ids: Iterable[str] | None = None,
                  **options: Any) -> dict[str, ReconcileResult]:
    """Reconcile every campaign under ``campaigns/`` (or the given ones), reading each
    connection's submissions and reports once; ``options`` as for ``reconcile_campaign``.

    Going over every campaign, one whose prepare is unfinished is left out (it has
    nothing whole to reconcile yet); named, it raises ``UnfinishedPrepareError``.
    """
    cache = AccountCache()
    ids = (list(campaign_ids) if campaign_ids is not None else
           [cid for cid in list_campaigns(root) if not is_unfinished(root, cid)])
    return {cid: reconcile_campaign(root, cid, accounts=cache, **options) for cid in ids}


def _prices(value: Mapping[str, Any] | Decimal | str | float | None
            ) -> Mapping[str | None, Decimal]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {k: Decimal(str(v)) for k, v in value.items()}
    return {None: Decimal(str(value))}


def _connections(conn_ids: pa.ChunkedArray) -> list[str | None]:
    """The connections a campaign went through (None: files from before conn_id existed)."""
    values: list[str | None] = [v for v in _distinct(conn_ids) if v]
    if conn_ids.null_count or "" in _distinct(conn_ids):
        values.append(None)
    return values


class _CampaignPart:
    """This campaign's rows within one account."""

    def __init__(self, account: Account, campaign_id: str) -> None:
        self.account = account
        code = (account.campaigns.index(campaign_id)
                if campaign_id in account.campaigns else -1)
        self.positions = np.flatnonzero(account.campaign_code == code)

    @property
    def submitted_ms(self) -> np.ndarray:
        return self.account.submitted_ms[self.positions]


@dataclass
class _Rows:
    """Per prepared recipient, the figures every output is made of (NumPy, one per row)."""

    part: np.ndarray          # index into the campaign's parts, -1: never submitted
    sub: np.ndarray           # row in that part's account submissions, -1 none
    best: np.ndarray          # that account's deciding report, -1 none
    sub_status: np.ndarray    # S_* codes (S_OTHER: no submission)
    final: np.ndarray         # STATUSES codes
    final_report: np.ndarray  # a DELIVERED/FAILED report decided
    charge: np.ndarray
    submitted_ms: np.ndarray  # -1 none
    latency_s: np.ndarray     # NaN without a final report

    @property
    def not_submitted(self) -> np.ndarray:
        return (self.sub_status == S_DRY_RUN) | (self.sub_status == S_OTHER)


def _row_lookup(wanted: np.ndarray, row_numbers: np.ndarray) -> np.ndarray:
    """Position of each wanted row number in ``row_numbers`` (first one), -1 where absent."""
    if not len(row_numbers) or not len(wanted):
        return np.full(len(wanted), -1, np.int64)
    if len(row_numbers) == len(wanted) and np.array_equal(row_numbers, wanted):
        return np.arange(len(wanted))  # submissions in prepared order: the usual case
    top = int(max(row_numbers.max(), wanted.max()))
    if min(row_numbers.min(), wanted.min()) < 0 or top > 4 * (len(wanted) + len(row_numbers)):
        return _ints(pc.index_in(pa.array(wanted), value_set=pa.array(row_numbers)), -1)
    return _first_positions(row_numbers, top + 1)[wanted]


def _span(idx: np.ndarray) -> np.ndarray | slice:
    """``idx`` as a slice when it counts up by one (indexing by it then copies nothing)."""
    if len(idx) and idx[0] >= 0 and idx[-1] - idx[0] == len(idx) - 1 \
            and bool((np.diff(idx) == 1).all()):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _at(values: np.ndarray, idx: np.ndarray, fill: int) -> np.ndarray:
    """``values[idx]``, ``fill`` where ``idx`` is -1."""
    if not len(values):
        return np.full(len(idx), fill, values.dtype)
    return np.where(idx >= 0, values[np.where(idx >= 0, idx, 0)], fill)


def _reconcile_rows(prepared: pa.Table, parts: list[_CampaignPart], s: _Settings) -> _Rows:
    n = prepared.num_rows
    rn = _ints(prepared["row_number"], -1)
    part = np.full(n, -1, np.int8)
    sub = np.full(n, -1, np.int64)
    for p_index, p in enumerate(parts):  # a recipient sent twice keeps the first connection
        found = _row_lookup(rn, _ints(p.account.subs["row_number"], -1)[_span(p.positions)])
        take = (found >= 0) & (sub < 0)
        sub[take] = p.positions[found[take]]
        part[take] = p_index

    sub_status = np.full(n, S_OTHER, np.int8)
    best = np.full(n, -1, np.int64)
    report_code = np.full(n, PENDING, np.int8)
    submitted_ms = np.full(n, -1, np.int64)
    when_ms = np.full(n, -1, np.int64)
    charge = np.zeros(n, np.int64)
    for p_index, p in enumerate(parts):
        a = p.account
        mine: Any = part == p_index
        mine = slice(None) if mine.all() else np.flatnonzero(mine)
        rows = _span(sub[mine])  # a slice when in order: no gathering at all
        sub_status[mine] = a.status[rows]
        submitted_ms[mine] = a.submitted_ms[rows]
        charge[mine] = a.charge[rows]
        b = a.best[rows]
        best[mine] = b
        report_code[mine] = _at(a.report_code, b, PENDING)
        when_ms[mine] = _at(a.report_when, b, -1)

    sent = (sub_status == S_SUBMITTED) | (sub_status == S_AMBIGUOUS)
    final_report = sent & (report_code <= FAILED)
    overdue = (submitted_ms >= 0) & (s.now_ms - submitted_ms > s.final_window_ms)
    final = np.full(n, PENDING, np.int8)
    final[final_report] = report_code[final_report]
    final[sent & ~final_report & overdue] = UNKNOWN
    final[sub_status == S_REJECTED] = REJECTED

    # an ambiguous request's cost was never told us; a report proves the message went out
    settled = np.flatnonzero((sub_status == S_AMBIGUOUS) & (best >= 0))
    charge[settled] = _ints(prepared["charge_items"].take(pa.array(settled)))
    latency = np.full(n, np.nan)
    timed = final_report & (submitted_ms >= 0)
    latency[timed] = (when_ms[timed] - submitted_ms[timed]) / 1000.0
    return _Rows(part=part, sub=sub, best=best, sub_status=sub_status, final=final,
                 final_report=final_report, charge=charge, submitted_ms=submitted_ms,
                 latency_s=latency)


def _gather(parts: list[_CampaignPart], part: np.ndarray, idx: np.ndarray, column: str, *,
            reports: bool = False) -> Any:
    """Per entry, ``column`` of its submission (or report) ``idx`` in its part's account;
    null where ``idx`` is -1. Text comes back plain (dictionaries decoded)."""
    out = None
    for p_index, p in enumerate(parts):
        source = (p.account.reports if reports else p.account.subs)[column]
        mine = part == p_index
        if mine.all() and len(idx) and idx[0] >= 0 and (idx[-1] - idx[0] == len(idx) - 1) \
                and (np.diff(idx) == 1).all():
            values = source.slice(int(idx[0]), len(idx))  # rows in order: no copy
        elif not (mine & (idx >= 0)).any():
            continue
        else:
            values = source.take(pa.array(idx, mask=~mine | (idx < 0)))
        values = _text(values)
        out = values if out is None else pc.coalesce(out, values)
    if out is None:
        return pa.nulls(len(idx), source.type.value_type if pa.types.is_dictionary(source.type)
                        else source.type) if parts else pa.nulls(len(idx), _STRING)
    return out


def _scatter(n: int, mask: np.ndarray, values: Any, into: Any = None) -> Any:
    """An n-long text column: ``values`` (one per true of ``mask``) there, ``into`` elsewhere."""
    base = into if into is not None else pa.nulls(n, _STRING)
    return pc.replace_with_mask(base, pa.array(mask), _flat(values)) if mask.any() else base


def _flat(column: Any) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _codes(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """Small integer codes as text (code outside ``names``: null), without a Python loop."""
    valid = (codes >= 0) & (codes < len(names))
    indices = pa.array(np.where(valid, codes, 0).astype(np.int8), mask=~valid)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names)).cast(_STRING)


def _repeat(value: str | None, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, np.int8)), pa.array([value], _STRING)).cast(_STRING)


def _reasons(parts: list[_CampaignPart], rows: _Rows) -> pa.Array:
    """FAILED: the vendor's state and words; PENDING/UNKNOWN: its last state, if any;
    REJECTED: the vendor's code; never sent: why not. Built only where there is one."""
    n = len(rows.final)
    sent = (rows.sub_status == S_SUBMITTED) | (rows.sub_status == S_AMBIGUOUS)
    told = ((rows.final == FAILED) | (sent & ~rows.final_report)) & (rows.best >= 0)
    where = np.flatnonzero(told)
    state = _gather(parts, rows.part[where], rows.best[where], "raw_state", reports=True)
    words = _gather(parts, rows.part[where], rows.best[where], "description", reports=True)
    has_words = pc.fill_null(pc.greater(pc.utf8_length(words), 0), False)
    reason = _scatter(n, told, pc.if_else(has_words, pc.binary_join_element_wise(
        state, words, ": "), state))
    refused = rows.final == REJECTED
    where = np.flatnonzero(refused)
    code = _gather(parts, rows.part[where], rows.sub[where], "vendor_code")
    text = _gather(parts, rows.part[where], rows.sub[where], "description")
    reason = _scatter(n, refused, pc.coalesce(
        pc.if_else(pc.equal(code, ""), pa.scalar(None, _STRING), code), text), reason)
    if not rows.not_submitted.any():
        return reason
    unsent = np.where(rows.sub_status == S_DRY_RUN, 1, np.where(rows.sub_status == S_OTHER, 0, -1))
    return pc.coalesce(reason, _codes(unsent, ("not_submitted", "dry_run")))


def _reconciliation_table(root: DataRoot, campaign_id: str, prepared: pa.Table,
                          parts: list[_CampaignPart], rows: _Rows) -> pa.Table:
    n = prepared.num_rows
    part, sub = rows.part, rows.sub
    if len(parts) == 1 and (part == 0).all():  # the usual case: one connection, all sent
        conn_id: Any = _repeat(parts[0].account.conn_id, n)
        vendor: Any = _repeat(parts[0].account.vendor, n)
    else:
        only = parts[0].account if len(parts) == 1 else None
        conn_id = pc.fill_null(_gather(parts, part, sub, "conn_id"),
                               pa.scalar(only.conn_id if only else None, _STRING))
        vendor = pc.fill_null(_gather(parts, part, sub, "vendor"),
                              pa.scalar(only.vendor if only else None, _STRING))
    message_id = _gather(parts, part, sub, "message_id")
    # an ambiguous submission learns the vendor's id from the report that settled it
    learned = (rows.sub_status == S_AMBIGUOUS) & (rows.best >= 0)
    if learned.any():
        message_id = pc.coalesce(message_id, _gather(
            parts, part, np.where(learned, rows.best, -1), "message_id", reports=True))
    custom_id = _gather(parts, part, sub, "custom_id")
    if custom_id.null_count:  # not sent (or sent without one): our own id, read only now
        custom_id = pc.coalesce(custom_id, _read(
            root, root.campaign(campaign_id, "prepared"), PREPARED_SCHEMA, ["custom_id"]
        )["custom_id"])
    report_time = _gather(parts, part, np.where(rows.final_report, rows.best, -1),
                          "report_time", reports=True)
    seen = np.zeros(n, np.int32)
    route = np.zeros(n, np.int8)
    for p_index, p in enumerate(parts):
        mine = part == p_index
        seen[mine] = p.account.seen[sub[mine]]
        told = mine & (rows.best >= 0)
        route[told] = p.account.report_route[rows.best[told]]
    return pa.table({
        "campaign_id": _repeat(campaign_id, n),
        "conn_id": conn_id,
        "vendor": vendor,
        "row_number": prepared["row_number"],
        "mobile": prepared["mobile"],
        "message_id": message_id,
        "custom_id": custom_id,
        "submission_status": _codes(rows.sub_status, SUB_STATUSES[:3]),
        "final_status": _codes(rows.final, STATUSES),
        "reason": _reasons(parts, rows),
        "charge_items": pa.array(rows.charge, pa.int32()),
        "submitted_at": pa.array(rows.submitted_ms, mask=rows.submitted_ms < 0).cast(
            pa.timestamp("ms", tz="UTC")),
        "report_time": report_time,
        "latency_s": pa.array(rows.latency_s, from_pandas=True),
        "reports_seen": pa.array(seen),
        "settled_by": _codes(route, ROUTES),
    }, schema=RECONCILIATION_SCHEMA)


# --- summary -------------------------------------------------------------------------

def _day_buckets(submitted_ms: np.ndarray, has_day: np.ndarray) -> tuple[np.ndarray, list]:
    """Bucket per row (0: no day) and the day (date) of each bucket."""
    day = (submitted_ms + CHINA_OFFSET_MS) // DAY_MS
    if not has_day.any():
        return np.zeros(len(day), np.int64), [None]
    uniq, inverse = (np.unique(day[has_day], return_inverse=True)
                     if np.ptp(day[has_day]) > 100_000 else (None, None))
    bucket = np.zeros(len(day), np.int64)
    if uniq is None:  # days of a campaign are few and close: count, don't sort
        first = int(day[has_day].min())
        bucket[has_day] = day[has_day] - first + 1
        days = [None, *range(first, int(day[has_day].max()) + 1)]
    else:
        bucket[has_day] = inverse + 1
        days = [None, *uniq.tolist()]
    return bucket, days


def _summary(campaign_id: str, rows: _Rows, invalid: int) -> pa.Table:
    unsent = rows.not_submitted
    bucket, days = _day_buckets(rows.submitted_ms, (rows.submitted_ms >= 0) & ~unsent)
    k = len(days)
    sent = (rows.sub_status == S_SUBMITTED) | (rows.sub_status == S_AMBIGUOUS)
    # one pass per dimension: (day, submission status) and (day, final status) pairs
    by_status = np.bincount(bucket * 5 + rows.sub_status, minlength=k * 5).reshape(k, 5)
    sent_bucket = bucket[sent]
    by_final = np.bincount(sent_bucket * 5 + rows.final[sent], minlength=k * 5).reshape(k, 5)
    valid = by_status.sum(axis=1)
    cols: dict[str, Any] = {
        "valid": valid,
        "submitted": by_status[:, S_SUBMITTED],
        "rejected": by_status[:, S_REJECTED],
        "ambiguous": by_status[:, S_AMBIGUOUS],
        "not_submitted": by_status[:, S_DRY_RUN] + by_status[:, S_OTHER],
        "delivered": by_final[:, DELIVERED],
        "failed": by_final[:, FAILED],
        "pending": by_final[:, PENDING],
        "unknown": by_final[:, UNKNOWN],
        "charge_items_submitted": np.bincount(sent_bucket, weights=rows.charge[sent],
                                              minlength=k).astype(np.int64),
    }
    invalid_col = np.zeros(k, np.int64)
    invalid_col[0] = invalid
    keep = (valid > 0) | (invalid_col > 0)
    keep[1:] &= valid[1:] > 0
    table = {
        "campaign_id": [campaign_id] * int(keep.sum()),
        "day": [d for d, kept in zip(days, keep, strict=True) if kept],
        "input_rows": (valid + invalid_col)[keep],
        "invalid": invalid_col[keep],
        **{name: values[keep] for name, values in cols.items()},
    }
    out = pa.table(table, schema=SUMMARY_SCHEMA)
    # the null day (nothing sent) last: the table reads in the order things happened
    return out.take(np.r_[np.arange(1, out.num_rows), 0]) if keep[0] else out


# --- discrepancies -------------------------------------------------------------------

def _discrepancies(root: DataRoot, parts: list[_CampaignPart], table: pa.Table, rows: _Rows,
                   s: _Settings) -> pa.Table:
    pieces = [_charged_never_reported(table, rows, s)]
    for p in parts:
        sent_ms = p.submitted_ms[p.submitted_ms >= 0]
        if not len(sent_ms):
            continue
        pieces.append(_unknown_reports(p.account, int(sent_ms.min()), int(sent_ms.max()), s))
        pieces.append(_statistics_mismatches(root, p.account, sent_ms, s))
        pieces.append(_balance_mismatches(root, p.account, sent_ms, s))
    return pa.concat_tables(pieces)


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=DISCREPANCY_SCHEMA)


def _iso(column: Any) -> Any:
    """Timestamps as ``2026-03-01T12:00:00Z`` (whole seconds are plenty for a reader)."""
    seconds = pc.cast(column, pa.timestamp("s", tz="UTC"), safe=False)
    return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")


def _charged_never_reported(table: pa.Table, rows: _Rows, s: _Settings) -> pa.Table:
    """Paid for (the vendor accepted and billed it) and never told what became of it."""
    mask = (rows.sub_status == S_SUBMITTED) & (rows.charge > 0) & (rows.final == UNKNOWN)
    if not mask.any():
        return DISCREPANCY_SCHEMA.empty_table()
    t = table.filter(pa.array(mask))
    hours = f"{s.final_window_ms / 3_600_000:g}"
    key = pc.coalesce(t["message_id"], t["custom_id"],
                      pc.binary_join_element_wise("row ", pc.cast(t["row_number"], pa.string()),
                                                  ""))
    detail = pc.binary_join_element_wise(
        "row ", pc.cast(t["row_number"], pa.string()), ", submitted ", _iso(t["submitted_at"]),
        f", no DELIVERED/FAILED report within {hours} h", "")
    return pa.table({
        "kind": _repeat(CHARGED_NEVER_REPORTED, t.num_rows), "conn_id": t["conn_id"],
        "key": key, "detail": detail, "count": pc.cast(t["charge_items"], pa.int64()),
    }, schema=DISCREPANCY_SCHEMA)


def _unknown_reports(a: Account, first_ms: int, last_ms: int, s: _Settings) -> pa.Table:
    """Reports no campaign on the connection sent, received while this campaign was live."""
    lo = first_ms - int(REPORT_LEAD.total_seconds() * 1000)
    hi = last_ms + s.final_window_ms
    picked = np.flatnonzero((a.strays_received >= lo) & (a.strays_received <= hi))
    if not len(picked):
        return DISCREPANCY_SCHEMA.empty_table()
    t = dedupe(a.strays.take(picked), "report_key")
    names = t.column_names
    tail = _mobile_tail(t["mobile"]) if "mobile" in names else None
    by_mobile = tail is not None and a.vendor in MSGID_PER_REQUEST
    keys = [pc.binary_join_element_wise(t["message_id"], tail, "/") if by_mobile
            else t["message_id"]]
    if "custom_id" in names:
        keys.append(pc.binary_join_element_wise(t["custom_id"], tail, "/")
                    if tail is not None and a.vendor in CUSTOM_ID_PER_REQUEST
                    else t["custom_id"])
    if tail is not None:
        keys.append(pc.binary_join_element_wise("mobile ", t["mobile"], ""))
    key = pc.fill_null(pc.coalesce(*keys), "(no id)")
    g = (t.append_column("key", key).group_by("key", use_threads=False)
         .aggregate([("report_key", "count"), ("received_at", "min"), ("received_at", "max")]))
    detail = pc.binary_join_element_wise(
        pc.cast(g["report_key_count"], pa.string()),
        " report(s) match no submission of any campaign on this connection; received ",
        _iso(g["received_at_min"]), " .. ", _iso(g["received_at_max"]), "")
    return pa.table({
        "kind": _repeat(REPORT_FOR_UNKNOWN_MESSAGE, g.num_rows),
        "conn_id": _repeat(a.conn_id, g.num_rows), "key": g["key"], "detail": detail,
        "count": g["report_key_count"]}, schema=DISCREPANCY_SCHEMA)


def _epoch_day(day: Any) -> int:
    return (day - datetime(1970, 1, 1).date()).days


def _statistics_mismatches(root: DataRoot, a: Account, sent_ms: np.ndarray,
                           s: _Settings) -> pa.Table:
    """The vendor's own daily counts (latest fetch of each day) against ours, all campaigns."""
    if not a.conn_id:
        return DISCREPANCY_SCHEMA.empty_table()
    stats = _read(root, ("statistics", a.conn_id, "daily"), DAILY_STATISTIC_SCHEMA,
                  ["day", "submitted", "delivered", "failed", "fetched_at"]).to_pylist()
    latest: dict[int, dict[str, Any]] = {}
    never = datetime.min.replace(tzinfo=UTC)
    for row in sorted(stats, key=lambda r: r["fetched_at"] or never):
        if row["day"] is not None:
            latest[_epoch_day(row["day"])] = row  # the last fetch of a day wins
    days = set(np.unique((sent_ms + CHINA_OFFSET_MS) // DAY_MS).tolist())
    out = []
    empty = {"submitted": 0, "delivered": 0, "failed": 0, "unsettled": 0}
    for day in sorted(days & latest.keys()):
        vendor, ours = latest[day], a.daily().get(day, empty)
        problems, worst = [], 0
        gap = (vendor["submitted"] or 0) - ours["submitted"]
        if not 0 <= gap <= ours["unsettled"]:  # unsettled ambiguous ones may have gone out
            extra = (f" (+{ours['unsettled']} ambiguous not settled)"
                     if ours["unsettled"] else "")
            problems.append(f"submitted: vendor {vendor['submitted']}, ours "
                            f"{ours['submitted']}{extra}")
            worst = abs(gap)
        allowed = s.statistics_tolerance * (vendor["submitted"] or 0)
        for name in ("delivered", "failed"):
            diff = (vendor[name] or 0) - ours[name]
            if abs(diff) > allowed:
                problems.append(f"{name}: vendor {vendor[name]}, ours {ours[name]}")
                worst = max(worst, abs(diff))
        if problems:
            out.append({"kind": STATISTICS_MISMATCH, "conn_id": a.conn_id,
                        "key": vendor["day"].isoformat(),
                        "detail": "; ".join(problems) + " (China day, all campaigns)",
                        "count": worst})
    return _rows_table(out)


def _decimal(text: str | None) -> Decimal | None:
    try:
        return Decimal(text) if text not in (None, "") else None
    except InvalidOperation:
        return None


def _balance_mismatches(root: DataRoot, a: Account, sent_ms: np.ndarray,
                        s: _Settings) -> pa.Table:
    """Each fall of the balance between two snapshots against the charge items we sent then."""
    if not a.conn_id:
        return DISCREPANCY_SCHEMA.empty_table()
    snaps = _read(root, ("statistics", a.conn_id, "balance"), BALANCE_SCHEMA,
                  ["amount", "unit", "gift", "taken_at"])
    out = []
    charged = (a.status == S_SUBMITTED) & (a.submitted_ms >= 0)
    unsettled = (a.status == S_AMBIGUOUS) & (a.best < 0) & (a.submitted_ms >= 0)
    items = a.charge
    for unit in ("items", "money"):
        price = None if unit == "items" else s.prices.get(a.conn_id, s.prices.get(None))
        if unit == "money" and not price:
            continue  # money cannot be compared with charge items without a price
        # products (Chuanglan) and gift credit are all spendable: one balance per moment
        totals: dict[int, Decimal] = {}
        for row in snaps.filter(pc.equal(snaps["unit"], unit)).to_pylist():
            amount = _decimal(row["amount"])
            if amount is None or row["taken_at"] is None:
                continue
            moment = int(row["taken_at"].timestamp() * 1000)
            totals[moment] = totals.get(moment, Decimal(0)) + amount + (
                _decimal(row["gift"]) or 0)
        times = np.array(sorted(totals), np.int64)
        if len(times) < 2:
            continue
        # a submission at t belongs to the step (times[i-1], times[i]]
        step = np.searchsorted(times, a.submitted_ms, side="left")
        spent = np.bincount(step[charged], weights=items[charged], minlength=len(times) + 1)
        maybe = np.bincount(step[unsettled], minlength=len(times) + 1)
        for i in np.unique(np.searchsorted(times, sent_ms, side="left")).tolist():
            if not 1 <= i < len(times):
                continue
            before, after = totals[int(times[i - 1])], totals[int(times[i])]
            fall = before - after
            if fall < 0:
                continue  # a top-up in between: what was spent cannot be told apart
            fall_items = fall if price is None else fall / price
            ours = int(spent[i])
            if abs(fall_items - ours) <= s.balance_tolerance:
                continue
            as_items = "" if price is None else f" (= {fall_items:g} items at {price})"
            note = f"; {int(maybe[i])} ambiguous not settled" if maybe[i] else ""
            key = (f"{_iso(pa.array([int(times[i - 1])], pa.timestamp('ms', tz='UTC')))[0]}"
                   f"..{_iso(pa.array([int(times[i])], pa.timestamp('ms', tz='UTC')))[0]}")
            out.append({"kind": BALANCE_MISMATCH, "conn_id": a.conn_id, "key": key,
                        "detail": f"balance fell by {fall:g} {unit}{as_items}, we submitted "
                                  f"{ours} charge items (all campaigns){note}",
                        "count": round(fall_items - ours)})
    return _rows_table(out)


# --- the analyst's report and writing ------------------------------------------------

def _failure_reasons(table: pa.Table, rows: _Rows, top: int = 10) -> list[tuple[str, int]]:
    reasons = table["reason"].filter(pa.array(rows.final == FAILED))
    counts = sorted(((r["values"] or "(none)", r["counts"])
                     for r in pc.value_counts(reasons).to_pylist()),
                    key=lambda item: (-item[1], item[0]))
    if len(counts) > top:
        counts = [*counts[:top - 1], ("other", sum(c for _, c in counts[top - 1:]))]
    return counts


def _latency_histogram(rows: _Rows) -> list[int]:
    latency = rows.latency_s[~np.isnan(rows.latency_s)]
    inner = np.asarray(html_report.LATENCY_EDGES_S[1:-1], dtype=float)
    bins = np.searchsorted(inner, np.maximum(latency, 0), side="right")
    return np.bincount(bins, minlength=len(inner) + 1).tolist()


def _discrepancy_preview(table: pa.Table, per_kind: int = 20) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for kind in DISCREPANCY_KINDS:
        out.extend(table.filter(pc.equal(table["kind"], kind)).slice(0, per_kind).to_pylist())
    return out


def _write(root: DataRoot, table: pa.Table, campaign_id: str, name: str) -> str:
    """``part-00000.parquet`` …, the same names each run: a rerun replaces, never adds.

    Big tables are cut in as many files as there are CPUs and written side by
    side (the Parquet encoder is single-threaded; this halves the time on two).
    """
    parts = max(1, min(os.cpu_count() or 1, table.num_rows // ROWS_PER_FILE))
    step = -(-table.num_rows // parts) if table.num_rows else 0
    names = [f"part-{i:05d}.parquet" for i in range(parts)]

    def write(i: int) -> str:
        piece = table.slice(i * step, step) if parts > 1 else table
        return root.write_table(piece, *root.campaign(campaign_id, name, names[i]))

    with ThreadPoolExecutor(parts) as pool:
        written = set(pool.map(write, range(parts)))
    for path in _parquet_files(root, *root.campaign(campaign_id, name)):
        if path not in written and path.rsplit("/", 1)[-1] not in names:
            root.fs.delete_file(path)  # an earlier run cut the table in more files
    return root.path(*root.campaign(campaign_id, name))


def _write_text(root: DataRoot, text: str, *parts: str) -> str:
    target = root.path(*parts)
    root.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    data = text.encode("utf-8")
    if not root.is_local:
        with root.fs.open_output_stream(target) as out:
            out.write(data)
        return target
    tmp = f"{target}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    root.fs.move(tmp, target)
    return target
