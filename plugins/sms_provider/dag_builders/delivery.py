"""Builds ``sms_reports`` (collect delivery data per connection, on a schedule) and
``sms_reconcile`` (on new delivery data, or on demand for one campaign)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from sms_provider.operators.delivery import (
    DELIVERY_DATA,
    CollectDeliveryDataOperator,
    CompactPushesOperator,
    ReconcileOperator,
)

DEFAULT_CONNECTIONS = "sms_emay_ims,sms_emay_fms,sms_eims,sms_eums,sms_chuanglan"


def report_connections() -> list[str]:
    raw = os.environ.get("SMS_REPORT_CONNECTIONS", DEFAULT_CONNECTIONS)
    return [c.strip() for c in raw.split(",") if c.strip()]


def build_reports_dag(dag_id: str = "sms_reports") -> DAG:
    with DAG(dag_id, schedule=os.environ.get("SMS_REPORTS_SCHEDULE", "*/5 * * * *"),
             start_date=datetime(2026, 1, 1), catchup=False, max_active_runs=1,
             default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
             params={"conn_ids": Param(report_connections(), type="array",
                                       title="Connections to collect from")},
             tags=["sms"], description="Collect delivery reports, replies, statistics") as dag:

        @task
        def connections(params: dict | None = None) -> list[str]:
            """The configured connections that exist (a missing one is skipped, loudly)."""
            from airflow.sdk import BaseHook

            found = []
            for conn_id in (params or {}).get("conn_ids") or report_connections():
                try:
                    BaseHook.get_connection(conn_id)
                except Exception:
                    print(f"connection {conn_id!r} is not configured: skipped")
                    continue
                found.append(conn_id)
            return found

        collect = CollectDeliveryDataOperator.partial(task_id="collect").expand(
            sms_conn_id=connections())
        compact = CompactPushesOperator(task_id="compact_pushes")
        collect >> compact
    return dag


def build_reconcile_dag(dag_id: str = "sms_reconcile") -> DAG:
    """Templates render as text (see ``sms_provider.operators.values``): a campaign id
    reaches the task as given, and the operator converts the hours itself."""
    hours = float(os.environ.get("SMS_FINAL_WINDOW_HOURS", "72"))
    with DAG(dag_id, schedule=[DELIVERY_DATA], start_date=datetime(2026, 1, 1),
             catchup=False, max_active_runs=1,
             params={"campaign_id": Param(None, type=["null", "string"],
                                          title="Campaign id (empty: every campaign)"),
                     "final_window_hours": Param(hours, type="number", exclusiveMinimum=0,
                                                 title="Hours before a silent message is "
                                                 "UNKNOWN")},
             tags=["sms"], description="Reconcile campaigns against delivery data") as dag:
        ReconcileOperator(task_id="reconcile",
                          campaign_id="{{ params.campaign_id or '' }}",  # null: every one
                          final_window_hours="{{ params.final_window_hours }}")
    return dag
