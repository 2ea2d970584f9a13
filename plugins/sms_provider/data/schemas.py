"""The columns of each campaign dataset, in one place: the analyst's contract."""

from __future__ import annotations

import pyarrow as pa

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
])

#: ``campaigns/<id>/rejected/``: one row per input row that will not be sent
REJECTED_SCHEMA = pa.schema([
    ("row_number", pa.int64()),
    ("raw_value", pa.string()),     # the mobile cell as it was in the file
    ("reason", pa.string()),        # a stable code, see README
    ("detail", pa.string()),
])

#: ``campaigns/<id>/submissions/``: one row per prepared recipient once sent
SUBMISSION_SCHEMA = pa.schema([
    ("campaign_id", pa.string()),
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
