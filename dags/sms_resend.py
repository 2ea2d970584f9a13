"""Airflow DAG ``sms_resend``: send a campaign's failures again through another
connection, as attempt 2, 3, ... (docs/routing.md)."""

from sms_provider.dag_builders.resend import build_resend_dag

dag = build_resend_dag()
