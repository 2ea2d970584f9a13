"""EUMS client against the simulated gateway, over real HTTP, in both protocol versions.

Raw requests (signed here with hashlib and decrypted with pycryptodome, not with
the client's helpers) reach the simulator's own refusals that the client's
checks would otherwise stop, and pin the wire format independently.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from Crypto.Cipher import AES as CIPHER

from sms_provider.errors import (
    AmbiguousError,
    AuthenticationError,
    InsufficientBalanceError,
    LimitExceededError,
    PermanentError,
    ProtocolError,
    RateLimitedError,
    RetryableError,
    SmsError,
    VendorError,
)
from sms_provider.models import DeliveryStatus, Submission, SubmissionStatus
from sms_provider.vendors.base import Capability, OutboundBatch, OutboundMessage
from sms_provider.vendors.clock import CHINA_TZ, china_now, china_stamp
from sms_provider.vendors.eums import EumsClient
from sms_provider.vendors.eums_answers import (
    accepted_from_text,
    decode_answer,
    decode_binary_content,
    parse_balance,
    parse_inbound,
    parse_reports,
    parse_send_answer,
    parse_statistics,
    raise_for_answer,
)
from sms_provider.vendors.eums_codes import BALANCE, CODES, MO, REPORT, SEND, STATISTIC
from tests.simulator_harness import (
    DEFAULT_CONFIG,
    PushSink,
    SimulatorProcess,
    credentials,
    vendor_client,
)

VENDOR = "eums"
NAME, PASSWORD = credentials(VENDOR)
AES_KEY = DEFAULT_CONFIG[VENDOR]["aes_key"]
TEXT = "【测试】您的验证码是123456"
MOBILES = ["13800000001", "13800000002", "13800000003"]
FAILURE_STATES = {"UNDELIV", "EXPIRED", "REJECTD", "MK:0001"}
DELIVER_ALL = {"simulation": {"outcomes": {"delivered": 1.0, "failed": 0, "silent": 0}}}
FAIL_ALL = {"simulation": {"outcomes": {"delivered": 0, "failed": 1.0, "silent": 0}}}
DOC_CODES = [101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 115, 116,
             121, 122, 123, 124, 125, 126, 127, 128, 129, 130, 131, 201, 202, 203, 204, 205,
             206, 301, 302, 303, 304, 305, 306, 307, 308, 309, 401, 999]


# --- helpers -------------------------------------------------------------------
@pytest.fixture(params=[1, 17], ids=["ver1", "ver17"])
def ver(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def client(sim: SimulatorProcess, ver: int) -> EumsClient:
    return sim.client(VENDOR, ver=ver)


def msgs(mobiles: list[str], content: str = TEXT, custom_id: str | None = None
         ) -> list[OutboundMessage]:
    return [OutboundMessage(m, content, custom_id) for m in mobiles]


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def encrypt_hex(obj: Any, key: str = AES_KEY) -> str:
    plain = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    pad = 16 - len(plain) % 16
    return CIPHER.new(key.encode(), CIPHER.MODE_ECB).encrypt(plain + bytes([pad]) * pad).hex()


def decrypt_hex(text: str, key: str = AES_KEY) -> Any:
    plain = CIPHER.new(key.encode(), CIPHER.MODE_ECB).decrypt(bytes.fromhex(text))
    return json.loads(plain[:-plain[-1]].decode("utf-8"))


def raw_call(sim: SimulatorProcess, path: str, *, ver: str = "1", data: str | None = None,
             password: str = PASSWORD, seed: str | None = None, method: str = "POST",
             drop: tuple[str, ...] = (), **extra: str) -> dict[str, Any]:
    """A hand-signed request; the answer decoded (plain JSON, or hex AES for ver=17)."""
    seed = seed or china_stamp()
    form = {"name": NAME, "seed": seed, "ver": ver,
            "key": md5(md5(password) + seed + (data or "")), **extra}
    if data is not None:
        form["data"] = data
    for key in drop:
        form.pop(key, None)
    url = sim.base_url + path
    resp = (requests.get(url, params=form, timeout=5) if method == "GET"
            else requests.post(url, data=form, timeout=5))
    assert resp.status_code == 200, resp.text
    text = resp.text.strip()
    return json.loads(text) if text.startswith("{") else decrypt_hex(text)


def raw_send(sim: SimulatorProcess, body: Any, *, ver: str = "1", **kwargs: Any
             ) -> dict[str, Any]:
    if ver == "17":
        data = encrypt_hex(body)
    else:
        data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return raw_call(sim, SEND, ver=ver, data=data, **kwargs)


def expect(cls: type[SmsError], code: str | None, call: Callable[[], Any]) -> SmsError:
    with pytest.raises(cls) as info:
        call()
    assert info.value.code == code, str(info.value)
    return info.value


def today() -> date:
    return china_now().date()


# --- construction and secrets ------------------------------------------------------
def test_capabilities_and_batch_limit() -> None:
    client = vendor_client(VENDOR, "http://127.0.0.1:9")
    assert client.batch_limit == 1000 and client.max_batch == 1000
    for cap in (Capability.SEND, Capability.PULL_REPORTS, Capability.INBOUND,
                Capability.BALANCE, Capability.STATISTICS):
        assert client.supports(cap)
    assert not client.supports(Capability.PUSH_REPORTS)
    assert client.custom_id_scope == "request" and not client.personalised_batches


def test_constructor_refuses_bad_settings_without_echoing_secrets() -> None:
    with pytest.raises(AuthenticationError, match="aes_key"):
        vendor_client(VENDOR, "http://x", ver=17, aes_key=None)
    with pytest.raises(AuthenticationError) as info:
        vendor_client(VENDOR, "http://x", ver=17, aes_key="short-secret")
    assert "short-secret" not in str(info.value) and "12 bytes" in str(info.value)
    with pytest.raises(PermanentError, match="ver"):
        vendor_client(VENDOR, "http://x", ver=2)
    with pytest.raises(LimitExceededError, match="max_batch"):
        vendor_client(VENDOR, "http://x", max_batch=1001)
    with pytest.raises(LimitExceededError, match="max_content_chars"):
        vendor_client(VENDOR, "http://x", max_content_chars=501)
    with pytest.raises(LimitExceededError, match="ext"):
        vendor_client(VENDOR, "http://x", ext="12ab")
    with pytest.raises(AuthenticationError):
        vendor_client(VENDOR, "http://x", password="")


def test_repr_holds_no_secret() -> None:
    client = vendor_client(VENDOR, "http://127.0.0.1:9", ver=17)
    text = repr(client)
    assert NAME in text
    for secret in (PASSWORD, AES_KEY, md5(PASSWORD)):
        assert secret not in text
        assert secret not in repr(vars(client).get("http"))


# --- wire format, seen by a plain HTTP sink ---------------------------------------
@pytest.mark.parametrize("ver_", [1, 17])
def test_send_request_on_the_wire(push_sink: PushSink, ver_: int) -> None:
    client = vendor_client(VENDOR, push_sink.url, ver=ver_, ext="1234")
    with pytest.raises(ProtocolError, match=r"not a JSON object|neither JSON nor hex"):
        # the sink answers "ok"
        client.send(msgs(MOBILES[:2], custom_id="ref-1"))
    (req,) = push_sink.requests
    assert req.method == "POST" and req.path == SEND and req.query == {}
    form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
    assert form["name"] == NAME and form["ver"] == str(ver_)
    seed = form["seed"]
    sent_at = datetime.strptime(seed, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
    assert abs(sent_at.timestamp() - time.time()) < 60
    assert form["key"] == md5(md5(PASSWORD) + seed + form["data"])
    body = decrypt_hex(form["data"]) if ver_ == 17 else json.loads(form["data"])
    assert body == {"dest": "13800000001,13800000002", "content": TEXT, "ext": "1234",
                    "reference": "ref-1"}
    assert PASSWORD not in req.body.decode()


def test_query_requests_sign_without_data(push_sink: PushSink) -> None:
    client = vendor_client(VENDOR, push_sink.url)
    with pytest.raises(ProtocolError):
        client.statistics(date(2021, 2, 3), date(2021, 2, 28))
    form = {k: v[-1] for k, v in parse_qs(push_sink.requests[0].body.decode()).items()}
    assert form["key"] == md5(md5(PASSWORD) + form["seed"])
    assert (form["start_date"], form["end_date"]) == ("20210203", "20210228")


# --- send ----------------------------------------------------------------------
def test_send_records_each_number_with_reference(sim: SimulatorProcess,
                                                  client: EumsClient) -> None:
    subs = client.send(msgs(MOBILES, custom_id="batch-7"))
    assert [s.mobile for s in subs] == MOBILES
    assert all(s.status is SubmissionStatus.SUBMITTED and s.custom_id == "batch-7"
               and s.charge_items == 1 for s in subs)
    ids = [s.message_id for s in subs]
    assert all(i and i.isdigit() and len(i) == 19 for i in ids) and len(set(ids)) == 3
    got = sim.messages("eums")
    assert [(m["mobile"], m["content"], m["custom_id"], m["message_id"]) for m in got] == [
        (m, TEXT, "batch-7", i) for m, i in zip(MOBILES, ids, strict=True)]
    assert sim.balance("eums") == 1_000_000 - 3


def test_a_planned_batch_reads_back_like_a_list(sim: SimulatorProcess,
                                               client: EumsClient) -> None:
    batch = OutboundBatch(MOBILES, [TEXT] * 3, ["r1"] * 3, [None] * 3)
    assert list(batch) == msgs(MOBILES, custom_id="r1") and batch[-1].mobile == MOBILES[-1]
    subs = client.send(batch)
    assert len(subs) == 3 and subs[1:] == list(subs)[1:]
    assert subs == [Submission(m, s.message_id, "r1", 1) for m, s in zip(MOBILES, subs,
                                                                       strict=True)]
    assert [m["mobile"] for m in sim.messages("eums")] == MOBILES


def test_send_reports_the_vendors_charge_items(sim: SimulatorProcess,
                                               client: EumsClient) -> None:
    long_text = "【测试】" + "长" * 140  # 144 characters: 3 items of 67
    subs = client.send(msgs(MOBILES[:2], long_text))
    assert [s.charge_items for s in subs] == [3, 3]
    assert [m["charge_items"] for m in sim.messages("eums")] == [3, 3]
    assert sim.balance("eums") == 1_000_000 - 6


def test_invalid_numbers_are_rejected_in_order_and_not_charged(sim: SimulatorProcess,
                                                              client: EumsClient) -> None:
    subs = client.send(msgs(["13800000001", "12345", "+8613800000002", "13800000003"]))
    assert [s.status for s in subs] == [SubmissionStatus.SUBMITTED, SubmissionStatus.REJECTED,
                                        SubmissionStatus.REJECTED, SubmissionStatus.SUBMITTED]
    assert subs[1].vendor_code == "invalid_number" and subs[1].message_id is None
    assert subs[1].charge_items == 0
    assert [m["mobile"] for m in sim.messages("eums")] == ["13800000001", "13800000003"]
    assert sim.balance("eums") == 1_000_000 - 2


def test_a_number_twice_gets_two_ids(sim: SimulatorProcess, client: EumsClient) -> None:
    subs = client.send(msgs(["13800000001", "13800000001"]))
    assert all(s.status is SubmissionStatus.SUBMITTED for s in subs)
    assert subs[0].message_id != subs[1].message_id
    assert len(sim.messages("eums")) == 2


def test_full_batch_of_a_thousand(sim: SimulatorProcess) -> None:
    mobiles = [f"139{i:08d}" for i in range(1000)]
    subs = sim.client(VENDOR, ver=17).send(msgs(mobiles))
    assert [s.mobile for s in subs] == mobiles
    assert len({s.message_id for s in subs}) == 1000
    assert len(sim.messages("eums")) == 1000


def test_ext_reaches_the_gateway_and_comes_back_on_replies(sim: SimulatorProcess) -> None:
    sim.reset(eums={"simulation": {**DELIVER_ALL["simulation"], "mo_reply_rate": 1.0}})
    client = sim.client(VENDOR, ext="5678")
    client.send(msgs(MOBILES[:1], custom_id="c1"))
    assert sim.messages("eums")[0]["ext"] == "5678"
    (reply,) = client.pull_inbound()
    assert reply.mobile == MOBILES[0] and reply.destination == "10690123456785678"
    assert reply.reference == "c1" and reply.content in {"TD", "好的", "收到"}


def test_too_long_ext_is_the_gateways_108(sim: SimulatorProcess) -> None:
    client = sim.client(VENDOR, ext="1" * 13)
    expect(PermanentError, "108", lambda: client.send(msgs(MOBILES[:1])))
    assert raw_send(sim, {"dest": MOBILES[0], "content": TEXT, "ext": "12a"}) == {"code": 108}
    assert raw_send(sim, {"dest": MOBILES[0], "content": TEXT, "ext": ["1"]}) == {"code": 108}


# --- send limits: refused before sending, and the gateway's own refusal ------------------
def test_client_limits_refuse_before_sending(sim: SimulatorProcess) -> None:
    client = sim.client(VENDOR, max_batch=2)
    with pytest.raises(LimitExceededError, match="3 recipients"):
        client.send(msgs(MOBILES))
    with pytest.raises(LimitExceededError, match="no recipients"):
        client.send([])
    with pytest.raises(LimitExceededError, match=r"501 characters.*limit is 500"):
        client.send(msgs(MOBILES[:1], "【测试】" + "x" * 497))
    with pytest.raises(LimitExceededError, match="content is empty"):
        client.send(msgs(MOBILES[:1], ""))
    with pytest.raises(LimitExceededError, match="message 1 has different content"):
        client.send([OutboundMessage(MOBILES[0], TEXT), OutboundMessage(MOBILES[1], "x")])
    with pytest.raises(LimitExceededError, match="message 1 has custom id"):
        client.send([OutboundMessage(MOBILES[0], TEXT, "a"), OutboundMessage(MOBILES[1], TEXT)])
    with pytest.raises(LimitExceededError, match="51 characters, the limit is 50"):
        client.send(msgs(MOBILES[:1], custom_id="r" * 51))
    for bad in ("a,b", "a;b"):
        with pytest.raises(LimitExceededError, match="may not contain"):
            client.send(msgs(MOBILES[:1], custom_id=bad))
    with pytest.raises(LimitExceededError, match="message 1: mobile"):
        client.send(msgs([MOBILES[0], "13800000002,13800000003"]))
    for bad in (" 13800000002", "", "13800000002\t"):  # as the send path plans them, too
        with pytest.raises(LimitExceededError, match="message 1: mobile"):
            client.send(OutboundBatch([MOBILES[0], bad], [TEXT] * 2, [None] * 2, [None] * 2))
    with pytest.raises(PermanentError, match="template_id"):
        client.send(msgs(MOBILES[:1]), template_id="t1")
    short = sim.client(VENDOR, max_content_chars=70)
    with pytest.raises(LimitExceededError, match=r"71 characters.*limit is 70"):
        short.send(msgs(MOBILES[:1], "x" * 71))
    assert sim.messages("eums") == []


def test_gateway_refuses_what_the_client_would_have(sim: SimulatorProcess) -> None:
    body = {"dest": MOBILES[0], "content": "【测试】" + "x" * 497}
    assert raw_send(sim, body) == {"code": 109}
    many = ",".join(f"139{i:08d}" for i in range(1001))
    assert raw_send(sim, {"dest": many, "content": TEXT}) == {"code": 104}
    assert raw_send(sim, {"dest": MOBILES[0], "content": TEXT, "reference": "r" * 51}) == {
        "code": 999}
    assert raw_send(sim, {"dest": MOBILES[0], "content": TEXT, "reference": "a;b"}) == {
        "code": 999}
    assert sim.messages("eums") == []


def test_gateway_limits_map_through_the_client(sim: SimulatorProcess) -> None:
    sim.reset(eums={"max_numbers": 2, "max_content_chars": 20})
    client = sim.client(VENDOR)
    expect(PermanentError, "104", lambda: client.send(msgs(MOBILES)))
    expect(LimitExceededError, "109", lambda: client.send(msgs(MOBILES[:1], TEXT + "x" * 10)))
    expect(PermanentError, "104", lambda: client.send(msgs(["12345", "999"])))
    assert sim.messages("eums") == []


def test_signature_rules(sim: SimulatorProcess) -> None:
    client = sim.client(VENDOR)
    expect(PermanentError, "111", lambda: client.send(msgs(MOBILES[:1], "no signature")))
    expect(PermanentError, "113", lambda: client.send(msgs(MOBILES[:1], "【】empty")))
    expect(PermanentError, "113", lambda: client.send(msgs(MOBILES[:1], "【unclosed text")))
    expect(PermanentError, "113", lambda: client.send(msgs(MOBILES[:1], "【" + "s" * 21 + "】x")))
    assert client.send(msgs(MOBILES[:1], "signature at the end【测试】"))[0].message_id
    sim.reset(eums={"require_signature": False})
    assert client.send(msgs(MOBILES[:1], "no signature"))[0].message_id


def test_blocked_word_is_401(sim: SimulatorProcess) -> None:
    sim.reset(eums={"blocked_words": ["赌博"]})
    expect(PermanentError, "401",
           lambda: sim.client(VENDOR).send(msgs(MOBILES[:1], "【测试】赌博")))


def test_no_balance_is_205_and_charges_nothing(sim: SimulatorProcess, client: EumsClient
                                               ) -> None:
    sim.reset(eums={"balance": 2})
    expect(InsufficientBalanceError, "205", lambda: client.send(msgs(MOBILES)))
    assert sim.messages("eums") == [] and sim.balance("eums") == 2
    assert len(client.send(msgs(MOBILES[:2]))) == 2
    assert sim.balance("eums") == 0


# --- authentication -------------------------------------------------------------
def test_wrong_password_is_107_without_the_password(sim: SimulatorProcess, ver: int) -> None:
    client = sim.client(VENDOR, ver=ver, password="wrong-secret-pw")
    err = expect(AuthenticationError, "107", client.balance)
    assert "wrong-secret-pw" not in str(err) and md5("wrong-secret-pw") not in str(err)
    expect(AuthenticationError, "107", lambda: client.send(msgs(MOBILES[:1])))
    assert sim.messages("eums") == []


def test_unknown_account_is_201_in_plain_text(sim: SimulatorProcess, ver: int) -> None:
    expect(AuthenticationError, "201", sim.client(VENDOR, ver=ver, name="nobody").balance)


def test_clock_skew_is_106_and_clock_offset_fixes_it(sim: SimulatorProcess, ver: int) -> None:
    err = expect(AuthenticationError, "106",
                 sim.client(VENDOR, ver=ver, clock_offset_s=-3600).balance)
    assert "clock" in str(err)
    assert sim.client(VENDOR, ver=ver, clock_offset_s=600).balance()
    early = china_now() - timedelta(minutes=31)
    assert raw_call(sim, BALANCE, seed=china_stamp(early)) == {"code": 106}
    late = china_now() + timedelta(minutes=29)
    assert raw_call(sim, BALANCE, seed=china_stamp(late))["code"] == 0
    assert raw_call(sim, BALANCE, seed="2021-01-02 3:4") == {"code": 106}


def test_account_state_codes(sim: SimulatorProcess) -> None:
    sim.reset(eums={"account_status": "suspended"})
    expect(AuthenticationError, "202", sim.client(VENDOR, ver=17).balance)
    sim.reset(eums={"account_status": "deleted"})
    expect(AuthenticationError, "203", sim.client(VENDOR).balance)


def test_ver17_unsupported_for_account_is_124(sim: SimulatorProcess) -> None:
    sim.reset(eums={"aes_key": None})
    expect(AuthenticationError, "124", sim.client(VENDOR, ver=17).balance)
    assert sim.client(VENDOR).balance()


def test_wrong_aes_key_cannot_read_the_answer(sim: SimulatorProcess) -> None:
    client = sim.client(VENDOR, ver=17, aes_key="0000000000000000")
    with pytest.raises(ProtocolError, match="aes_key") as info:
        client.balance()
    assert "0000000000000000" not in str(info.value)
    # The gateway itself says 121 (in its own encryption) when data was encrypted wrongly.
    data = encrypt_hex({"dest": MOBILES[0], "content": TEXT}, key="0000000000000000")
    assert raw_call(sim, SEND, ver="17", data=data) == {"code": 121}
    assert sim.messages("eums") == []


def test_pre_account_errors_are_plain_and_later_ones_encrypted(sim: SimulatorProcess) -> None:
    url = sim.base_url + BALANCE
    assert requests.post(url, data={"ver": "17"}, timeout=5).json() == {"code": 101}
    assert requests.post(url, data={"name": "x", "ver": "17"}, timeout=5).json() == {"code": 201}
    assert requests.post(url, data={"name": NAME, "ver": "3"}, timeout=5).json() == {"code": 124}
    assert requests.post(url, data={"name": NAME}, timeout=5).json() == {"code": 124}
    answer = requests.post(url, data={"name": NAME, "ver": "17"}, timeout=5).text
    assert not answer.startswith("{") and decrypt_hex(answer) == {"code": 102}
    assert raw_call(sim, BALANCE, ver="17", drop=("key",)) == {"code": 103}
    assert raw_call(sim, BALANCE, ver="1", drop=("seed",)) == {"code": 102}


# --- the gateway never crashes on bad input ---------------------------------------------
def test_send_data_errors(sim: SimulatorProcess) -> None:
    assert raw_call(sim, SEND, data=None) == {"code": 125}
    assert raw_call(sim, SEND, data="") == {"code": 125}
    assert raw_call(sim, SEND, ver="17", data="  ") == {"code": 125}
    assert raw_send(sim, "{not json") == {"code": 999}
    assert raw_send(sim, "[1, 2]") == {"code": 999}
    assert raw_send(sim, {"content": TEXT}) == {"code": 104}
    assert raw_send(sim, {"dest": ["13800000001"], "content": TEXT}) == {"code": 104}
    assert raw_send(sim, {"dest": MOBILES[0]}) == {"code": 105}
    assert raw_send(sim, {"dest": MOBILES[0], "content": 5}) == {"code": 105}
    assert raw_send(sim, {"dest": " , ", "content": TEXT}) == {"code": 104}
    assert raw_call(sim, SEND, ver="17", data="zz-not-hex") == {"code": 126}
    assert raw_call(sim, SEND, ver="17", data="abcd") == {"code": 126}
    assert raw_send(sim, {"dest": 13800000001, "content": TEXT}, ver="17") == {"code": 122}
    assert raw_send(sim, {"dest": MOBILES[0], "content": [TEXT]}, ver="17") == {"code": 123}
    assert raw_send(sim, "just text", ver="17") == {"code": 126}
    assert sim.messages("eums") == []


def test_garbage_requests_get_vendor_codes(sim: SimulatorProcess) -> None:
    url = sim.base_url + SEND
    junk = requests.post(url, data=b"\xff\xfe%%zz&&name", timeout=5,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert junk.status_code == 200 and junk.json() == {"code": 101}
    as_json = requests.post(url, json={"name": NAME}, timeout=5)
    assert as_json.json() == {"code": 101}
    assert requests.put(url, data={"name": NAME}, timeout=5).status_code == 405
    seed = china_stamp()
    weird = requests.post(url, data={"name": NAME, "ver": "1", "seed": seed, "key": "ü" * 32,
                                     "data": "{}"}, timeout=5)
    assert weird.json() == {"code": 107}


def test_get_is_served_like_post(sim: SimulatorProcess) -> None:
    assert raw_call(sim, BALANCE, method="GET") == {"code": 0, "balance_item": 1_000_000}
    answer = raw_send(sim, {"dest": MOBILES[0], "content": TEXT}, method="GET")
    assert answer["code"] == 0 and answer["data"][0]["dest_number"] == MOBILES[0]


# --- reports ------------------------------------------------------------------------
def test_reports_delivered_and_consumed_once(sim: SimulatorProcess, client: EumsClient) -> None:
    sim.reset(eums=DELIVER_ALL)
    subs = client.send(msgs(MOBILES[:2], custom_id="rep-1"))
    reports = client.pull_reports()
    assert {(r.message_id, r.mobile) for r in reports} == {
        (s.message_id, s.mobile) for s in subs}
    assert all(r.status is DeliveryStatus.DELIVERED and r.raw_state == "DELIVRD"
               and r.custom_id == "rep-1" and r.report_time is not None
               and r.report_time.tzinfo is not None for r in reports)
    assert client.pull_reports() == []


def test_failed_reports_use_gateway_failure_states(sim: SimulatorProcess,
                                                   client: EumsClient) -> None:
    sim.reset(eums=FAIL_ALL)
    client.send(msgs([f"137{i:08d}" for i in range(40)]))
    reports = client.pull_reports()
    assert len(reports) == 40
    assert all(r.status is DeliveryStatus.FAILED and r.custom_id is None for r in reports)
    states = {r.raw_state for r in reports}
    assert states <= FAILURE_STATES and len(states) > 1


def test_silent_messages_never_report(sim: SimulatorProcess) -> None:
    sim.reset(eums={"simulation": {"outcomes": {"delivered": 0, "failed": 0, "silent": 1.0}}})
    client = sim.client(VENDOR)
    client.send(msgs(MOBILES))
    assert client.pull_reports() == []


def test_push_url_is_ignored_reports_wait_for_the_pull(sim: SimulatorProcess,
                                                      push_sink: PushSink) -> None:
    sim.reset(eums={**DELIVER_ALL, "push_url": push_sink.url + "/eums",
                    "mo_push_url": push_sink.url + "/mo"})
    client = sim.client(VENDOR)
    client.send(msgs(MOBILES[:1]))
    sim.inject_mo("eums", MOBILES[0], "TD")
    time.sleep(0.6)  # three push rounds
    assert push_sink.requests == []
    assert len(client.pull_reports()) == 1 and len(client.pull_inbound()) == 1


def test_report_parsing_of_the_documents_example_and_states() -> None:
    doc = {"code": 0, "data": [
        {"message_id": "1203110100547341956", "dest_number": "13812345678",
         "report_status": "DELIVRD", "report_time": "2021-01-02 13:45:56", "reference": "abc"},
        {"message_id": "1203110100547341956", "dest_number": "13800001234",
         "report_status": "DELIVRD", "report_time": "2021-01-02 13:45:56", "reference": ""}]}
    first, second = parse_reports(doc)
    assert first.custom_id == "abc" and second.custom_id is None
    assert first.report_time is not None and first.report_time.utcoffset() == timedelta(hours=8)
    assert first.report_time.replace(tzinfo=None).isoformat() == "2021-01-02T13:45:56"
    assert first.raw == doc["data"][0]
    expected = {"DELIVRD": DeliveryStatus.DELIVERED, "UNKNOWN": DeliveryStatus.UNKNOWN,
                "ACCEPTD": DeliveryStatus.PENDING, "ENROUTE": DeliveryStatus.PENDING,
                "UNDELIV": DeliveryStatus.FAILED, "EXPIRED": DeliveryStatus.FAILED,
                "REJECTD": DeliveryStatus.FAILED, "DELETED": DeliveryStatus.FAILED,
                "MK:0001": DeliveryStatus.FAILED, "ID:0076": DeliveryStatus.FAILED}
    rows = [{"message_id": str(i), "dest_number": "13800000000", "report_status": s}
            for i, s in enumerate(expected)]
    reports = parse_reports({"code": 0, "data": rows})
    assert {r.raw_state: r.status for r in reports} == expected
    assert "MK:0001" in reports[8].description and reports[8].report_time is None


@pytest.mark.parametrize("payload, problem", [
    ({"code": 0}, "no data list"),
    ({"code": 0, "data": {"a": 1}}, "no data list"),
    ({"code": 0, "data": ["x"]}, "entry 0"),
    ({"code": 0, "data": [{"message_id": "1", "dest_number": "138"}]}, "report_status"),
    ({"code": 0, "data": [{"message_id": "", "dest_number": "138", "report_status": "DELIVRD"}
                          ]}, "message_id"),
])
def test_report_parsing_refuses_nonsense(payload: dict, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as info:
        parse_reports(payload)
    assert info.value.endpoint == REPORT


# --- inbound ------------------------------------------------------------------------
def test_inbound_pull_and_consume_once(sim: SimulatorProcess, client: EumsClient) -> None:
    sim.inject_mo("eums", MOBILES[0], "好的", destination="12", reference="ref-9")
    sim.inject_mo("eums", MOBILES[1], "收到")
    replies = client.pull_inbound()
    assert [(r.mobile, r.content, r.destination, r.reference) for r in replies] == [
        (MOBILES[0], "好的", "106901234567812", "ref-9"),
        (MOBILES[1], "收到", "1069012345678", None)]
    assert replies[0].raw["binary_content"] == "WX12hA==" and replies[0].raw["msg_fmt"] == 8
    received = replies[0].received_at
    assert received is not None and abs(received.timestamp() - time.time()) < 60
    assert client.pull_inbound() == []


def test_inbound_parsing_of_the_documents_example_and_binary_bodies() -> None:
    doc = {"code": 0, "data": [
        {"dest": "1069012345678", "src": "13812345678", "content": "好的",
         "receive_time": "2021-01-02 13:45:56", "binary_content": "WX12hA==", "msg_fmt": 8,
         "reference": "", "sign": "京东"},
        {"dest": "1069012345678", "src": "13800001234", "content": "",
         "receive_time": "2021-01-02 13:45:56", "binary_content": "ZTZSMA==", "msg_fmt": 8,
         "reference": "", "sign": "中通快递"},
        {"dest": "1069012345678", "src": "13800001235", "content": "",
         "binary_content": base64.b64encode("退订".encode("gbk")).decode(), "msg_fmt": 15},
        {"src": "13800001236", "content": "", "binary_content": "@@not base64", "msg_fmt": 8}]}
    a, b, c, d = parse_inbound(doc)
    assert (a.mobile, a.content, a.destination, a.reference) == ("13812345678", "好的",
                                                                 "1069012345678", None)
    assert a.received_at is not None and a.received_at.tzinfo is not None
    assert a.raw["sign"] == "京东"
    assert b.content == "收到" and c.content == "退订"
    assert d.content == "" and d.raw["binary_content"] == "@@not base64"
    assert d.received_at is None and d.destination == ""
    assert decode_binary_content("WX12hA==", None) == "好的"
    assert decode_binary_content("WX12hA==", 99) is None
    with pytest.raises(ProtocolError, match="src"):
        parse_inbound({"code": 0, "data": [{"content": "hi"}]})


# --- balance ------------------------------------------------------------------------
def test_balance_follows_sends(sim: SimulatorProcess, client: EumsClient) -> None:
    (before,) = client.balance()
    assert before.amount == 1_000_000 and before.unit == "items"
    client.send(msgs(MOBILES))
    assert client.balance()[0].amount == 1_000_000 - 3


def test_balance_parsing_refuses_nonsense() -> None:
    with pytest.raises(ProtocolError, match="balance_item"):
        parse_balance({"code": 0, "balance_item": "lots"})
    with pytest.raises(ProtocolError, match="balance_item"):
        parse_balance({"code": 0})
    assert parse_balance({"code": 0, "balance_item": "-3"})[0].amount == -3


# --- statistics -----------------------------------------------------------------------
def test_statistics_count_the_days_traffic(sim: SimulatorProcess, ver: int) -> None:
    sim.reset(eums=FAIL_ALL)
    client = sim.client(VENDOR, ver=ver)
    client.send(msgs(MOBILES))
    day = today()
    (row,) = client.statistics(day - timedelta(days=30), day)
    assert (row.day, row.submitted, row.delivered, row.failed, row.unknown) == (day, 3, 0, 3, 0)


def test_statistics_empty_window_is_an_empty_list(sim: SimulatorProcess, client: EumsClient
                                                  ) -> None:
    client.send(msgs(MOBILES[:1]))
    assert client.statistics(date(2021, 1, 1), date(2021, 1, 31)) == []
    raw = raw_call(sim, STATISTIC, start_date="20210101", end_date="20210131")
    assert raw == {"code": 130}


def test_statistics_window_is_refused_before_sending(sim: SimulatorProcess) -> None:
    sim.reset(eums={"statistic_calls_per_minute": 100})
    client = sim.client(VENDOR)
    with pytest.raises(LimitExceededError, match="32 days, the limit is 31"):
        client.statistics(date(2021, 1, 1), date(2021, 2, 1))
    with pytest.raises(LimitExceededError, match="before start"):
        client.statistics(date(2021, 2, 1), date(2021, 1, 31))
    for _ in range(3):  # the refusals above used no slot
        assert client.statistics(date(2021, 1, 1), date(2021, 1, 31)) == []


def test_gateway_date_codes(sim: SimulatorProcess) -> None:
    sim.reset(eums={"statistic_calls_per_minute": 100})
    assert raw_call(sim, STATISTIC, start_date="2021-01-01", end_date="20210131") == {
        "code": 127}
    assert raw_call(sim, STATISTIC, start_date="20210101", end_date="20211301") == {
        "code": 128}
    assert raw_call(sim, STATISTIC, end_date="20210131") == {"code": 127}
    assert raw_call(sim, STATISTIC, start_date="20210201", end_date="20210131") == {
        "code": 129}
    assert raw_call(sim, STATISTIC, start_date="20210101", end_date="20210201") == {
        "code": 129}
    assert raw_call(sim, STATISTIC, ver="17", start_date="20210101", end_date="20210131"
                    ) == {"code": 130}
    client = sim.client(VENDOR)
    stub = {"code": 0, "data": []}
    assert parse_statistics(stub) == []
    expect(PermanentError, "127", lambda: raise_for_answer({"code": 127}, STATISTIC))
    expect(LimitExceededError, "129", lambda: raise_for_answer({"code": 129}, STATISTIC))
    assert client.statistics(today(), today()) == []


def test_client_keeps_to_three_statistics_calls_a_minute(sim: SimulatorProcess) -> None:
    sim.reset(eums={"statistic_calls_per_minute": 10})
    client = sim.client(VENDOR)
    for _ in range(3):
        client.statistics(today(), today())
    err = expect(RateLimitedError, None, lambda: client.statistics(today(), today()))
    assert 55 < err.retry_after <= 60
    # Only three calls reached the gateway: seven more fit in its limit of ten.
    for _ in range(7):
        assert raw_call(sim, STATISTIC, start_date="20210101", end_date="20210101") == {
            "code": 130}
    assert raw_call(sim, STATISTIC, start_date="20210101", end_date="20210101") == {
        "code": 131}


def test_gateway_statistics_limit_is_131(sim: SimulatorProcess, ver: int) -> None:
    for _ in range(3):
        sim.client(VENDOR, ver=ver).statistics(today(), today())
    err = expect(RateLimitedError, "131",
                 lambda: sim.client(VENDOR, ver=ver).statistics(today(), today()))
    assert err.retry_after == 20


def test_statistics_parsing_of_the_documents_example() -> None:
    doc = {"code": 0, "data": [
        {"date": "20210203", "submit": 100, "delivrd": 90, "undeliv": 6, "unknown": 4},
        {"date": "20210204", "submit": 200, "delivrd": 180, "undeliv": 12, "unknown": 8}]}
    first, second = parse_statistics(doc)
    assert (first.day, first.submitted, first.delivered, first.failed, first.unknown) == (
        date(2021, 2, 3), 100, 90, 6, 4)
    assert second.day == date(2021, 2, 4) and second.unknown == 8
    with pytest.raises(ProtocolError, match="YYYYMMDD"):
        parse_statistics({"code": 0, "data": [{**doc["data"][0], "date": "2021-02-03"}]})
    with pytest.raises(ProtocolError, match="delivrd"):
        parse_statistics({"code": 0, "data": [{**doc["data"][0], "delivrd": -1}]})


# --- rate limits and transport faults -------------------------------------------------
def test_rate_limit_fault_on_send_is_http_429(sim: SimulatorProcess, client: EumsClient
                                              ) -> None:
    sim.faults({"kind": "rate_limit", "vendor": "eums", "path": "send"})
    expect(RateLimitedError, "429", lambda: client.send(msgs(MOBILES[:1])))
    assert sim.messages("eums") == []


def test_rate_limit_fault_on_statistics_is_131(sim: SimulatorProcess, client: EumsClient
                                               ) -> None:
    sim.faults({"kind": "rate_limit", "vendor": "eums", "path": "statistic"})
    err = expect(RateLimitedError, "131", lambda: client.statistics(today(), today()))
    assert err.retry_after == 20


def test_lost_answer_to_a_send_is_ambiguous_but_recorded(sim: SimulatorProcess,
                                                         client: EumsClient) -> None:
    sim.faults({"kind": "accept_drop", "vendor": "eums", "path": "send"})
    with pytest.raises(AmbiguousError):
        client.send(msgs(MOBILES[:2], custom_id="amb-1"))
    got = sim.messages("eums")
    assert [(m["mobile"], m["content"], m["custom_id"]) for m in got] == [
        (MOBILES[0], TEXT, "amb-1"), (MOBILES[1], TEXT, "amb-1")]


def test_dropped_connection_ambiguous_for_sends_and_pulls_retryable_for_reads(
        sim: SimulatorProcess, client: EumsClient) -> None:
    sim.faults({"kind": "drop", "vendor": "eums"})
    with pytest.raises(AmbiguousError):
        client.send(msgs(MOBILES[:1]))
    for pull in (client.pull_reports, client.pull_inbound):
        with pytest.raises(AmbiguousError):
            pull()
    with pytest.raises(RetryableError):
        client.balance()
    with pytest.raises(RetryableError):
        client.statistics(today(), today())
    assert sim.messages("eums") == []


def test_503_is_retryable(sim: SimulatorProcess, client: EumsClient) -> None:
    sim.faults({"kind": "status", "status": 503, "vendor": "eums"})
    expect(RetryableError, "503", lambda: client.send(msgs(MOBILES[:1])))
    expect(RetryableError, "503", client.balance)
    assert sim.messages("eums") == []


def test_garbled_answers_are_protocol_errors(sim: SimulatorProcess, client: EumsClient
                                             ) -> None:
    sim.faults({"kind": "garble", "vendor": "eums"})
    with pytest.raises(ProtocolError, match=r"send\.do"):
        client.send(msgs(MOBILES[:1]))
    assert len(sim.messages("eums")) == 1  # the gateway took it; only the answer is lost
    for call in (client.balance, client.pull_reports, client.pull_inbound):
        with pytest.raises(ProtocolError):
            call()


# --- answers and the code table ---------------------------------------------------
def test_every_documented_code_is_in_the_one_table() -> None:
    assert sorted(int(c) for c in CODES) == DOC_CODES


@pytest.mark.parametrize("code", DOC_CODES)
def test_each_code_maps_onto_the_taxonomy(code: int) -> None:
    cls, description = CODES[str(code)]
    for body in (json.dumps({"code": code}).encode(),
                 encrypt_hex({"code": str(code)}).upper().encode()):
        payload = decode_answer(body, SEND, AES_KEY)
        with pytest.raises(cls) as info:
            raise_for_answer(payload, SEND)
        assert info.value.code == str(code) and description in str(info.value)


def test_code_classes() -> None:
    def cls_of(code: int) -> type[SmsError]:
        return CODES[str(code)][0]
    assert all(cls_of(c) is AuthenticationError
               for c in (101, 106, 107, 121, 124, 201, 202, 203, 204, 206))
    assert cls_of(205) is InsufficientBalanceError
    assert cls_of(109) is LimitExceededError and cls_of(131) is RateLimitedError
    assert cls_of(999) is VendorError
    assert all(issubclass(cls_of(c), PermanentError) for c in DOC_CODES if c != 131)
    err = expect(RateLimitedError, "131", lambda: raise_for_answer({"code": 131}, STATISTIC))
    assert err.retry_after == 20
    unknown = expect(VendorError, "777", lambda: raise_for_answer({"code": 777}, SEND))
    assert "777" in str(unknown)


@pytest.mark.parametrize("body, problem", [
    (b"", "empty"),
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"<html>busy</html>", "neither JSON nor hex"),
    (b"[1, 2]", "neither JSON nor hex"),
    (b"{broken", "not valid JSON"),
    (b"abcd", "could not be decrypted"),
    (b'{"data": []}', "no usable code"),
    (b'{"code": true}', "no usable code"),
])
def test_nonsense_answers_are_protocol_errors(body: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem) as info:
        raise_for_answer(decode_answer(body, BALANCE, AES_KEY), BALANCE)
    assert info.value.endpoint == BALANCE


def test_plain_mode_refuses_ciphertext_and_accepts_quoted_codes() -> None:
    with pytest.raises(ProtocolError, match="not a JSON object"):
        decode_answer(encrypt_hex({"code": 0}).encode(), MO)
    raise_for_answer(decode_answer(b' {"code": "0", "data": []}\r\n', MO), MO)
    with pytest.raises(ProtocolError, match="JSON list"):
        decode_answer(encrypt_hex([1]).encode(), MO, AES_KEY)


def _general(text: str, mobiles: list[str], reference: str | None) -> list[Submission]:
    """What the general path makes of a send answer: the standard the fast path must meet."""
    payload = decode_answer(text.encode(), SEND)
    raise_for_answer(payload, SEND)
    return list(parse_send_answer(payload, mobiles, reference))


def test_usual_send_answer_read_from_text_as_the_general_path_reads_it() -> None:
    mobiles = [f"138{i:08d}" for i in range(1000)]
    entries = [{"dest_number": m, "message_id": f"06030155224547{i:05d}", "charge_item": 1 + i % 3}
               for i, m in enumerate(mobiles)]
    for text in (json.dumps({"code": 0, "data": entries}),
                 json.dumps({"data": entries, "code": 0, "msg": "ok"}, indent=2)):
        fast = accepted_from_text(text, mobiles, "ref-1")
        assert fast is not None
        assert list(fast) == _general(text, mobiles, "ref-1")
        assert fast.by_column()["message_id"][999] == "0603015522454700999"


@pytest.mark.parametrize("answer, mobiles", [
    ({"code": 0, "data": []}, ["13800000001"]),                                # left out
    ({"code": "0", "data": [{"dest_number": "13800000001", "message_id": "9",
                             "charge_item": 1}]}, ["13800000001"]),            # quoted code
    ({"code": 0, "data": [{"dest_number": "13800000001", "message_id": 42,
                           "charge_item": "2"}]}, ["13800000001"]),            # numbers
    ({"code": 0, "data": [{"dest_number": "13800000001", "message_id": " 7 ",
                           "charge_item": 1}]}, ["13800000001"]),              # blanks
    ({"code": 0, "data": [{"dest_number": "13800000001", "message_id": "7",
                           "charge_item": 0}]}, ["13800000001"]),              # no charge
    ({"code": 0, "data": [{"dest_number": "13800000002", "message_id": "8", "charge_item": 1},
                          {"dest_number": "13800000001", "message_id": "7", "charge_item": 1}]},
     ["13800000001", "13800000002"]),                                          # reordered
    ({"code": 0, "data": [{"dest_number": "13800000001", "message_id": "7", "charge_item": 1}]},
     ["13800000001", "13800000001"]),                                          # repeated
])
def test_other_send_answers_leave_the_fast_path_and_keep_their_meaning(
        answer: dict[str, Any], mobiles: list[str]) -> None:
    text = json.dumps(answer)
    assert accepted_from_text(text, mobiles, None) is None
    assert len(_general(text, mobiles, None)) == len(mobiles)


@pytest.mark.parametrize("text", ['{"code": 103, "data": []}', '{"code": 0}', "[1]", "{",
                                  '{"code": 0, "data": [1]}',
                                  '{"code": 0, "data": [], "code": 103}'])  # the last wins
def test_error_and_malformed_send_answers_leave_the_fast_path(text: str) -> None:
    assert accepted_from_text(text, ["13800000001"], None) is None


def test_send_answer_parsing() -> None:
    doc = {"code": 0, "data": [
        {"dest_number": "13812345678", "message_id": "0603015522454756885", "charge_item": 1},
        {"dest_number": "13000000001", "message_id": "0603015522454756886", "charge_item": 2}]}
    a, b = parse_send_answer(doc, ["13812345678", "13000000001"], "r")
    assert (a.message_id, a.charge_items, a.custom_id) == ("0603015522454756885", 1, "r")
    assert (b.message_id, b.charge_items) == ("0603015522454756886", 2)
    once = {"code": 0, "data": doc["data"][:1]}
    first, again = parse_send_answer(once, ["13812345678", "13812345678"], None)
    assert first.status is SubmissionStatus.SUBMITTED
    assert again.status is SubmissionStatus.REJECTED and again.vendor_code == "duplicate_number"
    none = parse_send_answer({"code": 0, "data": []}, ["1"], None)
    assert none[0].vendor_code == "invalid_number"
    numeric = {"code": 0, "data": [{"dest_number": "1", "message_id": 42, "charge_item": "3"}]}
    assert parse_send_answer(numeric, ["1"], None)[0].message_id == "42"
    for bad, problem in [
        ({"code": 0}, "no data list"),
        (doc, "not requested"),
        ({"code": 0, "data": [{**doc["data"][0], "charge_item": "one"}]}, "charge_item"),
        ({"code": 0, "data": [{**doc["data"][0], "message_id": None}]}, "message_id"),
    ]:
        with pytest.raises(ProtocolError, match=problem):
            parse_send_answer(bad, ["13812345678"], None)

