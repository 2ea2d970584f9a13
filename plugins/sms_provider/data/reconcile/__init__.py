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
reports for a message the last DELIVERED/FAILED one (by report time, then
arrival) decides; PENDING and UNKNOWN reports never override a final one. No
final report within ``final_window`` of the submission makes a message UNKNOWN.

Account-level checks (unknown reports, vendor statistics, balance) are computed
over the submissions of every campaign on the connection, then reported for
the days and balance intervals this campaign touched, so a campaign's report
stays about that campaign.

Everything runs column-wise (Arrow and NumPy), never a Python loop per row, and
the per-recipient outputs are built and written a slice of rows at a time, so
the biggest table (``reconciliation/``) is never whole in memory
(``bench/reconcile.py`` measures ten million recipients against ten million
reports; docs/reconcile-internals.md says what is streamed and why).

The modules, each importing only those above it:

- ``statuses``: the codes and words written (final status, settled by, kinds)
- ``columns``: Arrow/NumPy column helpers; ``reading``: reading datasets
- ``matching``: which columns identify a message per vendor, and key lookup
- ``accounts``: one connection's submissions matched with its reports
- ``outcomes``: the per-recipient ``reconciliation/`` rows and the summary
- ``tallies``: FAILED rows by connection, carrier and reason, counted slice by slice
- ``balance``: balance movements, in items and in money (prices in force when sent)
- ``discrepancies``: where the vendor's books and ours disagree
- ``money``: per-row prices, carriers, ``overview/`` and ``carriers/``
- ``shared``: the cross-campaign ``reconciliation/month=…/vendor=…/`` dataset
- ``writer``: the Parquet outputs and what ``report.html`` shows
- ``slices``: the per-recipient outputs built and written a slice at a time
- ``index``: ``campaigns/index.html`` over every campaign's ``overview/``
- ``campaign``: ``reconcile_campaign`` and ``reconcile_all`` put them together
"""

from sms_provider.data.reconcile.accounts import Account, AccountCache
from sms_provider.data.reconcile.campaign import (
    DEFAULT_FINAL_WINDOW,
    ReconcileResult,
    reconcile_all,
    reconcile_campaign,
)
from sms_provider.data.reconcile.matching import custom_key, message_key
from sms_provider.data.reconcile.reading import list_campaigns
from sms_provider.data.reconcile.statuses import (
    DiscrepancyKind,
    FinalStatus,
    SettledBy,
    SubmissionCode,
)
from sms_provider.data.schemas import DISCREPANCY_SCHEMA, RECONCILIATION_SCHEMA, SUMMARY_SCHEMA

__all__ = [
    "DEFAULT_FINAL_WINDOW",
    "DISCREPANCY_SCHEMA",
    "RECONCILIATION_SCHEMA",
    "SUMMARY_SCHEMA",
    "Account",
    "AccountCache",
    "DiscrepancyKind",
    "FinalStatus",
    "ReconcileResult",
    "SettledBy",
    "SubmissionCode",
    "custom_key",
    "list_campaigns",
    "message_key",
    "reconcile_all",
    "reconcile_campaign",
]
