"""Headless Chromium over the DevTools protocol: open a page as a person would, collect
what went wrong (console errors, uncaught exceptions, failed or outside requests) and
measure what it shows.

Debian's ``chromium`` package is the browser (``make test`` installs it as root, see
the Makefile's ``chromium`` target); ``SMS_CHROMIUM`` names another executable. The
protocol is spoken over ``websockets`` (already pinned through Airflow): no browser
download, no driver.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

#: flags for a quiet, offline, throw-away browser
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--remote-debugging-port=0")

#: what the page shows: every chart with its size and how many marks it draws
MEASURE = """(() => {
  const charts = [...document.querySelectorAll('svg')].map(svg => {
    const box = svg.getBoundingClientRect();
    return {width: box.width, height: box.height,
            marks: svg.querySelectorAll('rect, circle, polyline, path, line').length,
            label: svg.getAttribute('aria-label') || ''};
  });
  const links = [...document.querySelectorAll('a')].map(a => a.getAttribute('href'));
  return {title: document.title, charts, links,
          headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
          height: document.documentElement.scrollHeight,
          width: document.documentElement.scrollWidth};
})()"""


def chromium_path() -> str | None:
    """The browser executable, or None when it is not installed."""
    configured = os.environ.get("SMS_CHROMIUM")
    if configured:
        return configured
    found = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    return next((p for p in found if p and os.access(p, os.X_OK)), None)


@dataclass
class PageVisit:
    """What one page load did."""

    url: str
    errors: list[str] = field(default_factory=list)        # console errors, exceptions
    outside_requests: list[str] = field(default_factory=list)  # anything not file:/data:
    failed_requests: list[str] = field(default_factory=list)
    shown: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None


class Browser:
    """One headless Chromium with a new, empty profile; close it when done."""

    def __init__(self, executable: str, *, width: int = 1280, height: int = 900) -> None:
        self.profile = tempfile.mkdtemp(prefix="sms-chromium-")
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{executable} did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(
            f"ws://127.0.0.1:{port}{path}", max_size=64 * 2**20, open_timeout=10))
        self.ids = itertools.count(1)
        self.width, self.height = width, height

    def close(self) -> None:
        if getattr(self, "_stack", None) is not None:
            self._stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, params: dict | None = None, session: str | None = None,
              events: list[dict] | None = None, timeout: float = 30) -> dict:
        """Send one command; events that arrive meanwhile go to ``events``."""
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if events is not None and "method" in reply:
                events.append(reply)

    def visit(self, url: str, screenshot: Path | None = None) -> PageVisit:
        """Load ``url`` in a new tab, wait for its load event, then measure it."""
        events: list[dict] = []
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True}
                             )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._call(f"{domain}.enable", session=session, events=events)
        self._call("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": self.height, "deviceScaleFactor": 1,
            "mobile": False}, session=session, events=events)
        self._call("Page.navigate", {"url": url}, session=session, events=events)
        deadline = time.monotonic() + 30
        while not any(e["method"] == "Page.loadEventFired" for e in events):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not finish loading")
            events.append(json.loads(self.ws.recv(timeout=30)))
        shown = self._call("Runtime.evaluate", {"expression": MEASURE, "returnByValue": True},
                           session=session, events=events)["result"]["value"]
        visit = PageVisit(url=url, shown=shown)
        if screenshot is not None:
            shot = self._call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": max(shown["width"], self.width),
                         "height": shown["height"], "scale": 1}},
                session=session, events=events)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            visit.screenshot = screenshot
        self._call("Target.closeTarget", {"targetId": target}, events=events)
        for e in events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                visit.errors.append(p["exceptionDetails"].get("exception", {}).get(
                    "description") or p["exceptionDetails"].get("text", "exception"))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                                 "assert"):
                visit.errors.append(" ".join(str(a.get("value", a.get("description")))
                                             for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                visit.errors.append(p["entry"]["text"] + " " + p["entry"].get("url", ""))
            elif e["method"] == "Network.requestWillBeSent":
                req = p["request"]["url"]
                if not req.startswith(("file:", "data:", "about:")):
                    visit.outside_requests.append(req)
            elif e["method"] == "Network.loadingFailed":
                visit.failed_requests.append(p.get("errorText", ""))
        return visit
