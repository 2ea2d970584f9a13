"""The simulator's arrival log (``/_sim/requests``): every vendor request, in the order
it arrived, with the account as the vendor names it and never a password."""

from __future__ import annotations

import time

import pytest

from sms_provider.errors import SmsError
from sms_provider.vendors.base import OutboundMessage
from tests.simulator_harness import DEFAULT_CONFIG, SimulatorProcess, credentials

MOBILES = {"emay_ims": "008613800138000", "emay_fms": "13800138000", "eims": "8613800138000",
           "eums": "13800138000", "chuanglan": "13800138000"}


@pytest.mark.parametrize("vendor", ["emay_ims", "eims", "eums", "chuanglan"])
def test_each_send_is_logged_with_its_account_and_no_password(sim: SimulatorProcess,
                                                                vendor: str) -> None:
    login, password = credentials(vendor)
    before = time.time()
    with sim.client(vendor) as c:
        c.send([OutboundMessage(MOBILES[vendor], "【Shop】hello")])
        c.send([OutboundMessage(MOBILES[vendor], "【Shop】again")])
    after = time.time()
    log = sim.requests()
    assert [e["vendor"] for e in log] == [vendor, vendor]
    assert {e["account"] for e in log} == {login}
    assert all(before <= e["time"] <= after for e in log)
    assert log[0]["time"] <= log[1]["time"]
    assert password not in str(log)
    assert sim.requests(vendor="emay_fms") == []


def test_emay_secure_mode_names_the_app_id_from_its_header(sim: SimulatorProcess) -> None:
    with sim.client("emay_ims", mode="secure") as c:
        c.send([OutboundMessage(MOBILES["emay_ims"], "【Shop】hello")])
    [entry] = sim.requests()
    assert entry["account"] == DEFAULT_CONFIG["emay_ims"]["app_id"]


def test_refused_and_faulted_requests_arrive_too_and_reset_forgets_them(
        sim: SimulatorProcess) -> None:
    sim.faults({"kind": "rate_limit", "vendor": "eums", "count": 1})
    with sim.client("eums") as c, pytest.raises(SmsError):
        c.send([OutboundMessage("13800138000", "【Shop】hello")])
    [entry] = sim.requests()
    assert (entry["vendor"], entry["method"]) == ("eums", "POST")
    assert entry["account"] == DEFAULT_CONFIG["eums"]["name"]
    sim.reset()
    assert sim.requests() == []
