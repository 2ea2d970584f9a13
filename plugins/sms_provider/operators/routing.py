"""The campaign's connections as routes: each connection asked, through its hook and
client, what prepare must know (vendor, content limit, templates).

Decisions about a recipient are made in :mod:`sms_provider.data.routing` from
the profiles; nothing here tests a vendor's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from sms_provider.hooks.sms import hook_for_connection
from sms_provider.operators.values import json_value
from sms_provider.vendors.base import Capability

if TYPE_CHECKING:
    from sms_provider.data.routing import Route


def conn_ids_of(sms_conn_id: str | None, sms_conn_ids: Any) -> list[str]:
    """The run's connections: ``conn_ids`` when given, else ``[conn_id]``."""
    from sms_provider.data.routing import RoutingError, conn_list

    try:
        return conn_list(sms_conn_id, json_value(sms_conn_ids, "conn_ids"))
    except RoutingError as exc:
        raise AirflowFailException(str(exc)) from None


def weights_of(conn_ids: Sequence[str], weights: Any) -> dict[str, int]:
    from sms_provider.data.routing import RoutingError, check_weights

    try:
        return check_weights(conn_ids, json_value(weights, "weights"))
    except RoutingError as exc:
        raise AirflowFailException(str(exc)) from None


def build_routes(conn_ids: Sequence[str], weights: Mapping[str, int], content: str, *,
                 template_campaign: bool) -> list[Route]:
    """One route per connection, in order, each described by its own client."""
    from sms_provider.data.content import ContentTemplate
    from sms_provider.data.routing import Route, RoutingError, plan_routes

    routes = []
    for conn_id in conn_ids:
        with hook_for_connection(conn_id).get_client() as client:
            templates = client.supports(Capability.TEMPLATES)
            routes.append(Route(
                conn_id=conn_id, vendor=client.vendor,
                max_content_chars=getattr(client, "max_content_chars", None),
                templates=templates,
                template_variables=(ContentTemplate.parse(content).variables
                                    if templates and content else None),
                weight=weights.get(conn_id, 0)))
    try:
        return list(plan_routes(routes, template_campaign=template_campaign).routes)
    except RoutingError as exc:
        raise AirflowFailException(str(exc)) from None


def routes_of(value: Any) -> list[dict[str, Any]]:
    """The per-route figures prepare wrote to its summary XCom (rendered ``| tojson``)."""
    routes = json_value(value, "routes")
    if routes is None:
        return []
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise AirflowFailException(f"routes must be a list of objects, got {routes!r}")
    return routes
