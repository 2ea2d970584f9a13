"""Airflow DAG ``sms_reports``: collect delivery data from every vendor connection."""

from sms_provider.delivery_dags import build_reports_dag

dag = build_reports_dag()
