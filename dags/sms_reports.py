"""Airflow DAG ``sms_reports``: collect delivery data from every vendor connection."""

from sms_provider.dag_builders.delivery import build_reports_dag

dag = build_reports_dag()
