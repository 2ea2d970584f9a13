"""The simulator process: routes requests to vendor handlers, applies faults, pushes.

Admin endpoints (all under ``/_sim/``, which no vendor uses):

* ``GET  /_sim/health``                    vendors served
* ``GET  /_sim/messages[?vendor=V]``       every accepted message
* ``GET  /_sim/count[?vendor=V]``          how many were accepted (cheap to poll)
* ``GET  /_sim/requests[?vendor=V]``       every vendor request in arrival order: vendor,
  path, method, account (never a password), time (``time.time()``)
* ``GET  /_sim/strays[?vendor=V]``         reports seeded for ids never issued
* ``GET  /_sim/balance?vendor=V``          remaining charge items
* ``GET|POST|DELETE /_sim/faults``         list / set rules (``{"rules": [...]}``) / clear
* ``POST /_sim/release``                   let requests held by ``hold`` rules go on
* ``POST /_sim/mo``                        inject a reply ``{"vendor", "mobile", "content", ...}``
* ``POST /_sim/reset``                     forget everything (optionally a new config as body)
"""

from __future__ import annotations

import importlib
import logging
import random
import threading
import time
from typing import Any

from sms_provider.simulator.arrivals import ArrivalLog
from sms_provider.simulator.faults import FaultBook, FaultRule
from sms_provider.simulator.http import (
    DropConnection,
    SimHTTPServer,
    SimRequest,
    SimResponse,
    make_server,
)
from sms_provider.simulator.state import SimState
from sms_provider.simulator.vendor_base import Handler, VendorSimulator

log = logging.getLogger(__name__)

VENDOR_SIMULATORS = {
    "emay_ims": "sms_provider.simulator.emay_ims:EmayImsSimulator",
    "emay_fms": "sms_provider.simulator.emay_fms:EmayFmsSimulator",
    "eims": "sms_provider.simulator.eims:EimsSimulator",
    "eums": "sms_provider.simulator.eums:EumsSimulator",
    "chuanglan": "sms_provider.simulator.chuanglan:ChuanglanSimulator",
}

GARBLED_BODY = b"\x00\xff<html>garbled \x9c\x01 response</html"


def _load(dotted: str) -> type[VendorSimulator]:
    module, _, cls = dotted.partition(":")
    return getattr(importlib.import_module(module), cls)


class Simulator:
    """All configured vendors behind one dispatcher."""

    def __init__(self, config: dict[str, Any]) -> None:
        unknown = set(config) - set(VENDOR_SIMULATORS) - {"simulation", "faults"}
        if unknown:
            raise ValueError(f"config: unknown top-level keys {sorted(unknown)}; "
                             f"expected vendors {sorted(VENDOR_SIMULATORS)}, "
                             "'simulation' or 'faults'")
        self.faults = FaultBook()
        self._lock = threading.Lock()
        self._build(config)
        self._stop = threading.Event()
        self._pusher: threading.Thread | None = None

    def _build(self, config: dict[str, Any]) -> None:
        state = SimState(config)
        vendors: dict[str, VendorSimulator] = {}
        routes: dict[str, tuple[VendorSimulator, Handler]] = {}
        for name in state.vendors:
            vsim = _load(VENDOR_SIMULATORS[name])(state, config[name])
            vendors[name] = vsim
            for path, handler in vsim.routes().items():
                routes[path] = (vsim, handler)
        self.faults.set([FaultRule.from_json(r) for r in config.get("faults", [])])
        with self._lock:
            self.config, self.state, self.vendors, self.routes = config, state, vendors, routes
            self._push_attempts: dict[tuple[str, str], int] = {}
            self.arrivals = ArrivalLog()

    # --- request handling ------------------------------------------------
    def dispatch(self, req: SimRequest) -> SimResponse:
        if req.path.startswith("/_sim/"):
            return self._admin(req)
        arrived = time.time()
        found = self.routes.get(req.path) or self.routes.get(req.path.rstrip("/"))
        if found is None:
            return SimResponse.text(f"no such path {req.path}", 404)
        vsim, handler = found
        self.arrivals.record(vsim.name, req, vsim.account_field, arrived)
        rule = self.faults.pick(vsim.name, req.path)
        if rule is None:
            return handler(req)
        kind = rule.kind
        if kind == "latency":
            time.sleep(rule.latency_s)
            return handler(req)
        if kind == "hold":
            rule.hold()
            return handler(req)
        if kind == "drop":
            raise DropConnection
        if kind == "rate_limit":
            return vsim.rate_limited(req)
        if kind == "status" and not rule.after:
            return SimResponse.text(f"simulated HTTP {rule.status}", rule.status)
        resp = handler(req)  # the vendor acts on the request ...
        if kind == "accept_drop":
            raise DropConnection  # ... and the answer is lost
        if kind == "garble":
            return SimResponse(200, GARBLED_BODY, resp.headers, resp.content_type)
        return SimResponse.text(f"simulated HTTP {rule.status}", rule.status)

    def _admin(self, req: SimRequest) -> SimResponse:
        action = req.path[len("/_sim/"):].strip("/")
        if action == "health":
            return SimResponse.json({"status": "ok", "vendors": sorted(self.vendors)})
        if action == "messages":
            return SimResponse.json(self.state.all_messages(req.query.get("vendor")))
        if action == "requests":
            return SimResponse.json(self.arrivals.entries(req.query.get("vendor")))
        if action == "strays":
            vendor = req.query.get("vendor")
            out = []
            for name, vs in self.state.vendors.items():
                if not vendor or name == vendor:
                    with vs.lock:
                        out.extend(m.as_json() for m in vs.strays)
            return SimResponse.json(out)
        if action == "count":
            vendor = req.query.get("vendor")
            return SimResponse.json({"count": sum(
                len(vs.messages) for name, vs in self.state.vendors.items()
                if not vendor or name == vendor)})
        if action == "balance":
            vendor = req.query.get("vendor", "")
            if vendor not in self.state.vendors:
                return SimResponse.json({"error": f"vendor {vendor!r} not configured"}, 404)
            return SimResponse.json({"vendor": vendor,
                                     "balance": self.state.vendor(vendor).balance})
        if action == "faults":
            if req.method == "DELETE":
                self.faults.clear()
            elif req.method == "POST":
                try:
                    body = req.json()
                    rules = [FaultRule.from_json(r) for r in body.get("rules", [])]
                except (ValueError, TypeError, AttributeError) as exc:
                    return SimResponse.json({"error": str(exc)}, 400)
                (self.faults.set if body.get("replace", True) else self.faults.add)(rules)
            return SimResponse.json({"rules": self.faults.rules()})
        if action == "release" and req.method == "POST":
            return SimResponse.json({"released": self.faults.release()})
        if action == "mo" and req.method == "POST":
            body = req.json()
            vendor = body.get("vendor", "")
            if vendor not in self.state.vendors:
                return SimResponse.json({"error": f"vendor {vendor!r} not configured"}, 404)
            mo = self.state.vendor(vendor).add_mo(
                str(body["mobile"]), str(body["content"]), str(body.get("destination", "")),
                str(body.get("reference", "")))
            return SimResponse.json({"seq": mo.seq})
        if action == "reset" and req.method == "POST":
            try:
                self._build(req.json() if req.body else self.config)
            except (ValueError, KeyError, TypeError) as exc:
                return SimResponse.json({"error": f"bad config: {exc}"}, 400)
            return SimResponse.json({"status": "reset"})
        return SimResponse.json({"error": f"unknown admin call {req.method} {req.path}"}, 404)

    # --- pushing -----------------------------------------------------------
    def push_once(self) -> int:
        """One round of report and MO pushes for vendors that have a push URL."""
        pushed = 0
        for _name, vsim in list(self.vendors.items()):
            settings = vsim.state.settings
            if vsim.push_url:
                batch = vsim.state.take_due_reports(int(settings["push_batch"]))
                if batch:
                    pushed += len(batch)
                    self._push_reports(vsim, batch, settings)
            if vsim.mo_push_url:
                replies = vsim.state.take_mo(int(settings["push_batch"]))
                if replies and not vsim.push_mo(replies):
                    vsim.state.return_mo(replies)  # kept for the next round
        return pushed

    def _push_reports(self, vsim: VendorSimulator, batch: list, settings: dict) -> None:
        rng = random.Random(f"{settings['seed']}:{vsim.name}:{batch[0].message_id}")
        wire = list(batch)
        dup = float(settings["duplicate_report_rate"])
        if dup:
            wire += [m for m in batch if rng.random() < dup]
            rng.shuffle(wire)
        if vsim.push_reports(wire):
            return
        retry = []
        for m in batch:
            key = (vsim.name, m.message_id + "|" + m.mobile)
            self._push_attempts[key] = self._push_attempts.get(key, 0) + 1
            if self._push_attempts[key] < int(settings["push_attempts"]):
                retry.append(m)
            else:
                log.warning("%s gave up pushing report for %s", vsim.name, m.message_id)
        vsim.state.return_reports(retry)

    def _push_loop(self) -> None:
        interval = float(self.state.simulation["push_interval_s"])
        while not self._stop.wait(interval):
            try:
                self.push_once()
            except Exception:  # keep pushing whatever one vendor does
                log.exception("push round failed")

    def start_pusher(self) -> None:
        self._pusher = threading.Thread(target=self._push_loop, name="sim-pusher",
                                        daemon=True)
        self._pusher.start()

    def stop(self) -> None:
        self._stop.set()

    def make_server(self, host: str, port: int) -> SimHTTPServer:
        return make_server(host, port, self.dispatch)
