"""Start the real simulator process and talk to its admin API; build clients against
it; a sink for pushes.

Tests use these through the fixtures in ``conftest.py``: ``sim.client("eums",
ver=17)`` is the EUMS client a connection to the simulator builds, with the
default account; ``vendor_client("eims", push_sink.url)`` the same against any
other URL.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from sms_provider.vendors.base import VendorClient
from sms_provider.vendors.profiles import COMMON_EXTRAS, PROFILES
from sms_provider.vendors.registry import build_client
from sms_provider.vendors.transport import HttpSettings

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CONFIG: dict[str, Any] = {
    "emay_ims": {"app_id": "EUCP-EMY-IMS1-TEST1", "secret_key": "0123456789abcdef"},
    "emay_fms": {"app_id": "EUCP-EMY-FMS1-TEST1", "secret_key": "fedcba9876543210"},
    "eims": {"account": "eimsuser", "password": "eims-pass", "md5_key": None},
    "eums": {"name": "eumsuser", "password": "eums-pass", "aes_key": "abcdef0123456789"},
    "chuanglan": {"account": "cl-user", "password": "cl-pass"},
    "simulation": {"seed": 7, "report_delay_s": 0.0},
}


HOST = "127.0.0.1"


def credentials(vendor: str, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """The login and password of ``vendor``'s account in ``config`` (default: the
    default one), read under the keywords its profile names."""
    profile = PROFILES[vendor]
    account = (config or DEFAULT_CONFIG)[vendor]
    return account[profile.login_as], account[profile.password_as]


def vendor_client(vendor: str, url: str, **fields: Any) -> VendorClient:
    """The ``vendor`` client for ``url`` with the default account (its extras, such as
    EUMS's ``aes_key``, included), built as a connection builds it.

    ``fields`` are named as the client names them: the login and password by the
    profile's keywords (``name=``/``password=`` for EUMS), any other one an extra
    (``ver=17``, ``max_batch="10"``), so that they go through
    :func:`~sms_provider.vendors.registry.build_client` and its coercion as a
    connection's fields do. What no connection can carry goes to the profile's
    client class directly, with the transport defaults a connection gets: a test
    seam (``clock=``, ``template_text=``), or an empty login or password, which the
    registry refuses before the client's own check could.
    """
    profile = PROFILES[vendor]
    login, password = credentials(vendor)
    account = {key: value for key, value in DEFAULT_CONFIG[vendor].items()
               if key in profile.extras and value is not None}  # EUMS's aes_key
    fields = {**account, **fields}
    login = fields.pop(profile.login_as, login)
    password = fields.pop(profile.password_as, password)
    if login and password and fields.keys() <= profile.extras.keys() | COMMON_EXTRAS.keys():
        return build_client(vendor, host=url, login=login, password=password, extras=fields)
    return profile.client_class()(HttpSettings(url, account=login or None), **{
        profile.login_as: login, profile.password_as: password, **fields})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimulatorProcess:
    """``python -m sms_provider.simulator`` in a child process, with admin helpers."""

    def __init__(self, workdir: Path, config: dict[str, Any] | None = None) -> None:
        self.config = copy.deepcopy(config or DEFAULT_CONFIG)
        self.host, self.port = HOST, free_port()
        self.base_url = f"http://{self.host}:{self.port}"
        self.config_path = workdir / "simulator.json"
        self.config_path.write_text(json.dumps(self.config))
        self.log_path = workdir / "simulator.log"
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()

    def start(self) -> SimulatorProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sms_provider.simulator", "--host", "127.0.0.1",
             "--port", str(self.port), "--config", str(self.config_path),
             "--log-level", "WARNING"], stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited: {self.log_path.read_text()}")
            try:
                if self.http.get(self.base_url + "/_sim/health", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("simulator did not come up within 20 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()

    def client(self, vendor: str, **fields: Any) -> VendorClient:
        """The ``vendor`` client a connection to this simulator builds (:func:`vendor_client`)."""
        return vendor_client(vendor, self.base_url, **fields)

    # --- admin API -----------------------------------------------------------
    def reset(self, **overrides: Any) -> dict[str, Any]:
        """Forget all state; ``overrides`` deep-merge into the default config."""
        config = copy.deepcopy(DEFAULT_CONFIG)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.http.post(self.base_url + "/_sim/reset", json=config, timeout=10).raise_for_status()
        self.config = config
        return config

    def messages(self, vendor: str | None = None) -> list[dict[str, Any]]:
        params = {"vendor": vendor} if vendor else {}
        resp = self.http.get(self.base_url + "/_sim/messages", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def requests(self, vendor: str | None = None) -> list[dict[str, Any]]:
        """The arrival log: vendor, path, method, account, time, in arrival order."""
        params = {"vendor": vendor} if vendor else {}
        resp = self.http.get(self.base_url + "/_sim/requests", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def count(self, vendor: str | None = None) -> int:
        params = {"vendor": vendor} if vendor else {}
        resp = self.http.get(self.base_url + "/_sim/count", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()["count"]

    def balance(self, vendor: str) -> int:
        resp = self.http.get(self.base_url + "/_sim/balance", params={"vendor": vendor},
                             timeout=10)
        resp.raise_for_status()
        return resp.json()["balance"]

    def faults(self, *rules: dict[str, Any]) -> None:
        self.http.post(self.base_url + "/_sim/faults", json={"rules": list(rules)},
                       timeout=10).raise_for_status()

    def fault_rules(self) -> list[dict[str, Any]]:
        resp = self.http.get(self.base_url + "/_sim/faults", timeout=10)
        resp.raise_for_status()
        return resp.json()["rules"]

    def release(self) -> int:
        """Let requests held by ``hold`` rules go on; how many were waiting."""
        resp = self.http.post(self.base_url + "/_sim/release", timeout=10)
        resp.raise_for_status()
        return resp.json()["released"]

    def clear_faults(self) -> None:
        self.http.delete(self.base_url + "/_sim/faults", timeout=10).raise_for_status()

    def inject_mo(self, vendor: str, mobile: str, content: str, **extra: str) -> None:
        self.http.post(self.base_url + "/_sim/mo", json={"vendor": vendor, "mobile": mobile,
                       "content": content, **extra}, timeout=10).raise_for_status()


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class PushSink:
    """A local HTTP server that records every request; answers ``status``."""

    status: int = 200
    body: bytes = b"ok"
    requests: list[Captured] = field(default_factory=list)

    def start(self) -> PushSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                sink.requests.append(Captured(
                    self.command, split.path,
                    {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
                    {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(sink.status)
                self.send_header("Content-Length", str(len(sink.body)))
                self.end_headers()
                self.wfile.write(sink.body)

            do_GET = do_POST = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Captured]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.requests)
