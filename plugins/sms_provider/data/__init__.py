"""The data plane: recipient files in, checked numbers and send ledgers out, no Airflow."""
