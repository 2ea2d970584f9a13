"""One connection's books: every submission of every campaign on it, matched with its reports.

Reports are per connection, not per campaign, so an account is what a report
is matched against; ``reconcile_all`` builds each account once and shares it
between the campaigns (:class:`AccountCache`). Of all reports for a message
the last DELIVERED/FAILED one (by report time, then arrival) decides; PENDING
and UNKNOWN reports never override a final one. Copies of one report (same
``report_key``: a replayed push, a report both pushed and pulled) count once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.reconcile.columns import (
    as_text,
    at,
    bool_mask,
    codes_of,
    day_buckets,
    distinct,
    flat,
    ints,
    ms,
    narrow,
    one_chunk,
    optional_column,
    take_rows,
)
from sms_provider.data.reconcile.matching import (
    CUSTOM_ID_PER_MESSAGE,
    CUSTOM_ID_PER_REQUEST,
    MOBILE_MATCH_AFTER_MS,
    MOBILE_MATCH_BEFORE_MS,
    SETTLED_BY_MOBILE,
    as_numbers,
    custom_key,
    deferred_report_columns,
    lookup,
    message_key,
    mobile_tail,
    needs_mobile,
    report_columns,
    sub_columns,
)
from sms_provider.data.reconcile.reading import account_campaigns, empty, read, take
from sms_provider.data.reconcile.statuses import FinalStatus, SettledBy, SubmissionCode
from sms_provider.data.reports import dedupe
from sms_provider.data.schemas import REPORT_SCHEMA, SUBMISSION_SCHEMA
from sms_provider.data.storage import DataRoot


class Account:
    """Submissions of all campaigns on one connection, matched with its reports.

    Built once per connection (``reconcile_all`` shares it between campaigns):
    for every submission the deciding report (``best``, -1 none) and the
    distinct reports received (``seen``: copies of one report count once); for
    every report the submission it belongs to (``report_sub``, -1 none) and how
    it was found (``report_route``).
    """

    def __init__(self, root: DataRoot, conn_id: str | None, campaigns: Iterable[str],
                 loaded: Mapping[str, pa.Table] | None = None, vendor: str = "") -> None:
        self.conn_id = conn_id
        self.campaigns: list[str] = []
        columns = sub_columns(vendor)
        loaded = loaded or {}
        where = ((pc.field("conn_id").is_null() | (pc.field("conn_id") == ""))
                 if conn_id is None else pc.field("conn_id") == conn_id)
        tables = []
        for cid in dict.fromkeys([*loaded, *campaigns]):
            t = (on_connection(loaded[cid], conn_id) if cid in loaded
                 else read(root, ("campaigns", cid, "submissions"), SUBMISSION_SCHEMA,
                           columns, where, numbers=["message_id"]))
            if t.num_rows:
                tables.append(t.append_column("_campaign", pa.array(
                    np.full(t.num_rows, len(self.campaigns), np.int32))))
                self.campaigns.append(cid)
        self.subs = (pa.concat_tables(tables, promote_options="permissive") if tables
                     else empty(SUBMISSION_SCHEMA, columns).append_column(
                         "_campaign", pa.array([], pa.int32())))
        self.campaign_code = self.subs["_campaign"].to_numpy().astype(
            _small_int(len(self.campaigns)))
        self._later = deferred_report_columns(vendor)
        columns = [c for c in report_columns(vendor) if c not in self._later]
        self._root = root
        self.reports = (read(root, ("reports", conn_id), REPORT_SCHEMA, columns,
                             numbers=["message_id"])
                        if conn_id else empty(REPORT_SCHEMA, columns))
        self.vendor = vendor or next((v for v in distinct(self.reports["vendor"]) if v), "")
        self.status = codes_of(self.subs["status"], SubmissionCode.LABELS, SubmissionCode.OTHER)
        self.submitted_ms = ms(self.subs["submitted_at"], -1)
        self.charge = ints(self.subs["charge_items"]).astype(np.int32)  # as the schema's
        self._daily: dict[int, dict[str, int]] | None = None
        self._match()

    def _take_reports(self, columns: list[str], rows: np.ndarray) -> pa.Table:
        """Report columns not read with the rest, for the report rows ``rows`` (sorted)."""
        if self.conn_id is None:
            return empty(REPORT_SCHEMA, columns)  # no connection, no reports
        return take(self._root, ("reports", self.conn_id), REPORT_SCHEMA, columns, rows)

    def _match(self) -> None:
        subs, reports = self.subs, self.reports
        idx = np.full(reports.num_rows, -1, np.int64)
        route = np.zeros(reports.num_rows, np.int8)
        if subs.num_rows and reports.num_rows:
            idx = lookup(
                message_key(self.vendor, subs["message_id"], optional_column(subs, "mobile")),
                message_key(self.vendor, reports["message_id"],
                            optional_column(reports, "mobile")))
        self.report_received = ms(reports["received_at"], 0)
        # a report without the vendor's time (EIMS pulls) is placed when it reached us
        self.report_when = np.where(pc.is_null(reports["report_time"]).to_numpy(
            zero_copy_only=False), self.report_received, ms(reports["report_time"], 0))
        #: the reports no message id matched, with the columns read only for them
        self.loose_rows = np.flatnonzero(idx < 0)
        self.loose = self._take_reports(self._later, self.loose_rows)
        if subs.num_rows and reports.num_rows:
            route[idx >= 0] = SettledBy.MESSAGE_ID
            self._settle_by_custom_id(idx, route)
            self._settle_by_mobile(idx, route)
        self.report_sub = idx.astype(_index_type(subs.num_rows), copy=False)
        self.report_route = route
        matched = idx >= 0
        #: reports per submission, copies included until ``_best`` drops them
        self.seen = np.bincount(idx[matched], minlength=subs.num_rows).astype(np.int32)
        self.report_code = codes_of(reports["status"], FinalStatus.REPORT_LABELS,
                                    FinalStatus.UNKNOWN)
        self.best = self._best(idx, matched)
        self.seen = self.seen.astype(_small_int(int(self.seen.max(initial=0))))
        del subs, reports, idx, matched  # held here, they would outlive what _slim drops
        self._slim()

    def _slim(self) -> None:
        """Keep only what the outputs read: a big account is most of the memory."""
        still = self.report_sub[self.loose_rows] < 0
        stray = self.loose_rows[still]
        loose = self.loose.filter(pa.array(still))
        names = [c for c in ("message_id", "custom_id", "mobile", "received_at", "report_key")
                 if c in self.reports.column_names or c in loose.column_names]
        #: reports that match no submission of any campaign (usually few)
        strays = {c: loose[c] if c in loose.column_names
                  else self.reports[c].take(pa.array(stray)) for c in names}
        strays["message_id"] = as_text(strays["message_id"])  # ids read as numbers
        self.strays = pa.table(strays)
        self.strays_received = self.report_received[stray]
        del self.loose, self.report_received, stray, still
        # what the outputs never read goes first, so the conversions below run in less memory
        self.subs = self.subs.select(["conn_id", "vendor", "row_number", "message_id",
                                      "custom_id", "vendor_code", "description"])
        self.reports = self.reports.select(["message_id", "raw_state", "description",
                                            "report_time"])
        # a report's message id is only written for an ambiguous submission it settled, and
        # those were all loose (no message id of ours to match): keep only theirs
        ids = as_text(self.reports["message_id"].take(pa.array(self.loose_rows)))
        self._loose_ids = ids if isinstance(ids, pa.ChunkedArray) else pa.chunked_array([ids])
        self.reports = pa.table({**{c: one_chunk(narrow(self.reports[c]))
                                                       for c in ("raw_state", "description")},
                                 "report_time": self._report_time()})
        # numeric message ids as int64 (written back as text by ``columns.as_text``), the
        # dictionaries with the smallest indices that fit
        self.subs = pa.table({c: one_chunk(as_numbers(self.subs[c]) if c == "message_id"
                                           else _positions(self.subs[c]) if c == "row_number"
                                           else narrow(self.subs[c]))
                              for c in self.subs.column_names})

    def report_message_ids(self, rows: np.ndarray) -> pa.Array:
        """The vendor's message id (text) of each report row in ``rows`` (-1: none): kept
        only for the reports no message id of ours matched (``loose_rows``), the ones that
        settle an ambiguous submission; null for the rest."""
        if not len(self.loose_rows):
            return pa.nulls(len(rows), pa.string())
        where = np.minimum(np.searchsorted(self.loose_rows, rows), len(self.loose_rows) - 1)
        found = (rows >= 0) & (self.loose_rows[where] == rows)
        return flat(take_rows(self._loose_ids, where, ~found))

    def _report_time(self) -> pa.ChunkedArray:
        """The vendor's report times, on the same memory as ``report_when`` (which holds
        each of them where there is one): only their validity is kept apart."""
        times = self.reports["report_time"]
        if not pa.types.is_timestamp(times.type) or times.type.unit != "ms" \
                or not len(times):
            return one_chunk(times)
        valid = pc.is_valid(times).combine_chunks()  # no nulls, offset 0: a plain bitmap
        when = np.ascontiguousarray(self.report_when, np.int64)
        return pa.chunked_array([pa.Array.from_buffers(
            times.type, len(when), [valid.buffers()[1], pa.py_buffer(when)],
            null_count=times.null_count)])

    def _settle_by_custom_id(self, idx: np.ndarray, route: np.ndarray) -> None:
        """Reports of ambiguous submissions (no message id of theirs known) by custom id."""
        subs = self.subs
        if self.vendor not in CUSTOM_ID_PER_MESSAGE | CUSTOM_ID_PER_REQUEST:
            return
        open_subs = np.flatnonzero(bool_mask(pc.and_(pc.is_null(subs["message_id"]),
                                                     pc.is_valid(subs["custom_id"]))))
        names = ["custom_id", "mobile"] if needs_mobile(self.vendor) else ["custom_id"]
        loose = self._loose(names)
        has_id = bool_mask(pc.is_valid(loose["custom_id"]))
        left = self.loose_rows[has_id]
        if not len(open_subs) or not len(left):
            return
        known = subs.select(names).take(open_subs)
        probe = loose.filter(pa.array(has_id))
        found = lookup(
            custom_key(self.vendor, known["custom_id"], optional_column(known, "mobile")) or [],
            custom_key(self.vendor, probe["custom_id"], optional_column(probe, "mobile")) or [])
        hit = found >= 0
        idx[left[hit]] = open_subs[found[hit]]
        route[left[hit]] = SettledBy.CUSTOM_ID

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
        subs = self.subs
        open_subs = np.flatnonzero((self.status == SubmissionCode.AMBIGUOUS)
                                   & bool_mask(pc.is_null(subs["message_id"])))
        still = idx[self.loose_rows] < 0
        left = self.loose_rows[still]
        if not len(open_subs) or not len(left):
            return
        known = mobile_tail(subs["mobile"].take(open_subs))
        numbered = pc.dictionary_encode(known).combine_chunks() if isinstance(
            known, pa.ChunkedArray) else pc.dictionary_encode(known)
        codes = ints(numbered.indices, -1)
        alone = np.bincount(codes[codes >= 0], minlength=len(numbered.dictionary)) == 1
        found = lookup([known], [mobile_tail(self._loose(["mobile"])["mobile"].filter(
            pa.array(still)))])
        hit = found >= 0
        hit[hit] = alone[codes[found[hit]]]
        sub = open_subs[np.where(hit, found, 0)]
        submitted, when = self.submitted_ms[sub], self.report_when[left]
        hit &= (submitted >= 0) & (when >= submitted - MOBILE_MATCH_BEFORE_MS)
        hit &= when <= submitted + MOBILE_MATCH_AFTER_MS
        idx[left[hit]] = sub[hit]
        route[left[hit]] = SettledBy.MOBILE

    def _loose(self, names: list[str]) -> pa.Table:
        """Columns of the reports no message id matched (``loose_rows``), wherever read."""
        return pa.table({c: self.loose[c] if c in self.loose.column_names
                         else self.reports[c].take(pa.array(self.loose_rows)) for c in names})

    def _best(self, idx: np.ndarray, matched: np.ndarray) -> np.ndarray:
        """Per submission the deciding report: the last final one, else the last of any."""
        best = np.full(self.subs.num_rows, -1, _index_type(self.reports.num_rows))
        if not matched.any():
            return best
        multi = matched & (self.seen[np.where(matched, idx, 0)] > 1)
        single = np.flatnonzero(matched & ~multi)
        best[idx[single]] = single  # one report: nothing to order (most messages)
        rows = np.flatnonzero(multi)
        if len(rows):
            copies = self._take_reports(["report_key"], rows).append_column(
                "received_at", self.reports["received_at"].take(pa.array(rows)))
            copies = dedupe(copies.append_column("_row", pa.array(rows)), "report_key")
            rows = copies["_row"].to_numpy()
            final = self.report_code[rows] <= FinalStatus.FAILED
            rows = rows[np.lexsort((self.report_received[rows], self.report_when[rows], final,
                                    idx[rows]))]
            group = idx[rows]
            last = np.ones(len(rows), bool)
            last[:-1] = group[1:] != group[:-1]
            best[group[last]] = rows[last]
            ends = np.flatnonzero(last)  # rows are grouped: a group's size is its span
            self.seen[group[last]] = np.diff(ends, prepend=-1)
        return best

    def daily(self) -> dict[int, dict[str, int]]:
        """China day -> our submitted / delivered / failed / unsettled ambiguous counts."""
        if self._daily is None:
            self._daily = self._count_daily()
        return self._daily

    def _count_daily(self) -> dict[int, dict[str, int]]:
        has = self.best >= 0
        code = at(self.report_code, self.best, FinalStatus.PENDING)
        ambiguous = self.status == SubmissionCode.AMBIGUOUS
        settled = ambiguous & has
        sent = ((self.status == SubmissionCode.SUBMITTED) | settled) & (self.submitted_ms >= 0)
        unsettled = ambiguous & ~has & (self.submitted_ms >= 0)
        bucket, days = day_buckets(self.submitted_ms, self.submitted_ms >= 0)
        out: dict[int, dict[str, int]] = {}
        for name, mask in (("submitted", sent),
                           ("delivered", sent & (code == FinalStatus.DELIVERED)),
                           ("failed", sent & (code == FinalStatus.FAILED)),
                           ("unsettled", unsettled)):
            counts = np.bincount(bucket[mask], minlength=len(days))
            for i in np.flatnonzero(counts[1:]).tolist():
                out.setdefault(days[i + 1], {"submitted": 0, "delivered": 0, "failed": 0,
                                             "unsettled": 0})[name] = int(counts[i + 1])
        return out


def _small_int(top: int) -> type[np.signedinteger]:
    """The narrowest signed integer holding 0..``top``."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if top <= np.iinfo(t).max)


def _positions(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Row numbers as int32 while they fit (half the memory of the int64 read)."""
    if not pa.types.is_integer(column.type) or not len(column):
        return one_chunk(column)
    top = pc.max(column).as_py()
    low = pc.min(column).as_py()
    if top is None or top >= 2**31 or low < -(2**31):
        return one_chunk(column)
    return one_chunk(pc.cast(column, pa.int32()))


def _index_type(rows: int) -> type[np.signedinteger]:
    """Row positions among ``rows`` rows: four bytes each while they fit (half of int64 on
    every per-report and per-submission array)."""
    return np.int32 if rows < 2**31 - 1 else np.int64


def on_connection(table: pa.Table, conn_id: str | None) -> pa.Table:
    """The rows of ``table`` on ``conn_id`` (None: rows written before conn_id existed)."""
    conn = table["conn_id"]
    mask = (codes_of(conn, ("",), 1) == 0) | bool_mask(pc.is_null(conn)) if conn_id is None \
        else codes_of(conn, (conn_id,), 1) == 0
    return table if mask.all() else table.filter(pa.array(mask))


class AccountCache(dict[str | None, Account]):
    """Accounts already loaded, keyed by conn_id: reconciling many campaigns reads once."""

    def get_account(self, root: DataRoot, conn_id: str | None, campaign_id: str,
                    submissions: pa.Table) -> Account:
        """The account of ``conn_id``, built with this campaign's submissions already read."""
        if conn_id not in self:
            mine = on_connection(submissions, conn_id)
            vendor = next((v for v in distinct(mine["vendor"]) if v), "")
            if needs_mobile(vendor) and "mobile" not in mine.column_names:
                mobile = read(root, root.campaign(campaign_id, "submissions"),
                              SUBMISSION_SCHEMA, ["mobile"])["mobile"]  # same files, same order
                mine = on_connection(submissions.append_column("mobile", mobile), conn_id)
            self[conn_id] = Account(root, conn_id, account_campaigns(root), {campaign_id: mine},
                                    vendor)
        return self[conn_id]
