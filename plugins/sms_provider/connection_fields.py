"""The connection form of each vendor: Airflow 3's ``conn-fields`` and field behaviour.

Made from the vendor profiles, so every extra the client takes has a form field
and no form field is ignored by the client.
"""

from __future__ import annotations

from typing import Any

from sms_provider.vendors.profiles import (
    COMMON_EXTRAS,
    PIPELINE_EXTRAS,
    SENSITIVE_EXTRAS,
    profile_of,
)

__all__ = ["SENSITIVE_EXTRAS", "conn_fields", "field_behaviour"]


def conn_fields(conn_type: str) -> dict[str, dict[str, Any]]:
    profile = profile_of(conn_type)
    pipeline = {name: extra for name, extra in PIPELINE_EXTRAS.items()
                if name != "price_per_item" or profile.bills_in_money}
    return {name: extra.form_field()
            for name, extra in {**profile.extras, **COMMON_EXTRAS, **pipeline}.items()}


def field_behaviour(conn_type: str) -> dict[str, Any]:
    profile = profile_of(conn_type)
    return {
        "hidden-fields": ["extra"],
        "relabeling": {"login": profile.login_label, "password": profile.password_label,
                       "schema": "Scheme (http/https)"},
        "placeholders": {"host": "vendor host or IP", "schema": "http"},
    }
