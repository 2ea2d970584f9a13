"""Builds the campaign DAG: ``sms_campaign`` (triggered with a conf) and one DAG per
campaign file (scheduled). The DAG files in ``dags/`` only call these builders.

prepare -> check_balance -> fms_template -> send_window -> send (mapped over shards)
-> summary. Templates render as text, not native objects, so every id, content, path
and column name reaches its task as the exact string given; the operators convert the
few typed fields (``dry_run``, counts) themselves (``sms_provider.operators.values``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

from sms_provider.campaign_config import CampaignFileError, CampaignSpec, load_campaign
from sms_provider.operators.campaign import (
    CampaignSummaryOperator,
    CheckBalanceOperator,
    PrepareRecipientsOperator,
    SendShardOperator,
    SendWindowOperator,
    TemplateApprovalOperator,
)

DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=30)}
ENV_RETRY_DELAY = "SMS_TASK_RETRY_DELAY"


def default_args() -> dict[str, Any]:
    """:data:`DEFAULT_ARGS`, the retry delay taken from ``SMS_TASK_RETRY_DELAY`` (seconds).

    Read where the DAG is parsed (the dag-processor), which is what the scheduler
    schedules a retry by; a cluster test shortens it to see a retry on another worker.
    """
    text = os.environ.get(ENV_RETRY_DELAY, "").strip()
    if not text:
        return dict(DEFAULT_ARGS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0:
        raise ValueError(f"{ENV_RETRY_DELAY} must be a number of seconds, 0 or more, "
                         f"not {text!r}")
    return {**DEFAULT_ARGS, "retry_delay": timedelta(seconds=seconds)}


def campaign_params(defaults: dict[str, Any] | None = None) -> dict[str, Param]:
    d = {"campaign_id": "", "recipients": "", "conn_id": "sms_eums", "content": "",
         "mobile_column": "mobile", "template_id": None, "dry_run": False, **(defaults or {})}
    return {
        "campaign_id": Param(d["campaign_id"], type="string", minLength=1, maxLength=100,
                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", title="Campaign id",
                             description="Names the output folder and the send ledger "
                             "entries: reuse it only to rerun the same campaign."),
        "recipients": Param(d["recipients"], type="string", minLength=1,
                            title="Recipients file",
                            description="Path or URI of a CSV (UTF-8, UTF-8 with BOM, GBK) "
                            "or Parquet file."),
        "conn_id": Param(d["conn_id"], type="string", minLength=1, title="Vendor connection",
                         description="An emay_ims, emay_fms, eims, eums or chuanglan "
                         "connection."),
        "content": Param(d["content"], type="string", minLength=1, title="Content",
                         description="{column} placeholders are filled from the recipient "
                         "file; for Emay FMS the text is the template.",
                         format="multiline"),
        "mobile_column": Param(d["mobile_column"], type="string", minLength=1,
                               title="Mobile column"),
        "template_id": Param(d["template_id"], type=["null", "string"],
                             title="FMS template id",
                             description="Emay FMS only: an approved template to use "
                             "instead of registering the content."),
        "dry_run": Param(d["dry_run"], type="boolean", title="Dry run",
                         description="Do everything but the HTTP sends."),
    }


def build_campaign_dag(dag_id: str, *, schedule: Any = None,
                       start_date: datetime | None = None,
                       defaults: dict[str, Any] | None = None,
                       quiet_hours: dict[str, str] | None = None,
                       campaign_id_template: str = "{{ params.campaign_id }}",
                       description: str = "", fileloc: str | None = None,
                       tags: list[str] | None = None) -> DAG:
    with DAG(dag_id, schedule=schedule, start_date=start_date or datetime(2026, 1, 1),
             catchup=False, params=campaign_params(defaults), default_args=default_args(),
             max_active_runs=1,
             description=description or "Send an SMS campaign exactly once",
             tags=tags or ["sms"], doc_md=__doc__) as dag:
        conn = "{{ params.conn_id }}"
        prepare = PrepareRecipientsOperator(
            task_id="prepare", campaign_id=campaign_id_template,
            recipients="{{ params.recipients }}", sms_conn_id=conn,
            content="{{ params.content }}", mobile_column="{{ params.mobile_column }}")
        balance = CheckBalanceOperator(
            task_id="check_balance", sms_conn_id=conn,
            estimated_items="{{ ti.xcom_pull(task_ids='prepare', key='summary')"
                            "['estimated_items'] }}")
        template = TemplateApprovalOperator(
            task_id="fms_template", sms_conn_id=conn, content="{{ params.content }}",
            template_id="{{ params.template_id or '' }}",  # null renders as "", not "None"
            poll_interval=float(os.environ.get("SMS_FMS_POLL_INTERVAL", "30")))
        window = SendWindowOperator(task_id="send_window", quiet_hours=quiet_hours)
        send = SendShardOperator.partial(
            task_id="send", campaign_id=campaign_id_template, sms_conn_id=conn,
            template_id=template.output, dry_run="{{ params.dry_run }}",
            max_active_tis_per_dagrun=4,
        ).expand(shard=prepare.output)
        summary = CampaignSummaryOperator(task_id="summary", campaign_id=campaign_id_template)
        prepare >> balance >> template >> window >> send >> summary
    if fileloc:
        dag.fileloc = fileloc
    return dag


class BrokenCampaignDag(DAG):
    """Stands for a malformed campaign file: Airflow records its validation error as the
    import error of the generating file, naming the campaign file and field, while every
    other DAG of that file still loads."""

    def __init__(self, dag_id: str, error: CampaignFileError) -> None:
        super().__init__(dag_id, schedule=None, start_date=datetime(2026, 1, 1))
        self._error = error

    def validate(self) -> None:
        raise self._error


def campaign_dags(folder: Path) -> dict[str, DAG]:
    """One DAG per campaign file; a broken file yields a DAG that fails validation."""
    dags: dict[str, DAG] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            spec = load_campaign(path)
        except CampaignFileError as exc:
            dag_id = f"sms_campaign__invalid__{path.stem}"
            dags[dag_id] = BrokenCampaignDag(dag_id, exc)
            continue
        dags[spec.dag_id] = scheduled_dag(spec)
    return dags


def scheduled_dag(spec: CampaignSpec) -> DAG:
    if spec.cron:
        # A recurring campaign sends afresh each run: its id carries the run's time.
        schedule: Any = spec.cron
        campaign_id = (spec.campaign_id +
                       "-{{ logical_date.strftime('%Y%m%dT%H%M') if logical_date else "
                       "run_id[-15:] }}")
        start = datetime(2026, 1, 1)
    else:
        schedule, campaign_id, start = "@once", "{{ params.campaign_id }}", spec.start_at
    return build_campaign_dag(
        spec.dag_id, schedule=schedule, start_date=start, defaults=spec.conf,
        quiet_hours=spec.quiet_hours.as_dict() if spec.quiet_hours else None,
        campaign_id_template=campaign_id, description=spec.description or
        f"Scheduled campaign from {spec.path.name}", tags=["sms", "scheduled"])
