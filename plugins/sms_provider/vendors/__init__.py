"""One module per vendor protocol; none of them imports Airflow."""
