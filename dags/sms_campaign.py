"""Airflow DAG ``sms_campaign``: send one campaign, triggered with a conf (see README)."""

from sms_provider.dag_builders.campaign import build_campaign_dag

dag = build_campaign_dag("sms_campaign")
