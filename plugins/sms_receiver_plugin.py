"""Airflow plugin: mounts the SMS push receiver on the Airflow API server.

Vendors then push to ``<api-server>/sms-receiver/...``. The same app runs
standalone with ``python -m sms_provider.receiver`` where vendors must not
reach Airflow. Without ``SMS_RECEIVER_CONFIG`` nothing is mounted.

The app is built when the API server first asks for it, not when the module is
imported: every task process imports the plugins (for their macros), and
building the receiver there cost each task about two seconds of CPU.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin


def _apps() -> list[dict]:
    if not os.environ.get("SMS_RECEIVER_CONFIG"):
        return []
    from sms_provider.operators.runtime import data_root
    from sms_provider.receiver.app import app_from_env

    return [{"app": app_from_env(data_root()), "url_prefix": "/sms-receiver",
             "name": "SMS push receiver"}]


class _BuiltWhenRead:
    """A class attribute computed on first read (from the class or an instance)."""

    def __init__(self) -> None:
        self.apps: list[dict] | None = None

    def __get__(self, instance: object, owner: type) -> list[dict]:
        if self.apps is None:
            self.apps = _apps()
        return self.apps


class SmsReceiverPlugin(AirflowPlugin):
    name = "sms_receiver"
    fastapi_apps = _BuiltWhenRead()
