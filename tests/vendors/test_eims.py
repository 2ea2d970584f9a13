"""EIMS client against the simulated platform over real HTTP, and the pure parsers."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
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
from sms_provider.models import Balance, DeliveryStatus, SubmissionStatus
from sms_provider.vendors.base import Capability, OutboundMessage
from sms_provider.vendors.clock import CHINA_TZ
from sms_provider.vendors.eims import EimsClient
from sms_provider.vendors.eims_answers import (
    parse_answer,
    parse_balance_answer,
    parse_inbound_answer,
    parse_push_reports,
    parse_report_answer,
    parse_send_answer,
)
from sms_provider.vendors.eims_codes import CODES, REPORT_STATE_DESCRIPTIONS
from sms_provider.vendors.eims_seq import FileSeqSource, MemorySeqSource
from tests.simulator_harness import ROOT, PushSink, SimulatorProcess, credentials, vendor_client

VENDOR = "eims"
ACCOUNT, PASSWORD = credentials(VENDOR)
MD5_KEY = "negotiated-md5-key"
MOBILES = ["8613800138000", "8613900139000", "85291234567"]
FAILURE_CODES = {str(s) for s in REPORT_STATE_DESCRIPTIONS if s >= 1000}


CODE_TEXT = "【Shop】Your code is 1234"


def outbound(mobiles: list[str], content: str = CODE_TEXT) -> list[OutboundMessage]:
    return [OutboundMessage(mobile=m, content=content) for m in mobiles]


def numbers(n: int, start: int = 8613800000000) -> list[str]:
    return [str(start + i) for i in range(n)]


def use_outcome(sim: SimulatorProcess, outcome: str, **eims: Any) -> None:
    mix = {"delivered": 0.0, "failed": 0.0, "silent": 0.0, outcome: 1.0}
    sim.reset(eims={**eims, "simulation": {"outcomes": mix}})


def md5_params(*, seq: int, stamp: int | None = None, key: str = MD5_KEY,
               password: str = PASSWORD) -> dict[str, Any]:
    stamp = int(time.time()) if stamp is None else stamp
    digest = hashlib.md5(f"{ACCOUNT}{password}{seq}{stamp}{key}".encode()).hexdigest()
    return {"account": ACCOUNT, "password": digest, "seq": seq, "time": stamp}


@pytest.fixture
def client(sim: SimulatorProcess) -> Iterator[EimsClient]:
    with sim.client(VENDOR) as c:
        yield c


@pytest.fixture
def md5_sim(sim: SimulatorProcess) -> SimulatorProcess:
    sim.reset(eims={"md5_key": MD5_KEY})
    return sim


# --- construction ---------------------------------------------------------------------
def test_capabilities_and_batch_limits_per_method(sim: SimulatorProcess) -> None:
    post = sim.client(VENDOR)
    get = sim.client(VENDOR, method="GET")
    assert post.max_batch == 10000 and get.max_batch == 100
    for cap in (Capability.SEND, Capability.QUERY_REPORTS, Capability.PUSH_REPORTS,
                Capability.INBOUND, Capability.BALANCE):
        assert post.supports(cap)
    assert not post.supports(Capability.PULL_REPORTS)
    with pytest.raises(LimitExceededError, match="between 1 and 100"):
        sim.client(VENDOR, method="get", max_batch=101)
    with pytest.raises(LimitExceededError, match="between 1 and 10000"):
        sim.client(VENDOR, max_batch=10001)
    assert sim.client(VENDOR, max_batch=500).max_batch == 500
    with pytest.raises(PermanentError, match="method"):
        sim.client(VENDOR, method="put")
    with pytest.raises(LimitExceededError, match="max_content_chars"):
        sim.client(VENDOR, max_content_chars=0)


def test_secrets_stay_out_of_repr_and_errors(sim: SimulatorProcess) -> None:
    c = sim.client(VENDOR, md5_key=MD5_KEY)
    assert PASSWORD not in repr(c) and MD5_KEY not in repr(c)
    assert "md5" in repr(c) and ACCOUNT in repr(c)
    with pytest.raises(AuthenticationError) as err:
        c.balance()  # the simulator runs in plain mode: the md5 password is refused
    assert err.value.code == "-1"
    assert PASSWORD not in str(err.value) and MD5_KEY not in str(err.value)
    plain = sim.client(VENDOR, password="wrong-secret-pw")
    with pytest.raises(AuthenticationError) as err:
        plain.send(outbound(MOBILES[:1]))
    assert "wrong-secret-pw" not in str(err.value) and "wrong-secret-pw" not in repr(plain)


# --- balance ---------------------------------------------------------------------------
def test_balance_is_money_with_gift(client: EimsClient) -> None:
    assert client.balance() == [Balance(amount=Decimal("50000"), unit="money",
                                        gift=Decimal("0"))]


def test_plain_password_in_the_query_never_reaches_a_log_line(
        client: EimsClient, caplog: pytest.LogCaptureFixture) -> None:
    """The document wants it in the query of GETs; urllib3 logs request lines at DEBUG."""
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        client.balance()
        client.send(outbound(MOBILES[:1], CODE_TEXT))
        client.query_reports(["1"])
    lines = "\n".join(record.getMessage() for record in caplog.records)
    assert "/getbalance?account=eimsuser&password=***" in lines  # the line is still there
    assert PASSWORD not in lines and PASSWORD not in caplog.text


def test_balance_follows_price_gift_and_charges(sim: SimulatorProcess) -> None:
    sim.reset(eims={"price": "0.10", "gift": "12.5", "balance": 100})
    c = sim.client(VENDOR)
    assert c.balance() == [Balance(Decimal("10"), "money", gift=Decimal("12.5"))]
    c.send(outbound(MOBILES[:2], "x" * 140))  # 2 numbers x 3 items
    assert sim.balance("eims") == 94
    assert c.balance()[0].amount == Decimal("9.4")


# --- send ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["post", "get"])
def test_send_records_what_was_asked(sim: SimulatorProcess, method: str) -> None:
    c = sim.client(VENDOR, method=method)
    content = "【商城】您的验证码是 1234，& 勿告诉他人 ?=+"
    subs = c.send(outbound(MOBILES, content))
    assert [s.mobile for s in subs] == MOBILES
    assert all(s.status is SubmissionStatus.SUBMITTED and s.charge_items == 1 for s in subs)
    ids = [int(s.message_id) for s in subs]
    assert ids == sorted(ids) and len(set(ids)) == 3
    # 19 digits: past what a double holds exactly, inside a signed 64-bit integer
    assert all(len(s.message_id) == 19 and 2**53 < int(s.message_id) < 2**63 for s in subs)
    recorded = sim.messages("eims")
    assert [(m["mobile"], m["content"], m["message_id"], m["charge_items"])
            for m in recorded] == [(s.mobile, content, s.message_id, 1) for s in subs]
    assert all(m["custom_id"] is None for m in recorded)


def test_send_charge_items_follow_segments(client: EimsClient, sim: SimulatorProcess) -> None:
    subs = client.send(outbound(MOBILES[:1], "长" * 135))
    assert subs[0].charge_items == 3
    assert sim.messages("eims")[0]["charge_items"] == 3


def test_wire_format_of_get_and_post(push_sink: PushSink) -> None:
    # The sink answers "ok", which is no EIMS answer: that is a ProtocolError too.
    for method in ("get", "post"):
        with pytest.raises(ProtocolError, match="not JSON"):
            vendor_client(VENDOR, push_sink.url, method=method).send(outbound(MOBILES[:2], "a b&c"))
    get, post = push_sink.wait_for(2)
    assert (get.method, get.path) == ("GET", "/sendsms")
    assert get.query == {"account": ACCOUNT, "password": PASSWORD, "smstype": "0",
                         "numbers": ",".join(MOBILES[:2]), "content": "a b&c"}
    assert (post.method, post.path, post.query) == ("POST", "/sendsms", {})
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == {"account": ACCOUNT, "password": PASSWORD, "smstype": 0,
                                     "numbers": ",".join(MOBILES[:2]), "content": "a b&c"}


def test_md5_mode_wire_format(push_sink: PushSink, tmp_path: Path) -> None:
    c = vendor_client(VENDOR, push_sink.url, md5_key=MD5_KEY, seq_path=tmp_path / "seq")
    with pytest.raises(ProtocolError):
        c.balance()
    with pytest.raises(ProtocolError):
        c.balance()
    first, second = (r.query for r in push_sink.wait_for(2))
    assert int(second["seq"]) == int(first["seq"]) + 1
    for q in (first, second):
        assert set(q) == {"account", "password", "seq", "time"}
        assert abs(int(q["time"]) - time.time()) < 5
        assert q["password"] == md5_params(seq=int(q["seq"]), stamp=int(q["time"]))["password"]
        assert PASSWORD not in q.values()


def test_refused_numbers_come_back_rejected_in_order(client: EimsClient,
                                                     sim: SimulatorProcess) -> None:
    asked = ["8613800138000", "123", "8613800138000", "1234567890123456", "85291234567"]
    subs = client.send(outbound(asked))
    assert [s.mobile for s in subs] == asked
    assert [s.status for s in subs] == [SubmissionStatus.SUBMITTED, SubmissionStatus.REJECTED,
                                        SubmissionStatus.SUBMITTED, SubmissionStatus.REJECTED,
                                        SubmissionStatus.SUBMITTED]
    rejected = subs[1]
    assert (rejected.message_id, rejected.vendor_code, rejected.charge_items) == (
        None, "rejected", 0)
    assert subs[0].message_id != subs[2].message_id  # the duplicate got its own id
    recorded = {m["message_id"]: m["mobile"] for m in sim.messages("eims")}
    assert recorded == {s.message_id: s.mobile for s in subs if s.message_id}


def test_all_numbers_refused_is_minus_9(client: EimsClient) -> None:
    with pytest.raises(PermanentError) as err:
        client.send(outbound(["123", "4567"]))
    assert err.value.code == "-9" and type(err.value) is PermanentError


def test_client_limits_are_checked_before_sending(sim: SimulatorProcess) -> None:
    post, get = sim.client(VENDOR), sim.client(VENDOR, method="get")
    cases = [
        (get, outbound(numbers(101)), "101 recipients"),
        (post, outbound(numbers(10001)), "10001 recipients"),
        (post, [], "no recipients"),
        (post, outbound(MOBILES, "x" * 1025), "1025 characters \\(message 0\\).*1024"),
        (post, outbound(MOBILES, ""), "content is empty"),
        (post, [*outbound(MOBILES[:1], "a"), *outbound(MOBILES[1:2], "b")],
         "message 1 has different content"),
        (post, outbound(["8613800138000", "+8613900139000"]), "message 1"),
        (post, outbound(["8613800138000,8613900139000"]), "digits only"),
        (post, outbound(["٨٦١٣٨٠٠١٣٨٠٠٠"]), "digits only"),
    ]
    for c, msgs, match in cases:
        with pytest.raises(LimitExceededError, match=match):
            c.send(msgs)
    with pytest.raises(PermanentError, match="no templates"):
        post.send(outbound(MOBILES), template_id="900001")
    assert sim.messages("eims") == []
    assert len(sim.client(VENDOR).send(outbound(MOBILES, "x" * 1024))) == 3


def test_simulator_refuses_long_content_itself(sim: SimulatorProcess) -> None:
    c = sim.client(VENDOR, max_content_chars=2000)
    with pytest.raises(LimitExceededError) as err:
        c.send(outbound(MOBILES[:1], "x" * 1025))
    assert err.value.code == "-5"
    sim.reset(eims={"max_content_chars": 10})
    with pytest.raises(LimitExceededError) as err:
        c.send(outbound(MOBILES[:1], "x" * 11))
    assert err.value.code == "-5"


def raw_send(sim: SimulatorProcess, method: str, **fields: Any) -> dict[str, Any]:
    params = {"account": ACCOUNT, "password": PASSWORD, "content": "hi", **fields}
    if method == "GET":
        resp = requests.get(sim.base_url + "/sendsms", params=params, timeout=10)
    else:
        resp = requests.post(sim.base_url + "/sendsms", json=params, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json;charset=utf-8"
    return resp.json()


def test_simulator_enforces_documented_send_limits(sim: SimulatorProcess) -> None:
    assert raw_send(sim, "GET", numbers=",".join(numbers(101)))["status"] == -7
    assert raw_send(sim, "GET", numbers=",".join(numbers(100)))["success"] == 100
    assert raw_send(sim, "POST", numbers=",".join(numbers(10001)))["status"] == -7
    big = raw_send(sim, "POST", numbers=",".join(numbers(10000)))
    assert (big["status"], big["success"], big["fail"], len(big["array"])) == (0, 10000, 0,
                                                                                10000)
    assert raw_send(sim, "POST", numbers="8613800138000", content="x" * 1025)["status"] == -5
    assert raw_send(sim, "POST", numbers="8613800138000", content="")["status"] == -4
    assert raw_send(sim, "POST", numbers="")["status"] == -8
    assert raw_send(sim, "GET", content="hi")["status"] == -8
    assert raw_send(sim, "POST", numbers="12,+8613800138000,٨٦١٣٨٠٠١٣٨٠٠٠")["status"] == -9
    mixed = raw_send(sim, "POST", numbers="8613800138000,12,,85291234567")
    assert (mixed["success"], mixed["fail"]) == (2, 2)
    assert [row[0] for row in mixed["array"]] == [8613800138000, 85291234567]
    assert len(sim.messages("eims")) == 100 + 10000 + 2


def test_scheduled_send_time_must_be_14_digits(sim: SimulatorProcess) -> None:
    for bad in ("2017100112301", "20171301123015", "2017-10-01 12:30:15", "abc"):
        assert raw_send(sim, "POST", numbers="8613800138000", sendtime=bad)["status"] == -11
    ok = raw_send(sim, "GET", numbers="8613800138000", sendtime="20301001123015")
    assert ok["status"] == 0 and ok["success"] == 1
    assert raw_send(sim, "POST", numbers="8613800138000", sendtime=20301001123015)["status"] == 0
    with pytest.raises(PermanentError, match="scheduled send time"):
        parse_answer(json.dumps({"status": -11}), "/sendsms")


def test_simulator_survives_garbage(sim: SimulatorProcess) -> None:
    url = sim.base_url
    bad_json = requests.post(url + "/sendsms", data=b"{not json", timeout=5)
    assert bad_json.json() == {"status": -1}
    not_object = requests.post(url + "/sendsms", json=[1, 2], timeout=5)
    assert not_object.json() == {"status": -1}
    assert requests.get(url + "/sendsms", timeout=5).json() == {"status": -1}
    typed = requests.post(url + "/sendsms", json={"account": ACCOUNT, "password": PASSWORD,
                                                  "numbers": [8613800138000],
                                                  "content": {"a": 1}}, timeout=5)
    assert typed.json() == {"status": -4}
    wrong_types = requests.post(url + "/sendsms", json={"account": 5, "password": None},
                                timeout=5)
    assert wrong_types.json() == {"status": -1}
    assert requests.post(url + "/getbalance", timeout=5).status_code == 405
    assert requests.put(url + "/sendsms", timeout=5).status_code == 405
    auth = {"account": ACCOUNT, "password": PASSWORD}
    report = requests.get(url + "/getreport", params={**auth, "ids": "x,,99999,-1"},
                          timeout=5).json()
    assert (report["status"], report["nofound"], report["array"]) == (0, 3, [])
    mo = requests.get(url + "/getsms", params={**auth, "start_time": "soon"}, timeout=5).json()
    assert mo == {"status": 0, "cnt": 0, "array": []}
    assert requests.get(url + "/getbalance", params=auth, timeout=5).json()["status"] == 0


# --- error codes ----------------------------------------------------------------------
def test_every_status_code_maps_into_the_taxonomy() -> None:
    expected = {
        -1: AuthenticationError, -2: AuthenticationError, -3: PermanentError,
        -4: LimitExceededError, -5: LimitExceededError, -6: PermanentError,
        -7: LimitExceededError, -8: LimitExceededError, -9: PermanentError,
        -10: InsufficientBalanceError, -11: PermanentError, -12: AmbiguousError,
        -13: AuthenticationError,
    }
    assert set(CODES) == {str(code) for code in expected}
    for code, cls in expected.items():
        with pytest.raises(cls) as err:
            parse_answer(json.dumps({"status": code}), "/sendsms")
        assert type(err.value) is cls and err.value.code == str(code)
        assert err.value.vendor == "eims" and err.value.endpoint == "/sendsms"
    with pytest.raises(VendorError) as err:
        parse_answer(b'{"status": -99}', "/getbalance")
    assert err.value.code == "-99"
    assert parse_answer(b'{"status": "0"}', "/getbalance") == {"status": "0"}


def test_ip_restriction_is_minus_2_everywhere(sim: SimulatorProcess) -> None:
    sim.reset(eims={"ip_denied": True})
    c = sim.client(VENDOR)
    calls = [c.balance, lambda: c.send(outbound(MOBILES[:1])), lambda: c.query_reports(["1"]),
             c.pull_inbound]
    for call in calls:
        with pytest.raises(AuthenticationError) as err:
            call()
        assert err.value.code == "-2"


def test_locked_account_is_minus_13(sim: SimulatorProcess) -> None:
    sim.reset(eims={"locked": True})
    c = sim.client(VENDOR)
    for call in (c.balance, lambda: c.send(outbound(MOBILES[:1])), c.pull_inbound):
        with pytest.raises(AuthenticationError, match="locked") as err:
            call()
        assert err.value.code == "-13"
    with pytest.raises(AuthenticationError) as err:  # a wrong password is checked first
        sim.client(VENDOR, password="nope").balance()
    assert err.value.code == "-1"


def test_sensitive_words_and_templates(sim: SimulatorProcess) -> None:
    sim.reset(eims={"sensitive_words": ["赌博"], "templates": [r"【Shop】Your code is \d{4}"]})
    c = sim.client(VENDOR)
    with pytest.raises(PermanentError) as err:
        c.send(outbound(MOBILES[:1], "【Shop】赌博"))
    assert err.value.code == "-3" and "sensitive" in str(err.value)
    with pytest.raises(PermanentError) as err:
        c.send(outbound(MOBILES[:1], "【Shop】Your code is 12345"))
    assert err.value.code == "-6" and "template" in str(err.value)
    assert len(c.send(outbound(MOBILES[:1], "【Shop】Your code is 1234"))) == 1
    assert len(sim.messages("eims")) == 1


def test_no_balance_is_minus_10_and_charges_nothing(sim: SimulatorProcess) -> None:
    sim.reset(eims={"balance": 2})
    c = sim.client(VENDOR)
    with pytest.raises(InsufficientBalanceError) as err:
        c.send(outbound(MOBILES))
    assert err.value.code == "-10"
    assert sim.balance("eims") == 2 and sim.messages("eims") == []
    assert len(c.send(outbound(MOBILES[:2]))) == 2
    assert sim.balance("eims") == 0


def test_platform_batch_error_is_ambiguous(sim: SimulatorProcess) -> None:
    sim.reset(eims={"batch_error": True})
    with pytest.raises(AmbiguousError) as err:
        sim.client(VENDOR).send(outbound(MOBILES))
    assert err.value.code == "-12" and not isinstance(err.value, PermanentError)
    assert [m["mobile"] for m in sim.messages("eims")] == MOBILES  # it did take them


# --- md5 mode --------------------------------------------------------------------------
def test_md5_mode_every_endpoint(md5_sim: SimulatorProcess, tmp_path: Path) -> None:
    c = md5_sim.client(VENDOR, md5_key=MD5_KEY, seq_path=tmp_path / "eims.seq")
    assert c.balance()[0].amount == Decimal("50000")
    first = int((tmp_path / "eims.seq").read_text())
    assert abs(first - time.time()) < 5  # a new file starts at the current Unix time
    subs = c.send(outbound(MOBILES))
    assert [r.message_id for r in c.query_reports([s.message_id for s in subs])] == [
        s.message_id for s in subs]
    md5_sim.inject_mo("eims", MOBILES[0], "TD")
    assert [m.content for m in c.pull_inbound()] == ["TD"]
    get = md5_sim.client(VENDOR, md5_key=MD5_KEY, seq_path=tmp_path / "eims.seq", method="get")
    assert len(get.send(outbound(MOBILES[:1]))) == 1
    assert int((tmp_path / "eims.seq").read_text()) == first + 4


def test_md5_mode_refusals(md5_sim: SimulatorProcess) -> None:
    url = md5_sim.base_url + "/getbalance"
    seq = int(time.time())
    assert requests.get(url, params=md5_params(seq=seq), timeout=5).json()["status"] == 0
    # the same seq again, a smaller one, a stale or future time, a wrong key or password
    refused = [md5_params(seq=seq), md5_params(seq=seq - 1),
               md5_params(seq=seq + 1, stamp=int(time.time()) - 301),
               md5_params(seq=seq + 2, stamp=int(time.time()) + 301),
               md5_params(seq=seq + 3, key="other-key"),
               md5_params(seq=seq + 4, password="other"),
               {**md5_params(seq=seq + 5), "seq": "abc"},
               {k: v for k, v in md5_params(seq=seq + 6).items() if k != "time"},
               {"account": ACCOUNT, "password": PASSWORD}]
    for params in refused:
        assert requests.get(url, params=params, timeout=5).json() == {"status": -1}, params
    assert requests.get(url, params=md5_params(seq=seq + 7), timeout=5).json()["status"] == 0
    plain = md5_sim.client(VENDOR)
    with pytest.raises(AuthenticationError):
        plain.balance()


def test_md5_seq_must_keep_growing_across_clients(md5_sim: SimulatorProcess,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "seq"
    start = int(time.time()) + 1000
    path.write_text(str(start))
    ahead = md5_sim.client(VENDOR, md5_key=MD5_KEY, seq_path=path)
    ahead.balance()
    restarted = md5_sim.client(VENDOR, md5_key=MD5_KEY, seq_path=path)
    restarted.balance()  # continues from the file
    assert int(path.read_text()) == start + 2
    in_memory = md5_sim.client(VENDOR, md5_key=MD5_KEY)
    with pytest.raises(AuthenticationError) as err:  # its seq starts at now: behind the file
        in_memory.balance()
    assert err.value.code == "-1"


def test_md5_seq_is_consumed_by_failed_requests(md5_sim: SimulatorProcess,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "seq"
    c = md5_sim.client(VENDOR, md5_key=MD5_KEY, seq_path=path)
    md5_sim.faults({"kind": "status", "status": 503, "vendor": "eims", "count": 1})
    with pytest.raises(RetryableError):
        c.balance()
    used = int(path.read_text())
    c.balance()  # the retry takes a new seq
    assert int(path.read_text()) == used + 1


def test_seq_source_in_memory_starts_at_unix_time() -> None:
    source = MemorySeqSource()
    before = int(time.time())
    first = source.next()
    assert before - 1 <= first <= int(time.time())
    assert [source.next() for _ in range(3)] == [first + 1, first + 2, first + 3]
    assert "None" in repr(source)


def test_seq_file_is_unique_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "seq"
    path.write_text("41")
    seen: list[int] = []

    def take() -> None:
        source = FileSeqSource(path)
        seen.extend(source.next() for _ in range(50))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(42, 242))
    assert int(path.read_text()) == 241


def test_seq_file_is_unique_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "seq"
    path.write_text("0")
    script = ("import sys\nfrom sms_provider.vendors.eims_seq import FileSeqSource\n"
              "s = FileSeqSource(sys.argv[1])\nprint(' '.join(str(s.next()) for _ in range(100)))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                              text=True, env={"PYTHONPATH": str(ROOT / "plugins")})
             for _ in range(3)]
    values = [int(v) for p in procs for v in p.communicate(timeout=30)[0].split()]
    assert sorted(values) == list(range(1, 301))


def test_seq_file_new_or_corrupt(tmp_path: Path) -> None:
    fresh = FileSeqSource(tmp_path / "new.seq").next()
    assert abs(fresh - time.time()) < 5
    corrupt = tmp_path / "bad.seq"
    corrupt.write_text("seventeen")
    with pytest.raises(PermanentError, match="does not hold a number"):
        FileSeqSource(corrupt).next()
    with pytest.raises(PermanentError, match="cannot open"):
        FileSeqSource(tmp_path / "missing-dir" / "seq").next()


# --- reports --------------------------------------------------------------------------
def test_reports_delivered(sim: SimulatorProcess) -> None:
    use_outcome(sim, "delivered")
    c = sim.client(VENDOR)
    subs = c.send(outbound(MOBILES))
    reports = c.query_reports([s.message_id for s in subs])
    assert [(r.message_id, r.mobile, r.status, r.raw_state, r.description) for r in reports] == [
        (s.message_id, s.mobile, DeliveryStatus.DELIVERED, "0", "success") for s in subs]
    submit_time = reports[0].submit_time
    assert submit_time is not None and submit_time.tzinfo is CHINA_TZ
    assert abs(submit_time.timestamp() - time.time()) < 5
    assert c.query_reports([s.message_id for s in subs]) == reports  # not consumed


def test_reports_failed_carry_a_documented_code(sim: SimulatorProcess) -> None:
    use_outcome(sim, "failed")
    c = sim.client(VENDOR)
    subs = c.send(outbound(numbers(40)))
    reports = c.query_reports([s.message_id for s in subs])
    assert {r.status for r in reports} == {DeliveryStatus.FAILED}
    assert {r.raw_state for r in reports} <= FAILURE_CODES
    assert len({r.raw_state for r in reports}) > 3  # spread over several codes
    for r in reports:
        assert r.description == REPORT_STATE_DESCRIPTIONS[int(r.raw_state)]
    again = c.query_reports([s.message_id for s in subs])
    assert [r.raw_state for r in again] == [r.raw_state for r in reports]  # deterministic


def test_reports_not_yet_due_are_sending(sim: SimulatorProcess) -> None:
    sim.reset(eims={"simulation": {"report_delay_s": 3600}})
    c = sim.client(VENDOR)
    msg_id = c.send(outbound(MOBILES[:1]))[0].message_id
    [report] = c.query_reports([msg_id])
    assert (report.status, report.raw_state, report.description) == (
        DeliveryStatus.PENDING, "2", "sending")


def test_reports_silent_stays_sending(sim: SimulatorProcess) -> None:
    use_outcome(sim, "silent")
    c = sim.client(VENDOR)
    msg_id = c.send(outbound(MOBILES[:1]))[0].message_id
    for _ in range(2):
        [report] = c.query_reports([msg_id])
        assert (report.status, report.raw_state) == (DeliveryStatus.PENDING, "2")


def test_report_query_unknown_ids_yield_nothing(client: EimsClient) -> None:
    msg_id = client.send(outbound(MOBILES[:1]))[0].message_id
    reports = client.query_reports(["999999999", msg_id, "888888888"])
    assert [r.message_id for r in reports] == [msg_id]
    assert client.query_reports([]) == []


def test_report_query_limits(client: EimsClient, sim: SimulatorProcess) -> None:
    with pytest.raises(LimitExceededError, match="201 ids"):
        client.query_reports([str(i) for i in range(1, 202)])
    with pytest.raises(LimitExceededError, match="message id 1 is not a number"):
        client.query_reports(["1", "2,3"])
    assert client.query_reports([str(i) for i in range(1, 201)]) == []
    auth = {"account": ACCOUNT, "password": PASSWORD}
    too_many = requests.get(sim.base_url + "/getreport", timeout=5,
                            params={**auth, "ids": ",".join(map(str, range(1, 202)))})
    assert too_many.json() == {"status": -7}
    empty = requests.get(sim.base_url + "/getreport", params={**auth, "ids": ""}, timeout=5)
    assert empty.json() == {"status": -8}


def test_report_answer_from_the_document() -> None:
    body = ('{"status":0, "success":1, "fail":1, "unsent":0, "sending":0, "nofound":0,'
            '"array":[[1,"10010",20171001123015,0], [2,"1008611",20171001123015,3],'
            '[3,"10086",20171001123015,1], [4,10000,20171001123015,1012]]}')
    reports = parse_report_answer(body)
    assert [(r.message_id, r.mobile, r.status, r.raw_state) for r in reports] == [
        ("1", "10010", DeliveryStatus.DELIVERED, "0"),
        ("2", "1008611", DeliveryStatus.FAILED, "3"),
        ("3", "10086", DeliveryStatus.PENDING, "1"),
        ("4", "10000", DeliveryStatus.FAILED, "1012")]
    assert reports[1].description == "failed (state not documented)"
    assert reports[2].description == "unsent"
    assert reports[3].description == "Sensitive Words"
    assert reports[0].submit_time == datetime(2017, 10, 1, 12, 30, 15, tzinfo=CHINA_TZ)
    assert reports[0].raw == {"id": 1, "number": "10010", "time": 20171001123015, "state": 0}
    assert parse_report_answer('{"status":0,"nofound":2}') == []


# --- inbound ----------------------------------------------------------------------------
def test_inbound_is_decoded_and_handed_out_once(client: EimsClient,
                                                sim: SimulatorProcess) -> None:
    sim.inject_mo("eims", "8613800138000", "好的，收到 👍", destination="1069001")
    sim.inject_mo("eims", "85291234567", "TD")
    first = client.pull_inbound()
    assert [(m.mobile, m.content, m.destination) for m in first] == [
        ("8613800138000", "好的，收到 👍", "1069001"), ("85291234567", "TD", "")]
    assert first[0].message_id != first[1].message_id
    received = first[0].received_at
    assert received is not None and abs(received.timestamp() - time.time()) < 5
    assert client.pull_inbound() == []


def test_inbound_start_time_and_pages_of_50(sim: SimulatorProcess) -> None:
    sim.reset(eims={"simulation": {"outcomes": {"delivered": 1.0, "failed": 0, "silent": 0},
                                   "mo_reply_rate": 1.0, "mo_texts": ["TD"]}})
    c = sim.client(VENDOR)
    sent = c.send(outbound(numbers(60)))
    time.sleep(0.01)  # the replies arrive a moment after the delivery
    assert c.pull_inbound(start_time=int(time.time()) + 3600) == []
    page = c.pull_inbound(start_time=int(time.time()) - 60)
    rest = c.pull_inbound()
    assert (len(page), len(rest)) == (50, 10)
    assert [m.mobile for m in page + rest] == [s.mobile for s in sent]
    assert {m.content for m in page + rest} == {"TD"}
    assert len({m.message_id for m in page + rest}) == 60
    assert c.pull_inbound() == []


def test_inbound_answer_from_the_document() -> None:
    hi = base64.b64encode("你好".encode()).decode()
    body = json.dumps({"status": 0, "cnt": 3, "array": [
        [1, "10010", "123456", 20171001123015, hi],
        [2, "1008611", "123456", 20171001123015, "not base64!"],
        [1, "10010", "123456", 20171001123015, hi]]})
    replies = parse_inbound_answer(body)
    assert [(m.message_id, m.mobile, m.destination, m.content) for m in replies] == [
        ("1", "10010", "123456", "你好"), ("2", "1008611", "123456", "not base64!")]
    assert replies[0].received_at == datetime(2017, 10, 1, 12, 30, 15, tzinfo=CHINA_TZ)
    assert replies[1].raw["content_not_base64_utf8"] is True
    assert parse_inbound_answer('{"status":0,"cnt":0}') == []
    with pytest.raises(ProtocolError, match="no 'array'"):
        parse_inbound_answer('{"status":0,"cnt":2}')


# --- pushes -------------------------------------------------------------------------------
def test_pushed_reports_reach_the_receiver(sim: SimulatorProcess, push_sink: PushSink) -> None:
    sim.reset(eims={"push_url": push_sink.url + "/eims/report",
                    "simulation": {"outcomes": {"delivered": 0.5, "failed": 0.5,
                                                "silent": 0.0}}})
    c = sim.client(VENDOR)
    subs = c.send(outbound(numbers(120)))
    deadline = time.monotonic() + 15
    reports = []
    while time.monotonic() < deadline and len(reports) < 120:
        reports = [r for req in push_sink.requests for r in parse_push_reports(req.body)]
        time.sleep(0.05)
    assert all((r.method, r.path) == ("PUT", "/eims/report") for r in push_sink.requests)
    assert all(len(json.loads(r.body)["array"]) <= 50 for r in push_sink.requests)
    by_id = {r.message_id: r for r in reports}
    assert set(by_id) == {s.message_id for s in subs}
    assert {r.status for r in reports} == {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}
    queried = {r.message_id: r for r in c.query_reports([s.message_id for s in subs[:100]])}
    for msg_id, pulled in queried.items():
        pushed = by_id[msg_id]
        assert (pushed.mobile, pushed.raw_state, pushed.status) == (
            pulled.mobile, pulled.raw_state, pulled.status)
        if pushed.status is DeliveryStatus.FAILED:
            assert pushed.raw_state in FAILURE_CODES and pushed.description


def test_push_example_from_the_document() -> None:
    body = (b'{"type":"report","cnt":2,"array":[[1,"1234545456",20180801123015,0,"success"],'
            b'[2,"2356844545",20180801223015, 1, "no balance"]]}')
    first, second = parse_push_reports(body)
    assert (first.message_id, first.mobile, first.status, first.raw_state,
            first.description) == ("1", "1234545456", DeliveryStatus.DELIVERED, "0", "success")
    assert (second.message_id, second.status, second.raw_state, second.description) == (
        "2", DeliveryStatus.FAILED, "1", "no balance")
    assert second.submit_time == datetime(2018, 8, 1, 22, 30, 15, tzinfo=CHINA_TZ)


@pytest.mark.parametrize(("body", "match"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON list"),
    (b'{"type":"mo","cnt":0,"array":[]}', "type is 'mo'"),
    (b'{"type":"report","array":[]}', "lacks 'cnt'"),
    (b'{"type":"report","cnt":0}', "no 'array'"),
    (b'{"type":"report","cnt":2,"array":[[1,"1",20180801123015,0,"ok"]]}', "cnt=2"),
    (b'{"type":"report","cnt":1,"array":[[1,"1",20180801123015]]}', "5 fields"),
    (b'{"type":"report","cnt":1,"array":[["x","1",20180801123015,0,""]]}', "id"),
    (b'{"type":"report","cnt":1,"array":[[1,"1",20180801123015,"ok",""]]}', "result"),
    (b'{"type":"report","cnt":1,"array":[[1,null,20180801123015,0,""]]}', "mobile"),
])
def test_bad_pushes_are_refused(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_push_reports(body)


def test_push_page_over_50_is_refused() -> None:
    rows = [[i, "8613800138000", 20180801123015, 0, "success"] for i in range(51)]
    with pytest.raises(ProtocolError, match="limit is 50"):
        parse_push_reports(json.dumps({"type": "report", "cnt": 51, "array": rows}))
    assert len(parse_push_reports(json.dumps({"type": "report", "cnt": 50,
                                              "array": rows[:50]}))) == 50


# --- answers that make no sense ----------------------------------------------------------
@pytest.mark.parametrize(("body", "match"), [
    (b"\xff\xfe<html>", "not JSON"),
    (b'"ok"', "JSON str"),
    (b"{}", "no 'status'"),
    (b'{"status": true}', "boolean"),
    (b'{"status": 0, "success": 1}', "no 'array'"),
    (b'{"status": 0, "array": {"a": 1}}', "expected a list"),
    (b'{"status": 0, "array": [[8613800138000]]}', "2 fields"),
    (b'{"status": 0, "array": [[8613800138000, "id-1"]]}', "id"),
    (b'{"status": 0, "array": [[8613800138000, 1], [8613800138000, 2]]}', "not sent"),
    (b'{"status": 0, "array": [[10010, 1]]}', "not sent"),
])
def test_nonsense_send_answers_are_protocol_errors(body: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_send_answer(body, ["8613800138000"], "hi")


def test_send_answer_with_string_numbers_and_leading_zeros() -> None:
    body = b'{"status":0,"success":2,"fail":1,"array":[["0085291234567","7"],[10010,8]]}'
    subs = parse_send_answer(body, ["10010", "85291234567", "10086"], "hi")
    assert [(s.mobile, s.message_id, s.status) for s in subs] == [
        ("10010", "8", SubmissionStatus.SUBMITTED),
        ("85291234567", "7", SubmissionStatus.SUBMITTED),
        ("10086", None, SubmissionStatus.REJECTED)]


def test_ids_stay_the_text_the_platform_wrote() -> None:
    """A wide integer id keeps every digit; a digit-string id keeps its leading zeros."""
    body = (b'{"status":0,"success":2,"fail":0,'
            b'"array":[[10010,2601011200001234567],[10086,"0000000042"]]}')
    subs = parse_send_answer(body, ["10010", "10086"], "hi")
    assert [s.message_id for s in subs] == ["2601011200001234567", "0000000042"]
    [report] = parse_report_answer(
        b'{"status":0,"array":[["0000000042","10086",20171001123015,0]]}')
    assert report.message_id == "0000000042"
    with pytest.raises(ProtocolError, match="expected an integer id"):
        parse_send_answer(b'{"status":0,"array":[[10010,2.6e18]]}', ["10010"], "hi")


def test_nonsense_other_answers_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="no 'balance'"):
        parse_balance_answer(b'{"status": 0}')
    with pytest.raises(ProtocolError, match="balance is not a number"):
        parse_balance_answer(b'{"status": 0, "balance": "lots"}')
    with pytest.raises(ProtocolError, match="gift is dict"):
        parse_balance_answer(b'{"status": 0, "balance": "1", "gift": {}}')
    assert parse_balance_answer(b'{"status":0,"balance":"99.990000","gift":"50.00000"}') == [
        Balance(Decimal("99.99"), "money", gift=Decimal("50"))]
    assert parse_balance_answer(b'{"status":0,"balance":3}')[0].gift is None
    with pytest.raises(ProtocolError, match="4 fields"):
        parse_report_answer(b'{"status": 0, "array": [[1, "10010", 20171001123015]]}')
    with pytest.raises(ProtocolError, match="state"):
        parse_report_answer(b'{"status": 0, "array": [[1, "10010", 20171001123015, null]]}')
    with pytest.raises(ProtocolError, match="sender"):
        parse_inbound_answer(b'{"status": 0, "cnt": 1, "array": [[1, null, "1", 1, "eA=="]]}')


# --- transport faults -----------------------------------------------------------------
def test_lost_send_answer_is_ambiguous_and_the_vendor_has_it(client: EimsClient,
                                                              sim: SimulatorProcess) -> None:
    sim.faults({"kind": "accept_drop", "vendor": "eims", "path": "sendsms"})
    with pytest.raises(AmbiguousError):
        client.send(outbound(MOBILES))
    assert [m["mobile"] for m in sim.messages("eims")] == MOBILES


def test_dropped_requests(client: EimsClient, sim: SimulatorProcess) -> None:
    sim.faults({"kind": "drop", "vendor": "eims"})
    with pytest.raises(AmbiguousError):
        client.send(outbound(MOBILES))
    with pytest.raises(AmbiguousError):  # consume-once: a lost answer may lose replies
        client.pull_inbound()
    for read in (client.balance, lambda: client.query_reports(["1"])):
        with pytest.raises(RetryableError) as err:
            read()
        assert not isinstance(err.value, AmbiguousError)
    assert sim.messages("eims") == []


def test_503_is_retryable_and_garble_is_protocol(client: EimsClient,
                                                 sim: SimulatorProcess) -> None:
    sim.faults({"kind": "status", "status": 503, "vendor": "eims"})
    with pytest.raises(RetryableError):
        client.send(outbound(MOBILES))
    assert sim.messages("eims") == []
    sim.faults({"kind": "garble", "vendor": "eims"})
    for call in (lambda: client.send(outbound(MOBILES)), client.balance, client.pull_inbound,
                 lambda: client.query_reports(["1"])):
        with pytest.raises(ProtocolError, match="not JSON"):
            call()


def test_rate_limit_answer(client: EimsClient, sim: SimulatorProcess) -> None:
    sim.faults({"kind": "rate_limit", "vendor": "eims"})
    with pytest.raises(RateLimitedError):
        client.send(outbound(MOBILES))
    assert sim.messages("eims") == []
