"""Which connection each recipient goes through: the routing of a multi-vendor campaign.

A campaign names an ordered list of connections (``conn_ids``, the first
preferred). A recipient goes to the first connection that can take it, as the
connection's vendor profile says: a number outside mainland China only where
the profile sends abroad, a template campaign only where the profile has
templates, content no longer than the connection's limit. Optional ``weights``
split the recipients that several weighted connections can all take; the split
hashes the campaign id with the recipient's number, so a rerun (or a prepare
run again on the same file) splits exactly the same way, and a recipient never
changes connection between runs.

Everything here is a pure function of its inputs; no vendor is tested by name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sms_provider.vendors.profiles import profile_of

if TYPE_CHECKING:  # numpy is imported where used: campaign files are checked at DAG parse
    import numpy as np


class RoutingError(ValueError):
    """The routing conf cannot work (no connection, a weight for an unlisted one...)."""


@dataclass(frozen=True)
class Route:
    """One connection a campaign may send through, with what prepare must know of it."""

    conn_id: str
    vendor: str
    max_content_chars: int | None = None
    #: FMS-style: the content is a template, recipients' columns go as variables
    templates: bool = False
    template_variables: Sequence[str] | None = None
    weight: int = 0

    @property
    def sends_abroad(self) -> bool:
        return profile_of(self.vendor).sends_abroad


@dataclass(frozen=True)
class RoutePlan:
    """The routes of one campaign, in preference order, checked."""

    routes: tuple[Route, ...]
    #: True when the campaign needs a template (``template_id`` given)
    template_campaign: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def conn_ids(self) -> list[str]:
        return [route.conn_id for route in self.routes]

    @property
    def any_abroad(self) -> bool:
        return any(route.sends_abroad for route in self.routes)


def conn_list(conn_id: str | None, conn_ids: Sequence[str] | None) -> list[str]:
    """``conn_ids`` as given, else ``[conn_id]``: the single connection is a list of one.

    Refuses an empty list, a non-text entry, and a connection named twice.
    """
    if conn_ids:
        if isinstance(conn_ids, str) or not isinstance(conn_ids, Sequence):
            raise RoutingError(f"conn_ids must be a list of connection ids, not {conn_ids!r}")
        ids = list(conn_ids)
    elif conn_id:
        ids = [conn_id]
    else:
        raise RoutingError("give conn_id or conn_ids: the connection(s) to send through")
    for value in ids:
        if not isinstance(value, str) or not value.strip():
            raise RoutingError(f"conn_ids: {value!r} is not a connection id (text)")
    dupes = sorted({value for value in ids if ids.count(value) > 1})
    if dupes:
        raise RoutingError(f"conn_ids names {', '.join(dupes)} more than once")
    return [value.strip() for value in ids]


def check_weights(conn_ids: Sequence[str], weights: Mapping[str, object] | None
                  ) -> dict[str, int]:
    """Weights as whole non-negative numbers, each for a listed connection."""
    if not weights:
        return {}
    if not isinstance(weights, Mapping):
        raise RoutingError(f"weights must be an object of connection id to number, "
                           f"not {weights!r}")
    out: dict[str, int] = {}
    for conn, value in weights.items():
        if conn not in conn_ids:
            raise RoutingError(f"weights: {conn!r} is not in conn_ids ({', '.join(conn_ids)})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                isinstance(value, float) and not value.is_integer()):
            raise RoutingError(f"weights[{conn!r}]: expected a whole number ≥ 0, "
                               f"not {value!r}")
        out[conn] = int(value)
    if not any(out.values()):
        raise RoutingError("weights: at least one weight must be above 0")
    return out


def plan_routes(routes: Sequence[Route], *, template_campaign: bool = False) -> RoutePlan:
    """Check the routes as a whole: at least one, and one with templates where needed."""
    if not routes:
        raise RoutingError("no connection to send through")
    if template_campaign and not any(route.templates for route in routes):
        raise RoutingError(
            "template_id is given, but no connection in conn_ids "
            f"({', '.join(r.conn_id for r in routes)}) has templates")
    if sum(route.templates for route in routes) > 1:
        raise RoutingError("conn_ids names more than one connection with templates: one "
                           "template approval per campaign is supported")
    return RoutePlan(tuple(routes), template_campaign)


def _seed(campaign_id: str) -> np.uint64:
    import numpy as np

    return np.uint64(int.from_bytes(
        hashlib.sha256(campaign_id.encode("utf-8")).digest()[:8], "little"))


def split_points(campaign_id: str, keys: np.ndarray) -> np.ndarray:
    """Per number key (E.164 digits as int64), a point in [0, 1) from the campaign id and
    the number: splitmix64, vectorised, so ten million rows cost one pass."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) ^ _seed(campaign_id)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign(eligible: np.ndarray, weights: Sequence[int], points: np.ndarray) -> np.ndarray:
    """Per row, the index of the route it goes to, -1 where none can take it.

    ``eligible`` is rows × routes (bool). Rows that some weighted route can take are
    split among the weighted routes they can take, in proportion to the weights, by
    their ``points``; the others go to the first route that can take them.
    """
    import numpy as np

    rows, n_routes = eligible.shape
    chosen = np.full(rows, -1, dtype=np.int16)
    if rows == 0 or n_routes == 0:
        return chosen
    first = np.argmax(eligible, axis=1)
    any_route = eligible.any(axis=1)
    chosen[any_route] = first[any_route]
    w = np.asarray(weights, dtype=np.float64)
    if not (w > 0).any():
        return chosen
    weighted = eligible & (w > 0)
    bits = (weighted.astype(np.int64) << np.arange(n_routes, dtype=np.int64)).sum(axis=1)
    for pattern in np.unique(bits[bits > 0]).tolist():
        rows_here = bits == pattern
        members = [r for r in range(n_routes) if pattern >> r & 1]
        edges = np.cumsum(w[members]) / w[members].sum()
        pick = np.searchsorted(edges, points[rows_here], side="right")
        chosen[rows_here] = np.asarray(members, dtype=np.int16)[np.minimum(pick,
                                                                           len(members) - 1)]
    return chosen


def no_route_detail(routes: Sequence[Route], foreign: bool) -> str:
    """The detail of a recipient no connection can take: which ones were asked."""
    names = ", ".join(route.conn_id or route.vendor for route in routes)
    if foreign:
        return f"number outside mainland China; no connection in conn_ids sends abroad ({names})"
    return f"no connection in conn_ids can take this recipient ({names})"
