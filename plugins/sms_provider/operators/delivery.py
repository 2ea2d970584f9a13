"""Operators for delivery data: collect per connection, compact pushes, reconcile.

They publish the ``sms_delivery_data`` Asset, which schedules reconciliation
whenever new data lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context

from sms_provider.hooks.sms import hook_for_connection
from sms_provider.operators.values import optional_text, positive, text
from sms_provider.vendors.base import Capability

DELIVERY_DATA = Asset("sms_delivery_data")


class CollectDeliveryDataOperator(BaseOperator):
    """Pulls reports, replies, statistics and a balance snapshot for one connection."""

    template_fields: Sequence[str] = ("sms_conn_id",)

    def __init__(self, *, sms_conn_id: str, statistic_days: int = 7, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [DELIVERY_DATA])
        super().__init__(**kwargs)
        self.sms_conn_id = sms_conn_id
        self.statistic_days = statistic_days

    def execute(self, context: Context) -> dict[str, Any]:
        from sms_provider.data.collect import (
            collect_inbound,
            collect_reports,
            collect_statistics,
            snapshot_balance,
        )
        from sms_provider.operators.runtime import data_root

        self.sms_conn_id = text(self.sms_conn_id, "sms_conn_id")
        root = data_root()
        out: dict[str, Any] = {"conn_id": self.sms_conn_id}
        with hook_for_connection(self.sms_conn_id).get_client() as client:
            words = _opt_out_words()
            steps = [("reports", Capability.PULL_REPORTS, collect_reports),
                     ("reports", Capability.QUERY_REPORTS, collect_reports),
                     ("inbound", Capability.INBOUND,
                      lambda c, r, i: collect_inbound(c, r, i, opt_out_words=words)),
                     ("balance", Capability.BALANCE, snapshot_balance)]
            for name, capability, step in steps:
                if client.supports(capability) and name not in out:
                    out[name] = _counts(step(client, root, self.sms_conn_id))
            if client.supports(Capability.STATISTICS):
                out["statistics"] = _counts(collect_statistics(
                    client, root, self.sms_conn_id, days=self.statistic_days))
        for key, value in out.items():
            self.log.info("%-10s %s", key, value)
        return out


def _opt_out_words() -> tuple[str, ...]:
    """``SMS_OPT_OUT_WORDS`` (comma-separated) or the defaults: TD, T, 退订, STOP, ..."""
    import os

    from sms_provider.data.opt_outs import words_from_text

    return words_from_text(os.environ.get("SMS_OPT_OUT_WORDS", ""))


def _counts(result: Any) -> dict[str, int]:
    """What a step did, as the task's XCom: counts only (no paths, no objects)."""
    return dict(result.counts)


class CompactPushesOperator(BaseOperator):
    """Moves pushed reports and replies from the receiver's landing files into Parquet."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [DELIVERY_DATA])
        super().__init__(**kwargs)

    def execute(self, context: Context) -> dict[str, Any] | None:
        import os

        if not os.environ.get("SMS_RECEIVER_CONFIG"):
            self.log.info("no push receiver configured (SMS_RECEIVER_CONFIG): nothing to compact")
            return None
        from sms_provider.operators.runtime import data_root
        from sms_provider.receiver.config import ReceiverConfig
        from sms_provider.receiver.landing import compact

        result = compact(data_root(), ReceiverConfig.from_env())
        self.log.info("compacted: %s", result)
        return _counts(result)


class ReconcileOperator(BaseOperator):
    """Reconciles one campaign (``campaign_id``) or, when empty, every campaign."""

    template_fields: Sequence[str] = ("campaign_id", "final_window_hours")

    def __init__(self, *, campaign_id: str | None = None, final_window_hours: Any = 72,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.campaign_id = campaign_id
        self.final_window_hours = final_window_hours

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from datetime import timedelta

        from sms_provider.data.prices import configured_prices
        from sms_provider.data.reconcile import reconcile_all
        from sms_provider.operators.runtime import data_root

        campaign_id = optional_text(self.campaign_id, "campaign_id")
        hours = positive(self.final_window_hours, "final_window_hours")
        results = reconcile_all(data_root(), [campaign_id] if campaign_id else None,
                                final_window=timedelta(hours=hours), prices=configured_prices())
        out = []
        for result in results.values():
            summary = {"campaign_id": result.campaign_id, **result.counts,
                       "discrepancies": {k: v for k, v in result.discrepancies.items() if v},
                       "money": [_money(m) for m in result.money],
                       "by_carrier": {f"{c['conn_id']}/{c['carrier']}": {
                           "sent": c["sent"], "delivery_rate": round(c["delivery_rate"], 4),
                           "latency_p50_s": c["latency_p50_s"],
                           "top_failure_reason": c["top_failure_reason"]}
                           for c in result.carriers},
                       "report_html": result.paths.get("report_html")}
            if result.attempts:  # resends: what each attempt delivered and cost
                summary["attempts"] = [{k: (str(v) if k in ("spend", "cost_per_delivered")
                                            and v is not None else v) for k, v in a.items()}
                                       for a in result.attempts]
            self.log.info("%s", summary)
            out.append(summary)
        return out


def _money(row: dict[str, Any]) -> dict[str, Any]:
    """An overview row as XCom can carry it: decimals as text, no timestamps."""
    keys = ("conn_id", "vendor", "sent", "delivered", "charge_items", "currency", "spend",
            "estimated_amount", "cost_per_delivered")
    return {k: (None if row[k] is None else str(row[k]) if k in (
        "spend", "estimated_amount", "cost_per_delivered") else row[k]) for k in keys}
