"""A dry run's submissions: every prepared recipient planned as the send would, none sent.

The rows carry the chunk and custom id the real send would use (the same
planning), so a dry run shows what would go out, request by request; their
status is :attr:`~sms_provider.models.SubmissionStatus.DRY_RUN`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sms_provider.data.schemas import SUBMISSION_SCHEMA
from sms_provider.data.send import plan_chunks
from sms_provider.models import SubmissionStatus

DESCRIPTION = "dry run: not sent"


def dry_run_submissions(table: pa.Table, *, campaign_id: str, conn_id: str, vendor: str,
                        shard: int, max_batch: int, personalised: bool,
                        custom_id_scope: str | None) -> pa.Table:
    """The shard's submissions as a dry run writes them (``SUBMISSION_SCHEMA``)."""
    chunks = plan_chunks(table, campaign_id=campaign_id, shard=shard, max_batch=max_batch,
                         personalised=personalised, custom_id_scope=custom_id_scope)
    n = sum(len(chunk) for chunk in chunks)
    if chunks:
        planned = pa.concat_tables([chunk.rows for chunk in chunks])
    else:
        planned = pa.table({"row_number": pa.array([], pa.int64()),
                            "mobile": pa.array([], pa.string()),
                            "custom_id": pa.array([], pa.string())})
    where = pc.index_in(planned["row_number"], value_set=pc.cast(table["row_number"],
                                                                 pa.int64()))
    field = SUBMISSION_SCHEMA.field

    def constant(name: str, value: object) -> pa.Array:
        return pa.repeat(pa.scalar(value, field(name).type), n)

    return pa.table({
        "campaign_id": constant("campaign_id", campaign_id),
        "conn_id": constant("conn_id", conn_id), "vendor": constant("vendor", vendor),
        "shard": constant("shard", shard),
        "chunk": np.repeat(np.array([c.index for c in chunks], dtype=np.int32),
                           [len(c) for c in chunks]),
        "row_number": planned["row_number"], "mobile": planned["mobile"],
        "message_id": constant("message_id", None), "custom_id": planned["custom_id"],
        "charge_items": pc.take(table["charge_items"], where),
        "vendor_code": constant("vendor_code", None),
        "status": constant("status", SubmissionStatus.DRY_RUN.value),
        "description": constant("description", DESCRIPTION),
        "submitted_at": constant("submitted_at", None),
    }, schema=SUBMISSION_SCHEMA)
