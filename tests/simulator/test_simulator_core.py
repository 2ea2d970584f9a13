"""The simulator's own machinery: admin API, fault rules, configuration errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from sms_provider.simulator.faults import FaultBook, FaultRule
from sms_provider.simulator.state import (
    DEFAULT_SIMULATION,
    DELIVERED,
    FAILED,
    SILENT,
    VendorState,
    unit_hash,
)
from tests.simulator_harness import ROOT, SimulatorProcess


def test_health_lists_every_vendor(sim: SimulatorProcess) -> None:
    body = requests.get(sim.base_url + "/_sim/health", timeout=5).json()
    assert body == {"status": "ok",
                    "vendors": ["chuanglan", "eims", "emay_fms", "emay_ims", "eums"]}


def test_unknown_paths_and_admin_calls_are_404(sim: SimulatorProcess) -> None:
    assert requests.get(sim.base_url + "/nope", timeout=5).status_code == 404
    assert requests.get(sim.base_url + "/_sim/nope", timeout=5).status_code == 404
    assert requests.get(sim.base_url + "/_sim/balance", params={"vendor": "x"},
                        timeout=5).status_code == 404


def test_fault_rules_are_validated_and_listed(sim: SimulatorProcess) -> None:
    bad = requests.post(sim.base_url + "/_sim/faults", json={"rules": [{"kind": "explode"}]},
                        timeout=5)
    assert bad.status_code == 400 and "explode" in bad.json()["error"]
    sim.faults({"kind": "latency", "latency_s": 0.01, "vendor": "eums"})
    listed = requests.get(sim.base_url + "/_sim/faults", timeout=5).json()["rules"]
    assert [r["kind"] for r in listed] == ["latency"]
    sim.clear_faults()
    assert requests.get(sim.base_url + "/_sim/faults", timeout=5).json()["rules"] == []


def test_reset_with_a_bad_config_is_refused_and_keeps_serving(sim: SimulatorProcess) -> None:
    resp = requests.post(sim.base_url + "/_sim/reset", json={"smsvendor": {}}, timeout=5)
    assert resp.status_code == 400 and "smsvendor" in resp.json()["error"]
    assert requests.get(sim.base_url + "/_sim/health", timeout=5).ok


def test_mo_injection_needs_a_configured_vendor(sim: SimulatorProcess) -> None:
    resp = requests.post(sim.base_url + "/_sim/mo",
                         json={"vendor": "nobody", "mobile": "1", "content": "x"}, timeout=5)
    assert resp.status_code == 404


def test_fault_probability_is_deterministic_under_a_seed() -> None:
    def fired(seed: int) -> list[bool]:
        book = FaultBook()
        book.set([FaultRule(kind="drop", probability=0.5, seed=seed)])
        return [book.pick("eums", "/x") is not None for _ in range(50)]

    assert fired(3) == fired(3)
    assert fired(3) != fired(4)
    assert 10 < sum(fired(3)) < 40


def test_fault_count_and_matching() -> None:
    book = FaultBook()
    book.set([FaultRule(kind="status", vendor="eims", path="sendsms", count=2)])
    assert book.pick("eums", "/sendsms") is None
    assert book.pick("eims", "/getreport") is None
    assert [book.pick("eims", "/sendsms") is not None for _ in range(3)] == [True, True, False]
    book.set([FaultRule(kind="drop", skip=2, count=1)])
    assert [book.pick("eims", "/x") is not None for _ in range(4)] == [False, False, True, False]
    with pytest.raises(ValueError, match="unknown fault rule keys"):
        FaultRule.from_json({"kind": "drop", "vendorr": "x"})


def test_outcomes_follow_the_mix_and_the_seed() -> None:
    settings = {**DEFAULT_SIMULATION, "seed": 11,
                "outcomes": {DELIVERED: 0.7, FAILED: 0.2, SILENT: 0.1}}
    state = VendorState("eums", settings)
    msgs = state.accept([f"138{i:08d}" for i in range(2000)], ["hi"] * 2000, [None] * 2000,
                        lambda seq: f"id{seq}")
    shares = {k: sum(m.outcome == k for m in msgs) / 2000 for k in (DELIVERED, FAILED, SILENT)}
    assert abs(shares[DELIVERED] - 0.7) < 0.05 and abs(shares[SILENT] - 0.1) < 0.03
    again = VendorState("eums", settings).accept(["1"] * 50, ["hi"] * 50, [None] * 50,
                                                   lambda seq: f"id{seq}")
    assert [m.outcome for m in again] == [m.outcome for m in msgs[:50]]
    assert unit_hash(1, "a") == unit_hash(1, "a") != unit_hash(2, "a")


def test_reports_are_handed_out_once_and_silent_ones_never() -> None:
    settings = {**DEFAULT_SIMULATION, "outcomes": {DELIVERED: 0.5, FAILED: 0.3, SILENT: 0.2}}
    state = VendorState("eums", settings)
    msgs = state.accept(["1"] * 100, ["hi"] * 100, [None] * 100, lambda s: str(s))
    first = state.take_due_reports(60)
    rest = state.take_due_reports(1000)
    assert len(first) == 60
    assert {m.seq for m in first}.isdisjoint({m.seq for m in rest})
    assert len(first) + len(rest) == sum(m.outcome != SILENT for m in msgs)
    assert state.take_due_reports(1000) == []


def test_balance_is_charged_all_or_nothing() -> None:
    from sms_provider.simulator.state import InsufficientBalance

    state = VendorState("eums", {**DEFAULT_SIMULATION, "balance": 5})
    state.accept(["1", "2"], ["a" * 70, "b" * 71], [None, None], str)  # 1 + 2 items
    assert state.balance == 2
    with pytest.raises(InsufficientBalance):
        state.accept(["1", "2", "3"], ["x"] * 3, [None] * 3, str)
    assert state.balance == 2 and len(state.messages) == 2


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sms_provider.simulator", *args],
                          capture_output=True, text=True, timeout=30,
                          env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"})


def test_cli_names_a_missing_or_malformed_config(tmp_path) -> None:
    missing = run_cli("--config", str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "absent.json" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "bad.json" in run_cli("--config", str(bad)).stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"sms_vendor": {}}))
    result = run_cli("--config", str(wrong))
    assert result.returncode == 2 and "sms_vendor" in result.stderr


def test_simulator_process_serves_a_custom_config(tmp_path) -> None:
    proc = SimulatorProcess(tmp_path, {"eums": {"name": "n", "password": "p",
                                                "aes_key": "0123456789abcdef"}}).start()
    try:
        assert requests.get(proc.base_url + "/_sim/health", timeout=5).json()["vendors"] == [
            "eums"]
    finally:
        proc.stop()


def test_a_restarted_simulator_hands_out_new_message_ids(tmp_path) -> None:
    """Reports are matched by vendor id across every campaign on a connection, so a
    restarted simulator must not reuse the ids an earlier one gave out (as no vendor would)."""
    from sms_provider.vendors.base import OutboundMessage

    seen: dict[str, list[str]] = {}
    for run in range(2):
        (tmp_path / f"run-{run}").mkdir()
        proc = SimulatorProcess(tmp_path / f"run-{run}").start()
        try:
            for vendor in ("eims", "emay_ims"):
                client = proc.client(vendor)
                mobile = "8613800138000" if vendor == "eims" else "008613800138000"
                subs = client.send([OutboundMessage(mobile, "【Shop】hello", None)])
                seen.setdefault(vendor, []).append(subs[0].message_id)
        finally:
            proc.stop()
    for vendor, ids in seen.items():
        assert len(set(ids)) == 2, (vendor, ids)
