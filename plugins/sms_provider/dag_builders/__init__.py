"""The DAG builders: the files under ``dags/`` call these, so a DAG file stays a line long
and every campaign DAG (manual or scheduled from a campaign file) has the same tasks."""
