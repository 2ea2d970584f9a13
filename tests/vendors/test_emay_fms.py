"""Emay FMS (flash push) client against the simulator, over real HTTP.

Covers both wire modes (normal JSON and the secure AES envelope, with and
without gzip), the ``/inter`` path prefix, the template life cycle, every
endpoint, the platform's codes and limits (refused by the client first, and by
the simulator when the client is bypassed), transport faults, and the pure
parsers on canned answers from the document.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from sms_provider.errors import (
    AmbiguousError,
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
    RateLimitedError,
    RetryableError,
    VendorError,
)
from sms_provider.models import ApprovalState, DeliveryStatus
from sms_provider.vendors import emay_common
from sms_provider.vendors.base import Capability, OutboundMessage
from sms_provider.vendors.clock import CHINA_TZ, epoch_ms
from sms_provider.vendors.codec import aes_decrypt, aes_encrypt, gzip_compress
from sms_provider.vendors.emay_fms import (
    CODES,
    EmayFmsClient,
    parse_balance,
    parse_registered_template,
    parse_reports,
    parse_submissions,
    parse_template_status,
    raise_for_result,
)
from tests.simulator_harness import DEFAULT_CONFIG, PushSink, SimulatorProcess, vendor_client

VENDOR = "emay_fms"
APP_ID = DEFAULT_CONFIG[VENDOR]["app_id"]
KEY = DEFAULT_CONFIG[VENDOR]["secret_key"]
TEXT = "【测试】${name}您好，验证码${code}"
EP = "/fms/normal/x"

MODES: dict[str, dict[str, Any]] = {
    "normal": {"mode": "normal"},
    "plain-alias": {"mode": "plain"},
    "inter-prefix": {"mode": "normal", "path_prefix": "/inter"},
    "secure-gzip": {"mode": "secure", "gzip": True},
    "secure-no-gzip": {"mode": "secure", "gzip": False},
}
WIRE_MODES = ["normal", "secure-gzip"]


@pytest.fixture(params=list(MODES))
def client(request: pytest.FixtureRequest, sim: SimulatorProcess) -> Iterator[EmayFmsClient]:
    with sim.client(VENDOR, **MODES[request.param]) as c:
        yield c


@pytest.fixture(params=WIRE_MODES)
def wire_client(request: pytest.FixtureRequest, sim: SimulatorProcess
                ) -> Iterator[EmayFmsClient]:
    with sim.client(VENDOR, **MODES[request.param]) as c:
        yield c


def approved(client: EmayFmsClient, text: str = TEXT) -> str:
    """A template the carriers approved (the default simulation decides at once)."""
    template_id = client.register_template(text).template_id
    assert client.query_template(template_id).usable
    return template_id


def msg(mobile: str, custom_id: str | None = None, name: str = "李雷", code: str = "1234"
        ) -> OutboundMessage:
    return OutboundMessage(mobile, custom_id=custom_id, variables={"name": name, "code": code})


# --- bypassing the client: raw requests to the simulator ----------------------------------

def raw_normal(sim: SimulatorProcess, endpoint: str, fields: dict[str, Any] | None = None, *,
               body: bytes | None = None, prefix: str = "/fms/normal",
               method: str = "POST") -> requests.Response:
    payload = {"appId": APP_ID, "requestTime": epoch_ms(), "requestValidPeriod": 60,
               **(fields or {})}
    payload = {k: v for k, v in payload.items() if v is not None}
    data = json.dumps(payload, ensure_ascii=False).encode() if body is None else body
    return requests.request(method, f"{sim.base_url}{prefix}/{endpoint}", data=data,
                            headers={"Content-Type": "application/json"}, timeout=5)


def raw_secure(sim: SimulatorProcess, endpoint: str, fields: dict[str, Any] | None = None, *,
               body: bytes | None = None, gzip_on: bool = True, key: str = KEY,
               headers: dict[str, str] | None = None) -> requests.Response:
    payload = {"requestTime": epoch_ms(), "requestValidPeriod": 60, **(fields or {})}
    payload = {k: v for k, v in payload.items() if v is not None}
    if body is None:
        body = emay_common.encode_secure(payload, key, gzip_on=gzip_on)
    sent = {**emay_common.secure_headers(APP_ID, gzip_on=gzip_on), **(headers or {})}
    return requests.post(f"{sim.base_url}/fms/secure/{endpoint}", data=body,
                         headers={k: v for k, v in sent.items() if v is not None}, timeout=5)


def refused_with(resp: requests.Response, code: str) -> None:
    assert resp.status_code == 200
    assert resp.headers.get("result") == code
    assert resp.content == b""  # only SUCCESS carries a body
    assert CODES[code]  # every code the simulator answers is in the client's table


def register_raw(sim: SimulatorProcess, text: str = TEXT) -> str:
    resp = raw_normal(sim, "templateReport", {"templateInfo": text})
    assert resp.headers["result"] == "SUCCESS"
    return resp.json()["templateId"]


# --- the whole flow in every mode ---------------------------------------------------------

def test_capabilities_and_limits_declared() -> None:
    assert EmayFmsClient.batch_limit == 300
    assert EmayFmsClient.capabilities == {Capability.SEND, Capability.PULL_REPORTS,
                                          Capability.BALANCE, Capability.TEMPLATES}
    assert EmayFmsClient.custom_id_scope == "message"
    assert EmayFmsClient.personalised_batches


def test_round_trip(client: EmayFmsClient, sim: SimulatorProcess) -> None:
    registered = client.register_template(TEXT)
    assert registered.variables == ("name", "code")
    assert registered.approvals == {}
    status = client.query_template(registered.template_id)
    assert status.template_id == registered.template_id
    assert status.approvals == {c: ApprovalState.APPROVED for c in ("cmcc", "cucc", "ctcc")}
    assert status.decided and status.usable

    single = client.send([msg("13800138000", "c-1")], template_id=registered.template_id)
    batch = client.send([msg("13900139001", "c-2", name="韩梅梅", code="0001"),
                         msg("15000150002", None, code="0002"),
                         msg("18600186003", "c-4", code="0003")],
                        template_id=registered.template_id)
    subs = single + batch
    assert [s.mobile for s in subs] == ["13800138000", "13900139001", "15000150002",
                                        "18600186003"]
    assert [s.custom_id for s in subs] == ["c-1", "c-2", None, "c-4"]
    assert all(s.message_id and len(s.message_id) == 20 and s.message_id.isdigit()
               for s in subs)
    assert len({s.message_id for s in subs}) == 4
    assert all(s.charge_items == 1 and s.vendor_code == "SUCCESS" for s in subs)

    recorded = {m["message_id"]: m for m in sim.messages(VENDOR)}
    assert set(recorded) == {s.message_id for s in subs}
    first = recorded[subs[0].message_id]
    assert first["mobile"] == "13800138000"
    assert first["content"] == "【测试】李雷您好，验证码1234"
    assert first["custom_id"] == "c-1"
    assert first["template_id"] == registered.template_id
    assert first["variables"] == {"name": "李雷", "code": "1234"}
    assert recorded[subs[1].message_id]["content"] == "【测试】韩梅梅您好，验证码0001"
    assert recorded[subs[2].message_id]["custom_id"] is None

    reports = client.pull_reports()
    expected = {i for i, m in recorded.items() if m["outcome"] != "silent"}
    assert {r.message_id for r in reports} == expected
    for r in reports:
        m = recorded[r.message_id]
        assert r.mobile == m["mobile"] and r.custom_id == m["custom_id"]
        want = DeliveryStatus.DELIVERED if m["outcome"] == "delivered" else DeliveryStatus.FAILED
        assert r.status is want
    assert client.pull_reports() == []  # consume-once

    [balance] = client.balance()
    assert balance.unit == "items"
    assert balance.amount == Decimal(sim.balance(VENDOR)) == Decimal(1_000_000 - 4)


def test_fixed_template_sends_empty_content(wire_client: EmayFmsClient,
                                            sim: SimulatorProcess) -> None:
    text = "【测试】您的包裹已发出"
    template = wire_client.register_template(text)
    assert template.variables == ()
    wire_client.query_template(template.template_id)
    [sub] = wire_client.send([OutboundMessage("13800138000")],
                             template_id=template.template_id, template_text=text)
    [m] = sim.messages(VENDOR)
    assert m["content"] == text and m["variables"] == {}
    assert sub.message_id == m["message_id"]


def test_charge_items_follow_the_rendered_text(sim: SimulatorProcess) -> None:
    long_text = "【测试】${name}" + "长" * 70  # 74 characters rendered: two items
    with sim.client(VENDOR, template_text=long_text) as c:
        template_id = approved(c, long_text)
        [known] = c.send([OutboundMessage("13800138000", variables={"name": "李雷"})],
                         template_id=template_id)
        # a per-call text wins over the constructor's
        [short] = c.send([msg("13800138001")], template_id=approved(c), template_text=TEXT)
    with sim.client(VENDOR) as c:
        [unknown] = c.send([OutboundMessage("13800138002", variables={"name": "韩梅梅"})],
                           template_id=template_id)
    charged = {m["mobile"]: m["charge_items"] for m in sim.messages(VENDOR)}
    assert charged == {"13800138000": 2, "13800138001": 1, "13800138002": 2}
    assert (known.charge_items, short.charge_items) == (2, 1)
    assert unknown.charge_items == 1  # no template text: the documented one-item estimate
    assert sim.balance(VENDOR) == 1_000_000 - 5


# --- templates -----------------------------------------------------------------------------

def test_template_pending_then_approved(wire_client: EmayFmsClient,
                                        sim: SimulatorProcess) -> None:
    sim.reset(emay_fms={"simulation": {"template_decision_s": 0.5}})
    template_id = wire_client.register_template(TEXT).template_id
    pending = wire_client.query_template(template_id)
    assert set(pending.approvals.values()) == {ApprovalState.PENDING}
    assert not pending.decided and not pending.usable
    with pytest.raises(PermanentError) as exc:
        wire_client.send([msg("13800138000")], template_id=template_id)
    assert exc.value.code == "ERROR_TEMPLATE_NOT_PASS"
    time.sleep(0.6)
    assert wire_client.query_template(template_id).usable
    assert len(wire_client.send([msg("13800138000")], template_id=template_id)) == 1
    assert len(sim.messages(VENDOR)) == 1


def test_rejected_template_cannot_send(wire_client: EmayFmsClient,
                                       sim: SimulatorProcess) -> None:
    sim.reset(emay_fms={"simulation": {"template_rejection_rate": 1.0}})
    template_id = wire_client.register_template(TEXT).template_id
    status = wire_client.query_template(template_id)
    assert set(status.approvals.values()) == {ApprovalState.REJECTED}
    assert status.decided and not status.usable
    with pytest.raises(PermanentError) as exc:
        wire_client.send([msg("13800138000"), msg("13800138001")], template_id=template_id)
    assert exc.value.code == "ERROR_TEMPLATE_NOT_PASS"
    assert sim.messages(VENDOR) == []
    assert sim.balance(VENDOR) == 1_000_000


def test_template_ids_are_20_digit_text_matched_exactly(wire_client: EmayFmsClient,
                                                          sim: SimulatorProcess) -> None:
    """The platform issues 20-digit ids, more than a float or an int64 holds, and knows
    only the exact string: the id rounded through a float, or the same number written
    wider or narrower, is ERROR_TEMPLATE_ID_ERROR, and nothing is sent or charged."""
    ids = [wire_client.register_template(TEXT).template_id for _ in range(3)]
    assert all(len(t) == 20 and t.isdigit() for t in ids) and len(set(ids)) == 3
    assert all(int(t) >= 2**63 for t in ids)
    template_id = next(t for t in ids if str(int(float(t))) != t)  # all but 1 in 2048
    for wrong in (str(int(float(template_id))), "0" + template_id, template_id[:-1],
                  f"{float(template_id)}"):
        if wrong in ids:  # ids are near-consecutive: the rounding landed on another one
            continue
        with pytest.raises(PermanentError) as exc:
            wire_client.send([msg("13800138000")], template_id=wrong)
        assert exc.value.code == "ERROR_TEMPLATE_ID_ERROR", wrong
    assert sim.messages(VENDOR) == [] and sim.balance(VENDOR) == 1_000_000
    [sub] = wire_client.send([msg("13800138000")], template_id=template_id)
    assert [m["template_id"] for m in sim.messages(VENDOR)] == [template_id]
    assert sub.message_id and len(sub.message_id) == 20


def test_unknown_template(wire_client: EmayFmsClient, sim: SimulatorProcess) -> None:
    status = wire_client.query_template("424242")
    assert status.template_id == "424242"
    assert status.approvals == {c: ApprovalState.NOT_FOUND for c in ("cmcc", "cucc", "ctcc")}
    assert not status.usable
    with pytest.raises(PermanentError) as exc:
        wire_client.send([msg("13800138000")], template_id="424242")
    assert exc.value.code == "ERROR_TEMPLATE_ID_ERROR"
    assert sim.messages(VENDOR) == []


def test_variables_must_match_the_template(wire_client: EmayFmsClient,
                                           sim: SimulatorProcess) -> None:
    template_id = approved(wire_client)
    wrong = OutboundMessage("13800138000", variables={"name": "李雷"})
    with pytest.raises(PermanentError) as vendor_said:
        wire_client.send([wrong], template_id=template_id)
    assert vendor_said.value.code == "ERROR_TEMPLATE_VARIABLE"
    with pytest.raises(LimitExceededError, match="message 1") as we_said:
        wire_client.send([msg("13800138001"), wrong], template_id=template_id,
                         template_text=TEXT)
    assert "code" in str(we_said.value)
    assert sim.messages(VENDOR) == []


# --- authentication, clock, secrets --------------------------------------------------------

@pytest.mark.parametrize("mode", WIRE_MODES)
def test_wrong_app_id(sim: SimulatorProcess, mode: str) -> None:
    with sim.client(VENDOR, app_id="EUCP-EMY-FMS1-OTHER", **MODES[mode]) as c, \
            pytest.raises(AuthenticationError) as exc:
        c.balance()
    assert exc.value.code == "ERROR_APPID"
    assert KEY not in str(exc.value)


@pytest.mark.parametrize("gzip_on", [True, False])
def test_wrong_secret_key(sim: SimulatorProcess, caplog: pytest.LogCaptureFixture,
                          gzip_on: bool) -> None:
    wrong = "0000111122223333"
    caplog.set_level(logging.DEBUG)
    with sim.client(VENDOR, secret_key=wrong, mode="secure", gzip=gzip_on) as c:
        assert wrong not in repr(c)
        with pytest.raises(AuthenticationError) as exc:
            c.send([msg("13800138000")], template_id="900001")
    assert exc.value.code == "ERROR_ENCRYPTION"
    assert wrong not in str(exc.value) and wrong not in caplog.text
    assert sim.messages(VENDOR) == []


def test_secret_never_shown(sim: SimulatorProcess) -> None:
    for mode in ("normal", "secure"):
        with sim.client(VENDOR, mode=mode) as c:
            assert KEY not in repr(c) and KEY not in str(vars(c).get("http"))
    with pytest.raises(AuthenticationError) as exc:
        sim.client(VENDOR, mode="secure", secret_key="too-short-secret-k")
    assert "too-short-secret-k" not in str(exc.value)
    assert "18 bytes" in str(exc.value)
    with pytest.raises(ValueError, match="secret_key is empty"):
        sim.client(VENDOR, mode="secure", secret_key="")
    # the normal mode carries no signature: the key is never used, any value will do
    with sim.client(VENDOR, mode="normal", secret_key="unused") as c:
        assert c.balance()[0].amount == 1_000_000


@pytest.mark.parametrize("mode", WIRE_MODES)
def test_clock_outside_the_validity_window(sim: SimulatorProcess, mode: str) -> None:
    def behind() -> int:
        return epoch_ms() - 120_000

    def slightly_behind() -> int:
        return epoch_ms() - 30_000

    with sim.client(VENDOR, clock=behind, request_valid_period=60, **MODES[mode]) as c, \
            pytest.raises(AuthenticationError) as exc:
        c.send([msg("13800138000")], template_id="900001")
    assert exc.value.code == "ERROR_REQUESTTIME_TIMEOUT"
    with sim.client(VENDOR, clock=behind, request_valid_period=300, **MODES[mode]) as c:
        assert c.balance()[0].amount == 1_000_000
    with sim.client(VENDOR, clock=slightly_behind, **MODES[mode]) as c:
        assert c.balance()[0].amount == 1_000_000


@pytest.mark.parametrize(("fields", "code"), [
    ({"requestTime": None}, "ERROR_REQUESTTIME"),
    ({"requestTime": "yesterday"}, "ERROR_REQUESTTIME"),
    ({"requestTime": 1.5e12}, "ERROR_REQUESTTIME"),
    ({"requestValidPeriod": None}, "ERROR_REQUESTVALIDPERIOD"),
    ({"requestValidPeriod": 0}, "ERROR_REQUESTVALIDPERIOD"),
    ({"requestValidPeriod": "soon"}, "ERROR_REQUESTVALIDPERIOD"),
    ({"requestTime": 1490588340964, "requestValidPeriod": 30}, "ERROR_REQUESTTIME_TIMEOUT"),
])
def test_simulator_checks_request_time(sim: SimulatorProcess, fields: dict[str, Any],
                                       code: str) -> None:
    refused_with(raw_normal(sim, "getBalance", fields), code)
    refused_with(raw_secure(sim, "getBalance", fields), code)
    with pytest.raises(PermanentError) as exc:
        raise_for_result(code, EP)
    assert exc.value.code == code


def test_request_time_as_digit_string_is_taken(sim: SimulatorProcess) -> None:
    resp = raw_normal(sim, "getBalance", {"requestTime": str(epoch_ms())})
    assert resp.headers["result"] == "SUCCESS"
    assert resp.json() == {"balance": "1000000"}


def test_constructor_settings_are_checked(sim: SimulatorProcess) -> None:
    with pytest.raises(ValueError, match="mode"):
        sim.client(VENDOR, mode="encrypted")
    with pytest.raises(ValueError, match="request_valid_period"):
        sim.client(VENDOR, request_valid_period=0)
    with pytest.raises(ValueError, match="app_id"):
        sim.client(VENDOR, app_id="")
    for bad in (0, 301):
        with pytest.raises(LimitExceededError, match="max_batch"):
            sim.client(VENDOR, max_batch=bad)
    with sim.client(VENDOR, path_prefix="inter/") as c:
        assert c.path_prefix == "/inter"
    with sim.client(VENDOR, mode="secure") as c:
        assert (c.path_prefix, c.mode) == ("/fms/secure", "secure")
    with sim.client(VENDOR, mode="plain") as c:
        assert (c.path_prefix, c.mode) == ("/fms/normal", "normal")


# --- balance and limits ---------------------------------------------------------------------

def test_no_balance(wire_client: EmayFmsClient, sim: SimulatorProcess) -> None:
    sim.reset(emay_fms={"balance": 2})
    template_id = approved(wire_client)
    with pytest.raises(InsufficientBalanceError) as exc:
        wire_client.send([msg("13800138000"), msg("13800138001"), msg("13800138002")],
                         template_id=template_id)
    assert exc.value.code == "ERROR_BALANCE"
    assert sim.messages(VENDOR) == [] and sim.balance(VENDOR) == 2
    wire_client.send([msg("13800138000")], template_id=template_id)
    assert wire_client.balance()[0].amount == 1


@pytest.mark.parametrize("mode", WIRE_MODES)
def test_balance_as_bare_string(sim: SimulatorProcess, mode: str) -> None:
    sim.reset(emay_fms={"balance_as_string": True, "balance": 777})
    with sim.client(VENDOR, **MODES[mode]) as c:
        assert c.balance()[0].amount == Decimal(777)
    assert raw_normal(sim, "getBalance").json() == "777"


def test_client_refuses_limits_before_sending(sim: SimulatorProcess) -> None:
    with sim.client(VENDOR) as c:
        template_id = approved(c)
        with pytest.raises(LimitExceededError, match="301 recipients"):
            c.send([msg(f"138{i:08d}") for i in range(301)], template_id=template_id)
        with pytest.raises(LimitExceededError, match="no recipients"):
            c.send([], template_id=template_id)
        with pytest.raises(LimitExceededError, match="template_id"):
            c.send([msg("13800138000")])
        for bad in ("+8613800138000", "1380013800", "23800138000", "1380013800a",
                    "13800138000\n", "１３８００１３８０００", ""):
            with pytest.raises(LimitExceededError, match="message 1") as exc:
                c.send([msg("13800138000"), msg(bad)], template_id=template_id)
            assert f"({len(bad)} characters)" in str(exc.value)
        with pytest.raises(LimitExceededError, match="message 0") as exc:
            c.send([msg("13800138000", "x" * 33)], template_id=template_id)
        assert "33 characters" in str(exc.value) and "limit is 32" in str(exc.value)
        for size in (0, 501):
            with pytest.raises(LimitExceededError, match=r"1\.\.500"):
                c.pull_reports(size)
        with pytest.raises(LimitExceededError, match="empty"):
            c.register_template("  ")
        with pytest.raises(LimitExceededError, match="empty"):
            c.query_template("")
    with sim.client(VENDOR, max_batch=2) as c, \
            pytest.raises(LimitExceededError, match="limit is 2"):
        c.send([msg("13800138000")] * 3, template_id=template_id)
    assert sim.messages(VENDOR) == []
    # at the limits themselves everything goes through
    with sim.client(VENDOR) as c:
        subs = c.send([msg(f"138{i:08d}", f"{i:032d}") for i in range(300)],
                      template_id=template_id)
        assert len(subs) == 300 and subs[299].custom_id == f"{299:032d}"
        assert len(c.pull_reports(500)) == sum(
            m["outcome"] != "silent" for m in sim.messages(VENDOR))


def _batch(template_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"templateId": template_id, "fmses": entries}


def _entry(mobile: str = "13800138000", **extra: Any) -> dict[str, Any]:
    return {"mobile": mobile, "content": json.dumps({"name": "李雷", "code": "1"}), **extra}


@pytest.mark.parametrize(("endpoint", "fields", "code"), [
    ("sendBatchFMS", lambda t: _batch(t, [_entry(f"138{i:08d}") for i in range(301)]),
     "ERROR_MOBILE_NUMBER"),
    ("sendBatchFMS", lambda t: _batch(t, []), "ERROR_MOBILE_EMPTY"),
    ("sendBatchFMS", lambda t: {"templateId": t}, "ERROR_MOBILE_EMPTY"),
    ("sendSingleFMS", lambda t: {"templateId": t, "content": _entry()["content"]},
     "ERROR_MOBILE_EMPTY"),
    ("sendSingleFMS", lambda t: {"templateId": t, **_entry("+8613800138000")},
     "ERROR_MOBILE_ERROR"),
    ("sendBatchFMS", lambda t: _batch(t, [_entry(), _entry("1380013800")]),
     "ERROR_MOBILE_ERROR"),
    ("sendSingleFMS", lambda t: {"templateId": t, **_entry(customFmsId="x" * 33)},
     "ERROR_CUSTOM_FMSID"),
    ("sendBatchFMS", lambda t: _batch(t, [_entry(customFmsId="x" * 33)]),
     "ERROR_CUSTOM_FMSID"),
    ("sendSingleFMS", lambda t: {"templateId": t, "mobile": "13800138000",
                                 "content": {"name": "李雷", "code": "1"}},
     "ERROR_TEMPLATE_VARIABLE"),
    ("sendSingleFMS", lambda t: {"templateId": t, "mobile": "13800138000",
                                 "content": "{name:李雷}"}, "ERROR_TEMPLATE_VARIABLE"),
    ("sendSingleFMS", lambda t: {"templateId": t, "mobile": "13800138000", "content": ""},
     "ERROR_TEMPLATE_VARIABLE"),
    ("sendSingleFMS", lambda t: {"templateId": t, "mobile": "13800138000",
                                 "content": '["李雷", "1"]'}, "ERROR_TEMPLATE_VARIABLE"),
    ("sendSingleFMS", lambda t: {"templateId": t, "mobile": "13800138000",
                                 "content": '{"name": {"x": 1}, "code": "1"}'},
     "ERROR_TEMPLATE_VARIABLE"),
    ("sendSingleFMS", lambda t: {"templateId": "777777", **_entry()},
     "ERROR_TEMPLATE_ID_ERROR"),
    ("sendSingleFMS", lambda t: {"templateId": int(t), **_entry()},
     "ERROR_TEMPLATE_ID_ERROR"),                          # the digits, but not as a string
    ("sendSingleFMS", lambda t: {"templateId": float(t), **_entry()},
     "ERROR_TEMPLATE_ID_ERROR"),
    ("sendSingleFMS", lambda t: {"templateId": "0" + t, **_entry()},
     "ERROR_TEMPLATE_ID_ERROR"),                          # the same number, wider
    ("sendSingleFMS", lambda t: {"templateId": t[1:], **_entry()},
     "ERROR_TEMPLATE_ID_ERROR"),
    ("querytemplate", lambda t: {"templateId": int(t)}, "ERROR_TEMPLATE_ID_ERROR"),
    ("sendSingleFMS", lambda t: _entry(), "ERROR_PARAMS"),
    ("sendSingleFMS", lambda t: {"templateId": {"id": t}, **_entry()}, "ERROR_PARAMS"),
    ("sendSingleFMS", lambda t: {"templateId": t, **_entry(mobile=["13800138000"])},
     "ERROR_PARAMS"),
    ("sendBatchFMS", lambda t: _batch(t, "13800138000"), "ERROR_PARAMS"),
    ("sendBatchFMS", lambda t: _batch(t, [_entry(), "13800138001"]), "ERROR_PARAMS"),
    ("templateReport", lambda t: {"templateInfo": ""}, "ERROR_TEMPLATE_CONTENT"),
    ("templateReport", lambda t: {}, "ERROR_TEMPLATE_CONTENT"),
    ("templateReport", lambda t: {"templateInfo": ["x"]}, "ERROR_TEMPLATE_CONTENT"),
    ("querytemplate", lambda t: {}, "ERROR_PARAMS"),
    ("getFMSReport", lambda t: {"number": 501}, "ERROR_PARAMS"),
    ("getFMSReport", lambda t: {"number": 0}, "ERROR_PARAMS"),
    ("getFMSReport", lambda t: {"number": "many"}, "ERROR_PARAMS"),
    ("getBalance", lambda t: {"appId": "EUCP-EMY-FMS1-OTHER"}, "ERROR_APPID"),
    ("getBalance", lambda t: {"appId": None}, "ERROR_APPID"),
])
def test_simulator_refuses_what_the_client_would_not_send(
        sim: SimulatorProcess, endpoint: str, fields: Any, code: str) -> None:
    template_id = register_raw(sim)
    resp = raw_normal(sim, endpoint, fields(template_id))
    refused_with(resp, code)
    if endpoint != "getBalance":  # the same check behind the secure envelope
        refused_with(raw_secure(sim, endpoint, fields(template_id)), code)
    assert sim.messages(VENDOR) == []
    assert sim.balance(VENDOR) == 1_000_000


@pytest.mark.parametrize(("body", "method", "code"), [
    (b"{not json", "POST", "ERROR_PARAMS"),
    (b"\xff\xfe\x00", "POST", "ERROR_PARAMS"),
    (b"[1, 2]", "POST", "ERROR_PARAMS"),
    (b"", "POST", "ERROR_PARAMS"),
    (b"", "GET", "ERROR_PARAMS"),
])
def test_simulator_refuses_malformed_normal_bodies(sim: SimulatorProcess, body: bytes,
                                                   method: str, code: str) -> None:
    refused_with(raw_normal(sim, "sendSingleFMS", body=body, method=method), code)
    refused_with(raw_normal(sim, "getBalance", body=body, method=method, prefix="/inter"),
                 code)


def test_simulator_refuses_malformed_secure_bodies(sim: SimulatorProcess) -> None:
    fields = {"number": 10}
    refused_with(raw_secure(sim, "getFMSReport", body=b"garbage, not ciphertext"),
                 "ERROR_ENCRYPTION")
    refused_with(raw_secure(sim, "getFMSReport", body=b"\x00" * 32), "ERROR_ENCRYPTION")
    refused_with(raw_secure(sim, "getFMSReport", body=b""), "ERROR_ENCRYPTION")
    refused_with(raw_secure(sim, "getFMSReport", fields, key="0000111122223333"),
                 "ERROR_ENCRYPTION")
    not_gzipped = emay_common.encode_secure({"requestTime": epoch_ms(),
                                             "requestValidPeriod": 60}, KEY, gzip_on=False)
    refused_with(raw_secure(sim, "getFMSReport", body=not_gzipped, gzip_on=True),
                 "ERROR_ENCRYPTION")
    refused_with(raw_secure(sim, "getFMSReport", body=aes_encrypt(KEY, b"{not json"),
                            gzip_on=False), "ERROR_PARAMS")
    refused_with(raw_secure(sim, "getFMSReport", body=aes_encrypt(KEY, gzip_compress(b"[]"))),
                 "ERROR_PARAMS")
    refused_with(raw_secure(sim, "getFMSReport", fields, headers={"appId": "someone-else"}),
                 "ERROR_APPID")
    refused_with(raw_secure(sim, "getFMSReport", fields, headers={"encode": "no-such-charset"}),
                 "ERROR_PARAMS")
    # a declared charset is honoured
    gbk = aes_encrypt(KEY, json.dumps({"requestTime": epoch_ms(), "requestValidPeriod": 60,
                                       "templateInfo": "【测试】固定"}, ensure_ascii=False
                                      ).encode("gbk"))
    resp = raw_secure(sim, "templateReport", body=gbk, gzip_on=False, headers={"encode": "GBK"})
    assert resp.headers["result"] == "SUCCESS"
    answer = json.loads(aes_decrypt(KEY, resp.content))
    assert answer["templateId"] and answer["variable"] == ""


def test_simulator_answers_secure_success_encrypted(sim: SimulatorProcess) -> None:
    plain = raw_secure(sim, "getBalance", gzip_on=False)
    assert plain.headers["result"] == "SUCCESS"
    assert json.loads(aes_decrypt(KEY, plain.content)) == {"balance": "1000000"}
    zipped = raw_secure(sim, "getBalance", gzip_on=True)
    assert emay_common.decode_secure(zipped.content, KEY, gzip_on=True) == {"balance": "1000000"}


def test_simulator_takes_document_typos(sim: SimulatorProcess) -> None:
    """Keys with stray spaces, as in the document's examples, are read."""
    resp = raw_normal(sim, "templateReport", {"templateInfo ": "您的姓名是${name}, 年龄是${age}"})
    assert resp.headers["result"] == "SUCCESS"
    assert resp.json()["variable"] == "name,age"
    template_id = resp.json()["templateId"]
    resp = raw_normal(sim, "sendSingleFMS", {
        "templateId ": template_id, "mobile": "13800138000", "customFmsId": " cid-1",
        "content": json.dumps({"name": "小明", "age": 10})})
    assert resp.headers["result"] == "SUCCESS"
    assert resp.json()["customFmsId"] == "cid-1"
    [m] = sim.messages(VENDOR)
    assert m["content"] == "您的姓名是小明, 年龄是10"


# --- reports --------------------------------------------------------------------------------

def test_failed_reports_carry_vendor_states(wire_client: EmayFmsClient,
                                            sim: SimulatorProcess) -> None:
    sim.reset(emay_fms={"simulation": {"outcomes": {"failed": 1.0, "delivered": 0,
                                                    "silent": 0}}})
    template_id = approved(wire_client)
    subs = wire_client.send([msg(f"1380013{i:04d}", f"cid-{i}") for i in range(20)],
                            template_id=template_id)
    reports = {r.message_id: r for r in wire_client.pull_reports()}
    assert set(reports) == {s.message_id for s in subs}
    states = set()
    for s in subs:
        r = reports[s.message_id]
        assert r.status is DeliveryStatus.FAILED
        assert r.raw_state in emay_common.FAILURE_STATES
        assert r.description == emay_common.STATE_DESCRIPTIONS[r.raw_state]
        assert (r.mobile, r.custom_id) == (s.mobile, s.custom_id)
        assert r.submit_time and r.report_time and r.submit_time.tzinfo is CHINA_TZ
        assert r.raw["fmsId"] == s.message_id
        states.add(r.raw_state)
    assert len(states) > 1  # the failure state varies by message


def test_silent_messages_never_report(wire_client: EmayFmsClient,
                                      sim: SimulatorProcess) -> None:
    sim.reset(emay_fms={"simulation": {"outcomes": {"silent": 1.0, "delivered": 0,
                                                    "failed": 0}}})
    wire_client.send([msg("13800138000")], template_id=approved(wire_client))
    assert wire_client.pull_reports() == []


def test_reports_come_due_and_in_portions(wire_client: EmayFmsClient,
                                          sim: SimulatorProcess) -> None:
    sim.reset(emay_fms={"simulation": {"report_delay_s": 0.4, "outcomes": {
        "delivered": 1.0, "failed": 0, "silent": 0}}})
    subs = wire_client.send([msg(f"1390013{i:04d}") for i in range(5)],
                            template_id=approved(wire_client))
    assert wire_client.pull_reports() == []
    time.sleep(0.5)
    first = wire_client.pull_reports(2)
    rest = wire_client.pull_reports()
    assert len(first) == 2 and len(rest) == 3
    assert {r.message_id for r in first + rest} == {s.message_id for s in subs}
    assert all(r.status is DeliveryStatus.DELIVERED and r.raw_state == "DELIVRD"
               and r.description == "成功" for r in first + rest)
    assert wire_client.pull_reports() == []


# --- transport faults ----------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 3])
def test_lost_answer_to_a_send_is_ambiguous(wire_client: EmayFmsClient,
                                            sim: SimulatorProcess, count: int) -> None:
    template_id = approved(wire_client)
    endpoint = "sendSingleFMS" if count == 1 else "sendBatchFMS"
    sim.faults({"kind": "accept_drop", "vendor": VENDOR, "path": endpoint})
    with pytest.raises(AmbiguousError):
        wire_client.send([msg(f"1380013800{i}") for i in range(count)],
                         template_id=template_id)
    recorded = sim.messages(VENDOR)
    assert sorted(m["mobile"] for m in recorded) == [f"1380013800{i}" for i in range(count)]


def test_dropped_requests(wire_client: EmayFmsClient, sim: SimulatorProcess) -> None:
    template_id = approved(wire_client)
    sim.faults({"kind": "drop", "vendor": VENDOR})
    with pytest.raises(AmbiguousError):
        wire_client.send([msg("13800138000")], template_id=template_id)
    with pytest.raises(AmbiguousError):  # a consume-once pull is not blindly repeatable
        wire_client.pull_reports()
    with pytest.raises(AmbiguousError):  # registering twice would make two templates
        wire_client.register_template(TEXT)
    for read in (wire_client.balance, lambda: wire_client.query_template(template_id)):
        with pytest.raises(RetryableError):
            read()
    sim.clear_faults()
    assert sim.messages(VENDOR) == []


def test_unavailable_is_retryable(wire_client: EmayFmsClient, sim: SimulatorProcess) -> None:
    template_id = approved(wire_client)
    sim.faults({"kind": "status", "status": 503, "vendor": VENDOR})
    with pytest.raises(RetryableError) as exc:
        wire_client.send([msg("13800138000")], template_id=template_id)
    assert exc.value.code == "503"
    assert sim.messages(VENDOR) == []


def test_rate_limited(wire_client: EmayFmsClient, sim: SimulatorProcess) -> None:
    template_id = approved(wire_client)
    sim.faults({"kind": "rate_limit", "vendor": VENDOR, "path": "sendBatchFMS"})
    with pytest.raises(RateLimitedError) as exc:
        wire_client.send([msg("13800138000"), msg("13800138001")], template_id=template_id)
    assert exc.value.code == "ERROR_OVER_SPEED" and exc.value.retry_after == 1.0
    assert sim.messages(VENDOR) == []


@pytest.mark.parametrize("endpoint", ["sendSingleFMS", "getBalance", "getFMSReport"])
def test_garbled_answer_is_a_protocol_error(wire_client: EmayFmsClient,
                                            sim: SimulatorProcess, endpoint: str) -> None:
    template_id = approved(wire_client)
    sim.faults({"kind": "garble", "vendor": VENDOR, "path": endpoint})
    calls = {"sendSingleFMS": lambda: wire_client.send([msg("13800138000")],
                                                       template_id=template_id),
             "getBalance": wire_client.balance, "getFMSReport": wire_client.pull_reports}
    with pytest.raises(ProtocolError, match=endpoint) as exc:
        calls[endpoint]()
    assert "cannot be decoded" in str(exc.value) or "not JSON" in str(exc.value)
    if endpoint == "sendSingleFMS":
        assert len(sim.messages(VENDOR)) == 1  # the vendor did take it


def test_answer_without_result_header(push_sink: PushSink) -> None:
    """Something that is not the platform (a proxy page) answers 200 without a code."""
    push_sink.body = b"<html>welcome</html>"
    with vendor_client(VENDOR, push_sink.url) as c, \
            pytest.raises(ProtocolError, match="no result header"):
        c.balance()
    assert push_sink.requests[0].path == "/fms/normal/getBalance"
    sent = json.loads(push_sink.requests[0].body)
    assert sent["appId"] == APP_ID and sent["requestValidPeriod"] == 60
    assert abs(sent["requestTime"] - epoch_ms()) < 10_000


def test_secure_request_on_the_wire(push_sink: PushSink) -> None:
    """What goes out in secure mode: appId and gzip headers, raw ciphertext, no appId inside."""
    with vendor_client(VENDOR, push_sink.url, mode="secure", gzip=True) as c, \
            pytest.raises(ProtocolError):
        c.pull_reports(123)
    captured = push_sink.requests[0]
    assert captured.path == "/fms/secure/getFMSReport"
    assert captured.headers["appid"] == APP_ID and captured.headers["gzip"] == "on"
    assert int(captured.headers["content-length"]) == len(captured.body)
    sent = emay_common.decode_secure(captured.body, KEY, gzip_on=True)
    assert sent["number"] == 123 and "appId" not in sent


# --- pure parsing of canned answers --------------------------------------------------------

EXPECTED_CLASSES = {
    "ERROR_APPID": AuthenticationError,
    "ERROR_CLIENT_IP": AuthenticationError,
    "ERROR_ENCRYPTION": AuthenticationError,
    "ERROR_REQUESTTIME": AuthenticationError,
    "ERROR_REQUESTTIME_TIMEOUT": AuthenticationError,
    "ERROR_REQUEST_NO_VALID": AuthenticationError,
    "ERROR_REQUESTVALIDPERIOD": PermanentError,
    "ERROR_PARAMS": PermanentError,
    "ERROR_MOBILE_EMPTY": PermanentError,
    "ERROR_MOBILE_ERROR": PermanentError,
    "ERROR_MOBILE_NUMBER": LimitExceededError,
    "ERROR_CUSTOM_FMSID": LimitExceededError,
    "ERROR_BALANCE": InsufficientBalanceError,
    "ERROR_OVER_SPEED": RateLimitedError,
    "ERROR_TEMPLATE_NOT_EXIST": PermanentError,
    "ERROR_TEMPLATE_ID_ERROR": PermanentError,
    "ERROR_TEMPLATE_NOT_PASS": PermanentError,
    "ERROR_TEMPLATE_CONTENT": PermanentError,
    "ERROR_TEMPLATE_VARIABLE": PermanentError,
}


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED_CLASSES.items()))
def test_result_codes_map_onto_the_taxonomy(code: str, cls: type) -> None:
    with pytest.raises(cls) as exc:
        raise_for_result(f" {code} ", EP)
    assert type(exc.value) is cls
    assert exc.value.code == code and exc.value.vendor == VENDOR and exc.value.endpoint == EP
    assert not isinstance(exc.value, VendorError)


def test_result_header_edge_cases() -> None:
    assert raise_for_result("SUCCESS", EP) is None
    with pytest.raises(VendorError) as exc:
        raise_for_result("ERROR_SOMETHING_NEW", EP)
    assert exc.value.code == "ERROR_SOMETHING_NEW"
    for missing in (None, "", "  "):
        with pytest.raises(ProtocolError, match="no result header"):
            raise_for_result(missing, EP)


def test_parse_document_report_example() -> None:
    """The secure section's example, stray spaces included."""
    example = [
        {"mobile": "15900000000 ", "fmsId": "20180392833833891100",
         "customFmsId": "1553885000011111", "state": " DELIVRD", "desc": "成功",
         "receiveTime ": "2018-03-15 12:00:00", "submitTime": "2018-03-15 12:00:01"},
        {"mobile": "13500000000", "fmsId": "20180392833833891101", "state": "FAIL_MOBILE",
         "receiveTime": "2018-03-15 12:00:00", "submitTime": "bad time"},
        {"mobile": "13500000001", "state": "SOMETHING_NEW"},
    ]
    first, second, third = parse_reports(example, EP)
    assert (first.mobile, first.message_id, first.custom_id) == (
        "15900000000", "20180392833833891100", "1553885000011111")
    assert first.status is DeliveryStatus.DELIVERED and first.raw_state == "DELIVRD"
    assert first.report_time.isoformat() == "2018-03-15T12:00:00+08:00"
    assert first.submit_time.isoformat() == "2018-03-15T12:00:01+08:00"
    assert second.status is DeliveryStatus.FAILED and second.custom_id is None
    assert second.description == "手机号错误" and second.submit_time is None
    assert third.status is DeliveryStatus.UNKNOWN and third.raw_state == "SOMETHING_NEW"
    assert third.message_id is None
    assert parse_reports(None, EP) == [] and parse_reports([], EP) == []


@pytest.mark.parametrize("bad", [{"mobile": "1"}, [1], [{"mobile": "1"}], [{"state": "X"}],
                                 [{"mobile": {"a": 1}, "state": "DELIVRD"}], "[]"])
def test_parse_reports_refuses_bad_shapes(bad: Any) -> None:
    with pytest.raises(ProtocolError, match=EP):
        parse_reports(bad, EP)


def test_parse_template_answers() -> None:
    registered = parse_registered_template({"templateId": "20180392833833892100",
                                            "variable": "name, age"}, "ignored", EP)
    assert registered.template_id == "20180392833833892100"
    assert registered.variables == ("name", "age")
    # without "variable" the names come from the text we registered
    assert parse_registered_template({"templateId": 125688}, TEXT, EP).variables == (
        "name", "code")
    assert parse_registered_template({"templateId": "1", "variable": ""}, TEXT, EP
                                     ).variables == ()
    for bad in ({}, {"templateId": ""}, [], {"templateId": "1", "variable": 5}):
        with pytest.raises(ProtocolError):
            parse_registered_template(bad, TEXT, EP)

    example = {"templateId": "20180392833833892100", "status": {"cmcc": 1, "cucc": 0,
                                                                 "ctcc": 2}}
    t = parse_template_status(example, "x", EP)
    assert t.template_id == "20180392833833892100"
    assert t.approvals == {"cmcc": ApprovalState.APPROVED, "cucc": ApprovalState.PENDING,
                           "ctcc": ApprovalState.REJECTED}
    as_text = parse_template_status({"status": {"cmcc": "-1", "cucc": " 3", "ctcc": "1"}},
                                    "asked", EP)
    assert as_text.template_id == "asked"
    assert as_text.approvals == {"cmcc": ApprovalState.NOT_FOUND,
                                 "cucc": ApprovalState.UNSUPPORTED,
                                 "ctcc": ApprovalState.APPROVED}
    for bad in ({"status": {"cmcc": 4}}, {"status": {"cmcc": "yes"}},
                {"status": {"cmcc": True}}, {"status": {"cmcc": None}}, {"status": {}},
                {"status": "1"}, {}, "x"):
        with pytest.raises(ProtocolError, match=EP):
            parse_template_status(bad, "x", EP)


def test_parse_balance_forms() -> None:
    for good, amount in (({"balance": "10000"}, 10000), ("10000", 10000), (10000, 10000),
                         ({"balance": 12.5}, Decimal("12.5")), (" 7 ", 7)):
        [b] = parse_balance(good, EP)
        assert b.amount == Decimal(amount) and b.unit == "items"
    for bad in ({"balance": "lots"}, {}, [], None, True, "NaN", {"balance": None},
                {"balance": [1]}):
        with pytest.raises(ProtocolError, match=EP):
            parse_balance(bad, EP)


def test_parse_send_answers() -> None:
    sent = [("15900000000", "2018010709302911", 1), ("13700000000", "2018010709302912", 2)]
    example = [{"mobile": "15900000000", "fmsId": "2018010709302911",
                "customFmsId": "2018010709302911"},
               {"mobile": "13700000000", "fmsId": "2018010709302912",
                "customFmsId": " 2018010709302912"}]
    a, b = parse_submissions(list(reversed(example)), sent, EP)  # paired by content
    assert (a.message_id, a.custom_id, a.charge_items) == ("2018010709302911",
                                                           "2018010709302911", 1)
    assert (b.message_id, b.charge_items) == ("2018010709302912", 2)
    # single answer is an object; the same mobile twice without custom ids
    [single] = parse_submissions({"mobile": "15900000000", "fmsId": 42},
                                 [("15900000000", None, 1)], EP)
    assert single.message_id == "42"
    twice = parse_submissions([{"mobile": "159", "fmsId": "1"}, {"mobile": "159", "fmsId": "2"}],
                              [("159", None, 1), ("159", None, 1)], EP)
    assert [s.message_id for s in twice] == ["1", "2"]
    for bad in ([example[0]], [{"mobile": "15900000000"}, example[1]], ["x"], "x"):
        with pytest.raises(ProtocolError, match=EP):
            parse_submissions(bad, sent, EP)
