"""The Airflow plugin mounts the receiver on the API server, and builds it only there.

Every task process imports the plugins folder (for macros); building the
receiver app on import cost each task about two seconds of CPU.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from tests.receiver.test_receiver import CONFIG


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "receiver.json"
    config.write_text(json.dumps(CONFIG))
    monkeypatch.setenv("SMS_RECEIVER_CONFIG", str(config))
    monkeypatch.setenv("SMS_DATA_ROOT", str(tmp_path / "data"))
    sys.modules.pop("sms_receiver_plugin", None)
    yield importlib.import_module("sms_receiver_plugin")
    sys.modules.pop("sms_receiver_plugin", None)


def test_importing_the_plugin_builds_no_app(plugin_module) -> None:
    assert plugin_module.SmsReceiverPlugin.__dict__["fastapi_apps"].apps is None


def test_the_api_server_reading_the_apps_gets_the_receiver_once(plugin_module) -> None:
    plugin = plugin_module.SmsReceiverPlugin
    apps = plugin.fastapi_apps
    assert [(a["url_prefix"], a["name"]) for a in apps] == [("/sms-receiver", "SMS push receiver")]
    assert plugin().fastapi_apps is apps  # built once, from the class or an instance
    routes = {route.path for route in apps[0]["app"].routes}
    assert any(path.startswith("/eims") or "eims" in path.lower() for path in routes), routes
