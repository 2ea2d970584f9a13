"""Pulling delivery data from the vendors onto disk: reports, replies, statistics, balances.

Report and reply pulls hand each item out once (Emay and EUMS report pulls,
EIMS getsms, EUMS mo.do). So every answer is written as its own Parquet file
*before* the next request goes out: a crash loses at most the answer in flight.
A lost answer (``AmbiguousError``) is never retried here -- what it carried is
gone at the vendor's side -- and is raised again, after a log line and an
exception note that say what was already saved.

EIMS keeps no queue: its reports are queried by message id. The ids still
worth asking about are the connection's submitted messages without a final
(DELIVERED or FAILED) report on disk, submitted within ``give_up_after``: a
platform that has not decided in three days will not, and asking for ever
would only grow each run.

Every opt-out reply ("TD", "退订", ...) puts its number on the suppression
list that *prepare* reads, so the next campaign does not message it (see
:mod:`sms_provider.data.opt_outs`, which the receiver uses alike).
Nothing here knows about Airflow: the report DAG calls these once per
connection and logs the :class:`CollectResult`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from sms_provider.data import reports
from sms_provider.data.opt_outs import DEFAULT_OPT_OUT_WORDS, add_opt_outs
from sms_provider.data.schemas import (
    BALANCE_SCHEMA,
    DAILY_STATISTIC_SCHEMA,
    REPORT_SCHEMA,
    SUBMISSION_SCHEMA,
)
from sms_provider.data.storage import DataRoot, epoch_ms
from sms_provider.errors import AmbiguousError, RateLimitedError
from sms_provider.models import DeliveryReport, DeliveryStatus
from sms_provider.vendors.base import Capability, VendorClient
from sms_provider.vendors.clock import CHINA_TZ

log = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE = "pull"
#: after this long without a final report an EIMS message is no longer queried
DEFAULT_GIVE_UP_AFTER = timedelta(hours=72)
FINAL_STATUSES = (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class CollectResult:
    """What one collection run did: for the task log, XCom and the tests.

    ``calls`` counts vendor answers received (the empty one that ends a drain
    included), ``pages`` the non-empty ones written, ``rows`` the rows written.
    ``skipped`` says, per reason, what was deliberately left alone (ids given
    up, copies already stored, a rate-limited call, a capability the vendor
    lacks, ``max_pages`` reached with more possibly waiting).
    """

    conn_id: str
    vendor: str
    kind: str
    calls: int = 0
    pages: int = 0
    rows: int = 0
    queried: int = 0
    opt_outs: int = 0
    suppressed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def counts(self) -> dict[str, int]:
        """The figures alone, flat (``statuses.DELIVERED``, ``skipped.rate_limited``):
        what the collect task hands on through XCom."""
        out = {"calls": self.calls, "pages": self.pages, "rows": self.rows,
               "queried": self.queried, "opt_outs": self.opt_outs,
               "suppressed": self.suppressed, "files": len(self.paths)}
        out.update({f"statuses.{k}": v for k, v in sorted(self.statuses.items())})
        out.update({f"skipped.{k}": v for k, v in sorted(self.skipped.items())})
        return out

    def summary(self) -> str:
        parts = [f"{self.kind} {self.conn_id} ({self.vendor}): {self.calls} calls, "
                 f"{self.pages} pages, {self.rows} rows"]
        if self.queried:
            parts.append(f"{self.queried} ids queried")
        if self.statuses:
            parts.append(f"statuses {dict(sorted(self.statuses.items()))}")
        if self.opt_outs or self.suppressed:
            parts.append(f"{self.opt_outs} opt-outs, {self.suppressed} numbers suppressed")
        if self.skipped:
            parts.append(f"skipped {dict(sorted(self.skipped.items()))}")
        parts.append(f"{len(self.paths)} files written")
        return "; ".join(parts)


# --- helpers ---------------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _file_name(prefix: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{_UNSAFE.sub('_', prefix)}-{stamp}-{uuid.uuid4().hex[:12]}.parquet"


def _scan(files: Sequence[str], root: DataRoot, schema: pa.Schema, columns: list[str],
          where: ds.Expression | None = None) -> pa.Table:
    if not files:
        return schema.empty_table().select(columns)
    data = ds.dataset(list(files), filesystem=root.fs, format="parquet", schema=schema)
    return data.to_table(columns=columns, filter=where)


def _surface(exc: Exception, result: CollectResult) -> None:
    """Log and annotate an interrupted drain with what is safely on disk."""
    saved = (f"saved before the error: {result.pages} pages, {result.rows} rows in "
             f"{len(result.paths)} files" + (f" (last {result.paths[-1]})" if result.paths
                                                else ""))
    lost = (" The answer in flight was lost: whatever it handed out may be gone at the "
            "vendor and is not asked for again." if isinstance(exc, AmbiguousError) else "")
    log.error("%s %s (%s) interrupted after %d calls: %s. %s.%s", result.kind,
              result.conn_id, result.vendor, result.calls, exc, saved, lost)
    exc.add_note(saved + "." + lost)


def _drain(fetch: Callable[[], Sequence[T]], store: Callable[[Sequence[T]], None],
           result: CollectResult, max_pages: int) -> None:
    """Fetch and store page after page until an empty page; each stored before the next."""
    try:
        for _ in range(max_pages):
            page = fetch()
            result.calls += 1
            if not page:
                return
            store(page)
            result.pages += 1
        result.skip("max_pages")  # more may be waiting: the next run goes on
    except Exception as exc:
        _surface(exc, result)
        raise


def _store_reports(root: DataRoot, result: CollectResult, page: Sequence[DeliveryReport],
                   known_keys: set[str] | None = None) -> None:
    table = reports.report_table(page, conn_id=result.conn_id, vendor=result.vendor,
                                 source=SOURCE)
    if known_keys:
        fresh = pc.invert(pc.is_in(table["report_key"],
                                   value_set=pa.array(sorted(known_keys), pa.string())))
        kept = table.filter(fresh)
        result.skip("already_stored", table.num_rows - kept.num_rows)
        table = kept
    result.paths += reports.append(root, "reports", result.conn_id, table, prefix=SOURCE)
    result.rows += table.num_rows
    for status in table["status"].to_pylist():
        result.statuses[status] = result.statuses.get(status, 0) + 1


# --- delivery reports ------------------------------------------------------------------
def collect_reports(client: VendorClient, root: DataRoot, conn_id: str, *,
                    max_pages: int = 1000,
                    give_up_after: timedelta = DEFAULT_GIVE_UP_AFTER,
                    now: datetime | None = None) -> CollectResult:
    """Drain the vendor's report queue, or query EIMS for the still-open message ids.

    Vendors that only push (Chuanglan) are skipped with the reason ``no_pull``.
    Any error is raised after the log line: pages already written stay written.
    """
    result = CollectResult(conn_id, client.vendor, "reports")
    if client.supports(Capability.PULL_REPORTS):
        _drain(client.pull_reports, lambda page: _store_reports(root, result, page),
               result, max_pages)
    elif client.supports(Capability.QUERY_REPORTS):
        _query_pending(client, root, result, max_pages=max_pages,
                       give_up_after=give_up_after, now=now)
    else:
        result.skip("no_pull")
    log.info("%s", result.summary())
    return result


@dataclass(frozen=True)
class PendingIds:
    """EIMS message ids to query (oldest submission first) and how many were given up.

    ``given_up`` counts every id of the connection outside the window that never
    got a final report (silent messages stay in it for good): a number to watch
    grow, not a per-run figure.
    """

    ids: list[str]
    given_up: int
    known_keys: set[str]


def pending_message_ids(root: DataRoot, conn_id: str, *,
                        give_up_after: timedelta = DEFAULT_GIVE_UP_AFTER,
                        now: datetime | None = None) -> PendingIds:
    """Submitted ids of ``conn_id`` without a final report, split by the give-up window.

    ``known_keys`` are the report keys of the not-yet-final reports stored
    within the window, so a still-pending answer is written once, not every run.
    """
    cutoff = _now(now) - give_up_after
    submitted = _submitted(root, conn_id)
    stored = _scan(root.parquet_files("reports", conn_id), root, REPORT_SCHEMA,
                   ["message_id", "status", "report_key", "received_at"],
                   ds.field("message_id").is_valid())
    final = pc.is_in(stored["status"], value_set=pa.array(FINAL_STATUSES))
    final_ids = pc.unique(stored.filter(final)["message_id"])
    recent = pc.greater_equal(stored["received_at"],
                              pa.scalar(epoch_ms(cutoff), pa.timestamp("ms", tz="UTC")))
    open_recent = stored.filter(pc.and_(pc.invert(final), recent))
    known = set(open_recent["report_key"].to_pylist())

    open_ids = submitted.filter(pc.invert(pc.is_in(submitted["message_id"],
                                                   value_set=final_ids)))
    in_window = pc.fill_null(pc.greater_equal(
        open_ids["submitted_at"], pa.scalar(epoch_ms(cutoff), pa.timestamp("ms", tz="UTC"))), True)
    old = open_ids.filter(pc.invert(in_window))
    # a stable sort: ids of one request stay in request order
    young = open_ids.filter(in_window).sort_by([("submitted_at", "ascending")])
    ids = list(dict.fromkeys(young["message_id"].to_pylist()))
    given_up = len(set(old["message_id"].to_pylist()) - set(ids))
    return PendingIds(ids=ids, given_up=given_up, known_keys=known)


def _submitted(root: DataRoot, conn_id: str) -> pa.Table:
    """``message_id``, ``submitted_at`` of every campaign's accepted messages on ``conn_id``,
    resend attempts' (``campaigns/<id>/attempt-<n>/submissions/``) included."""
    from sms_provider.data.resend.attempts import ATTEMPT_FOLDER

    base = root.path("campaigns") + "/"

    def is_submissions(path: str) -> bool:
        parts = path[len(base):].split("/")
        return parts[1:2] == ["submissions"] or (
            parts[2:3] == ["submissions"] and bool(ATTEMPT_FOLDER.match(parts[1])))

    files = [p for p in root.parquet_files("campaigns")
             if p.startswith(base) and is_submissions(p)]
    where = ((ds.field("conn_id") == conn_id) & (ds.field("status") == "submitted")
             & ds.field("message_id").is_valid())
    return _scan(files, root, SUBMISSION_SCHEMA, ["message_id", "submitted_at"], where)


def _query_pending(client: VendorClient, root: DataRoot, result: CollectResult, *,
                   max_pages: int, give_up_after: timedelta, now: datetime | None) -> None:
    pending = pending_message_ids(root, result.conn_id, give_up_after=give_up_after, now=now)
    result.skip("given_up", pending.given_up)
    ids = pending.ids
    per_call = client.profile.limits.report_query or len(ids) or 1
    try:
        for start in range(0, len(ids), per_call):
            if result.calls >= max_pages:
                result.skip("max_pages", len(ids) - start)
                break
            batch = ids[start:start + per_call]
            page = client.query_reports(batch)
            result.calls += 1
            result.queried += len(batch)
            result.skip("not_found", len(set(batch) - {r.message_id for r in page}))
            if page:
                _store_reports(root, result, page, pending.known_keys)
                result.pages += 1
    except Exception as exc:
        _surface(exc, result)
        raise


# --- replies and opt-outs --------------------------------------------------------------
def collect_inbound(client: VendorClient, root: DataRoot, conn_id: str, *,
                    opt_out_words: Iterable[str] = DEFAULT_OPT_OUT_WORDS,
                    max_pages: int = 1000) -> CollectResult:
    """Drain the vendor's replies into ``inbound/<conn_id>/``; opt-outs join the suppression list.

    Per page the suppression file is written first, then the replies: should
    the process die in between, the number is still never messaged again.
    """
    words = tuple(opt_out_words)
    result = CollectResult(conn_id, client.vendor, "inbound")
    if not client.supports(Capability.INBOUND):
        result.skip("no_inbound_pull")
        log.info("%s", result.summary())
        return result

    def store(page: Sequence[Any]) -> None:
        table = reports.inbound_table(page, conn_id=conn_id, vendor=client.vendor,
                                      source=SOURCE, opt_out_words=words)
        added = add_opt_outs(root, conn_id, table)
        result.opt_outs += added.opt_outs
        result.suppressed += added.suppressed
        for reason, count in added.skipped.items():
            result.skip(reason, count)
        result.paths += added.paths
        result.paths += reports.append(root, "inbound", conn_id, table, prefix=SOURCE)
        result.rows += table.num_rows

    _drain(client.pull_inbound, store, result, max_pages)
    log.info("%s", result.summary())
    return result


# --- vendor statistics and balances ----------------------------------------------------
def collect_statistics(client: VendorClient, root: DataRoot, conn_id: str, *, days: int = 7,
                       today: date | None = None, now: datetime | None = None
                       ) -> CollectResult:
    """The vendor's own daily counts for the ``days`` days up to ``today`` (China date).

    One call covers the window (the vendor allows 31 days and 3 calls a
    minute); a rate-limited call is skipped, not waited for: the next run
    fetches the same days again. Later files supersede earlier ones per day
    (``fetched_at``), since today's and recent counts still move.
    """
    result = CollectResult(conn_id, client.vendor, "statistics")
    if not client.supports(Capability.STATISTICS):
        result.skip("no_statistics")
        log.info("%s", result.summary())
        return result
    widest = client.profile.limits.statistics_days or days
    if not 1 <= days <= widest:
        raise ValueError(f"days must be between 1 and {widest}, got {days}")
    fetched = _now(now)
    end = today or fetched.astimezone(CHINA_TZ).date()
    start = end - timedelta(days=days - 1)
    try:
        stats = client.statistics(start, end)
    except RateLimitedError as exc:
        result.skip("rate_limited")
        log.warning("statistics %s: rate limited, skipped this run (next slot in %.0f s): %s",
                    conn_id, exc.retry_after, exc)
        return result
    result.calls = 1
    if not stats:
        result.skip("no_data")
        log.info("%s", result.summary())
        return result
    table = pa.table({
        "conn_id": [conn_id] * len(stats),
        "day": [s.day for s in stats],
        "submitted": [s.submitted for s in stats],
        "delivered": [s.delivered for s in stats],
        "failed": [s.failed for s in stats],
        "unknown": [s.unknown for s in stats],
        "fetched_at": [epoch_ms(fetched)] * len(stats),
    }, schema=DAILY_STATISTIC_SCHEMA)
    result.paths.append(root.write_table(table, "statistics", conn_id, "daily",
                                         _file_name("daily")))
    result.pages, result.rows = 1, table.num_rows
    log.info("%s", result.summary())
    return result


def snapshot_balance(client: VendorClient, root: DataRoot, conn_id: str, *,
                     now: datetime | None = None) -> CollectResult:
    """One row per balance the vendor reports (Chuanglan: one per product)."""
    result = CollectResult(conn_id, client.vendor, "balance")
    if not client.supports(Capability.BALANCE):
        result.skip("no_balance_call")
        log.info("%s", result.summary())
        return result
    balances = client.balance()
    result.calls = 1
    taken_at = epoch_ms(_now(now))
    table = pa.table({
        "conn_id": [conn_id] * len(balances),
        "amount": [str(b.amount) for b in balances],
        "unit": [b.unit for b in balances],
        "product": [b.product for b in balances],
        "gift": [None if b.gift is None else str(b.gift) for b in balances],
        "taken_at": [taken_at] * len(balances),
    }, schema=BALANCE_SCHEMA)
    if table.num_rows:
        result.paths.append(root.write_table(table, "statistics", conn_id, "balance",
                                             _file_name("balance")))
        result.pages, result.rows = 1, table.num_rows
    log.info("%s", result.summary())
    return result
