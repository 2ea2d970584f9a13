"""What every simulated vendor provides to the dispatcher and the push worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import requests

from sms_provider.simulator.http import SimRequest, SimResponse
from sms_provider.simulator.state import Inbound, Message, SimState, VendorState

log = logging.getLogger(__name__)

Handler = Callable[[SimRequest], SimResponse]


class VendorSimulator:
    """Base class: one subclass per vendor, registered in ``simulator.app``."""

    name = ""
    #: where a request names its account (header, query, form or JSON field), for the
    #: arrival log (``/_sim/requests``)
    account_field = ""

    def __init__(self, sim: SimState, config: dict[str, Any]) -> None:
        self.sim = sim
        self.config = config
        self.state: VendorState = sim.vendor(self.name)
        self.push_url: str | None = config.get("push_url")
        self.mo_push_url: str | None = config.get("mo_push_url")
        self._http = requests.Session()

    def routes(self) -> dict[str, Handler]:
        """Exact URL path -> handler. Handlers check the method themselves."""
        raise NotImplementedError

    def rate_limited(self, req: SimRequest) -> SimResponse:
        """The vendor's own answer to a request that came too fast."""
        return SimResponse.text("too many requests", 429)

    def push_reports(self, messages: list[Message]) -> bool:
        """Deliver reports to ``push_url`` in the vendor's format; True when acknowledged."""
        return True

    def push_mo(self, replies: list[Inbound]) -> bool:
        """Deliver replies to ``mo_push_url``; True when acknowledged."""
        return True

    def _post_ok(self, method: str, url: str, **kwargs: Any) -> bool:
        """Send one push; any 2xx counts as acknowledged, anything else is retried."""
        try:
            resp = self._http.request(method, url, timeout=10, **kwargs)
        except requests.RequestException as exc:
            log.warning("%s push to %s failed: %s", self.name, url.split("?")[0],
                        type(exc).__name__)
            return False
        if not 200 <= resp.status_code < 300:
            log.warning("%s push to %s answered %s", self.name, url.split("?")[0],
                        resp.status_code)
            return False
        return True
