"""Batch SMS campaigns on Airflow: vendor clients, simulator, data plane, provider."""

__version__ = "0.1.0"
