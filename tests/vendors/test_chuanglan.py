"""Chuanglan-style client against the simulator over real HTTP, and the push parsers."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

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
from sms_provider.models import Balance, DeliveryStatus, SubmissionStatus
from sms_provider.simulator.chuanglan import FAILURE_STATES
from sms_provider.vendors.base import Capability, OutboundMessage
from sms_provider.vendors.chuanglan import (
    BALANCE_PATH,
    CODES,
    SEND_PATH,
    parse_balance_response,
    parse_emshead,
    parse_push_mo,
    parse_push_report,
    parse_send_response,
    verify_push_credentials,
)
from sms_provider.vendors.clock import CHINA_TZ
from tests.simulator_harness import credentials

V = "chuanglan"
ACCOUNT, PASSWORD = credentials(V)
TEXT = "【朗宇信息】您好，您的验证码是1234"
MOBILES = ["13800138000", "18900000000", "13912345678"]
ALL_DELIVERED = {"simulation": {"outcomes": {"delivered": 1.0, "failed": 0, "silent": 0}}}
ALL_FAILED = {"simulation": {"outcomes": {"delivered": 0, "failed": 1.0, "silent": 0}}}


@pytest.fixture
def client(sim):
    with sim.client(V) as c:
        yield c


def batch(mobiles=MOBILES, content=TEXT, **kwargs) -> list[OutboundMessage]:
    return [OutboundMessage(mobile=m, content=content, **kwargs) for m in mobiles]


def raw(sim, path=SEND_PATH, method="POST", **params) -> str:
    """Call the simulator directly, past every client-side check."""
    base = {"account": ACCOUNT, "pswd": PASSWORD, "needstatus": "true"}
    fields = {**base, **params}
    if method == "GET":
        resp = requests.get(sim.base_url + path, params=fields, timeout=10)
    else:
        resp = requests.post(sim.base_url + path, data=fields, timeout=10)
    assert resp.status_code == 200
    return resp.text


# --- send ------------------------------------------------------------------
def test_send_one_msgid_for_all_numbers(sim, client):
    subs = client.send(batch(custom_id=None))
    msgid = subs[0].message_id
    assert msgid and msgid.isdigit() and len(msgid) >= 13
    assert [s.mobile for s in subs] == MOBILES
    assert all(s.message_id == msgid and s.status is SubmissionStatus.SUBMITTED
               and s.charge_items == 1 and s.vendor_code == "0" for s in subs)
    got = sim.messages(V)
    assert [m["mobile"] for m in got] == MOBILES
    assert all(m["content"] == TEXT and m["batch_id"] == msgid and m["charge_items"] == 1
               and m["product"] == "1" and m["needstatus"] is True for m in got)
    assert len({m["message_id"] for m in got}) == 3
    assert sim.balance(V) == 1_000_000 - 3


def test_send_long_content_is_charged_per_piece(sim, client):
    content = "【签名】" + "长" * 150  # 154 characters: 3 pieces of 67
    subs = client.send(batch(content=content))
    assert {s.charge_items for s in subs} == {3}
    assert {m["charge_items"] for m in sim.messages(V)} == {3}
    assert sim.balance(V) == 1_000_000 - 9


def test_send_keeps_custom_ids_locally(sim, client):
    msgs = [OutboundMessage(mobile=m, content=TEXT, custom_id=f"c{i}")
            for i, m in enumerate(MOBILES)]
    assert [s.custom_id for s in client.send(msgs)] == ["c0", "c1", "c2"]


def test_send_without_needstatus_has_no_msgid(sim):
    with sim.client(V, needstatus=False) as c:
        subs = c.send(batch())
    assert all(s.message_id is None for s in subs)
    got = sim.messages(V)
    assert len(got) == 3 and all(m["needstatus"] is False for m in got)


def test_send_with_product_and_extno(sim):
    sim.reset(chuanglan={"products": ["274463133", "555"]})
    with sim.client(V, product="555", extno="0123") as c:
        c.send(batch(MOBILES[:1]))
    (m,) = sim.messages(V)
    assert m["product"] == "555" and m["extno"] == "0123"


def test_unknown_product_is_112(sim):
    with sim.client(V, product="999") as c, pytest.raises(PermanentError) as exc:
        c.send(batch())
    assert exc.value.code == "112" and type(exc.value) is PermanentError
    assert sim.messages(V) == []


def test_wrong_password_is_102_and_secret_free(sim, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55"
    with sim.client(V, password=secret) as c:
        assert secret not in repr(c)
        with pytest.raises(AuthenticationError) as exc:
            c.send(batch())
        assert exc.value.code == "102"
        with pytest.raises(AuthenticationError) as exc_balance:
            c.balance()
    assert exc_balance.value.code == "102"
    for text in (str(exc.value), str(exc_balance.value), repr(exc.value), caplog.text):
        assert secret not in text
    assert sim.messages(V) == []


def test_wrong_account_is_101(sim):
    with sim.client(V, account="nobody") as c:
        with pytest.raises(AuthenticationError) as exc:
            c.send(batch())
        assert exc.value.code == "101"
        with pytest.raises(AuthenticationError) as exc:
            c.balance()
        assert exc.value.code == "101"


def test_no_balance_is_109_and_nothing_charged(sim, client):
    sim.reset(chuanglan={"balance": 2})
    with pytest.raises(InsufficientBalanceError) as exc:
        client.send(batch())
    assert exc.value.code == "109"
    assert sim.messages(V) == [] and sim.balance(V) == 2


def test_missing_signature_is_116(sim, client):
    with pytest.raises(PermanentError) as exc:
        client.send(batch(content="您好，没有签名"))
    assert exc.value.code == "116"
    sim.reset(chuanglan={"require_signature": False})
    assert len(client.send(batch(content="您好，没有签名"))) == 3


def test_rate_limit_fault_is_103(sim, client):
    sim.faults({"kind": "rate_limit", "vendor": V, "path": "HttpBatchSendSM"})
    with pytest.raises(RateLimitedError) as exc:
        client.send(batch())
    assert exc.value.code == "103" and exc.value.retry_after == 1.0
    sim.faults({"kind": "rate_limit", "vendor": V, "path": "QueryBalance"})
    with pytest.raises(RateLimitedError) as exc:
        client.balance()
    assert exc.value.code == "103" and exc.value.retry_after == 10.0
    assert sim.messages(V) == []


def test_template_id_is_refused(client):
    with pytest.raises(PermanentError, match="no templates"):
        client.send(batch(), template_id="T1")


# --- limits ----------------------------------------------------------------
def test_content_limit_client_side(sim, client):
    with pytest.raises(LimitExceededError, match=r"537 characters in message 0.*limit is 536"):
        client.send(batch(content="【签名】" + "x" * 533))
    with pytest.raises(LimitExceededError, match="empty"):
        client.send(batch(content=""))
    with sim.client(V, max_content_chars=20) as c, pytest.raises(
            LimitExceededError, match="limit is 20"):
        c.send(batch(content="【签名】" + "x" * 17))
    assert sim.messages(V) == []
    assert len(client.send(batch(content="【签名】" + "x" * 532))) == 3


def test_content_limit_simulator_side(sim):
    with sim.client(V, max_content_chars=700) as c, pytest.raises(
            LimitExceededError) as exc:
        c.send(batch(content="【签名】" + "x" * 600))
    assert exc.value.code == "106"
    assert raw(sim, mobile=MOBILES[0], msg="【签名】" + "x" * 533).endswith(",106")
    assert raw(sim, mobile=MOBILES[0], msg="").endswith(",106")
    assert raw(sim, mobile=MOBILES[0]).endswith(",106")
    sim.reset(chuanglan={"max_content_chars": 10})
    with sim.client(V) as c, pytest.raises(LimitExceededError) as exc:
        c.send(batch(content=TEXT))
    assert exc.value.code == "106"
    assert sim.messages(V) == []


@pytest.mark.parametrize("bad", [0, 50_001])
def test_max_batch_setting_bounds(sim, bad):
    with pytest.raises(LimitExceededError, match="max_batch"):
        sim.client(V, max_batch=bad)


def test_number_limit_client_side(sim):
    with sim.client(V, max_batch=2) as c:
        with pytest.raises(LimitExceededError, match=r"3 recipients.*limit is 2"):
            c.send(batch())
        with pytest.raises(LimitExceededError, match="no recipients"):
            c.send([])
    with sim.client(V) as c:
        many = [OutboundMessage(mobile=f"13{i:09d}", content=TEXT) for i in range(50_001)]
        with pytest.raises(LimitExceededError, match=r"50001 recipients.*limit is 50000"):
            c.send(many)
    assert sim.messages(V) == []


def test_number_limit_simulator_side(sim):
    sim.reset(chuanglan={"max_numbers": 2})
    with sim.client(V) as c, pytest.raises(LimitExceededError) as exc:
        c.send(batch())
    assert exc.value.code == "108"
    sim.reset()
    numbers = ",".join(f"13{i:09d}" for i in range(50_001))
    assert raw(sim, mobile=numbers, msg=TEXT).endswith(",108")
    assert raw(sim, mobile="", msg=TEXT).endswith(",108")
    assert raw(sim, msg=TEXT).endswith(",108")
    assert raw(sim, mobile="12345,abc", msg=TEXT).endswith(",108")
    assert sim.messages(V) == []


def test_invalid_mobiles_client_side(client):
    for bad in ("+8613800138000", "8613800138000", "1380013800", "2380013800a"):
        with pytest.raises(LimitExceededError, match="message 1: mobile is not an 11-digit"):
            client.send(batch([MOBILES[0], bad]))


def test_invalid_mobiles_simulator_skips_them(sim):
    text = raw(sim, mobile=f"{MOBILES[0]},12345,{MOBILES[1]},+8613800138000", msg=TEXT)
    status_line, msgid = text.split("\n")
    assert status_line.endswith(",0")
    got = sim.messages(V)
    assert [m["mobile"] for m in got] == MOBILES[:2]
    assert {m["batch_id"] for m in got} == {msgid}
    assert sim.balance(V) == 1_000_000 - 2


def test_duplicate_and_mixed_content_refused(sim, client):
    with pytest.raises(LimitExceededError, match="message 2 repeats the mobile of message 0"):
        client.send(batch([MOBILES[0], MOBILES[1], MOBILES[0]]))
    mixed = batch(MOBILES[:1]) + batch(MOBILES[1:2], content=TEXT + "!")
    with pytest.raises(LimitExceededError, match="message 1 has different content"):
        client.send(mixed)
    assert sim.messages(V) == []


def test_extno_must_be_digits(sim):
    with pytest.raises(LimitExceededError, match="extno"):
        sim.client(V, extno="12a")
    answer = raw(sim, mobile=MOBILES[0], msg=TEXT, extno="12a")
    with pytest.raises(PermanentError) as exc:
        parse_send_response(answer, needstatus=True)
    assert exc.value.code == "113"
    assert sim.messages(V) == []


@pytest.mark.parametrize("kwargs", [
    {"account": ""}, {"password": ""}, {"max_content_chars": 0}, {"max_content_chars": 701},
])
def test_bad_settings_refused(sim, kwargs):
    with pytest.raises((AuthenticationError, LimitExceededError)):
        sim.client(V, **kwargs)


def test_capabilities(client):
    assert client.supports(Capability.SEND) and client.supports(Capability.BALANCE)
    assert client.supports(Capability.PUSH_REPORTS)
    assert not client.supports(Capability.PULL_REPORTS)
    assert client.batch_limit == 50_000 and client.max_batch == 50_000


# --- balance -----------------------------------------------------------------
def test_balance_per_product(sim, client):
    assert client.balance() == [Balance(Decimal(1_000_000), "items", "1")]
    sim.reset(chuanglan={"products": ["1234567", "1234531"], "balance": 500})
    client.send(batch())
    assert client.balance() == [Balance(Decimal(497), "items", "1234567"),
                                Balance(Decimal(497), "items", "1234531")]


def test_balance_query_too_fast_is_103(sim, client):
    sim.reset(chuanglan={"balance_query_interval_s": 30})
    assert len(client.balance()) == 1
    with pytest.raises(RateLimitedError) as exc:
        client.balance()
    assert exc.value.code == "103" and exc.value.retry_after == 10.0


def test_balance_over_get_as_in_the_document(sim):
    lines = raw(sim, BALANCE_PATH, method="GET").split("\n")
    assert lines[0].endswith(",0") and lines[1] == "1,1000000"


# --- transport faults --------------------------------------------------------
def test_accept_drop_is_ambiguous_but_recorded(sim, client):
    sim.faults({"kind": "accept_drop", "vendor": V, "path": "HttpBatchSendSM"})
    with pytest.raises(AmbiguousError):
        client.send(batch())
    assert [m["mobile"] for m in sim.messages(V)] == MOBILES


def test_drop_is_ambiguous_for_send_retryable_for_balance(sim, client):
    sim.faults({"kind": "drop", "vendor": V})
    with pytest.raises(AmbiguousError):
        client.send(batch())
    with pytest.raises(RetryableError):
        client.balance()
    assert sim.messages(V) == []


def test_503_is_retryable(sim, client):
    sim.faults({"kind": "status", "status": 503, "vendor": V})
    with pytest.raises(RetryableError):
        client.send(batch())
    with pytest.raises(RetryableError):
        client.balance()
    assert sim.messages(V) == []


def test_garble_is_protocol_error(sim, client):
    sim.faults({"kind": "garble", "vendor": V})
    with pytest.raises(ProtocolError, match="not UTF-8"):
        client.send(batch())
    assert len(sim.messages(V)) == 3
    with pytest.raises(ProtocolError):
        client.balance()


# --- code table and response parsing -------------------------------------------
EXPECTED_CLASSES = {
    "101": AuthenticationError, "102": AuthenticationError, "103": RateLimitedError,
    "104": RetryableError, "105": PermanentError, "106": LimitExceededError,
    "108": LimitExceededError, "109": InsufficientBalanceError, "110": PermanentError,
    "111": PermanentError, "112": PermanentError, "113": PermanentError,
    "115": PermanentError, "116": PermanentError, "117": AuthenticationError,
    "118": AuthenticationError, "119": AuthenticationError, "120": PermanentError,
}


def test_code_table_is_the_documented_one():
    assert set(CODES) == set(EXPECTED_CLASSES)


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED_CLASSES.items()))
def test_every_code_maps_to_the_taxonomy(code, cls):
    with pytest.raises(cls) as exc:
        parse_send_response(f"20110725160412,{code}", needstatus=True)
    assert type(exc.value) is cls and exc.value.code == code
    assert exc.value.endpoint == SEND_PATH


def test_unknown_code_keeps_the_raw_code():
    with pytest.raises(VendorError) as exc:
        parse_send_response("20110725160412,107\n", needstatus=True)
    assert exc.value.code == "107"
    with pytest.raises(VendorError) as exc:
        parse_balance_response("20110725160412,-1")
    assert exc.value.code == "-1"


def test_documented_send_examples():
    assert parse_send_response("20110725160412,0\n1234567890100", needstatus=True) \
        == "1234567890100"
    assert parse_send_response(b"20110725160412,0\r\n1234567890100\r\n",
                               needstatus=True) == "1234567890100"
    assert parse_send_response("20110725160412,0", needstatus=False) is None
    with pytest.raises(AuthenticationError):
        parse_send_response("20110725160412,101", needstatus=True)


def test_documented_balance_example():
    body = "20130303180000,0\r\n1234567,1000\r\n1234531,2000\r\n"
    assert parse_balance_response(body) == [Balance(Decimal(1000), "items", "1234567"),
                                            Balance(Decimal(2000), "items", "1234531")]
    assert parse_balance_response("20130303180000,0") == []


@pytest.mark.parametrize(("body", "needstatus", "what"), [
    ("", True, "empty"),
    ("\r\n\n", True, "empty"),
    (b"\xff\xfe", True, "not UTF-8"),
    ("<html>busy</html>", True, "not 'resptime,status'"),
    ("20110725160412", True, "not 'resptime,status'"),
    ("20110725160412,0,1", True, "not 'resptime,status'"),
    ("20110725160412,ok", True, "not 'resptime,status'"),
    ("20110725160412,0", True, "msgid line is missing"),
    ("20110725160412,0\nmsg id!", True, "not an id"),
])
def test_nonsense_send_answers(body, needstatus, what):
    with pytest.raises(ProtocolError, match=what) as exc:
        parse_send_response(body, needstatus=needstatus)
    assert exc.value.endpoint == SEND_PATH


@pytest.mark.parametrize("body", [
    "20130303180000,0\n1234567", "20130303180000,0\n1234567,lots",
    "20130303180000,0\n,1000", "20130303180000,0\n1,NaN", "20130303180000,0\n1,2,3",
])
def test_nonsense_balance_answers(body):
    with pytest.raises(ProtocolError, match="line 2") as exc:
        parse_balance_response(body)
    assert exc.value.endpoint == BALANCE_PATH


# --- the simulator as the vendor ------------------------------------------------
def test_simulator_answers_get_as_in_the_document(sim):
    text = raw(sim, method="GET", mobile=",".join(MOBILES[:2]), msg=TEXT,
               needstatus="true", product="1")
    status_line, msgid = text.split("\n")
    stamp, status = status_line.split(",")
    assert status == "0" and len(stamp) == 14 and msgid.isdigit() and len(msgid) >= 13
    assert raw(sim, mobile=MOBILES[0], msg=TEXT, needstatus="false").count("\n") == 0
    assert raw(sim, mobile=MOBILES[0], msg=TEXT, needstatus="maybe").count("\n") == 0


def test_simulator_msgids_never_repeat(sim, client):
    ids = {client.send(batch(MOBILES[:1]))[0].message_id for _ in range(20)}
    assert len(ids) == 20


def test_simulator_survives_bad_input(sim):
    url = sim.base_url + SEND_PATH
    assert requests.post(url, data=b"\xff\x00garbage=%%%", timeout=10).text.endswith(",101")
    assert requests.get(url, timeout=10).text.endswith(",101")
    assert requests.post(url, json={"account": ACCOUNT}, timeout=10).text.endswith(",101")
    assert requests.put(url, timeout=10).status_code == 405
    assert raw(sim, pswd="", mobile=MOBILES[0], msg=TEXT).endswith(",102")
    assert raw(sim, BALANCE_PATH, pswd="x").endswith(",102")
    assert raw(sim, mobile=MOBILES[0], msg=TEXT, product="").count("\n") == 1
    assert sim.messages(V)[0]["product"] == "1"


# --- pushes ---------------------------------------------------------------------
def test_pushed_reports_delivered(sim, push_sink, client):
    sim.reset(chuanglan={"push_url": push_sink.url + "/cl/report?tenant=a",
                         "receiver": "admin", "receiver_password": "rp-123",
                         **ALL_DELIVERED})
    msgid = client.send(batch())[0].message_id
    got = push_sink.wait_for(3)
    assert len(got) == 3 and {r.method for r in got} == {"GET"}
    assert {r.path for r in got} == {"/cl/report"}
    reports = [parse_push_report(r.query) for r in got]
    assert sorted(r.mobile for r in reports) == sorted(MOBILES)
    for r, req in zip(reports, got, strict=True):
        assert r.message_id == msgid and r.status is DeliveryStatus.DELIVERED
        assert r.raw_state == "DELIVRD" and r.description == "delivered"
        assert abs((r.report_time - datetime.now(CHINA_TZ)).total_seconds()) < 120
        assert "pswd" not in r.raw and "receiver" not in r.raw
        assert verify_push_credentials(req.query, receiver="admin", password="rp-123")
        assert not verify_push_credentials(req.query, receiver="admin", password="rp-12")


def test_pushed_reports_failed_states(sim, push_sink, client):
    sim.reset(chuanglan={"push_url": push_sink.url + "/r", **ALL_FAILED})
    mobiles = [f"1390000{i:04d}" for i in range(12)]
    client.send(batch(mobiles))
    reports = [parse_push_report(r.query) for r in push_sink.wait_for(12)]
    assert len(reports) == 12
    assert all(r.status is DeliveryStatus.FAILED for r in reports)
    assert {r.raw_state for r in reports} <= set(FAILURE_STATES)
    assert len({r.raw_state for r in reports}) > 1
    assert verify_push_credentials(push_sink.requests[0].query, receiver="", password="")


def test_no_reports_pushed_without_needstatus(sim, push_sink):
    sim.reset(chuanglan={"push_url": push_sink.url + "/r", **ALL_DELIVERED})
    with sim.client(V, needstatus=False) as quiet:
        quiet.send(batch(MOBILES[:2]))
    with sim.client(V) as loud:
        loud.send(batch(MOBILES[2:]))
    # The quiet request's reports fall due first, so they would have come first.
    assert [r.query["mobile"] for r in push_sink.wait_for(1)] == MOBILES[2:]


def test_pushed_replies(sim, push_sink):
    sim.reset(chuanglan={"mo_push_url": push_sink.url + "/mo", "receiver": "admin",
                         "receiver_password": "12345"})
    sim.inject_mo(V, "13800210021", "好的", destination="1065751600001")
    long_text = "长" * 150
    sim.inject_mo(V, "13800210022", long_text)
    got = push_sink.wait_for(4)
    mos = [parse_push_mo(r.query) for r in got]
    assert len(mos) == 4
    short = mos[0]
    assert (short.mobile, short.content, short.destination) == ("13800210021", "好的",
                                                                "1065751600001")
    assert short.received_at is not None and "pswd" not in short.raw
    assert verify_push_credentials(got[0].query, receiver="admin", password="12345")
    parts = [parse_emshead(m.raw["emshead"]) for m in mos[1:]]
    assert [m.raw["isems"] for m in mos[1:]] == ["1"] * 3
    assert [p[1:] for p in parts] == [(3, 1), (3, 2), (3, 3)] and len({p[0] for p in parts}) == 1
    assert "".join(m.content for m in mos[1:]) == long_text


def test_failed_push_is_retried(sim, push_sink, client):
    push_sink.status = 500
    sim.reset(chuanglan={"push_url": push_sink.url + "/r", **ALL_DELIVERED})
    msgid = client.send(batch(MOBILES[:1]))[0].message_id
    got = push_sink.wait_for(2)
    assert len(got) >= 2
    assert {(r.query["msgid"], r.query["mobile"]) for r in got} == {(msgid, MOBILES[0])}


# --- push parsers on the document's examples --------------------------------------
def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def test_parse_documented_report():
    params = _query("http://pushUrl?receiver=admin&pswd=12345&msgid=12345"
                    "&reportTime=1012241002&mobile=13900210021&status=DELIVRD")
    r = parse_push_report(params)
    assert (r.message_id, r.mobile, r.raw_state, r.status) == (
        "12345", "13900210021", "DELIVRD", DeliveryStatus.DELIVERED)
    assert r.report_time == datetime(2010, 12, 24, 10, 2, tzinfo=CHINA_TZ)
    assert r.raw == {"msgid": "12345", "reportTime": "1012241002", "mobile": "13900210021",
                     "status": "DELIVRD"}
    assert verify_push_credentials(params, receiver="admin", password="12345")


@pytest.mark.parametrize(("state", "description"), [
    ("MBBLACK", "number is blacklisted"), ("ROUTEERR", "channel error"),
    ("REJECT", "rejected by review"), ("DISTURB", "too many messages to this number"),
    ("EMSERR", "long message incomplete"), ("SIGNERR", "signature wrong"),
    ("KEYWORD", "sensitive word"), ("MK:0001", "carrier gateway state"),
])
def test_parse_report_failure_states(state, description):
    r = parse_push_report({"msgid": "1", "reportTime": "2401011200", "mobile": "13900210021",
                           "status": state})
    assert r.status is DeliveryStatus.FAILED and r.raw_state == state
    assert r.description == description


@pytest.mark.parametrize(("change", "field"), [
    ({"msgid": None}, "msgid"), ({"mobile": ""}, "mobile"), ({"status": None}, "status"),
    ({"reportTime": None}, "reportTime"), ({"reportTime": "201012241002"}, "reportTime"),
    ({"reportTime": "1013241002"}, "reportTime"), ({"reportTime": "10122410ab"}, "reportTime"),
    ({"mobile": "139-0021"}, "mobile"), ({"status": 5}, "status"),
])
def test_parse_report_rejects_bad_fields(change, field):
    params = {"msgid": "1", "reportTime": "1012241002", "mobile": "13900210021",
              "status": "DELIVRD"}
    params.update(change)
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(ProtocolError, match=field):
        parse_push_report(params)


def test_parse_report_accepts_parse_qs_lists_and_rejects_non_mappings():
    r = parse_push_report({"msgid": ["9"], "reportTime": ["1012241002"],
                           "mobile": ["13900210021"], "status": ["DELIVRD"]})
    assert r.message_id == "9"
    with pytest.raises(ProtocolError, match="not a mapping"):
        parse_push_report("msgid=1")  # type: ignore[arg-type]


def test_parse_documented_replies():
    plain = parse_push_mo(_query(
        "http://pushMoUrl?receiver=admin&pswd=12345&moTime=1208212205"
        "&destcode=1065751600001&mobile=13800210021&msg=hello"))
    assert (plain.mobile, plain.content, plain.destination) == ("13800210021", "hello",
                                                                "1065751600001")
    assert plain.received_at == datetime(2012, 8, 21, 22, 5, tzinfo=CHINA_TZ)
    assert "pswd" not in plain.raw and "receiver" not in plain.raw
    ems = parse_push_mo(_query(
        "http://pushMoUrl?receiver=admin&pswd=12345&moTime=1208212205"
        "&destcode=1065751600001&mobile=13800210021&msg=hello&isems=1&emshead=255,5,5"))
    assert ems.raw["isems"] == "1" and ems.raw["emshead"] == "255,5,5"
    assert parse_emshead(ems.raw["emshead"]) == ("255", 5, 5)


@pytest.mark.parametrize(("change", "field"), [
    ({"mobile": None}, "mobile"), ({"destcode": None}, "destcode"), ({"msg": None}, "msg"),
    ({"moTime": "yesterday"}, "moTime"), ({"isems": "2"}, "isems"),
    ({"isems": "1"}, "emshead"), ({"isems": "1", "emshead": "234,4"}, "emshead"),
    ({"isems": "1", "emshead": "234,4,5"}, "emshead"),
    ({"isems": "1", "emshead": "234,x,1"}, "emshead"),
])
def test_parse_reply_rejects_bad_fields(change, field):
    params = {"moTime": "1208212205", "destcode": "1065751600001", "mobile": "13800210021",
              "msg": "hello"}
    params.update(change)
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(ProtocolError, match=field):
        parse_push_mo(params)


def test_parse_reply_keeps_text_as_sent():
    mo = parse_push_mo({"moTime": "1208212205", "destcode": "1", "mobile": "13800210021",
                        "msg": " TD "})
    assert mo.content == " TD "
