"""The usual batch, read by columns, gives exactly what the general parsers give.

Emay IMS and FMS, EIMS and Chuanglan read the usual batch answer by typed
decoding and check the usual chunk in one pass (``batch_text``). Each test
sends a planned batch (an ``OutboundBatch``, as the send path makes it) to the
simulator, keeps the answer as it came off the wire (a ``requests`` response
hook) and compares the client's submissions with what the general parser makes
of that same answer, and with what the simulator recorded. Answers the quick
readers must leave to the general path (stray blanks, ids as numbers, entries
out of order, another custom id) are checked on canned bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sms_provider.errors import LimitExceededError, PermanentError
from sms_provider.models import AcceptedBatch, Submission
from sms_provider.segments import charge_items
from sms_provider.vendors import emay_common
from sms_provider.vendors.base import OutboundBatch, VendorClient
from sms_provider.vendors.batch_text import blank_in, digit_numbers, plain_digit_numbers
from sms_provider.vendors.chuanglan import parse_send_response
from sms_provider.vendors.eims_answers import parse_send_answer, read_send_answer
from sms_provider.vendors.emay_accepted import (
    fms_data_accepted,
    ims_data_accepted,
    ims_plain_accepted,
)
from sms_provider.vendors.emay_fms import parse_submissions
from sms_provider.vendors.emay_ims import (
    parse_plain_answer,
    parse_secure_answer,
    submissions_from_answer,
)
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess

CONTENT = "【测试】您的验证码是 482913, 10 分钟内有效。"
N = 40


def batch(mobiles: list[str], *, contents: list[str] | None = None,
          custom_ids: list[str | None] | None = None,
          variables: list[Any] | None = None) -> OutboundBatch:
    n = len(mobiles)
    return OutboundBatch(mobiles, contents or [CONTENT] * n,
                         custom_ids if custom_ids is not None else [f"c{i}" for i in range(n)],
                         variables or [None] * n)


@pytest.fixture
def answers() -> Iterator[list[requests.Response]]:
    """Filled with every answer the client of :func:`watch` receives."""
    yield []


def watch(client: VendorClient, answers: list[requests.Response]) -> VendorClient:
    client.http.session.hooks["response"].append(lambda resp, *a, **k: answers.append(resp))
    return client


def recorded(sim: SimulatorProcess, vendor: str) -> list[tuple[str, str, str | None]]:
    return [(m["mobile"], m["message_id"], m["custom_id"]) for m in sim.messages(vendor)]


# --- Emay IMS ----------------------------------------------------------------------
IMS_MODES = [pytest.param({"mode": "plain"}, id="plain"),
             pytest.param({"mode": "secure", "gzip": True}, id="secure-gzip"),
             pytest.param({"mode": "secure", "gzip": False}, id="secure-nogzip")]


def ims_general(client: Any, resp: requests.Response, messages: OutboundBatch,
                path: str) -> list[Submission]:
    if client.mode == "secure":
        data = parse_secure_answer(resp.headers.get("result"), resp.content,
                                   DEFAULT_CONFIG["emay_ims"]["secret_key"],
                                   gzip_on=client.gzip, endpoint=path)
    else:
        data = parse_plain_answer(resp.content, path)
    return submissions_from_answer(list(messages), data, path)


@pytest.mark.parametrize("mode", IMS_MODES)
@pytest.mark.parametrize("shape", ["same", "personalised", "some-without-id"])
def test_ims_batch_matches_the_general_parser(sim: SimulatorProcess, answers: list,
                                              mode: dict[str, Any], shape: str) -> None:
    client = watch(sim.client("emay_ims", **mode), answers)
    mobiles = [f"0086138{i:08d}" for i in range(N)]
    messages = batch(
        mobiles,
        contents=[f"{CONTENT} {i}" for i in range(N)] if shape == "personalised" else None,
        custom_ids=[None if i % 3 else f"c{i}" for i in range(N)]
        if shape == "some-without-id" else None)
    subs = client.send(messages)
    assert isinstance(subs, AcceptedBatch)  # the quick reader took it
    path = client._path("sendPersonalityIMS" if shape == "personalised" else "sendBatchIMS")
    assert list(subs) == ims_general(client, answers[-1], messages, path)
    assert [(s.mobile, s.message_id, s.custom_id) for s in subs] == recorded(sim, "emay_ims")
    assert [s.charge_items for s in subs] == [charge_items(c) for c in messages.contents]


IMS_ENTRY = {"mobile": "008613800000000", "imsId": "2026120700000000000001",
             "customImsId": "c0"}


@pytest.mark.parametrize("entry", [
    {**IMS_ENTRY, "imsId": 2026120700000000000001},           # an id as a JSON number
    {**IMS_ENTRY, "imsId": " 2026120700000000000001"},        # blanks the general path strips
    {" mobile": "008613800000000", "imsId": "1", "customImsId": "c0"},  # a blank in a key
    {**IMS_ENTRY, "customImsId": "other"},                   # another custom id echoed
    {**IMS_ENTRY, "mobile": "008613800000001"},               # another number
    {**IMS_ENTRY, "imsId": ""},                               # no id
])
def test_ims_unusual_answers_go_the_general_way(entry: dict[str, Any]) -> None:
    args = (["008613800000000"], ["c0"], [1])
    body = json.dumps({"code": "SUCCESS", "data": [entry]}).encode()
    assert ims_plain_accepted(body, *args) is None
    assert ims_data_accepted(json.dumps([entry]).encode(), *args) is None


def test_ims_other_codes_go_the_general_way() -> None:
    body = json.dumps({"code": "ERROR_BALANCE", "data": [IMS_ENTRY]}).encode()
    assert ims_plain_accepted(body, ["008613800000000"], ["c0"], [1]) is None
    usual = json.dumps({"code": "SUCCESS", "data": [IMS_ENTRY]}).encode()
    accepted = ims_plain_accepted(usual, ["008613800000000"], ["c0"], [1])
    assert list(accepted or []) == submissions_from_answer(
        batch(["008613800000000"])[:1], parse_plain_answer(usual, "/inter/x"), "/inter/x")


def test_ims_chunk_with_a_bad_number_is_named(sim: SimulatorProcess) -> None:
    client = sim.client("emay_ims")
    mobiles = [f"0086138{i:08d}" for i in range(N)]
    mobiles[17] = "86138000000"  # no 00
    with pytest.raises(PermanentError, match="message 17"):
        client.send(batch(mobiles))
    assert sim.count("emay_ims") == 0


# --- Emay FMS ----------------------------------------------------------------------
FMS_TEXT = "【测试】验证码${code}"


@pytest.mark.parametrize("mode", [{"mode": "normal"}, {"mode": "secure", "gzip": True},
                                  {"mode": "secure", "gzip": False}],
                         ids=["normal", "secure-gzip", "secure-nogzip"])
def test_fms_batch_matches_the_general_parser(sim: SimulatorProcess, answers: list,
                                              mode: dict[str, Any]) -> None:
    client = watch(sim.client("emay_fms", **mode), answers)
    template = client.register_template(FMS_TEXT).template_id
    mobiles = [f"138{i:08d}" for i in range(N)]
    shared = {"code": "1234"}
    variables = [shared if i % 2 else {"code": f"{i:04d}"} for i in range(N)]
    custom_ids = [None if i % 5 == 0 else f"c{i}" for i in range(N)]
    messages = batch(mobiles, custom_ids=custom_ids, variables=variables)
    subs = client.send(messages, template_id=template)
    assert isinstance(subs, AcceptedBatch)
    raw = answers[-1].content
    data = (emay_common.decode_secure(raw, DEFAULT_CONFIG["emay_fms"]["secret_key"],
                                      gzip_on=client.gzip)
            if client.mode == "secure" else json.loads(raw))
    sent = [(m, c, 1) for m, c in zip(mobiles, custom_ids, strict=True)]
    assert list(subs) == parse_submissions(data, sent, client._path("sendBatchFMS"))
    assert [(s.mobile, s.message_id, s.custom_id) for s in subs] == recorded(sim, "emay_fms")
    texts = [m["content"] for m in sim.messages("emay_fms")]
    assert texts == [f"【测试】验证码{v['code']}" for v in variables]


FMS_ENTRY = {"mobile": "13800000000", "fmsId": "26120700000001", "customFmsId": "c0"}


@pytest.mark.parametrize("entries", [
    [{**FMS_ENTRY, "fmsId": 26120700000001}],
    [{**FMS_ENTRY, "fmsId": "26120700000001 "}],
    [{**FMS_ENTRY, "customFmsId": "c9"}],
    [FMS_ENTRY, {**FMS_ENTRY, "mobile": "13800000001"}],  # one entry too many
])
def test_fms_unusual_answers_go_the_general_way(entries: list[dict[str, Any]]) -> None:
    assert fms_data_accepted(json.dumps(entries).encode(), ["13800000000"], ["c0"],
                             [1]) is None


def test_fms_entries_out_of_order_go_the_general_way() -> None:
    """The general parser pairs by number and custom id, so an answer in another order
    is still read, by it."""
    first, second = FMS_ENTRY, {**FMS_ENTRY, "mobile": "13800000001", "customFmsId": "c1",
                                "fmsId": "26120700000002"}
    body = json.dumps([second, first]).encode()
    mobiles, ids = ["13800000000", "13800000001"], ["c0", "c1"]
    assert fms_data_accepted(body, mobiles, ids, [1, 1]) is None
    subs = parse_submissions(json.loads(body), [(m, c, 1) for m, c in zip(mobiles, ids,
                                                                           strict=True)], "/x")
    assert [s.message_id for s in subs] == ["26120700000001", "26120700000002"]


# --- EIMS --------------------------------------------------------------------------
@pytest.mark.parametrize("md5", [False, True], ids=["plain", "md5"])
def test_eims_batch_matches_the_general_parser(sim: SimulatorProcess, answers: list,
                                               md5: bool) -> None:
    key = "test-md5-key"
    if md5:
        sim.reset(eims={"md5_key": key})
    client = watch(sim.client("eims", **({"md5_key": key} if md5 else {})), answers)
    mobiles = [f"86138{i:08d}" for i in range(N)]
    subs = client.send(batch(mobiles, custom_ids=[None] * N))
    assert isinstance(subs, AcceptedBatch)
    assert list(subs) == parse_send_answer(answers[-1].content, mobiles, CONTENT)
    assert [(s.mobile, s.message_id) for s in subs] == [
        (m, i) for m, i, _ in recorded(sim, "eims")]


@pytest.mark.parametrize("body", [
    {"status": 0, "array": [["8613800000001", "100"], [8613800000000, 101]]},  # text
    {"status": 0, "array": [[8613800000001, 101], [8613800000000, 100]]},      # order
    {"status": 0, "array": [[8613800000000, 100]]},                            # one left out
    {"status": "0", "array": [[8613800000000, 100], [8613800000001, 101]]},
])
def test_eims_unusual_answers_read_as_the_general_parser_reads_them(body: dict) -> None:
    raw = json.dumps(body).encode()
    mobiles = ["8613800000000", "8613800000001"]
    subs = read_send_answer(raw, mobiles, CONTENT)
    assert not isinstance(subs, AcceptedBatch)
    assert subs == parse_send_answer(raw, mobiles, CONTENT)


def test_eims_numbers_with_leading_zeros_take_the_general_path() -> None:
    """JSON integers drop leading zeros: only the general parser pairs those numbers."""
    raw = json.dumps({"status": 0, "array": [[13800000000, 7]]}).encode()
    subs = read_send_answer(raw, ["013800000000"], CONTENT)
    assert not isinstance(subs, AcceptedBatch)
    assert [s.message_id for s in subs] == ["7"]


# --- Chuanglan ---------------------------------------------------------------------
def test_chuanglan_batch_matches_one_submission_per_number(sim: SimulatorProcess,
                                                           answers: list) -> None:
    client = watch(sim.client("chuanglan"), answers)
    mobiles = [f"138{i:08d}" for i in range(N)]
    sign = "【测试】"
    subs = client.send(batch(mobiles, contents=[sign + CONTENT[4:]] * N,
                             custom_ids=[None] * N))
    msgid = parse_send_response(answers[-1].content, needstatus=True)
    assert list(subs) == [Submission(m, msgid, None, charge_items(sign + CONTENT[4:]), "0")
                          for m in mobiles]
    # the simulator numbers each recipient under the request's msgid
    assert [(s.mobile, f"{s.message_id}-{i}") for i, s in enumerate(subs)] == [
        (m, i) for m, i, _ in recorded(sim, "chuanglan")]


def test_chuanglan_repeated_number_is_still_named(sim: SimulatorProcess) -> None:
    mobiles = [f"138{i:08d}" for i in range(N)]
    mobiles[30] = mobiles[4]
    with pytest.raises(LimitExceededError, match="message 30 repeats the mobile of message 4"):
        sim.client("chuanglan").send(batch(mobiles, custom_ids=[None] * N))


# --- the quick checks --------------------------------------------------------------
SAMPLES = ["", "0", "00", "0086138", "008613800000000", "0086138000000000000",
           "13800000000", "1380000000", "138000000000", "23800000000", " 13800000000",
           "13800000000\n", "1380000000٣", "１3800000000", "138,0000000", "8613800000000"]


@pytest.mark.parametrize("prefix, lo, hi, pattern", [
    ("00", 8, 18, re.compile(r"^00\d{6,16}$")),       # Emay IMS
    ("1", 11, 11, re.compile(r"1[0-9]{10}")),          # Emay FMS, Chuanglan (fullmatch)
    ("", 1, None, re.compile(r"[0-9]+")),              # EIMS (fullmatch)
])
def test_quick_number_checks_accept_nothing_the_patterns_refuse(
        prefix: str, lo: int, hi: int | None, pattern: re.Pattern[str]) -> None:
    for sample in SAMPLES:
        quick = digit_numbers([sample], prefix=prefix, min_len=lo, max_len=hi)
        if quick:
            assert pattern.fullmatch(sample), sample
        if pattern.fullmatch(sample) and sample.isascii() and "\n" not in sample:
            assert quick, sample
    good = [s for s in SAMPLES if digit_numbers([s], prefix=prefix, min_len=lo, max_len=hi)]
    assert digit_numbers(good, prefix=prefix, min_len=lo, max_len=hi) == bool(good)
    for bad in set(SAMPLES) - set(good):
        assert not digit_numbers([*good, bad], prefix=prefix, min_len=lo, max_len=hi)
        assert not digit_numbers([bad, *good], prefix=prefix, min_len=lo, max_len=hi)


def test_plain_digits_and_blanks() -> None:
    assert plain_digit_numbers(["1", "23"])
    assert not plain_digit_numbers(["1", ""]) and not plain_digit_numbers(["1,2"])
    assert blank_in("a b") and blank_in("ab\t") and blank_in("é") and not blank_in("ab")
