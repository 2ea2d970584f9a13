"""The resend's selection task: which recipients go again, and through which connection.

Wires the connection (its vendor, content limit, templates, asked of its client)
and the data root to :func:`sms_provider.data.resend.select.select_for_resend`.
The send itself is the campaign's ``SendShardOperator`` on the attempt's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from sms_provider.operators.values import json_value, text, whole


def _names(value: Any, field: str) -> list[str]:
    """A list of texts rendered with ``| tojson`` (null: none)."""
    names = json_value(value, field)
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise AirflowFailException(f"{field} must be a list of texts, got {names!r}")
    return names


class ResendSelectOperator(BaseOperator):
    """Writes the attempt's ``prepared/`` (or finds it, on a second run) and returns what
    ``send`` maps over: ``{"shard", "sms_conn_id"}`` per shard; the figures and the
    attempt's campaign id go to the ``summary`` XCom."""

    template_fields: Sequence[str] = ("campaign_id", "sms_conn_id", "statuses",
                                      "include_reasons", "exclude_reasons", "attempt")

    def __init__(self, *, campaign_id: str, sms_conn_id: str, statuses: Any = None,
                 include_reasons: Any = None, exclude_reasons: Any = None,
                 attempt: Any = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.sms_conn_id = sms_conn_id
        self.statuses = statuses
        self.include_reasons = include_reasons
        self.exclude_reasons = exclude_reasons
        self.attempt = attempt

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from sms_provider.data.resend.select import (
            ResendError,
            ResendRequest,
            select_for_resend,
        )
        from sms_provider.operators.routing import build_routes
        from sms_provider.operators.runtime import data_root

        campaign_id = text(self.campaign_id, "campaign_id")
        conn_id = text(self.sms_conn_id, "conn_id")
        [route] = build_routes([conn_id], {}, "", template_campaign=False)
        request = ResendRequest(
            campaign_id=campaign_id, target=route, attempt=whole(self.attempt, "attempt"),
            statuses=_names(self.statuses, "statuses") or ["FAILED"],
            include_reasons=_names(self.include_reasons, "include_reasons"),
            exclude_reasons=_names(self.exclude_reasons, "exclude_reasons"))
        try:
            summary = select_for_resend(data_root(), request)
        except ResendError as exc:
            raise AirflowFailException(str(exc)) from None  # a retry asks the same
        self.log.info("attempt %d of %s through %s: %d recipient(s) to resend in shard(s) "
                      "%s, %d not resent %s%s", summary.attempt, campaign_id, conn_id,
                      summary.selected, summary.shards, summary.not_resent, summary.reasons,
                      " (selected by an earlier run)" if summary.reused else "")
        context["ti"].xcom_push(key="summary", value=summary.as_dict())
        return [{"shard": shard, "sms_conn_id": conn_id} for shard in summary.shards]
