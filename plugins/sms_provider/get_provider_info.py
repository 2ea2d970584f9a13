"""Provider metadata, found by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from sms_provider import __version__
from sms_provider.connection_fields import conn_fields, field_behaviour
from sms_provider.vendors.profiles import PROFILES


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "sms-provider",
        "name": "SMS campaigns",
        "description": "Batch SMS campaigns over Emay IMS/FMS, EIMS, EUMS and Chuanglan.",
        "versions": [__version__],
        "integrations": [{"integration-name": "SMS campaigns", "tags": ["service"]}],
        "hooks": [{"integration-name": "SMS campaigns",
                   "python-modules": ["sms_provider.hooks.sms"]}],
        "operators": [{"integration-name": "SMS campaigns",
                       "python-modules": ["sms_provider.operators.campaign"]}],
        "triggers": [{"integration-name": "SMS campaigns",
                      "python-modules": ["sms_provider.triggers.template"]}],
        "connection-types": [
            {
                "connection-type": conn_type,
                "hook-class-name": f"sms_provider.hooks.sms.{profile.hook_class}",
                "hook-name": profile.label,
                "ui-field-behaviour": field_behaviour(conn_type),
                "conn-fields": conn_fields(conn_type),
            }
            for conn_type, profile in PROFILES.items()
        ],
    }
