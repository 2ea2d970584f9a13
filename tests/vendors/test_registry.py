"""Connection-shaped fields to clients: URL building, extras coercion, clear errors."""

from __future__ import annotations

import pytest

from sms_provider.vendors.base import Capability, OutboundMessage
from sms_provider.vendors.profiles import PROFILES as VENDORS
from sms_provider.vendors.registry import (
    ConnectionConfigError,
    base_url,
    build_client,
)
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess, credentials


@pytest.mark.parametrize(("host", "port", "schema", "default", "expected"), [
    ("10.0.0.5", 8080, None, None, "http://10.0.0.5:8080"),
    ("sms.example.com", None, "https", None, "https://sms.example.com"),
    ("10.0.0.5", None, None, 20003, "http://10.0.0.5:20003"),
    ("https://api.example.com/", None, None, None, "https://api.example.com"),
    ("http://h:81", 82, None, None, "http://h:81"),
])
def test_base_url(host, port, schema, default, expected) -> None:
    assert base_url(host, port, schema, default) == expected


def test_base_url_refuses_bad_input() -> None:
    with pytest.raises(ConnectionConfigError, match="host is empty"):
        base_url("", None, None, None)
    with pytest.raises(ConnectionConfigError, match="schema must be http or https"):
        base_url("h", None, "ftp", None)


def test_unknown_type_and_extra_and_missing_credentials_are_named() -> None:
    with pytest.raises(ConnectionConfigError, match="unknown connection type 'sms'"):
        build_client("sms", host="h", login="a", password="b")
    with pytest.raises(ConnectionConfigError, match=r"unknown extra 'aes-key'.*aes_key"):
        build_client("eums", host="h", login="a", password="b", extras={"aes-key": "x"})
    with pytest.raises(ConnectionConfigError, match=r"login \(name\) is empty"):
        build_client("eums", host="h", login="", password="b")
    with pytest.raises(ConnectionConfigError, match=r"password \(secret_key\) is empty"):
        build_client("emay_ims", host="h", login="a", password=None)


def test_malformed_extra_is_named_without_its_value() -> None:
    with pytest.raises(ConnectionConfigError, match="extra 'ver' has a malformed value") as err:
        build_client("eums", host="h", login="a", password="b", extras={"ver": "seventeen"})
    assert "seventeen" not in str(err.value)


def test_string_extras_from_a_uri_are_coerced() -> None:
    client = build_client("emay_ims", host="127.0.0.1", port=1, login="app",
                          password="0123456789abcdef",
                          extras={"mode": "secure", "gzip": "false", "timeout": "2.5",
                                  "rate_limit": "10", "max_batch": "50"})
    assert client.max_batch == 50
    assert client.http.settings.read_timeout == 2.5
    assert client.http.settings.rate_limit == 10.0
    assert "0123456789abcdef" not in repr(client)


@pytest.mark.parametrize("conn_type", sorted(VENDORS))
def test_every_vendor_round_trips_through_the_simulator(conn_type: str,
                                                       sim: SimulatorProcess) -> None:
    login, password = credentials(conn_type)
    cfg = DEFAULT_CONFIG[conn_type]
    extras = {"eums": {"ver": "17", "aes_key": cfg.get("aes_key")},
              "emay_ims": {"mode": "secure"}, "emay_fms": {"mode": "secure"}}.get(conn_type, {})
    with build_client(conn_type, host=sim.host, port=sim.port, login=login,
                      password=password, extras=extras) as client:
        if client.supports(Capability.BALANCE):
            assert client.balance()[0].amount > 0
        if conn_type == "emay_fms":
            template = client.register_template("【T】${code}")
            subs = client.send([OutboundMessage("13800138000", variables={"code": "1"})],
                               template_id=template.template_id)
        else:
            mobile = {"emay_ims": "008613800138000", "eims": "8613800138000"}.get(
                conn_type, "13800138000")
            subs = client.send([OutboundMessage(mobile, "【T】hello")])
        assert [s.status.value for s in subs] == ["submitted"]
    assert len(sim.messages(conn_type)) == 1
