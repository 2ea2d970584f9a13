"""Emay IMS client against the simulator: both interfaces, every code, limits, faults, pushes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

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
from sms_provider.models import DeliveryStatus, SubmissionStatus
from sms_provider.simulator.state import unit_hash
from sms_provider.vendors import emay_common
from sms_provider.vendors.base import Capability, OutboundMessage
from sms_provider.vendors.clock import CHINA_TZ, china_now, china_stamp, epoch_ms
from sms_provider.vendors.codec import aes_encrypt, md5_hex
from sms_provider.vendors.emay_ims import (
    EmayImsClient,
    parse_plain_answer,
    parse_push_encrypted,
    parse_push_form,
    parse_secure_answer,
    reports_from_data,
    submissions_from_answer,
)
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess

VENDOR = "emay_ims"
APP_ID = DEFAULT_CONFIG[VENDOR]["app_id"]
SECRET = DEFAULT_CONFIG[VENDOR]["secret_key"]
OTHER_KEY = "ZZZZZZZZZZZZZZZZ"
AU = "0061422118000"
CN = "008613800138000"

#: a client's wire mode: its ``mode`` and ``gzip`` extras
Mode = dict[str, Any]
MODES = [
    pytest.param({"mode": "plain", "gzip": False}, id="plain"),
    pytest.param({"mode": "secure", "gzip": True}, id="secure-gzip"),
    pytest.param({"mode": "secure", "gzip": False}, id="secure-nogzip"),
]
SECURE_MODES = MODES[1:]
ALL_DELIVERED = {"simulation": {"outcomes": {"delivered": 1.0, "failed": 0, "silent": 0}}}
HALF_FAILED = {"simulation": {"outcomes": {"delivered": 0.5, "failed": 0.5, "silent": 0}}}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param


@pytest.fixture
def client(sim: SimulatorProcess, mode: Mode) -> Iterator[EmayImsClient]:
    with sim.client(VENDOR, **mode) as c:
        yield c


def msg(mobile: str = AU, content: str = "Your code is 1234", custom_id: str | None = None
        ) -> OutboundMessage:
    return OutboundMessage(mobile=mobile, content=content, custom_id=custom_id)


def numbers(n: int) -> list[str]:
    return [f"00614221{i:05d}" for i in range(n)]


# --- raw requests that bypass the client's own checks ------------------------------------
def raw_plain(sim: SimulatorProcess, endpoint: str, fields: dict[str, Any] | None = None, *,
              stamp: str | None = None, app_id: str = APP_ID, secret: str = SECRET,
              body: bytes | None = None) -> requests.Response:
    if body is None:
        stamp = stamp or china_stamp()
        payload = {"appId": app_id, "timestamp": stamp,
                   "sign": md5_hex(app_id + secret + stamp), **(fields or {})}
        body = json.dumps(payload).encode("utf-8")
    return requests.post(f"{sim.base_url}/inter/{endpoint}", data=body, timeout=5,
                         headers={"Content-Type": "application/json"})


def raw_secure(sim: SimulatorProcess, endpoint: str, payload: Any = None, *,
               key: str = SECRET, gzip_on: bool = True, app_id: str | None = APP_ID,
               timed: bool = True, body: bytes | None = None) -> requests.Response:
    if body is None:
        if timed:
            payload = {"requestTime": epoch_ms(), "requestValidPeriod": 60, **payload}
        body = emay_common.encode_secure(payload, key, gzip_on=gzip_on)
    headers = {"Content-Type": "application/octet-stream"}
    if app_id is not None:
        headers["appId"] = app_id
    if gzip_on:
        headers["gzip"] = "on"
    return requests.post(f"{sim.base_url}/secure/{endpoint}", data=body, headers=headers,
                         timeout=5)


def plain_code(resp: requests.Response) -> str:
    assert resp.status_code == 200
    return resp.json()["code"]


def secure_code(resp: requests.Response) -> str:
    assert resp.status_code == 200
    assert resp.content == b""  # errors carry no body
    return resp.headers["result"]


def plain_error(resp: requests.Response, endpoint: str) -> PermanentError:
    """What the client makes of a raw plain answer."""
    with pytest.raises(PermanentError) as info:
        parse_plain_answer(resp.content, f"/inter/{endpoint}")
    return info.value


def secure_error(resp: requests.Response, endpoint: str, gzip_on: bool = True
                 ) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        parse_secure_answer(resp.headers.get("result"), resp.content, SECRET,
                            gzip_on=gzip_on, endpoint=f"/secure/{endpoint}")
    return info.value


# --- construction and secrets ------------------------------------------------------------
def test_construction_checks_and_no_secret_in_repr(sim: SimulatorProcess) -> None:
    for mode in ({"mode": "plain", "gzip": False}, {"mode": "secure", "gzip": True}):
        with sim.client(VENDOR, **mode) as c:
            assert SECRET not in repr(c)
            assert APP_ID in repr(c)
            assert c.supports(Capability.SEND) and c.supports(Capability.PULL_REPORTS)
            assert c.supports(Capability.PUSH_REPORTS) and not c.supports(Capability.BALANCE)
            assert c.batch_limit == 300 and c.personalised_batches
            assert c.custom_id_scope == "message"
    bad_key = "short-secret"
    with pytest.raises(AuthenticationError) as info:
        sim.client(VENDOR, mode="secure", gzip=True, secret_key=bad_key)
    assert bad_key not in str(info.value) and "12 bytes" in str(info.value)
    sim.client(VENDOR, mode="plain", gzip=False, secret_key=bad_key).close()  # plain has no AES key
    with pytest.raises(ValueError, match="mode"):
        sim.client(VENDOR, mode="https", gzip=False)
    with pytest.raises(LimitExceededError, match="between 1 and 300"):
        sim.client(VENDOR, max_batch=301)
    with sim.client(VENDOR, max_batch=2) as c, \
            pytest.raises(LimitExceededError, match="limit is 2"):
        c.send([msg(m) for m in numbers(3)])


# --- sends -------------------------------------------------------------------------------
def test_single_send(client: EmayImsClient, sim: SimulatorProcess, mode: Mode
                     ) -> None:
    [sub] = client.send([msg(AU, "Hello from Emay", "cid-0001")])
    assert sub.status is SubmissionStatus.SUBMITTED
    assert sub.mobile == AU and sub.custom_id == "cid-0001" and sub.charge_items == 1
    assert sub.message_id and sub.message_id.isdigit() and len(sub.message_id) == 20
    assert sub.message_id.startswith(china_now().strftime("%Y%m%d"))
    [seen] = sim.messages(VENDOR)
    assert seen["endpoint"] == "sendSingleIMS" and seen["mode"] == mode["mode"]
    assert seen.get("gzip", False) is mode["gzip"]
    assert (seen["mobile"], seen["content"], seen["custom_id"]) == (AU, "Hello from Emay",
                                                                     "cid-0001")
    assert seen["message_id"] == sub.message_id and seen["charge_items"] == 1


def test_same_content_batch(client: EmayImsClient, sim: SimulatorProcess) -> None:
    text = "Sale ends tonight! " * 8  # 152 characters: 3 charge items
    batch = [msg(AU, text, "a1"), msg(CN, text), msg("0044770090012", text, "a3")]
    subs = client.send(batch)
    assert [s.mobile for s in subs] == [AU, CN, "0044770090012"]
    assert [s.custom_id for s in subs] == ["a1", None, "a3"]
    assert [s.charge_items for s in subs] == [3, 3, 3]
    assert len({s.message_id for s in subs}) == 3
    seen = sim.messages(VENDOR)
    assert {m["endpoint"] for m in seen} == {"sendBatchIMS"}
    assert [(m["mobile"], m["custom_id"], m["content"], m["charge_items"]) for m in seen] == [
        (AU, "a1", text, 3), (CN, None, text, 3), ("0044770090012", "a3", text, 3)]
    assert [m["message_id"] for m in seen] == [s.message_id for s in subs]
    assert sim.balance(VENDOR) == 1_000_000 - 9


def test_personalised_batch(client: EmayImsClient, sim: SimulatorProcess) -> None:
    batch = [msg(AU, "Hi Ann, 您的验证码 1234", "p1"), msg(CN, "Hi Bo, 您的验证码 5678", "p2")]
    subs = client.send(batch)
    assert [(s.mobile, s.custom_id) for s in subs] == [(AU, "p1"), (CN, "p2")]
    seen = sim.messages(VENDOR)
    assert {m["endpoint"] for m in seen} == {"sendPersonalityIMS"}
    assert [m["content"] for m in seen] == [m.content for m in batch]
    assert [m["message_id"] for m in seen] == [s.message_id for s in subs]


def test_full_batch_of_300(sim: SimulatorProcess) -> None:
    with sim.client(VENDOR) as c:
        subs = c.send([msg(m, "same", f"id{i}") for i, m in enumerate(numbers(300))])
        assert len(subs) == 300 and [s.custom_id for s in subs][-1] == "id299"
        with pytest.raises(LimitExceededError, match="301 recipients"):
            c.send([msg(m) for m in numbers(301)])
        with pytest.raises(LimitExceededError, match="no recipients"):
            c.send([])
    assert len(sim.messages(VENDOR)) == 300


# --- reports -----------------------------------------------------------------------------
def test_pull_reports_map_states_once(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.reset(emay_ims=HALF_FAILED)
    batch = [msg(m, f"text {i}", f"c{i}") for i, m in enumerate(numbers(20))]
    subs = client.send(batch)
    reports = client.pull_reports()
    assert len(reports) == 20 and client.pull_reports() == []  # consume-once
    outcome = {m["message_id"]: m["outcome"] for m in sim.messages(VENDOR)}
    assert set(outcome.values()) == {"delivered", "failed"}
    by_id = {r.message_id: r for r in reports}
    assert set(by_id) == {s.message_id for s in subs}
    for sub in subs:
        report = by_id[sub.message_id]
        assert report.mobile == sub.mobile and report.custom_id == sub.custom_id
        if outcome[sub.message_id] == "delivered":
            assert (report.raw_state, report.status) == ("DELIVRD", DeliveryStatus.DELIVERED)
        else:
            assert report.raw_state in emay_common.FAILURE_STATES
            assert report.status is DeliveryStatus.FAILED
        assert report.description == emay_common.STATE_DESCRIPTIONS[report.raw_state]
        assert report.submit_time is not None and report.report_time is not None
        assert report.submit_time.utcoffset() == timedelta(hours=8)
        assert abs(report.submit_time - datetime.now(CHINA_TZ)) < timedelta(minutes=1)


def test_failure_states_are_seeded_per_message(sim: SimulatorProcess) -> None:
    sim.reset(emay_ims={"simulation": {"outcomes": {"delivered": 0, "failed": 1.0,
                                                    "silent": 0}}})
    with sim.client(VENDOR) as c:
        c.send([msg(m, "x") for m in numbers(30)])
        reports = c.pull_reports()
    assert len(reports) == 30 and {r.status for r in reports} == {DeliveryStatus.FAILED}
    assert len({r.raw_state for r in reports}) > 1  # spread over the failure states
    seed = DEFAULT_CONFIG["simulation"]["seed"]
    failures = emay_common.FAILURE_STATES
    for r in reports:
        assert r.raw_state == failures[int(unit_hash(seed, r.message_id) * len(failures))]


def test_pull_limit(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.reset(emay_ims=ALL_DELIVERED)
    client.send([msg(m) for m in numbers(5)])
    assert len(client.pull_reports(limit=2)) == 2
    assert len(client.pull_reports(limit=500)) == 3
    assert client.pull_reports(limit=1) == []
    for bad in (0, 501):
        with pytest.raises(LimitExceededError, match=r"outside 1\.\.500"):
            client.pull_reports(limit=bad)


def test_simulator_refuses_oversized_pull(sim: SimulatorProcess) -> None:
    resp = raw_plain(sim, "getIMSReport", {"number": 501})
    assert plain_code(resp) == "ERROR_PARAMS"
    assert plain_error(resp, "getIMSReport").code == "ERROR_PARAMS"
    resp = raw_secure(sim, "getIMSReport", {"number": 501})
    assert secure_code(resp) == "ERROR_PARAMS"
    assert plain_code(raw_plain(sim, "getIMSReport", {})) == "SUCCESS"  # number is optional


# --- authentication ----------------------------------------------------------------------
def test_wrong_secret_plain_is_sign_error(sim: SimulatorProcess) -> None:
    wrong = "not-the-right-secret"
    with sim.client(VENDOR, secret_key=wrong) as c, pytest.raises(AuthenticationError) as info:
        c.send([msg()])
    assert info.value.code == "ERROR_SIGN" and info.value.endpoint == "/inter/sendSingleIMS"
    assert wrong not in str(info.value) and SECRET not in str(info.value)
    assert sim.messages(VENDOR) == []


def test_wrong_app_id(sim: SimulatorProcess, mode: Mode) -> None:
    with sim.client(VENDOR, **mode, app_id="EUCP-EMY-IMS1-OTHER") as c:
        with pytest.raises(AuthenticationError) as info:
            c.send([msg()])
        assert info.value.code == "ERROR_APPID"
        with pytest.raises(AuthenticationError):
            c.pull_reports()
    assert sim.messages(VENDOR) == []


@pytest.mark.parametrize("gzip_on", [True, False])
def test_wrong_key_secure_is_encryption_error(sim: SimulatorProcess, gzip_on: bool) -> None:
    sim.reset(emay_ims={"secret_key": OTHER_KEY})
    with sim.client(VENDOR, mode="secure", gzip=gzip_on) as c:
        with pytest.raises(AuthenticationError) as info:
            c.send([msg()])
        assert info.value.code == "ERROR_ENCRYPTION"
        assert SECRET not in str(info.value) and OTHER_KEY not in str(info.value)
        with pytest.raises(AuthenticationError):
            c.pull_reports()
    assert sim.messages(VENDOR) == []


def test_plain_timestamp_outside_window(sim: SimulatorProcess) -> None:
    stale = china_stamp(china_now() - timedelta(hours=1))
    resp = raw_plain(sim, "sendSingleIMS", {"mobile": AU, "content": "x"}, stamp=stale)
    assert plain_code(resp) == "ERROR_TIMESTAMP"
    err = plain_error(resp, "sendSingleIMS")
    assert isinstance(err, AuthenticationError) and err.code == "ERROR_TIMESTAMP"
    future = china_stamp(china_now() + timedelta(minutes=11))
    assert plain_code(raw_plain(sim, "sendSingleIMS", {"mobile": AU, "content": "x"},
                                stamp=future)) == "ERROR_TIMESTAMP"
    for bad in ("2024-01-01 10:00", "20241399000000"):
        assert plain_code(raw_plain(sim, "getIMSReport", stamp=bad)) == "ERROR_TIMESTAMP"
    sim.reset(emay_ims={"timestamp_window_s": 7200})
    assert plain_code(raw_plain(sim, "getIMSReport", stamp=stale)) == "SUCCESS"
    assert sim.messages(VENDOR) == []


def test_secure_request_time_checks(sim: SimulatorProcess) -> None:
    cases = [
        ({"requestTime": epoch_ms() - 120_000, "requestValidPeriod": 60},
         "ERROR_REQUESTTIME_TIMEOUT", AuthenticationError),
        ({"requestValidPeriod": 60}, "ERROR_REQUESTTIME", AuthenticationError),
        ({"requestTime": str(epoch_ms()), "requestValidPeriod": 60}, "ERROR_REQUESTTIME",
         AuthenticationError),
        ({"requestTime": epoch_ms()}, "ERROR_REQUESTVALIDPERIOD", PermanentError),
        ({"requestTime": epoch_ms(), "requestValidPeriod": 0}, "ERROR_REQUESTVALIDPERIOD",
         PermanentError),
    ]
    for timing, code, cls in cases:
        payload = {"mobile": AU, "content": "x", **timing}
        resp = raw_secure(sim, "sendSingleIMS", payload, timed=False)
        assert secure_code(resp) == code, timing
        err = secure_error(resp, "sendSingleIMS")
        assert type(err) is cls and err.code == code
    ok = {"mobile": AU, "content": "x", "requestTime": epoch_ms() - 50_000,
          "requestValidPeriod": 60}
    assert raw_secure(sim, "sendSingleIMS", ok, timed=False).headers["result"] == "SUCCESS"
    assert len(sim.messages(VENDOR)) == 1


# --- parameter errors and limits, the simulator's own refusals ---------------------------
def test_simulator_parameter_errors_plain(sim: SimulatorProcess) -> None:
    bad_bodies = [b"not json", b"\xff\xfe\x00", b"[1, 2]", b"{}",
                  json.dumps({"appId": APP_ID, "timestamp": china_stamp()}).encode()]
    for body in bad_bodies:
        assert plain_code(raw_plain(sim, "sendSingleIMS", body=body)) == "ERROR_PARAMS", body
    wrong_types = [("sendSingleIMS", {"mobile": 61422118000, "content": "x"}),
                   ("sendSingleIMS", {"mobile": AU, "content": ["x"]}),
                   ("sendSingleIMS", {"mobile": AU, "content": "x", "customImsId": 5}),
                   ("sendBatchIMS", {"content": "x", "imses": "0061422118000"}),
                   ("sendBatchIMS", {"content": "x", "imses": [AU]}),
                   ("sendPersonalityIMS", {"imses": {"mobile": AU}}),
                   ("getIMSReport", {"number": "500"}),
                   ("getIMSReport", {"number": True})]
    for endpoint, fields in wrong_types:
        resp = raw_plain(sim, endpoint, fields)
        assert plain_code(resp) == "ERROR_PARAMS", fields
    err = plain_error(resp, "getIMSReport")
    assert type(err) is PermanentError and err.code == "ERROR_PARAMS"
    assert requests.get(f"{sim.base_url}/inter/sendSingleIMS", timeout=5).status_code == 405
    assert sim.messages(VENDOR) == []


def test_simulator_parameter_errors_secure(sim: SimulatorProcess) -> None:
    garbage = [b"", b"short", os.urandom(48), bytes(range(32))]
    for body in garbage:
        assert secure_code(raw_secure(sim, "sendSingleIMS", body=body)) == "ERROR_ENCRYPTION"
    not_json = aes_encrypt(SECRET, b"{not json")
    assert secure_code(raw_secure(sim, "sendSingleIMS", body=not_json, gzip_on=False)
                       ) == "ERROR_PARAMS"
    plain_bytes_flagged_gzip = aes_encrypt(SECRET, b'{"mobile": "x"}')
    assert secure_code(raw_secure(sim, "sendSingleIMS", body=plain_bytes_flagged_gzip,
                                  gzip_on=True)) == "ERROR_ENCRYPTION"
    listed = emay_common.encode_secure([1, 2], SECRET, gzip_on=True)
    assert secure_code(raw_secure(sim, "sendSingleIMS", body=listed)) == "ERROR_PARAMS"
    resp = raw_secure(sim, "sendBatchIMS", {"content": "x", "imses": [AU]})
    assert secure_code(resp) == "ERROR_PARAMS"
    for app_id in (None, "", "EUCP-EMY-IMS1-OTHER"):
        resp = raw_secure(sim, "sendSingleIMS", {"mobile": AU, "content": "x"}, app_id=app_id)
        assert secure_code(resp) == "ERROR_APPID"
    err = secure_error(resp, "sendSingleIMS")
    assert isinstance(err, AuthenticationError) and err.code == "ERROR_APPID"
    assert sim.messages(VENDOR) == []


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_simulator_refuses_each_limit(sim: SimulatorProcess, secure: bool) -> None:
    cases = [
        ("sendSingleIMS", {"content": "x"}, "ERROR_MOBILE_EMPTY", PermanentError),
        ("sendSingleIMS", {"mobile": "", "content": "x"}, "ERROR_MOBILE_EMPTY",
         PermanentError),
        ("sendBatchIMS", {"content": "x", "imses": []}, "ERROR_MOBILE_EMPTY", PermanentError),
        ("sendSingleIMS", {"mobile": "61422118000", "content": "x"}, "ERROR_MOBILE_ERROR",
         PermanentError),
        ("sendPersonalityIMS", {"imses": [{"mobile": "+61422118000", "content": "x"}]},
         "ERROR_MOBILE_ERROR", PermanentError),
        ("sendBatchIMS", {"content": "x", "imses": [{"mobile": m} for m in numbers(301)]},
         "ERROR_MOBILE_NUMBER", LimitExceededError),
        ("sendPersonalityIMS",
         {"imses": [{"mobile": m, "content": "x"} for m in numbers(301)]},
         "ERROR_MOBILE_NUMBER", LimitExceededError),
        ("sendSingleIMS", {"mobile": AU, "content": ""}, "ERROR_CONTENT_EMPTY",
         PermanentError),
        ("sendBatchIMS", {"imses": [{"mobile": AU}]}, "ERROR_CONTENT_EMPTY", PermanentError),
        ("sendPersonalityIMS", {"imses": [{"mobile": AU}]}, "ERROR_CONTENT_EMPTY",
         PermanentError),
        ("sendSingleIMS", {"mobile": AU, "content": "x" * 1001}, "ERROR_LONG_CONTENT",
         LimitExceededError),
        ("sendPersonalityIMS", {"imses": [{"mobile": AU, "content": "好" * 1001}]},
         "ERROR_LONG_CONTENT", LimitExceededError),
        ("sendSingleIMS", {"mobile": AU, "content": "x", "customImsId": "9" * 33},
         "ERROR_CUSTOM_IMSID", LimitExceededError),
        ("sendBatchIMS", {"content": "x", "imses": [{"mobile": AU, "customImsId": "9" * 33}]},
         "ERROR_CUSTOM_IMSID", LimitExceededError),
    ]
    for endpoint, fields, code, cls in cases:
        if secure:
            resp = raw_secure(sim, endpoint, fields)
            assert secure_code(resp) == code, (endpoint, fields)
            err = secure_error(resp, endpoint)
        else:
            resp = raw_plain(sim, endpoint, fields)
            assert plain_code(resp) == code, (endpoint, fields)
            err = plain_error(resp, endpoint)
        assert type(err) is cls and err.code == code
    edge = {"mobile": AU, "content": "好" * 1000, "customImsId": "9" * 32}
    if secure:
        assert raw_secure(sim, "sendSingleIMS", edge).headers["result"] == "SUCCESS"
    else:
        assert plain_code(raw_plain(sim, "sendSingleIMS", edge)) == "SUCCESS"
    [seen] = sim.messages(VENDOR)
    assert seen["charge_items"] == 15 and seen["custom_id"] == "9" * 32


def test_client_refuses_limits_before_sending(sim: SimulatorProcess) -> None:
    with sim.client(VENDOR) as c:
        with pytest.raises(LimitExceededError,
                           match="1001 characters in message 1, the limit is 1000"):
            c.send([msg(AU, "ok"), msg(CN, "x" * 1001)])
        with pytest.raises(LimitExceededError, match=r"content is empty in message 0"):
            c.send([msg(AU, "")])
        with pytest.raises(LimitExceededError, match=r"message 2 is 33 characters.*32"):
            c.send([msg(m, "x", "1" * (32 if i < 2 else 33)) for i, m in enumerate(numbers(3))])
        for bad in ("61422118000", "+61422118000", "", "00614 2211"):
            with pytest.raises(PermanentError, match="mobile in message 1 is not 00"):
                c.send([msg(AU), msg(bad)])
        with pytest.raises(PermanentError, match="no templates"):
            c.send([msg()], template_id="T1")
    with sim.client(VENDOR, max_content_chars=200) as c, pytest.raises(
            LimitExceededError, match="limit is 200"):
        c.send([msg(AU, "x" * 201)])
    assert sim.messages(VENDOR) == []


def test_simulator_long_content_reaches_client(sim: SimulatorProcess, mode: Mode
                                               ) -> None:
    with sim.client(VENDOR, **mode, max_content_chars=2000) as c, pytest.raises(
            LimitExceededError) as info:
        c.send([msg(AU, "y" * 1500)])
    assert info.value.code == "ERROR_LONG_CONTENT"
    sim.reset(emay_ims={"max_content_chars": 10})
    with sim.client(VENDOR, **mode) as c, pytest.raises(LimitExceededError):
        c.send([msg(AU, "eleven char")])
    assert sim.messages(VENDOR) == []


# --- balance and speed -------------------------------------------------------------------
def test_no_balance(sim: SimulatorProcess, mode: Mode) -> None:
    sim.reset(emay_ims={"balance": 2})
    with sim.client(VENDOR, **mode) as c:
        with pytest.raises(InsufficientBalanceError) as info:
            c.send([msg(m) for m in numbers(3)])
        assert info.value.code == "ERROR_BALANCE"
        assert sim.messages(VENDOR) == [] and sim.balance(VENDOR) == 2
        assert len(c.send([msg(m) for m in numbers(2)])) == 2
    assert sim.balance(VENDOR) == 0


def test_over_speed(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.faults({"kind": "rate_limit", "vendor": VENDOR, "path": "IMS", "count": 2})
    with pytest.raises(RateLimitedError) as info:
        client.send([msg()])
    assert info.value.code == "ERROR_OVER_SPEED" and info.value.retry_after == 1.0
    with pytest.raises(RateLimitedError):
        client.pull_reports()
    assert sim.messages(VENDOR) == []
    assert len(client.send([msg()])) == 1


# --- codes only a real platform gives ----------------------------------------------------
def test_codes_the_simulator_never_answers() -> None:
    canned = {"ERROR_CLIENT_IP": AuthenticationError,
              "ERROR_REQUEST_NO_VALID": AuthenticationError,
              "ERROR_SOMETHING_NEW": VendorError}
    for code, cls in canned.items():
        with pytest.raises(cls) as plain:
            parse_plain_answer(json.dumps({"code": code}).encode(), "/inter/sendSingleIMS")
        with pytest.raises(cls) as secure:
            parse_secure_answer(f" {code} ", b"", SECRET, gzip_on=True,
                                endpoint="/secure/sendSingleIMS")
        assert plain.value.code == secure.value.code == code
        assert plain.value.vendor == VENDOR and "/inter/sendSingleIMS" in str(plain.value)


# --- transport faults --------------------------------------------------------------------
def test_answer_lost_after_accept(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.reset(emay_ims=ALL_DELIVERED)
    sim.faults({"kind": "accept_drop", "vendor": VENDOR, "path": "send"})
    with pytest.raises(AmbiguousError) as info:
        client.send([msg(AU, "lost answer", "lost-1")])
    assert not isinstance(info.value, ProtocolError)
    [seen] = sim.messages(VENDOR)
    assert (seen["mobile"], seen["custom_id"], seen["content"]) == (AU, "lost-1", "lost answer")
    sim.faults({"kind": "accept_drop", "vendor": VENDOR, "path": "getIMSReport"})
    with pytest.raises(AmbiguousError):
        client.pull_reports()
    sim.clear_faults()
    assert client.pull_reports() == []  # the platform handed that report out already


def test_dropped_connection(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.faults({"kind": "drop", "vendor": VENDOR})
    with pytest.raises(AmbiguousError):
        client.send([msg()])
    with pytest.raises(AmbiguousError):  # a lost pull answer loses reports: not retryable
        client.pull_reports()
    assert sim.messages(VENDOR) == []


def test_http_status_faults(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.faults({"kind": "status", "vendor": VENDOR, "status": 503})
    with pytest.raises(RetryableError) as info:
        client.send([msg()])
    assert info.value.code == "503"
    with pytest.raises(RetryableError):
        client.pull_reports()
    sim.faults({"kind": "status", "vendor": VENDOR, "status": 500, "after": True})
    with pytest.raises(AmbiguousError):
        client.send([msg()])
    assert len(sim.messages(VENDOR)) == 1


def test_garbled_answer(client: EmayImsClient, sim: SimulatorProcess) -> None:
    sim.faults({"kind": "garble", "vendor": VENDOR})
    with pytest.raises(ProtocolError) as info:
        client.send([msg()])
    assert "/sendSingleIMS" in str(info.value)
    with pytest.raises(ProtocolError):
        client.pull_reports()
    assert len(sim.messages(VENDOR)) == 1


# --- answers that make no sense ----------------------------------------------------------
def test_nonsense_plain_answers() -> None:
    endpoint = "/inter/sendBatchIMS"
    for body, what in [(b"<html>", "not JSON"), (b"\xff\xfe", "not JSON"),
                       (b"[]", "not an object"), (b"{}", "no code"),
                       (b'{"code": 7}', "no code")]:
        with pytest.raises(ProtocolError, match=what) as info:
            parse_plain_answer(body, endpoint)
        assert info.value.endpoint == endpoint


def test_nonsense_secure_answers() -> None:
    endpoint = "/secure/sendSingleIMS"
    with pytest.raises(ProtocolError, match="no result header"):
        parse_secure_answer(None, b"", SECRET, gzip_on=True, endpoint=endpoint)
    good = emay_common.encode_secure({"mobile": AU, "imsId": "1"}, SECRET, gzip_on=True)
    with pytest.raises(ProtocolError, match="cannot be decoded"):
        parse_secure_answer("SUCCESS", good, OTHER_KEY, gzip_on=True, endpoint=endpoint)
    with pytest.raises(ProtocolError, match="cannot be decoded"):
        parse_secure_answer("SUCCESS", good[:-3], SECRET, gzip_on=True, endpoint=endpoint)
    with pytest.raises(ProtocolError, match="cannot be decoded"):  # gzip flag disagrees
        parse_secure_answer("SUCCESS", emay_common.encode_secure({}, SECRET, gzip_on=False),
                            SECRET, gzip_on=True, endpoint=endpoint)
    assert parse_secure_answer("SUCCESS", good, SECRET, gzip_on=True, endpoint=endpoint) == {
        "mobile": AU, "imsId": "1"}
    empty = parse_secure_answer("SUCCESS", b"", SECRET, gzip_on=True, endpoint=endpoint)
    with pytest.raises(ProtocolError, match="missing"):
        submissions_from_answer([msg()], empty, endpoint)


def test_answers_that_do_not_match_the_request() -> None:
    sent = [msg(AU, "x", "c1"), msg(CN, "x", "c2")]
    endpoint = "/inter/sendBatchIMS"
    good = [{"mobile": AU, "imsId": "11"}, {"mobile": CN, "imsId": 12}]
    subs = submissions_from_answer(sent, good, endpoint)
    assert [(s.message_id, s.custom_id) for s in subs] == [("11", "c1"), ("12", "c2")]
    wrong = [
        ([good[0]], "1 entries for 2"),
        ([good[1], good[0]], "entry 0 is for another mobile"),
        ([good[0], {"mobile": CN}], "entry 1 has no imsId"),
        ([good[0], {"mobile": CN, "imsId": ""}], "entry 1 has no imsId"),
        ([good[0], "12"], "entry 1 is not an object"),
        ({"mobile": AU, "imsId": "11"}, "1 entries for 2"),
        (None, "missing or not a list"),
        ("SUCCESS", "missing or not a list"),
    ]
    for data, what in wrong:
        with pytest.raises(ProtocolError, match=what):
            submissions_from_answer(sent, data, endpoint)


def test_documented_answers_parse() -> None:
    single = b"""{"code": "SUCCESS", "data": {"mobile":" 0061422118000",
        "imsId":"20180392833833892100", "customImsId":"2018010709302911"}}"""
    [sub] = submissions_from_answer([msg(AU, "x", "2018010709302911")],
                                    parse_plain_answer(single, "/inter/sendSingleIMS"),
                                    "/inter/sendSingleIMS")
    assert sub.message_id == "20180392833833892100" and sub.custom_id == "2018010709302911"
    report = b"""{"code": "SUCCESS", "data": [
        {"mobile":"0061422118000", "imsId":"20180392833833891100",
         "customImsId":"1553885000011111", "state":" DELIVRD", "desc":"\xe6\x88\x90\xe5\x8a\x9f",
         "receiveTime ":"2018-03-15 12:00:00", "submitTime":"2018-03-15 12:00:01"},
        {"mobile":"0061422118001", "imsId":"20180392833833891101",
         "state":"FAIL_MOBILE", "receiveTime ":"2018-03-15 12:00:00",
         "submitTime":"2018-03-15 12:00:00"},
        {"mobile":"0061422118002", "state":"SOMETHING_ELSE",
         "receiveTime":"nonsense", "submitTime":"2018-03-15 12:00:00"}]}"""
    first, second, third = reports_from_data(parse_plain_answer(report, "r"), "r")
    assert (first.raw_state, first.status, first.description) == (
        "DELIVRD", DeliveryStatus.DELIVERED, "成功")
    assert first.report_time == datetime(2018, 3, 15, 12, 0, tzinfo=CHINA_TZ)
    assert first.submit_time == datetime(2018, 3, 15, 12, 0, 1, tzinfo=CHINA_TZ)
    assert first.raw["receiveTime"] == "2018-03-15 12:00:00"
    assert (second.status, second.custom_id) == (DeliveryStatus.FAILED, None)
    assert third.status is DeliveryStatus.UNKNOWN and third.raw_state == "SOMETHING_ELSE"
    assert third.message_id is None and third.report_time is None
    assert reports_from_data(None, "r") == [] and reports_from_data([], "r") == []
    for data, what in [({"mobile": AU}, "not a list"), ([[1]], "report 0 is not an object"),
                       ([{"mobile": AU}], "report 0 has no state"),
                       ([{"state": "DELIVRD", "mobile": " "}], "report 0 has no mobile")]:
        with pytest.raises(ProtocolError, match=what):
            reports_from_data(data, "r")


# --- pushes ------------------------------------------------------------------------------
def _keys(app_id: str) -> str | None:
    return SECRET if app_id == APP_ID else None


def test_encrypted_push_from_simulator(sim: SimulatorProcess, push_sink: Any) -> None:
    sim.reset(emay_ims={**HALF_FAILED, "push_url": push_sink.url + "/ims/reports"})
    with sim.client(VENDOR) as c:
        subs = c.send([msg(m, "pushed", f"p{i}") for i, m in enumerate(numbers(12))])
    push_sink.wait_for(1)
    deadline = time.monotonic() + 10
    reports = []
    while time.monotonic() < deadline:
        reports = [r for p in push_sink.requests
                   for r in parse_push_encrypted(p.body, p.headers.get("appid"), _keys)]
        if len(reports) >= 12:
            break
        time.sleep(0.05)
    pushes = push_sink.requests
    assert {(p.method, p.path) for p in pushes} == {("POST", "/ims/reports")}
    assert all(p.headers["appid"] == APP_ID for p in pushes)
    outcome = {m["message_id"]: m["outcome"] for m in sim.messages(VENDOR)}
    assert sorted(r.message_id for r in reports) == sorted(s.message_id for s in subs)
    by_id = {s.message_id: s for s in subs}
    for r in reports:
        assert r.raw["appId"] == APP_ID
        assert (r.mobile, r.custom_id) == (by_id[r.message_id].mobile,
                                           by_id[r.message_id].custom_id)
        expected = (DeliveryStatus.DELIVERED if outcome[r.message_id] == "delivered"
                    else DeliveryStatus.FAILED)
        assert r.status is expected and r.report_time is not None
    with sim.client(VENDOR) as c:
        assert c.pull_reports() == []  # pushed reports are not pulled again


def test_plain_push_from_simulator(sim: SimulatorProcess, push_sink: Any) -> None:
    sim.reset(emay_ims={**ALL_DELIVERED, "push_url": push_sink.url + "/ims/plain",
                        "push_mode": "plain"})
    with sim.client(VENDOR, mode="secure", gzip=True) as c:
        subs = c.send([msg(AU, "a", "x1"), msg(CN, "b", "x2")])
    deadline = time.monotonic() + 10
    reports = []
    while len(reports) < 2 and time.monotonic() < deadline:
        reports = [r for p in push_sink.requests
                   for r in parse_push_form(parse_qs(p.body.decode())["reports"][0])]
        time.sleep(0.05)
    assert "x-www-form-urlencoded" in push_sink.requests[0].headers["content-type"]
    assert sorted((r.message_id, r.mobile, r.custom_id, r.raw_state) for r in reports) == sorted(
        (s.message_id, s.mobile, s.custom_id, "DELIVRD") for s in subs)


DOC_PUSH = """[{"appId":"EUCP-EMY-IMS1-2LI5D","customImsId":"1553885000011112",
 "imsId":"156393383139500999","state":"FAIL_BALANCE","desc":"余额不足",
 "mobile":"15903160501","receiveTime":"2019-07-24 10:03:51","submitTime":"2019-07-24 10:03:51"},
 {"appId":"EUCP-EMY-IMS1-2LI5D","customImsId":"1553885000011113",
 "imsId":"156393383139500999","state":"FAIL_BALANCE","desc":"余额不足",
 "mobile":"15903160502","receiveTime":"2019-07-24 10:03:51","submitTime":"2019-07-24 10:03:51"}]"""
DOC_APP = "EUCP-EMY-IMS1-2LI5D"


@pytest.mark.parametrize("gzip_on", [True, False])
def test_documented_encrypted_push(gzip_on: bool) -> None:
    body = emay_common.encode_secure(json.loads(DOC_PUSH), SECRET, gzip_on=gzip_on)
    reports = parse_push_encrypted(body, DOC_APP, lambda app: SECRET if app == DOC_APP else None)
    assert [(r.mobile, r.custom_id, r.raw_state, r.status, r.description) for r in reports] == [
        ("15903160501", "1553885000011112", "FAIL_BALANCE", DeliveryStatus.FAILED, "余额不足"),
        ("15903160502", "1553885000011113", "FAIL_BALANCE", DeliveryStatus.FAILED, "余额不足")]
    assert reports[0].report_time == datetime(2019, 7, 24, 10, 3, 51, tzinfo=CHINA_TZ)


def test_documented_plain_push() -> None:
    reports = parse_push_form(DOC_PUSH)
    assert [r.message_id for r in reports] == ["156393383139500999"] * 2
    assert [r.raw["appId"] for r in reports] == [DOC_APP] * 2


def test_bad_pushes() -> None:
    body = emay_common.encode_secure(json.loads(DOC_PUSH), SECRET, gzip_on=True)
    only_doc = {DOC_APP: SECRET}.get
    with pytest.raises(AuthenticationError, match="unknown appId") as info:
        parse_push_encrypted(body, "EUCP-SOMEONE-ELSE", only_doc)
    assert SECRET not in str(info.value)
    for missing in (None, "", "  "):
        with pytest.raises(AuthenticationError, match="no appId"):
            parse_push_encrypted(body, missing, only_doc)
    with pytest.raises(ProtocolError, match="cannot be decoded"):
        parse_push_encrypted(body, DOC_APP, lambda app: OTHER_KEY)
    with pytest.raises(ProtocolError, match="cannot be decoded"):
        parse_push_encrypted(b"", DOC_APP, only_doc)
    with pytest.raises(ProtocolError, match="another appId"):
        parse_push_encrypted(body, APP_ID, _keys)
    for payload, what in [({"reports": []}, "not a list"), ([{"mobile": "1"}], "no state")]:
        with pytest.raises(ProtocolError, match=what):
            parse_push_encrypted(emay_common.encode_secure(payload, SECRET, gzip_on=True),
                                 DOC_APP, only_doc)
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_push_encrypted(aes_encrypt(SECRET, b"\x00garbage"), DOC_APP, only_doc)
    for field, what in [("", "no reports field"), ("[{", "not JSON"), ('{"a": 1}', "not a list"),
                        ("[1]", "not an object")]:
        with pytest.raises(ProtocolError, match=what):
            parse_push_form(field)
