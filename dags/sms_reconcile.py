"""Airflow DAG ``sms_reconcile``: reconcile campaigns when new delivery data lands."""

from sms_provider.dag_builders.delivery import build_reconcile_dag

dag = build_reconcile_dag()
