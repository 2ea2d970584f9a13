"""A campaign's closing counts: rows per dataset, submissions per status, and where they are.

What the summary task logs and hands on through XCom: counts and paths only.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from sms_provider.data.storage import DataRoot

DATASETS = ("prepared", "rejected", "submissions")


def campaign_summary(root: DataRoot, campaign_id: str) -> dict[str, Any]:
    """Rows and path of each dataset, ``by_status`` of the submissions when there are
    any, and ``input_rows`` (prepared + rejected: every input row is one or the other)."""
    out: dict[str, Any] = {"campaign_id": campaign_id}
    for name in DATASETS:
        parts = root.campaign(campaign_id, name)
        table = root.read_dataset(*parts) if root.list_files(*parts) else None
        out[name] = table.num_rows if table is not None else 0
        out[f"{name}_path"] = root.path(*parts)
        if name == "submissions" and table is not None and table.num_rows:
            out["by_status"] = {r["values"]: r["counts"]
                                for r in pc.value_counts(table["status"]).to_pylist()}
    out["input_rows"] = out["prepared"] + out["rejected"]
    return out
