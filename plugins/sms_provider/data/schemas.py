"""The columns of each campaign dataset, in one place: the analyst's contract."""

from __future__ import annotations

import pyarrow as pa

#: money: exact decimals, six places (prices are given to at most six)
MONEY = pa.decimal128(18, 6)

#: ``campaigns/<id>/prepared/``: one row per recipient that will be sent to
PREPARED_SCHEMA = pa.schema([
    ("row_number", pa.int64()),     # 1-based data row of the input file
    ("mobile", pa.string()),        # in the vendor's own format
    ("e164", pa.string()),          # digits, with country code, no '+'
    ("content", pa.string()),       # the rendered text
    ("variables", pa.string()),     # FMS: JSON object of template variables
    ("charge_items", pa.int32()),   # estimate: 70 characters one item, 67 a piece beyond
    ("custom_id", pa.string()),     # our id for vendors that keep one per message
    ("shard", pa.int32()),
    ("carrier", pa.string()),       # China Mobile | China Unicom | China Telecom | other:
    #                                 the carrier assigned the number range (an estimate:
    #                                 ported numbers keep their first carrier)
])

#: ``campaigns/<id>/routing/``: which connection sends which shard, and its estimate
ROUTING_SCHEMA = pa.schema([
    ("shard", pa.int32()),
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("prepared", pa.int64()),
    ("estimated_items", pa.int64()),
])

#: ``campaigns/<id>/moves/``: failover, per send task: recipients that left a connection
#: that was down for the next one (the send ledger's ``sms_send_moves``, as data)
MOVES_SCHEMA = pa.schema([
    ("move_id", pa.int64()),
    ("source_shard", pa.int32()),
    ("source_conn", pa.string()),
    ("target_conn", pa.string()),
    ("target_shard", pa.int32()),       # the moved recipients' shard in submissions/
    ("chunks", pa.string()),            # the source chunk indices, comma-separated
    ("recipients", pa.int64()),
    ("reason", pa.string()),
    ("moved_at", pa.float64()),         # Unix time
])

#: ``campaigns/<id>/rejected/``: one row per input row that will not be sent
REJECTED_SCHEMA = pa.schema([
    ("row_number", pa.int64()),
    ("raw_value", pa.string()),     # the mobile cell as it was in the file
    ("reason", pa.string()),        # a stable code, see docs/analyst-guide.md
    ("detail", pa.string()),
])

#: ``campaigns/<id>/submissions/``: one row per prepared recipient once sent
SUBMISSION_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("conn_id", pa.string()),       # the connection it went through (reports are per connection)
    ("vendor", pa.string()),
    ("shard", pa.int32()),
    ("chunk", pa.int32()),          # the request within the shard
    ("row_number", pa.int64()),
    ("mobile", pa.string()),
    ("message_id", pa.string()),    # the vendor's id (Chuanglan: one per request)
    ("custom_id", pa.string()),     # Emay custom id, EUMS reference (per request)
    ("charge_items", pa.int32()),   # as the vendor billed, where it says
    ("vendor_code", pa.string()),
    ("status", pa.string()),        # submitted | rejected | ambiguous | dry_run
    ("description", pa.string()),
    ("submitted_at", pa.timestamp("ms", tz="UTC")),
])

# --- delivery data (account level, per connection) -----------------------------------

#: ``reports/<conn_id>/date=YYYY-MM-DD/*.parquet`` (date = UTC day we received it)
REPORT_SCHEMA = pa.schema([
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("message_id", pa.string()),
    ("custom_id", pa.string()),     # Emay custom id / EUMS reference, where the vendor has one
    ("mobile", pa.string()),
    ("raw_state", pa.string()),     # the vendor's own state code
    ("status", pa.string()),        # DELIVERED | FAILED | PENDING | UNKNOWN
    ("description", pa.string()),
    ("submit_time", pa.timestamp("ms", tz="UTC")),
    ("report_time", pa.timestamp("ms", tz="UTC")),
    ("received_at", pa.timestamp("ms", tz="UTC")),   # when it reached us
    ("source", pa.string()),        # pull | push
    ("raw", pa.string()),           # the vendor's payload for this report, JSON
    ("report_key", pa.string()),    # identical for a replayed or re-pulled copy: dedupe on it
])

#: ``inbound/<conn_id>/date=YYYY-MM-DD/*.parquet``
INBOUND_SCHEMA = pa.schema([
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("mobile", pa.string()),
    ("content", pa.string()),
    ("received_time", pa.timestamp("ms", tz="UTC")),  # the vendor's time of the reply
    ("destination", pa.string()),
    ("message_id", pa.string()),
    ("reference", pa.string()),
    ("opt_out", pa.bool_()),
    ("received_at", pa.timestamp("ms", tz="UTC")),
    ("source", pa.string()),
    ("raw", pa.string()),
    ("inbound_key", pa.string()),
])

#: ``statistics/<conn_id>/daily/*.parquet``: the vendor's own daily counts (EUMS)
DAILY_STATISTIC_SCHEMA = pa.schema([
    ("conn_id", pa.string()),
    ("day", pa.date32()),
    ("submitted", pa.int64()),
    ("delivered", pa.int64()),
    ("failed", pa.int64()),
    ("unknown", pa.int64()),
    ("fetched_at", pa.timestamp("ms", tz="UTC")),
])

#: ``statistics/<conn_id>/balance/*.parquet``: balance snapshots
BALANCE_SCHEMA = pa.schema([
    ("conn_id", pa.string()),
    ("amount", pa.string()),        # decimal as text: money balances must not round
    ("unit", pa.string()),          # items | money
    ("product", pa.string()),
    ("gift", pa.string()),
    ("taken_at", pa.timestamp("ms", tz="UTC")),
])

#: ``suppression/*.parquet``: numbers prepare drops (opt-outs and any list you add)
SUPPRESSION_SCHEMA = pa.schema([
    ("e164", pa.string()),
    ("reason", pa.string()),        # e.g. "opt_out: TD"
    ("conn_id", pa.string()),
    ("added_at", pa.timestamp("ms", tz="UTC")),
])

# --- reconciliation (per campaign) -----------------------------------------------------

#: ``campaigns/<id>/reconciliation/``: one row per prepared recipient
RECONCILIATION_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("row_number", pa.int64()),
    ("mobile", pa.string()),
    ("message_id", pa.string()),
    ("custom_id", pa.string()),
    ("submission_status", pa.string()),  # submitted | rejected | ambiguous; null: never sent
    ("final_status", pa.string()),       # DELIVERED | FAILED | PENDING | UNKNOWN | REJECTED
    #                                      (never sent: PENDING, reason not_submitted/dry_run)
    ("reason", pa.string()),             # vendor state / rejection code for FAILED, REJECTED
    ("charge_items", pa.int32()),
    ("submitted_at", pa.timestamp("ms", tz="UTC")),
    ("report_time", pa.timestamp("ms", tz="UTC")),
    ("latency_s", pa.float64()),         # report_time - submitted_at
    ("reports_seen", pa.int32()),        # distinct reports received (a status change is a
    #                                      second one; a replayed or re-pulled copy, same
    #                                      report_key, is not)
    ("settled_by", pa.string()),         # message_id | custom_id | mobile | none
    ("carrier", pa.string()),            # as prepared (an estimate, see PREPARED_SCHEMA)
    ("price_per_item", MONEY),           # in force at submitted_at (prices file); null: none
    ("currency", pa.string()),
    ("charge_amount", MONEY),            # charge_items x price_per_item
])

#: ``campaigns/<id>/final/``: one row per prepared recipient across every attempt (the
#: campaign is attempt 1, each ``sms_resend`` the next); written once a resend was made
FINAL_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("row_number", pa.int64()),
    ("mobile", pa.string()),             # as the campaign prepared it
    ("final_status", pa.string()),       # DELIVERED if any attempt delivered, else the
    #                                      last attempt's
    ("attempts", pa.int32()),            # attempts that reached a vendor
    ("last_attempt", pa.int32()),        # the last attempt it was part of
    ("delivered_attempt", pa.int32()),   # the attempt that delivered it; null: none
    ("conn_id", pa.string()),            # of the deciding attempt
    ("message_id", pa.string()),
    ("charge_items", pa.int32()),        # over every attempt
    ("charge_items_per_attempt", pa.list_(pa.int32())),  # [attempt 1, attempt 2, ...]
    ("currency", pa.string()),
    ("charge_amount", MONEY),            # over every attempt, where priced
])

#: ``campaigns/<id>/attempts/``: one row per recipient and attempt
ATTEMPT_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("attempt", pa.int32()),
    ("row_number", pa.int64()),
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("message_id", pa.string()),
    ("previous_message_id", pa.string()),  # the previous attempt's; null for attempt 1
    ("submission_status", pa.string()),
    ("final_status", pa.string()),
    ("reason", pa.string()),
    ("charge_items", pa.int32()),
    ("currency", pa.string()),
    ("charge_amount", MONEY),
    ("submitted_at", pa.timestamp("ms", tz="UTC")),
])

#: ``campaigns/<id>/reconciliation_summary/``: one row per China day of submission;
#: ``day`` null holds what never reached the vendor (invalid rows, unsent recipients)
SUMMARY_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("day", pa.date32()),
    ("input_rows", pa.int64()),      # valid + invalid
    ("invalid", pa.int64()),         # rejected by prepare (``rejected/``)
    ("valid", pa.int64()),           # prepared
    ("submitted", pa.int64()),       # submission status
    ("rejected", pa.int64()),
    ("ambiguous", pa.int64()),
    ("not_submitted", pa.int64()),   # no submission yet, or a dry run
    ("delivered", pa.int64()),       # final status of submitted + ambiguous
    ("failed", pa.int64()),
    ("pending", pa.int64()),
    ("unknown", pa.int64()),
    ("charge_items_submitted", pa.int64()),  # submitted + ambiguous settled by a report
])

#: ``campaigns/<id>/discrepancies/``; ``count``: the size of the gap (reports,
#: messages or charge items, as ``detail`` says), signed where a direction matters
DISCREPANCY_SCHEMA = pa.schema([
    ("kind", pa.string()),
    ("conn_id", pa.string()),
    ("key", pa.string()),
    ("detail", pa.string()),
    ("count", pa.int64()),
    ("amount", MONEY),              # the gap in money, where a price tells it
])

#: ``campaigns/<id>/overview/``: one row per connection the campaign went through; the
#: index page lists these
OVERVIEW_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("first_submitted_at", pa.timestamp("ms", tz="UTC")),
    ("last_submitted_at", pa.timestamp("ms", tz="UTC")),
    ("recipients", pa.int64()),      # prepared rows on this connection (unsent: the first)
    ("sent", pa.int64()),            # submitted + ambiguous
    ("delivered", pa.int64()),
    ("failed", pa.int64()),
    ("pending", pa.int64()),
    ("unknown", pa.int64()),
    ("rejected", pa.int64()),
    ("charge_items", pa.int64()),    # charged (submitted + ambiguous settled)
    ("currency", pa.string()),
    ("estimated_amount", MONEY),     # every prepared row's items at the price in force
    #                                  at the first submission (before sending: now)
    ("spend", MONEY),                # charged items at the price in force when sent
    ("cost_per_delivered", MONEY),   # spend / delivered
    ("balance_unit", pa.string()),   # money | items: how the vendor keeps the balance
    ("discrepancies", pa.int64()),   # discrepancy rows on this connection
    ("generated_at", pa.timestamp("ms", tz="UTC")),
])

#: ``campaigns/<id>/carriers/``: delivery per connection and carrier
CARRIER_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
    ("conn_id", pa.string()),
    ("vendor", pa.string()),
    ("carrier", pa.string()),
    ("sent", pa.int64()),
    ("delivered", pa.int64()),
    ("failed", pa.int64()),
    ("pending", pa.int64()),         # pending + unknown: no final report
    ("delivery_rate", pa.float64()),  # delivered / sent
    ("latency_p50_s", pa.float64()),
    ("latency_p90_s", pa.float64()),
    ("top_failure_reason", pa.string()),
    ("spend", MONEY),
])
