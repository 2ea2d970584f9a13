"""Builds ``sms_resend``: a campaign's failures sent once more through another connection.

select (which recipients, as attempt ``n``'s ``prepared/``) -> check_balance -> send
(the campaign's send task, mapped over the attempt's shards, on the ledger campaign
``<campaign_id>/attempt-<n>``) -> summary. Reconcile the campaign afterwards
(``sms_reports``, then ``sms_reconcile``): it reconciles every attempt and writes
``final/`` and ``attempts/`` (docs/routing.md).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from sms_provider.dag_builders.campaign import default_args
from sms_provider.operators.campaign import (
    CampaignSummaryOperator,
    CheckBalanceOperator,
    SendShardOperator,
)
from sms_provider.operators.resend import ResendSelectOperator

_SUMMARY = "ti.xcom_pull(task_ids='select', key='summary')"


def resend_params() -> dict[str, Param]:
    reasons = {"type": ["null", "array"], "items": {"type": "string", "minLength": 1}}
    return {
        "campaign_id": Param("", type="string", minLength=1, maxLength=100,
                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", title="Campaign id",
                             description="The campaign whose failures to send again."),
        "conn_id": Param("sms_chuanglan", type="string", minLength=1,
                         title="Vendor connection",
                         description="The connection to resend through (usually another "
                         "than the campaign's)."),
        "statuses": Param(["FAILED"], type="array",
                          items={"type": "string",
                                 "enum": ["FAILED", "UNKNOWN", "PENDING"]},
                          title="Final statuses to resend"),
        "include_reasons": Param(None, **reasons, title="Only these failures",
                                 description="Failure classes (carrier, vendor, content, "
                                 "frequency, unclassified) or vendor states; default: "
                                 "carrier and vendor failures."),
        "exclude_reasons": Param(None, **reasons, title="Never these failures"),
        "attempt": Param(2, type="integer", minimum=2, title="Attempt",
                         description="2 for the first resend; the next number for another "
                         "resend after that one was reconciled."),
        "dry_run": Param(False, type="boolean", title="Dry run"),
    }


def build_resend_dag(dag_id: str = "sms_resend") -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             params=resend_params(), default_args=default_args(), max_active_runs=1,
             description="Resend a campaign's failures through another connection",
             tags=["sms"], doc_md=__doc__) as dag:
        attempt_campaign = "{{ " + _SUMMARY + "['attempt_campaign_id'] }}"
        select = ResendSelectOperator(
            task_id="select", campaign_id="{{ params.campaign_id }}",
            sms_conn_id="{{ params.conn_id }}", statuses="{{ params.statuses | tojson }}",
            include_reasons="{{ params.include_reasons | tojson }}",
            exclude_reasons="{{ params.exclude_reasons | tojson }}",
            attempt="{{ params.attempt }}")
        balance = CheckBalanceOperator(
            task_id="check_balance", sms_conn_id="{{ params.conn_id }}",
            estimated_items="{{ " + _SUMMARY + "['estimated_items'] }}",
            routes="{{ " + _SUMMARY + "['routes'] | tojson }}")
        send = SendShardOperator.partial(
            task_id="send", campaign_id=attempt_campaign, dry_run="{{ params.dry_run }}",
            max_active_tis_per_dagrun=4).expand_kwargs(select.output)
        summary = CampaignSummaryOperator(task_id="summary", campaign_id=attempt_campaign)
        select >> balance >> send >> summary
    return dag
