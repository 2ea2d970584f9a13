"""Hooks: an Airflow Connection in, a vendor client out."""
