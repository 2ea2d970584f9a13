"""Whether a campaign's ``prepared/`` and ``rejected/`` datasets are whole.

``prepare`` writes the marker ``campaigns/<id>/_prepare_unfinished`` before it
changes either dataset and removes it only once every file is written (and,
on a local disk, synced), so a prepare that fails or is killed partway leaves
the marker behind. Readers of the prepared data (send, reconcile) refuse a
campaign that has it: a later run never takes part of a dataset for the whole,
or a new ``prepared/`` for the match of an old ``rejected/``. Both datasets
live in separate folders and object stores cannot rename folders, so one
marker works everywhere where a rename would not.

A campaign without the marker reads as before: datasets written by earlier
versions, or seeded by hand, stay readable.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sms_provider.data.storage import DataRoot

MARKER = "_prepare_unfinished"


class UnfinishedPrepareError(RuntimeError):
    """The campaign's last prepare did not finish: its datasets may be partial."""

    def __init__(self, root: DataRoot, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        super().__init__(
            f"campaign {campaign_id}: the last prepare did not finish "
            f"({marker_path(root, campaign_id)} is there), so prepared/ and rejected/ may "
            "be partial; run prepare again")


def marker_path(root: DataRoot, campaign_id: str) -> str:
    return root.path(*root.campaign(campaign_id, MARKER))


def mark_unfinished(root: DataRoot, campaign_id: str) -> None:
    """Say, durably, that the datasets are about to change."""
    path = marker_path(root, campaign_id)
    text = (f"prepare started {datetime.now(UTC).isoformat()}; this file goes when it "
            "finishes\n").encode()
    root.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if root.is_local:
        with open(path, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return
    with root.fs.open_output_stream(path) as handle:
        handle.write(text)


def mark_finished(root: DataRoot, campaign_id: str) -> None:
    root.fs.delete_file(marker_path(root, campaign_id))


def is_unfinished(root: DataRoot, campaign_id: str) -> bool:
    return root.exists(*root.campaign(campaign_id, MARKER))


def require_finished(root: DataRoot, campaign_id: str) -> None:
    """Raise :class:`UnfinishedPrepareError` when the campaign's datasets may be partial."""
    if is_unfinished(root, campaign_id):
        raise UnfinishedPrepareError(root, campaign_id)
