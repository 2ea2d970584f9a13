"""``[core] hostname_callable`` for the loopback cluster: each worker process reports
the host name the stack gave it (``SMS_CLUSTER_HOSTNAME``), so two Celery workers on
one machine look like two hosts to Airflow (task instances record where they ran)."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("SMS_CLUSTER_HOSTNAME") or socket.getfqdn()
