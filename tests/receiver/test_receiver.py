"""The push receiver over real HTTP: the simulator pushes, the receiver lands, compaction
moves the pushes into Parquet; every accepted message's report exactly once after dedupe,
even with duplicated pushes and a receiver killed between landing and compaction."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
import uvicorn
from fastapi import FastAPI

from sms_provider.data.reports import dedupe, read_all
from sms_provider.data.schemas import INBOUND_SCHEMA, REPORT_SCHEMA, SUPPRESSION_SCHEMA
from sms_provider.data.storage import DataRoot
from sms_provider.receiver.app import app_from_env, create_app
from sms_provider.receiver.compaction import compact, landed_files
from sms_provider.receiver.config import ReceiverConfig, ReceiverConfigError
from sms_provider.receiver.landing import Lander
from sms_provider.receiver.records import CHUANGLAN_MO, LandingRecord
from sms_provider.receiver.redaction import RedactingFilter, redact_path
from sms_provider.receiver.server import server_config
from sms_provider.vendors import emay_common
from sms_provider.vendors.base import OutboundMessage
from tests.simulator_harness import DEFAULT_CONFIG, ROOT, SimulatorProcess, free_port

IMS = DEFAULT_CONFIG["emay_ims"]
CL_RECEIVER, CL_PASSWORD = "cl-push", "cl-push-Secret-7f3a"
EIMS_TOKEN = "eims-Tok3n-0123456789abcdefghijklmn"
EMAY_TOKEN = "emay-PlainTok3n-0123456789abcdefghij"
CONNECTIONS = [
    {"conn_id": "sms_chuanglan", "vendor": "chuanglan", "receiver": CL_RECEIVER,
     "password": CL_PASSWORD},
    {"conn_id": "sms_emay_ims", "vendor": "emay_ims", "app_id": IMS["app_id"],
     "secret_key": IMS["secret_key"], "accept_plain": True, "plain_token": EMAY_TOKEN},
    {"conn_id": "sms_eims", "vendor": "eims", "token": EIMS_TOKEN},
]
CONFIG = {"connections": CONNECTIONS}
SECRETS = (CL_PASSWORD, EIMS_TOKEN, EMAY_TOKEN, IMS["secret_key"])
CONN_OF = {"chuanglan": "sms_chuanglan", "emay_ims": "sms_emay_ims", "eims": "sms_eims"}


#: runs the receiver's ``__main__`` with a cap on the size of any file it writes (an
#: injected "disk full": writes past the cap fail with EFBIG, as a full disk fails them)
_CAPPED_MAIN = ("import resource, runpy, sys; cap = int(sys.argv.pop(1)); "
                "resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap)); "
                "sys.argv[0] = 'sms_provider.receiver'; "
                "runpy.run_module('sms_provider.receiver', run_name='__main__')")


class ReceiverProcess:
    """``python -m sms_provider.receiver`` in a child process (compaction left to the test).

    ``file_size_cap`` (bytes) makes every file write of the receiver beyond that size
    fail; its output then reaches the log through a pipe, which the cap spares.
    """

    def __init__(self, workdir: Path, root: Path, config: dict[str, Any] = CONFIG, *,
                 http: str = "auto", file_size_cap: int | None = None) -> None:
        self.config_path = workdir / "receiver.json"
        self.config_path.write_text(json.dumps(config))
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "receiver.log"
        self.proc: subprocess.Popen | None = None
        self.compact_every = 0.0  # seconds; 0 leaves compaction to the test
        self.http = http
        self.file_size_cap = file_size_cap
        self._copier: threading.Thread | None = None

    def start(self, *, healthy: bool = True) -> ReceiverProcess:
        """Started once /health answers (200 unless ``healthy`` is False)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--config",
                str(self.config_path), "--data-root", str(self.root), "--compact-every",
                str(self.compact_every)] + (["--http", self.http] if self.http != "auto" else [])
        with self.log_path.open("ab") as log:
            if self.file_size_cap is None:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "sms_provider.receiver", *args],
                    stdout=log, stderr=subprocess.STDOUT, env=env)
            else:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _CAPPED_MAIN, str(self.file_size_cap), *args],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
                self._copier = threading.Thread(target=self._copy_output, daemon=True)
                self._copier.start()
        deadline = time.monotonic() + 60  # the machine may be busy with other tests
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited: {self.log()}")
            try:
                answer = requests.get(self.url + "/health", timeout=1,
                                      headers={"Connection": "close"})
                if answer.ok or not healthy:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("receiver did not come up within 60 s")

    def _copy_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._copier is not None:
            self._copier.join(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


class ThreadedReceiver:
    """The same app under uvicorn in a thread of the test process: starts in a blink."""

    def __init__(self, root: Path, config: dict[str, Any] = CONFIG,
                 app: Any = None) -> None:
        settings = ReceiverConfig.from_dict(config)
        app = app or create_app(settings, DataRoot(root))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(
            app, settings, host="127.0.0.1", port=self.port, log_level="warning",
            access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadedReceiver:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "receiver did not start"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def receiver(data_root: Path) -> Iterator[ThreadedReceiver]:
    server = ThreadedReceiver(data_root).start()
    yield server
    server.stop()


@pytest.fixture
def receiver_process(tmp_path: Path, data_root: Path) -> Iterator[ReceiverProcess]:
    proc = ReceiverProcess(tmp_path, data_root).start()
    yield proc
    proc.stop()


def push_config(receiver: ReceiverProcess | ThreadedReceiver, emay_mode: str = "encrypted",
                **simulation: Any) -> dict[str, Any]:
    return {
        "chuanglan": {"push_url": f"{receiver.url}/chuanglan/reports",
                      "mo_push_url": f"{receiver.url}/chuanglan/mo",
                      "receiver": CL_RECEIVER, "receiver_password": CL_PASSWORD},
        "emay_ims": {"push_url": f"{receiver.url}/emay/{EMAY_TOKEN}/reports"
                     if emay_mode == "plain" else f"{receiver.url}/emay/reports",
                     "push_mode": emay_mode},
        "eims": {"push_url": f"{receiver.url}/eims/{EIMS_TOKEN}/reports"},
        "simulation": {**DEFAULT_CONFIG["simulation"], **simulation},
    }


def send(sim: SimulatorProcess, vendor: str, count: int, batch: int = 40) -> None:
    """``count`` messages through the real client, ``batch`` a request."""
    number = {"chuanglan": "139{:08d}", "emay_ims": "0086139{:08d}",
              "eims": "86139{:08d}"}[vendor]
    with sim.client(vendor) as client:
        for start in range(0, count, batch):
            client.send([OutboundMessage(mobile=number.format(i), content="【Shop】hello",
                                         custom_id=f"c{i:06d}" if vendor == "emay_ims" else None)
                         for i in range(start, min(count, start + batch))])


def expected_reports(sim: SimulatorProcess, vendor: str) -> set[tuple[str, str]]:
    """(message id as the report carries it, mobile) of every message the vendor reports."""
    key = "batch_id" if vendor == "chuanglan" else "message_id"
    return {(str(m[key]), m["mobile"]) for m in sim.messages(vendor) if m["outcome"] != "silent"}


def compact_until(root: DataRoot, config: ReceiverConfig, conn_id: str, want: int,
                  timeout: float = 30.0) -> pa.Table:
    """Compact repeatedly until ``want`` distinct reports are on disk; the deduped table."""
    deadline = time.monotonic() + timeout
    while True:
        compact(root, config)
        table = dedupe(read_all(root, "reports", REPORT_SCHEMA, conn_id), "report_key")
        if table.num_rows >= want or time.monotonic() > deadline:
            return table
        time.sleep(0.3)


def on_disk(table: pa.Table) -> set[tuple[str, str]]:
    return set(zip(table["message_id"].to_pylist(), table["mobile"].to_pylist(), strict=True))


# --- end to end ----------------------------------------------------------------------
@pytest.mark.parametrize(("vendor", "emay_mode"), [
    ("chuanglan", "encrypted"), ("emay_ims", "encrypted"), ("emay_ims", "plain"),
    ("eims", "encrypted")], ids=["chuanglan", "emay_encrypted", "emay_plain", "eims"])
def test_every_pushed_report_lands_once_despite_duplicates(
        sim: SimulatorProcess, receiver: ThreadedReceiver, data_root: Path, vendor: str,
        emay_mode: str) -> None:
    sim.reset(**push_config(receiver, emay_mode, duplicate_report_rate=0.3))
    send(sim, vendor, 150)
    want = expected_reports(sim, vendor)
    assert len(want) > 130
    root, config = DataRoot(data_root), ReceiverConfig.from_dict(CONFIG)

    table = compact_until(root, config, CONN_OF[vendor], len(want))
    time.sleep(0.5)  # late duplicates must not add rows either
    compact(root, config)
    raw = read_all(root, "reports", REPORT_SCHEMA, CONN_OF[vendor])
    table = dedupe(raw, "report_key")

    assert on_disk(table) == want                       # count in = count on disk
    assert table.num_rows == len(want)
    assert raw.num_rows > table.num_rows                # duplicates did arrive, and dropped
    assert set(table["source"].to_pylist()) == {"push"}
    assert set(table["vendor"].to_pylist()) == {vendor}
    assert table["received_at"].null_count == 0
    assert landed_files(root) == []                     # compaction emptied the landing
    if vendor == "emay_ims":
        assert all(c and c.startswith("c") for c in table["custom_id"].to_pylist())


def test_wrong_credentials_are_refused_and_no_secret_is_kept_or_logged(
        receiver_process: ReceiverProcess, data_root: Path) -> None:
    receiver = receiver_process
    good = {"msgid": "1", "reportTime": "2401011200", "mobile": "13800138000",
            "status": "DELIVRD"}
    url = receiver.url
    for params in ({**good, "receiver": CL_RECEIVER, "pswd": "wrong-password"},
                   {**good, "receiver": "someone", "pswd": CL_PASSWORD},
                   good):
        assert requests.get(f"{url}/chuanglan/reports", params=params, timeout=5
                            ).status_code == 401
    assert requests.get(f"{url}/chuanglan/mo", params={**good, "pswd": "x"}, timeout=5
                        ).status_code == 401
    eims_body = json.dumps({"type": "report", "cnt": 1,
                            "array": [[1, "8613800138000", 20240101120000, 0, "ok"]]})
    wrong_token = requests.put(f"{url}/eims/{EIMS_TOKEN[:-1]}x/reports", data=eims_body,
                               timeout=5)
    no_such_url = requests.put(f"{url}/eims/{EIMS_TOKEN}/nothing", data=eims_body, timeout=5)
    assert wrong_token.status_code == no_such_url.status_code == 404
    assert wrong_token.content == no_such_url.content   # a wrong token looks like no URL
    report = [{"appId": IMS["app_id"], "imsId": "1", "mobile": "008613800138000",
               "state": "DELIVRD", "receiveTime": "2024-01-01 12:00:00"}]
    other_key = emay_common.encode_secure(report, "fedcba9876543210", gzip_on=True)
    for headers in ({"appId": IMS["app_id"]}, {"appId": "EUCP-UNKNOWN"}):
        assert requests.post(f"{url}/emay/reports", data=other_key, headers=headers,
                             timeout=5).status_code == 401
    unknown_app = [{**report[0], "appId": "EUCP-UNKNOWN"}]
    assert requests.post(f"{url}/emay/reports", data={"reports": json.dumps(unknown_app)},
                         timeout=5).status_code == 401

    assert landed_files(DataRoot(data_root)) == []

    # an accepted push: its landing file keeps everything but the credentials
    assert requests.get(f"{url}/chuanglan/reports", timeout=5,
                        params={"receiver": CL_RECEIVER, "pswd": CL_PASSWORD, **good}).ok
    assert requests.put(f"{url}/eims/{EIMS_TOKEN}/reports", data=eims_body, timeout=5).ok
    landed = landed_files(DataRoot(data_root))
    assert len(landed) == 2
    texts = [Path(p).read_text() for p in landed]
    assert [["msgid", "1"], ["reportTime", "2401011200"], ["mobile", "13800138000"],
            ["status", "DELIVRD"]] in [json.loads(t)["params"] for t in texts]
    log = receiver.log()
    assert "push refused" in log and "/eims/***/reports" in log
    for text in (*texts, log):
        for secret in (*SECRETS, "wrong-password", CL_RECEIVER):
            assert secret not in text


def test_malformed_pushes_get_400_and_nothing_lands(receiver: ThreadedReceiver,
                                                     data_root: Path) -> None:
    url, creds = receiver.url, {"receiver": CL_RECEIVER, "pswd": CL_PASSWORD}
    eims = f"{url}/eims/{EIMS_TOKEN}/reports"
    for body in (b"\x00garbage", b"{}", json.dumps(
            {"type": "report", "cnt": 2, "array": [[1, "86138", 20240101120000, 0, ""]]})):
        assert requests.put(eims, data=body, timeout=5).status_code == 400
    assert requests.get(f"{url}/chuanglan/reports", timeout=5, params={
        **creds, "msgid": "1", "mobile": "13800138000", "status": "DELIVRD"}).status_code == 400
    assert requests.get(f"{url}/chuanglan/mo", timeout=5, params={
        **creds, "moTime": "2401011200", "destcode": "106", "mobile": "13800138000",
        "msg": "hi", "isems": "1", "emshead": "7,2,3"}).status_code == 400
    assert requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", data={"reports": "not json"},
                         timeout=5).status_code == 400
    not_json = emay_common.encode_secure("a string, not a list", IMS["secret_key"],
                                         gzip_on=True)
    assert requests.post(f"{url}/emay/reports", data=not_json,
                         headers={"appId": IMS["app_id"]}, timeout=5).status_code == 400
    assert requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", data=b"\x01" * 10, timeout=5,
                         headers={"Content-Type": "application/octet-stream"}
                         ).status_code == 400
    assert landed_files(DataRoot(data_root)) == []


def test_receiver_killed_before_compaction_loses_nothing(
        sim: SimulatorProcess, receiver_process: ReceiverProcess, data_root: Path) -> None:
    receiver = receiver_process
    sim.reset(**push_config(receiver, report_delay_s=0.2, report_jitter_s=2.0,
                            push_attempts=10_000))
    send(sim, "chuanglan", 300, batch=100)
    want = expected_reports(sim, "chuanglan")
    root, config = DataRoot(data_root), ReceiverConfig.from_dict(CONFIG)
    deadline = time.monotonic() + 20
    while len(landed_files(root)) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    receiver.kill()                    # mid-stream: landed, acknowledged, not compacted
    landed_before_restart = len(landed_files(root))
    assert 0 < landed_before_restart < len(want)
    receiver.compact_every = 0.5       # this time the receiver's own compactor runs
    receiver.start()                   # same port: the vendor's retries get through

    deadline = time.monotonic() + 30
    table = REPORT_SCHEMA.empty_table()
    while table.num_rows < len(want) and time.monotonic() < deadline:
        time.sleep(0.3)
        table = dedupe(read_all(root, "reports", REPORT_SCHEMA, "sms_chuanglan"), "report_key")
    assert on_disk(table) == want
    assert table.num_rows == len(want)
    deadline = time.monotonic() + 10
    while landed_files(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert landed_files(root) == []
    assert compact(root, config).files == 0


def test_td_reply_becomes_opt_out_and_suppression(
        sim: SimulatorProcess, receiver: ThreadedReceiver, data_root: Path) -> None:
    sim.reset(**push_config(receiver))
    sim.inject_mo("chuanglan", "13800138000", "TD")
    sim.inject_mo("chuanglan", "13900139000", "好的")
    long_text = "这是一条很长的回复，" * 10
    sim.inject_mo("chuanglan", "13700137000", long_text)   # arrives as isems=1 parts
    root, config = DataRoot(data_root), ReceiverConfig.from_dict(CONFIG)
    deadline = time.monotonic() + 20
    inbound = INBOUND_SCHEMA.empty_table()
    while inbound.num_rows < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
        compact(root, config)
        inbound = dedupe(read_all(root, "inbound", INBOUND_SCHEMA, "sms_chuanglan"),
                         "inbound_key")
    rows = {r["mobile"]: r for r in inbound.to_pylist()}
    assert set(rows) == {"13800138000", "13900139000", "13700137000"}
    assert rows["13800138000"]["opt_out"] is True
    assert rows["13900139000"]["opt_out"] is False
    assert rows["13700137000"]["content"] == long_text      # parts joined in order
    assert rows["13700137000"]["opt_out"] is False
    assert {r["source"] for r in rows.values()} == {"push"}

    suppression = root.read_dataset("suppression")
    assert suppression.schema.equals(SUPPRESSION_SCHEMA, check_metadata=False)
    assert suppression["e164"].to_pylist() == ["8613800138000"]
    assert suppression["reason"].to_pylist() == ["opt_out: TD"]
    assert suppression["conn_id"].to_pylist() == ["sms_chuanglan"]
    assert landed_files(root) == []


# --- compaction details (in process) ---------------------------------------------------
def _mo(at: datetime, number: int | None, total: int = 2, msg: str = "part") -> LandingRecord:
    params = {"moTime": "2401011200", "destcode": "106", "mobile": "13800138000", "msg": msg}
    if number is not None:
        params |= {"isems": "1", "emshead": f"42,{total},{number}"}
    return LandingRecord("sms_chuanglan", "chuanglan", CHUANGLAN_MO, at,
                         params=tuple(params.items()))


def test_incomplete_long_reply_waits_then_compacts_as_is(tmp_path: Path) -> None:
    root = DataRoot(tmp_path / "data")
    config = ReceiverConfig.from_dict({**CONFIG, "ems_part_timeout_s": 600})
    lander = Lander(root)
    start = datetime.now(UTC)
    lander.land(_mo(start, 2, msg="world"), part=True)
    lander.land(_mo(start, 2, msg="world"), part=True)     # a replayed part

    waiting = compact(root, config, now=start + timedelta(seconds=5))
    assert (waiting.parts_waiting, waiting.inbound, len(landed_files(root))) == (2, 0, 2)

    lander.land(_mo(start + timedelta(seconds=1), 1, msg="hello "), part=True)
    joined = compact(root, config, now=start + timedelta(seconds=6))
    assert (joined.inbound, joined.files, landed_files(root)) == (1, 3, [])
    row = read_all(root, "inbound", INBOUND_SCHEMA).to_pylist()[0]
    assert row["content"] == "hello world"

    lander.land(_mo(start, 1, total=3, msg="lonely"), part=True)
    assert compact(root, config, now=start + timedelta(seconds=599)).parts_waiting == 1
    late = compact(root, config, now=start + timedelta(seconds=601))
    assert (late.parts_timed_out, late.inbound, landed_files(root)) == (1, 1, [])


def test_unparseable_landing_file_is_quarantined_not_lost(tmp_path: Path) -> None:
    root = DataRoot(tmp_path / "data")
    config = ReceiverConfig.from_dict(CONFIG)
    bad = root.local_path("landing", "sms_eims", "reports")
    bad.mkdir(parents=True)
    (bad / "20240101T000000.000000Z-0.json").write_text("{not a record")
    Lander(root).land(_mo(datetime.now(UTC), None, msg="TD"))
    result = compact(root, config)
    assert (result.quarantined, result.inbound, result.opt_outs) == (1, 1, 1)
    assert landed_files(root) == []
    assert (root.local_path("quarantine", "sms_eims", "reports")
            / "20240101T000000.000000Z-0.json").exists()


# --- config and redaction -------------------------------------------------------------
def test_config_errors_name_entry_and_field_never_the_value() -> None:
    cases = [
        ({"conn_id": "a", "vendor": "chuanglan", "receiver": "r"}, r"\(a\): 'password'"),
        ({"conn_id": "b", "vendor": "emay_ims", "app_id": "x", "secret_key": "short-SECRET"},
         r"\(b\): 'secret_key' must be 16, 24 or 32"),
        ({"conn_id": "c", "vendor": "eims", "token": "tooShort-SECRET"}, r"\(c\): 'token'"),
        ({"conn_id": "d", "vendor": "eums"}, r"\(d\): 'vendor'"),
        ({"conn_id": "e", "vendor": "eims", "token": EIMS_TOKEN, "pswd": "SECRET"},
         r"\(e\): unknown field\(s\) pswd"),
    ]
    for entry, pattern in cases:
        with pytest.raises(ReceiverConfigError, match=pattern) as err:
            ReceiverConfig.from_dict({"connections": [entry]})
        assert "SECRET" not in str(err.value)
    twice = [CONNECTIONS[2], {**CONNECTIONS[2], "conn_id": "sms_eims_2"}]
    with pytest.raises(ReceiverConfigError, match="same token") as err:
        ReceiverConfig.from_dict({"connections": twice})
    assert EIMS_TOKEN not in str(err.value)


def test_config_repr_hides_secrets_and_lookups_match(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "receiver.json"
    path.write_text(json.dumps({**CONFIG, "opt_out_words": ["TD", "退订"]}))
    monkeypatch.setenv("SMS_RECEIVER_CONFIG", str(path))
    config = ReceiverConfig.from_env()
    for secret in SECRETS:
        assert secret not in repr(config)
    assert config.opt_out_words == ("TD", "退订")
    assert config.chuanglan_for(CL_RECEIVER, CL_PASSWORD).conn_id == "sms_chuanglan"
    assert config.chuanglan_for(CL_RECEIVER, CL_PASSWORD + "x") is None
    assert config.eims_for(EIMS_TOKEN).conn_id == "sms_eims"
    assert config.eims_for("") is None
    assert config.emay_secret_key(IMS["app_id"]) == IMS["secret_key"]


def test_mounted_app_works_and_outer_access_log_sees_no_secret(data_root: Path) -> None:
    """As in Airflow: the app under a URL prefix, an access-log middleware around it that
    reads the scope once the app is done."""
    seen: list[tuple[str, bytes, bytes]] = []

    class AccessLog:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                if scope["type"] == "http":
                    seen.append((scope["path"], scope.get("raw_path", b""),
                                 scope["query_string"]))

    outer = FastAPI()
    outer.add_middleware(AccessLog)
    outer.mount("/sms-receiver", create_app(ReceiverConfig.from_dict(CONFIG),
                                            DataRoot(data_root)))
    server = ThreadedReceiver(data_root, app=outer).start()
    try:
        base = f"{server.url}/sms-receiver"
        eims_body = json.dumps({"type": "report", "cnt": 1,
                                "array": [[7, "8613800138000", 20240101120000, 0, "ok"]]})
        assert requests.put(f"{base}/eims/{EIMS_TOKEN}/reports", data=eims_body,
                            timeout=5).text == "ok"
        assert requests.get(f"{base}/chuanglan/mo", timeout=5, params={
            "receiver": CL_RECEIVER, "pswd": CL_PASSWORD, "moTime": "2401011200",
            "destcode": "106", "mobile": "13800138000", "msg": "TD"}).text == "ok"
        assert requests.get(f"{base}/chuanglan/mo", timeout=5, params={
            "receiver": CL_RECEIVER, "pswd": "wrong-password"}).status_code == 401
    finally:
        server.stop()
    assert len(seen) == 3
    assert seen[0][0] == "/sms-receiver/eims/***/reports"
    for path, raw_path, query in seen:
        for secret in (EIMS_TOKEN, CL_PASSWORD, CL_RECEIVER, "wrong-password"):
            assert secret not in path and secret.encode() not in raw_path + query
    result = compact(DataRoot(data_root), ReceiverConfig.from_dict(CONFIG))
    assert (result.reports, result.inbound, result.opt_outs) == (1, 1, 1)


def test_app_from_env_uses_the_tasks_data_root(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "receiver.json"
    path.write_text(json.dumps(CONFIG))
    monkeypatch.setenv("SMS_RECEIVER_CONFIG", str(path))
    monkeypatch.setenv("SMS_DATA_ROOT", str(tmp_path / "data"))
    app = app_from_env()
    assert app.state.receiver.lander.root.base == str(tmp_path / "data")
    assert app.state.receiver.config.by_conn_id("sms_eims") is not None
    monkeypatch.delenv("SMS_RECEIVER_CONFIG")
    with pytest.raises(ReceiverConfigError, match="SMS_RECEIVER_CONFIG"):
        app_from_env()


def test_access_log_lines_are_redacted() -> None:
    assert redact_path(f"/eims/{EIMS_TOKEN}/reports") == "/eims/***/reports"
    assert redact_path("/sms-receiver/chuanglan/mo?receiver=r&pswd=p&msg=TD") == \
        "/sms-receiver/chuanglan/mo?[redacted]"
    assert redact_path("/other?a=1") == "/other?a=1"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", f"/chuanglan/reports?pswd={CL_PASSWORD}",
                                "1.1", 200), None)
    assert RedactingFilter().filter(record)
    assert CL_PASSWORD not in record.getMessage()
