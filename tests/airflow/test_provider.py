"""The Airflow provider: registration, connection forms, hooks from real Connections."""

from __future__ import annotations

import json

import pytest

from sms_provider.connection_fields import SENSITIVE_EXTRAS, conn_fields
from sms_provider.get_provider_info import get_provider_info
from sms_provider.vendors.profiles import COMMON_EXTRAS, PIPELINE_EXTRAS
from sms_provider.vendors.profiles import PROFILES as VENDORS
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess


def test_provider_info_matches_airflows_schema() -> None:
    import importlib.resources

    import jsonschema

    schema = json.loads(importlib.resources.files("airflow").joinpath(
        "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_airflow_discovers_the_provider_and_its_connection_types(airflow_db) -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "sms-provider" in manager.providers
    for conn_type in VENDORS:
        assert manager.hooks[conn_type].hook_class_name.startswith("sms_provider.hooks.sms.")
        behaviour = manager.field_behaviours[conn_type]
        assert "extra" in behaviour["hidden_fields"]
        assert behaviour["relabeling"]["login"]
    widgets = manager.connection_form_widgets
    assert widgets["extra__eums__aes_key"].is_sensitive
    assert widgets["extra__eims__md5_key"].is_sensitive
    assert not widgets["extra__eums__ver"].is_sensitive


@pytest.mark.parametrize("conn_type", sorted(VENDORS))
def test_every_client_setting_has_a_form_field_and_back(conn_type: str) -> None:
    fields = set(conn_fields(conn_type))
    takes = set(VENDORS[conn_type].extras) | set(COMMON_EXTRAS) | set(PIPELINE_EXTRAS)
    assert fields <= takes
    assert takes - fields <= {"price_per_item"}  # a money unit only matters for EIMS
    assert {"aes_key", "md5_key"} == SENSITIVE_EXTRAS


@pytest.fixture
def eums_uri(sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, airflow_db) -> str:
    host, port = sim.host, sim.port
    cfg = DEFAULT_CONFIG["eums"]
    uri = f"eums://{cfg['name']}:{cfg['password']}@{host}:{port}?ver=17&aes_key={cfg['aes_key']}"
    monkeypatch.setenv("AIRFLOW_CONN_SMS_EUMS", uri)
    return uri


def test_a_connection_given_as_a_uri_works(eums_uri: str, sim: SimulatorProcess) -> None:
    from sms_provider.hooks.sms import EumsHook, hook_for_connection

    hook = hook_for_connection("sms_eums")
    assert isinstance(hook, EumsHook)
    with hook.get_client() as client:
        assert client.balance()[0].amount == 1_000_000
    ok, message = hook.test_connection()
    assert ok and "balance 1000000 items" in message


def test_a_hook_looks_its_connection_up_once(eums_uri: str, sim: SimulatorProcess,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Client, settings and connection test share one lookup (a secrets backend may be
    a network call per lookup)."""
    from airflow.sdk import BaseHook

    from sms_provider.hooks.sms import hook_for_connection

    lookups: list[str] = []
    real = BaseHook.get_connection.__func__

    def counting(cls, conn_id: str):
        lookups.append(conn_id)
        return real(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(counting))
    hook = hook_for_connection("sms_eums")
    hook.get_client().close()
    assert hook.pipeline_settings == {}
    assert hook.test_connection()[0]
    assert lookups == ["sms_eums"]


def test_the_aes_key_and_password_are_masked(eums_uri: str) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    from sms_provider.hooks.sms import hook_for_connection

    hook_for_connection("sms_eums").get_client().close()
    cfg = DEFAULT_CONFIG["eums"]
    line = f"key {cfg['aes_key']} password {cfg['password']}"
    assert cfg["aes_key"] not in redact(line) and cfg["password"] not in redact(line)


def test_wrong_credentials_fail_the_connection_test_without_echoing_them(
        sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, airflow_db) -> None:
    from sms_provider.hooks.sms import hook_for_connection

    host, port = sim.host, sim.port
    monkeypatch.setenv("AIRFLOW_CONN_SMS_CL", json.dumps({
        "conn_type": "chuanglan", "host": host, "port": int(port), "login": "cl-user",
        "password": "not-the-password"}))
    ok, message = hook_for_connection("sms_cl").test_connection()
    assert not ok and "102" in message and "not-the-password" not in message


def test_a_vendor_without_balance_call_still_checks_the_configuration(
        sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, airflow_db) -> None:
    from sms_provider.hooks.sms import hook_for_connection

    host, port = sim.host, sim.port
    monkeypatch.setenv("AIRFLOW_CONN_SMS_IMS", f"emay-ims://app:k@{host}:{port}?mode=secure")
    ok, message = hook_for_connection("sms_ims").test_connection()
    assert not ok and "16, 24 or 32 bytes" in message
    monkeypatch.setenv("AIRFLOW_CONN_SMS_IMS",
                       f"emay-ims://app:0123456789abcdef@{host}:{port}?mode=secure")
    ok, message = hook_for_connection("sms_ims").test_connection()
    assert ok and "no balance call" in message


def test_errors_name_the_connection(monkeypatch: pytest.MonkeyPatch, airflow_db) -> None:
    from sms_provider.hooks.sms import hook_for_connection
    from sms_provider.vendors.registry import ConnectionConfigError

    monkeypatch.setenv("AIRFLOW_CONN_SMS_HTTP", "http://example.com")
    with pytest.raises(ConnectionConfigError, match="'sms_http' has type 'http'"):
        hook_for_connection("sms_http")
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TYPO", "eums://n:p@h:1?aes-key=x")
    with pytest.raises(ConnectionConfigError, match=r"connection 'sms_typo'.*unknown extra"):
        hook_for_connection("sms_typo").get_client()
