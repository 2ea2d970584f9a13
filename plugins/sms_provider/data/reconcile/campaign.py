"""Reconciling one campaign (or all): read, match, settle, check, write.

Nothing here depends on arrival order: each run reads everything there is and
recomputes the answer, and rerunning later only ever settles more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data import html_report
from sms_provider.data.completion import is_unfinished, require_finished
from sms_provider.data.memory import release, returned_memory
from sms_provider.data.prices import PriceBook
from sms_provider.data.reconcile.accounts import AccountCache
from sms_provider.data.reconcile.balance import balance_steps
from sms_provider.data.reconcile.columns import distinct, ints
from sms_provider.data.reconcile.discrepancies import find_discrepancies
from sms_provider.data.reconcile.index import write_index
from sms_provider.data.reconcile.matching import SUB_COLUMNS
from sms_provider.data.reconcile.money import carrier_table, overview_table, price_rows
from sms_provider.data.reconcile.outcomes import (
    CampaignPart,
    Settings,
    reconcile_rows,
    summary_table,
)
from sms_provider.data.reconcile.reading import list_campaigns, read
from sms_provider.data.reconcile.slices import write_recipient_rows
from sms_provider.data.reconcile.statuses import DiscrepancyKind
from sms_provider.data.reconcile.writer import (
    discrepancy_preview,
    latency_histogram,
    write_dataset,
    write_text,
)
from sms_provider.data.resend.attempts import attempt_id, attempts_of, parent_of
from sms_provider.data.schemas import (
    PREPARED_SCHEMA,
    REJECTED_SCHEMA,
    SUBMISSION_SCHEMA,
    SUMMARY_SCHEMA,
)
from sms_provider.data.storage import DataRoot

DEFAULT_FINAL_WINDOW = timedelta(hours=72)


@dataclass
class ReconcileResult:
    """Counts and output paths of one campaign's reconciliation."""

    campaign_id: str
    counts: dict[str, int] = field(default_factory=dict)
    discrepancies: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    #: per connection: sent, delivered, spend, cost per delivered (``overview/`` rows)
    money: list[dict[str, Any]] = field(default_factory=list)
    #: per connection and carrier: delivery rate, latency (``carriers/`` rows)
    carriers: list[dict[str, Any]] = field(default_factory=list)
    #: with resends: per attempt and connection, what it delivered and cost
    attempts: list[dict[str, Any]] = field(default_factory=list)


def reconcile_campaign(root: DataRoot, campaign_id: str, *,
                       final_window: timedelta = DEFAULT_FINAL_WINDOW,
                       now: datetime | None = None,
                       statistics_tolerance: float = 0.01,
                       balance_tolerance: Decimal | int = 0,
                       price_per_item: Mapping[str, Any] | Decimal | str | float | None = None,
                       prices: PriceBook | None = None,
                       accounts: AccountCache | None = None,
                       slice_rows: int | None = None) -> ReconcileResult:
    """Write ``reconciliation/``, ``reconciliation_summary/``, ``discrepancies/`` and
    ``report.html`` for one campaign; return the counts and paths.

    ``statistics_tolerance``: share of the vendor's daily submitted count by which
    its delivered/failed may differ from ours (reports still in flight on either
    side). ``balance_tolerance``: charge items a balance step may be off by.
    ``prices``: the price file (:class:`~sms_provider.data.prices.PriceBook`), each
    row priced at the price in force when it was submitted; ``price_per_item`` (one
    price, or per conn_id, valid for ever) is the older shorthand. Without a price
    money balances (EIMS) are not checked and nothing has an amount. ``slice_rows``: prepared
    rows per slice of the per-recipient outputs (``slices.SLICE_ROWS``); the outputs are the
    same whatever it is.
    """
    with returned_memory():
        return _reconcile(root, campaign_id, final_window=final_window, now=now,
                          statistics_tolerance=statistics_tolerance,
                          balance_tolerance=balance_tolerance, price_per_item=price_per_item,
                          prices=prices, accounts=accounts, slice_rows=slice_rows)


def _reconcile(root: DataRoot, campaign_id: str, *, final_window: timedelta,
               now: datetime | None, statistics_tolerance: float,
               balance_tolerance: Decimal | int,
               price_per_item: Mapping[str, Any] | Decimal | str | float | None,
               prices: PriceBook | None, accounts: AccountCache | None,
               slice_rows: int | None) -> ReconcileResult:
    """The body of :func:`reconcile_campaign`, run with its allocator."""
    now = now or datetime.now(UTC)
    settings = Settings(
        final_window_ms=int(final_window.total_seconds() * 1000),
        now_ms=int(now.timestamp() * 1000),
        statistics_tolerance=statistics_tolerance,
        balance_tolerance=Decimal(balance_tolerance),
        prices=prices if prices is not None else PriceBook.constant(price_per_item))
    require_finished(root, campaign_id)  # a partial prepared/ would count rows as unsent
    own_cache = accounts is None
    accounts = accounts if accounts is not None else AccountCache()
    # a campaign with resends: each attempt first, as a campaign of its own
    attempts = attempts_of(root, campaign_id) if parent_of(campaign_id)[1] == 1 else []
    for attempt in attempts:
        reconcile_campaign(root, attempt_id(campaign_id, attempt), final_window=final_window,
                           now=now, statistics_tolerance=statistics_tolerance,
                           balance_tolerance=balance_tolerance, prices=settings.prices,
                           accounts=accounts)

    # the numbers for the whole campaign; the text a slice at a time (``slices``)
    prepared = read(root, root.campaign(campaign_id, "prepared"), PREPARED_SCHEMA,
                    ["row_number", "charge_items"])
    invalid = read(root, root.campaign(campaign_id, "rejected"), REJECTED_SCHEMA,
                   ["row_number"]).num_rows
    own = read(root, root.campaign(campaign_id, "submissions"), SUBMISSION_SCHEMA,
               SUB_COLUMNS, numbers=["message_id"])
    parts = [CampaignPart(accounts.get_account(root, conn, campaign_id, own), campaign_id)
             for conn in _connections(own["conn_id"])]
    del own  # the accounts hold what they need
    release()  # what building them freed

    rows = reconcile_rows(prepared, parts, settings)
    prepared = prepared.select(["charge_items"])  # the row numbers have found their rows
    release()  # what finding the rows freed
    pricing = price_rows(parts, rows, settings.prices)
    written = write_recipient_rows(root, campaign_id, parts, rows, pricing, settings, now,
                                   slice_rows=slice_rows)
    release()  # what the slices and their writer threads freed
    summary = summary_table(campaign_id, rows, invalid)
    discrepancies = find_discrepancies(root, parts, written.charged_never_reported, settings)
    latency = latency_histogram(rows)
    overview = overview_table(campaign_id, parts, rows, pricing,
                              ints(prepared["charge_items"]), settings.prices, discrepancies,
                              now)
    carriers = carrier_table(campaign_id, parts, rows, pricing, written.carrier,
                             written.failures)
    steps = [step for p in parts for step in balance_steps(
        root, p.account, p.submitted_ms[p.submitted_ms >= 0], settings.prices)]
    del parts, rows, pricing
    if own_cache:
        accounts.clear()  # what the outputs still need, they hold: let the rest go first

    resend: list[dict[str, Any]] = []
    paths: dict[str, str] = {}
    if attempts:
        from sms_provider.data.resend.across import across_attempts, attempt_summary

        final, by_attempt = across_attempts(root, campaign_id, attempts)
        paths["final"] = write_dataset(root, final, campaign_id, "final")
        paths["attempts"] = write_dataset(root, by_attempt, campaign_id, "attempts")
        resend = attempt_summary(by_attempt)
        del final, by_attempt
    paths |= {
        "reconciliation": written.paths["reconciliation"],
        "reconciliation_summary": write_dataset(root, summary, campaign_id,
                                                "reconciliation_summary"),
        "discrepancies": write_dataset(root, discrepancies, campaign_id, "discrepancies"),
        "overview": write_dataset(root, overview, campaign_id, "overview"),
        "carriers": write_dataset(root, carriers, campaign_id, "carriers"),
        "shared_reconciliation": written.paths["shared_reconciliation"],
    }
    totals = {name: int(pc.sum(summary[name]).as_py() or 0)
              for name in SUMMARY_SCHEMA.names[2:]}
    by_kind = {kind: 0 for kind in DiscrepancyKind.ALL}
    for kind in discrepancies["kind"].to_pylist():
        by_kind[kind] += 1
    html = html_report.render(
        campaign_id=campaign_id, generated_at=now, totals=totals,
        failure_reasons=written.failures.reasons(),
        latency_counts=latency, latency_edges=html_report.LATENCY_EDGES_S,
        summary=summary.to_pylist(), discrepancies=discrepancy_preview(discrepancies),
        discrepancy_totals=by_kind, final_window_hours=final_window.total_seconds() / 3600,
        money=overview.to_pylist(), carriers=carriers.to_pylist(),
        carrier_failures=written.failures.by_carrier(),
        balance=[step.as_row() for step in steps], attempts=resend)
    paths["report_html"] = write_text(root, html, *root.campaign(campaign_id, "report.html"))
    return ReconcileResult(campaign_id=campaign_id, counts=totals, discrepancies=by_kind,
                           paths=paths, money=overview.to_pylist(),
                           carriers=carriers.to_pylist(), attempts=resend)


def reconcile_all(root: DataRoot, campaign_ids: Iterable[str] | None = None,
                  **options: Any) -> dict[str, ReconcileResult]:
    """Reconcile every campaign under ``campaigns/`` (or the given ones), reading each
    connection's submissions and reports once; ``options`` as for ``reconcile_campaign``.

    Then the index page (``campaigns/index.html``) is rewritten over every campaign's
    ``overview/``. Going over every campaign, one whose prepare is unfinished is left out (it has
    nothing whole to reconcile yet); named, it raises ``UnfinishedPrepareError``.
    """
    cache = AccountCache()
    ids = (list(campaign_ids) if campaign_ids is not None else
           [cid for cid in list_campaigns(root) if not is_unfinished(root, cid)])
    results = {cid: reconcile_campaign(root, cid, accounts=cache, **options) for cid in ids}
    write_index(root, options.get("now"))
    return results


def _connections(conn_ids: pa.ChunkedArray) -> list[str | None]:
    """The connections a campaign went through (None: files from before conn_id existed)."""
    values: list[str | None] = [v for v in distinct(conn_ids) if v]
    if conn_ids.null_count or "" in distinct(conn_ids):
        values.append(None)
    return values
