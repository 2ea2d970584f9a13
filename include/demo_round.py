"""A send -> report -> balance round through every vendor, against the simulator.

Run by ``make demo``: it starts the simulator from ``include/simulator.json``
(Chuanglan only pushes its reports, so a small local receiver takes them),
drives each vendor's client over real HTTP, and prints what came back.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import requests

from sms_provider.models import DeliveryReport
from sms_provider.vendors.base import OutboundMessage
from sms_provider.vendors.chuanglan import parse_push_report
from sms_provider.vendors.registry import build_client

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PushedReports(BaseHTTPRequestHandler):
    """Receives Chuanglan's status-report GETs."""

    received: ClassVar[list[DeliveryReport]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        self.received.append(parse_push_report(query))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def start_simulator(config: dict, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    path = workdir / "simulator.demo.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen([sys.executable, "-m", "sms_provider.simulator", "--port", str(port),
                             "--config", str(path), "--log-level", "WARNING"])
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if requests.get(url + "/_sim/health", timeout=1).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the simulator did not start")


def summarise(reports: list[DeliveryReport]) -> str:
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    return ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items())) or "none yet"


def main() -> int:
    config = json.loads((HERE / "simulator.json").read_text())
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), PushedReports)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    config["chuanglan"]["push_url"] = f"http://127.0.0.1:{receiver.server_address[1]}/cl/report"
    workdir = HERE.parent / "data"
    workdir.mkdir(exist_ok=True)
    proc, url = start_simulator(config, workdir)
    host, port = url.rsplit(":", 1)
    conn = {"host": host, "port": int(port)}
    mainland = ["13800138000", "13900139001", "15000150002", "18600186003"]
    try:
        rows = []
        # Emay IMS: international numbers, personalised content, secure mode with gzip.
        ims = config["emay_ims"]
        with build_client("emay_ims", **conn, login=ims["app_id"], password=ims["secret_key"],
                          extras={"mode": "secure", "gzip": "true"}) as c:
            subs = c.send([OutboundMessage(f"0086{m}", f"【Demo】Hello {i}", f"ims-demo-{i}")
                           for i, m in enumerate(mainland)])
            time.sleep(1.2)
            rows.append(("emay_ims", len(subs), summarise(c.pull_reports()), "no balance call"))
        # Emay FMS: register a template, wait for carrier approval, send with variables.
        fms = config["emay_fms"]
        with build_client("emay_fms", **conn, login=fms["app_id"], password=fms["secret_key"],
                          extras={"mode": "secure"}) as c:
            template = c.register_template("【Demo】${name}, your code is ${code}")
            while not c.query_template(template.template_id).decided:
                time.sleep(0.3)
            subs = c.send([OutboundMessage(m, custom_id=f"fms-demo-{i}",
                                           variables={"name": f"user{i}", "code": str(1000 + i)})
                           for i, m in enumerate(mainland)], template_id=template.template_id)
            time.sleep(1.2)
            rows.append(("emay_fms", len(subs), summarise(c.pull_reports()),
                         str(c.balance()[0].amount)))
        # EIMS: international digits, reports queried by message id.
        eims = config["eims"]
        with build_client("eims", **conn, login=eims["account"], password=eims["password"]) as c:
            subs = c.send([OutboundMessage(f"86{m}", "【Demo】Your parcel has shipped")
                           for m in mainland])
            time.sleep(1.2)
            reports = c.query_reports([s.message_id for s in subs if s.message_id])
            rows.append(("eims", len(subs), summarise(reports), f"{c.balance()[0].amount} (money)"))
        # EUMS: AES mode (ver=17), charge items reported per number.
        eums = config["eums"]
        with build_client("eums", **conn, login=eums["name"], password=eums["password"],
                          extras={"ver": "17", "aes_key": eums["aes_key"]}) as c:
            subs = c.send([OutboundMessage(m, "【Demo】Spring sale starts tomorrow", "eums-demo-1")
                           for m in mainland])
            time.sleep(1.2)
            rows.append(("eums", len(subs), summarise(c.pull_reports()),
                         str(c.balance()[0].amount)))
        # Chuanglan: one msgid per request, reports pushed to our receiver.
        cl = config["chuanglan"]
        with build_client("chuanglan", **conn, login=cl["account"], password=cl["password"]) as c:
            subs = c.send([OutboundMessage(m, "【Demo】Your appointment is confirmed")
                           for m in mainland])
            time.sleep(1.5)
            rows.append(("chuanglan", len(subs), summarise(PushedReports.received),
                         ", ".join(f"{b.product}:{b.amount}" for b in c.balance())))
    finally:
        proc.terminate()
        proc.wait(5)
        receiver.shutdown()
    print()
    print(f"{'vendor':<10} {'accepted':>8}  {'reports':<40} balance")
    for vendor, accepted, reports, balance in rows:
        print(f"{vendor:<10} {accepted:>8}  {reports:<40} {balance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
