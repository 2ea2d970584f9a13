"""Attempts of a campaign: where a resend keeps its data, and the columns it adds.

The campaign itself is attempt 1. Attempt ``n`` (``sms_resend``) is a campaign of
its own for the send ledger and the data root, ``<campaign_id>/attempt-<n>``: its
``prepared/``, ``rejected/`` (the recipients it does not send again, with why),
``submissions/`` and reconciliation live in ``campaigns/<campaign_id>/attempt-<n>/``,
so the ledger's exactly-once holds for a resend as for any campaign, and a second
run of the same resend sends nothing.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from sms_provider.data.completion import is_unfinished
from sms_provider.data.storage import DataRoot

ATTEMPT_FOLDER = re.compile(r"^attempt-([2-9]|[1-9][0-9]+)$")

#: what an attempt's ``prepared/`` and ``submissions/`` carry beyond their schema
ATTEMPT_FIELDS = [
    pa.field("attempt", pa.int32()),                # 2, 3, ...: the campaign was 1
    pa.field("previous_message_id", pa.string()),   # the vendor's id of the last attempt
    pa.field("previous_conn_id", pa.string()),      # the connection of the last attempt
]
ATTEMPT_COLUMNS = [f.name for f in ATTEMPT_FIELDS]


def attempt_id(campaign_id: str, attempt: int) -> str:
    """The ledger campaign and the folder of attempt ``attempt`` (1: the campaign)."""
    return campaign_id if attempt == 1 else f"{campaign_id}/attempt-{attempt}"


def parent_of(campaign_id: str) -> tuple[str, int]:
    """``(campaign, attempt)`` of a campaign or attempt id."""
    head, _, tail = campaign_id.rpartition("/")
    found = ATTEMPT_FOLDER.match(tail) if head else None
    return (head, int(found.group(1))) if found else (campaign_id, 1)


def attempts_of(root: DataRoot, campaign_id: str) -> list[int]:
    """The resend attempts (2, 3, ...) whose prepare finished, in order."""
    found = []
    for info in root.fs.get_file_info(_selector(root, campaign_id)):
        match = ATTEMPT_FOLDER.match(info.base_name)
        if match and info.type == pafs.FileType.Directory and not is_unfinished(
                root, attempt_id(campaign_id, int(match.group(1)))):
            found.append(int(match.group(1)))
    return sorted(found)


def _selector(root: DataRoot, campaign_id: str) -> pafs.FileSelector:
    return pafs.FileSelector(root.path(*root.campaign(campaign_id)), allow_not_found=True)


def with_attempt_columns(submissions: pa.Table, shard: pa.Table) -> pa.Table:
    """A resend shard's submissions with its ``attempt`` columns, joined by row number;
    a campaign's own shard (no such columns) unchanged."""
    if not all(name in shard.column_names for name in ATTEMPT_COLUMNS):
        return submissions
    where = pc.index_in(submissions["row_number"], value_set=shard["row_number"])
    for f in ATTEMPT_FIELDS:
        submissions = submissions.append_column(f, pc.take(shard[f.name], where))
    return submissions
