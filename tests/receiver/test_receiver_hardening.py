"""The push receiver against hostile, broken and slow clients, over real sockets.

Every refusal is a 4xx (or a closed connection for a client too slow to
answer), keeps nothing, and leaves the receiver serving the next push; what is
accepted twice counts once after compaction.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sms_provider.data.reports import dedupe, read_all
from sms_provider.data.schemas import INBOUND_SCHEMA, REPORT_SCHEMA
from sms_provider.data.storage import DataRoot
from sms_provider.receiver.compaction import compact, landed_files
from sms_provider.receiver.config import ReceiverConfig, ReceiverConfigError
from sms_provider.vendors import emay_common
from sms_provider.vendors.codec import aes_encrypt
from tests.receiver.test_receiver import (
    CL_PASSWORD,
    CL_RECEIVER,
    CONFIG,
    CONNECTIONS,
    EIMS_TOKEN,
    EMAY_TOKEN,
    IMS,
    SECRETS,
    ReceiverProcess,
    ThreadedReceiver,
)

CL_CREDS = {"receiver": CL_RECEIVER, "pswd": CL_PASSWORD}
EMAY_ENTRY = CONNECTIONS[1]
#: the Emay entry as an operator who never thought about plain pushes writes it
EMAY_DEFAULT = {k: v for k, v in EMAY_ENTRY.items() if not k.startswith(("accept", "plain"))}


# --- helpers -------------------------------------------------------------------------
def config_with(emay: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    connections = [CONNECTIONS[0], emay or EMAY_ENTRY, CONNECTIONS[2]]
    return {**CONFIG, "connections": connections, **settings}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def serve(data_root: Path) -> Iterator[Any]:
    """``serve(config)``: the app under uvicorn in this process, with the server's limits."""
    started: list[ThreadedReceiver] = []

    def start(config: dict[str, Any] = CONFIG) -> ThreadedReceiver:
        started.append(ThreadedReceiver(data_root, config).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def cl_report(msgid: str = "1001", **extra: str) -> dict[str, str]:
    return {**CL_CREDS, "msgid": msgid, "reportTime": "2401011200",
            "mobile": "13800138000", "status": "DELIVRD", **extra}


def cl_mo(msg: str = "TD", **extra: str) -> dict[str, str]:
    return {**CL_CREDS, "moTime": "2401011200", "destcode": "106", "mobile": "13800138000",
            "msg": msg, **extra}


def eims_page(first: int = 1, rows: int = 1, mobile: str = "8613800138000") -> bytes:
    array = [[first + i, mobile, 20240101120000, 0, "ok"] for i in range(rows)]
    return json.dumps({"type": "report", "cnt": rows, "array": array}).encode()


def emay_reports(n: int = 1, **fields: str) -> list[dict[str, str]]:
    return [{"appId": IMS["app_id"], "imsId": f"77{i}", "customImsId": f"c{i:06d}",
             "mobile": "008613800138000", "state": "DELIVRD",
             "receiveTime": "2024-01-01 12:00:00", **fields} for i in range(n)]


def encrypted(reports: Any, key: str = IMS["secret_key"]) -> bytes:
    return emay_common.encode_secure(reports, key, gzip_on=True)


ENCRYPTED = {"appId": IMS["app_id"], "gzip": "on"}


def nothing_kept(root: Path) -> bool:
    """No file at all under ``landing/``: not a landed push, not a temporary one."""
    landing = root / "landing"
    return not landing.exists() or not [p for p in landing.rglob("*")
                                        if p.is_file() and p.name != ".compact.lock"]


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response off ``sock``: status and body (Content-Length framed)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), rest[:length]


def closed_by_server(sock: socket.socket, wait_s: float = 10.0) -> bool:
    """True when the server closes the connection within ``wait_s`` (unread data skipped)."""
    sock.settimeout(wait_s)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """A raw request on a fresh connection (no client library normalising the path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return read_response(sock)


def healthy(url: str) -> bool:
    """/health answers 200 (on a connection that does not linger: the server closes it)."""
    return requests.get(f"{url}/health", timeout=5,
                        headers={"Connection": "close"}).status_code == 200


# --- credentials -----------------------------------------------------------------------
def test_plain_emay_push_needs_configuring_and_a_credential(serve: Any,
                                                           data_root: Path) -> None:
    """A plain push names an appId, which is no secret: without configuration it is
    refused, and once configured it needs the URL token and/or an allowed address."""
    settling = {"reports": json.dumps(emay_reports(customImsId="c000042"))}

    default = serve(config_with(EMAY_DEFAULT))
    assert requests.post(f"{default.url}/emay/reports", data=settling,
                         timeout=5).status_code == 401
    assert requests.post(f"{default.url}/emay/{EMAY_TOKEN}/reports", data=settling,
                         timeout=5).status_code == 404
    assert nothing_kept(data_root)

    with_token = serve(CONFIG)
    url = with_token.url
    for target in (f"{url}/emay/reports", f"{url}/emay/{EMAY_TOKEN[:-1]}x/reports",
                   f"{url}/Emay/{EMAY_TOKEN}/reports"):
        assert requests.post(target, data=settling, timeout=5).status_code in (401, 404)
    other_app = {"reports": json.dumps(emay_reports(appId="EUCP-SOMEONE-ELSE"))}
    assert requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", data=other_app,
                         timeout=5).status_code == 401
    assert nothing_kept(data_root)
    assert requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", data=settling,
                         timeout=5).text == "ok"
    # the encrypted form is welcome at the token URL too, for its own appId only
    assert requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", data=encrypted(emay_reports()),
                         headers=ENCRYPTED, timeout=5).text == "ok"
    assert len(landed_files(DataRoot(data_root))) == 2

    allowed = {**EMAY_DEFAULT, "accept_plain": True, "plain_sources": ["127.0.0.0/8"]}
    assert requests.post(f"{serve(config_with(allowed)).url}/emay/reports", data=settling,
                         timeout=5).text == "ok"
    elsewhere = {**allowed, "plain_sources": ["192.0.2.0/24", "2001:db8::/32"]}
    assert requests.post(f"{serve(config_with(elsewhere)).url}/emay/reports",
                         data=settling, timeout=5).status_code == 401
    both = {**elsewhere, "plain_token": EMAY_TOKEN}  # both given: both must hold
    assert requests.post(f"{serve(config_with(both)).url}/emay/{EMAY_TOKEN}/reports",
                         data=settling, timeout=5).status_code == 401
    assert len(landed_files(DataRoot(data_root))) == 3


def test_plain_push_settings_are_checked() -> None:
    cases = [({"accept_plain": True}, "'accept_plain' needs 'plain_token'"),
             ({"plain_token": EMAY_TOKEN}, "'accept_plain' is not true"),
             ({"accept_plain": True, "plain_token": "short-SECRET"}, "'plain_token' must be"),
             ({"accept_plain": True, "plain_sources": ["not-an-address"]},
              r"'plain_sources'\[0\]"),
             ({"accept_plain": True, "plain_sources": []}, "non-empty list")]
    for extra, pattern in cases:
        with pytest.raises(ReceiverConfigError, match=pattern) as err:
            ReceiverConfig.from_dict(config_with({**EMAY_DEFAULT, **extra}))
        assert "SECRET" not in str(err.value) and EMAY_TOKEN not in str(err.value)
    twice = {**EMAY_ENTRY, "conn_id": "sms_emay_2", "app_id": "EUCP-OTHER"}
    with pytest.raises(ReceiverConfigError, match="same plain_token"):
        ReceiverConfig.from_dict({"connections": [EMAY_ENTRY, twice]})
    assert ReceiverConfig.from_dict(config_with(EMAY_DEFAULT)).emay_for(
        IMS["app_id"]).accept_plain is False


def test_garbled_emay_bodies_are_refused_and_the_receiver_stays_up(
        serve: Any, data_root: Path) -> None:
    url = serve().url
    bodies = [
        b"",                                                  # nothing
        b"\x00" * 17,                                         # not whole AES blocks
        bytes(range(32)),                                     # blocks, padding invalid
        encrypted(emay_reports(), key="fedcba9876543210"),    # another account's key
        aes_encrypt(IMS["secret_key"], b"\x1f\x8b\x08\x00 truncated gzip"),
        aes_encrypt(IMS["secret_key"], b"not json at all"),
        aes_encrypt(IMS["secret_key"], "[{\"appId\": \"\u00e9".encode("latin-1")),
        encrypted({"a": "dict, not a list"}),
        encrypted(emay_reports(appId="EUCP-SOMEONE-ELSE")),
        encrypted([["not", "objects"]]),
    ]
    for body in bodies:
        answer = requests.post(f"{url}/emay/reports", data=body, headers=ENCRYPTED, timeout=5)
        assert 400 <= answer.status_code < 500, (body[:20], answer.status_code)
    assert requests.post(f"{url}/emay/reports", data=encrypted(emay_reports()),
                         headers={"appId": "../../" + IMS["app_id"]}, timeout=5
                         ).status_code == 401
    assert nothing_kept(data_root)
    assert healthy(url)
    assert requests.post(f"{url}/emay/reports", data=encrypted(emay_reports()),
                         headers=ENCRYPTED, timeout=5).text == "ok"


# --- replays ---------------------------------------------------------------------------
def test_replayed_pushes_count_once_after_compaction(serve: Any, data_root: Path) -> None:
    url = serve().url
    root, config = DataRoot(data_root), ReceiverConfig.from_dict(CONFIG)

    def push_all() -> None:
        assert requests.get(f"{url}/chuanglan/reports", params=cl_report(), timeout=5).ok
        assert requests.get(f"{url}/chuanglan/mo", params=cl_mo("TD"), timeout=5).ok
        assert requests.put(f"{url}/eims/{EIMS_TOKEN}/reports", data=eims_page(rows=3),
                            timeout=5).ok
        assert requests.post(f"{url}/emay/reports", data=encrypted(emay_reports(2)),
                             headers=ENCRYPTED, timeout=5).ok
        assert requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", timeout=5,
                             data={"reports": json.dumps(emay_reports(3))}).ok

    push_all()
    push_all()                         # replayed before compaction
    assert compact(root, config).files == 10
    push_all()                         # replayed after it
    assert compact(root, config).files == 5

    def distinct(kind: str, schema: Any, conn_id: str, key: str) -> tuple[int, int]:
        table = read_all(root, kind, schema, conn_id)
        return table.num_rows, dedupe(table, key).num_rows

    assert distinct("reports", REPORT_SCHEMA, "sms_chuanglan", "report_key") == (3, 1)
    assert distinct("inbound", INBOUND_SCHEMA, "sms_chuanglan", "inbound_key") == (3, 1)
    assert distinct("reports", REPORT_SCHEMA, "sms_eims", "report_key") == (9, 3)
    # the plain push repeats the encrypted one's first two reports: same report, once
    assert distinct("reports", REPORT_SCHEMA, "sms_emay_ims", "report_key") == (15, 3)
    assert root.read_dataset("suppression").num_rows == 1
    assert landed_files(root) == []


# --- sizes and query strings -----------------------------------------------------------
def test_oversized_bodies_are_refused_before_they_are_read(serve: Any,
                                                          data_root: Path) -> None:
    limit = 4096
    port = serve(config_with(max_body_bytes=limit)).port
    host = f"Host: 127.0.0.1:{port}\r\n"
    query = "&".join(f"{k}={v}" for k, v in cl_report().items())
    targets = [f"PUT /eims/{EIMS_TOKEN}/reports", "POST /emay/reports",
               f"POST /emay/{EMAY_TOKEN}/reports", f"GET /chuanglan/reports?{query}",
               "POST /no/such/route"]
    for target in targets:  # a declared size over the limit: 413 with nothing sent
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"{target} HTTP/1.1\r\n{host}Content-Length: 1000000000\r\n"
                         "\r\n".encode())
            assert read_response(sock)[0] == 413, target
            assert closed_by_server(sock), target     # the rest of it is never read
    for target in targets[:3]:  # chunked: refused once past the limit, not at the end
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"{target} HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n"
                         f"Content-Type: application/octet-stream\r\nappId: {IMS['app_id']}"
                         "\r\n\r\n".encode())
            for _ in range(3):
                sock.sendall(b"7d0\r\n" + b"x" * 2000 + b"\r\n")
            assert read_response(sock)[0] == 413, target
            assert closed_by_server(sock), target
    assert nothing_kept(data_root)
    assert exchange(port, f"PUT /eims/{EIMS_TOKEN}/reports HTTP/1.1\r\n{host}"
                    f"Content-Length: {len(eims_page())}\r\n\r\n".encode() + eims_page()
                    ) == (200, b"ok")


def test_malformed_query_strings_are_refused(serve: Any, data_root: Path) -> None:
    port = serve().port
    creds = f"receiver={CL_RECEIVER}&pswd={CL_PASSWORD}"
    report = "msgid=1&reportTime=2401011200&mobile=13800138000&status=DELIVRD"
    queries = [
        f"{creds}&{report}&msgid=2",                    # a parameter twice
        f"{creds}&{report}&pswd=other",                 # a credential twice
        f"{creds}&{report}&desc=%zz",                   # a broken escape
        f"{creds}&{report}&desc=%e4%b8",                # a cut UTF-8 sequence
        f"{creds}&{report}&desc=%ff%fe",                # not UTF-8 at all
        f"{creds}&{report}&desc=100%",                  # a lone percent sign
        f"{creds}&&&=&{report[:20]}",                   # fields missing
        f"{creds}",                                     # nothing but credentials
        "%%%%",
        "=" * 40,
        f"{creds}&{report.replace('2401011200', '24010112')}",  # a broken time
    ]
    for path in ("/chuanglan/reports", "/chuanglan/mo"):
        for query in queries:
            status, _ = exchange(port, f"GET {path}?{query} HTTP/1.1\r\n"
                                       f"Host: 127.0.0.1\r\n\r\n".encode())
            assert 400 <= status < 500, (path, query, status)
    assert nothing_kept(data_root)
    assert exchange(port, f"GET /chuanglan/reports?{creds}&{report} HTTP/1.1\r\n"
                          "Host: 127.0.0.1\r\n\r\n".encode()) == (200, b"ok")


# --- ids and paths ---------------------------------------------------------------------
HOSTILE_IDS = ["../../../../tmp/escaped", "/etc/passwd", "a/../../b", "..", "a\\..\\b",
               "a%2Fb", "a%2fb", "%2e%2e%2f", "a\x00b", "a\nb"]


def test_ids_that_look_like_paths_are_refused_and_nothing_escapes(
        serve: Any, data_root: Path, tmp_path: Path) -> None:
    url = serve().url
    port = int(url.rsplit(":", 1)[1])
    before = {p for p in tmp_path.rglob("*")}
    for bad in HOSTILE_IDS:
        answers = [
            requests.get(f"{url}/chuanglan/reports", params=cl_report(msgid=bad), timeout=5),
            requests.get(f"{url}/chuanglan/mo", params=cl_mo(destcode=bad), timeout=5),
            requests.put(f"{url}/eims/{EIMS_TOKEN}/reports", data=eims_page(mobile=bad),
                         timeout=5),
            requests.post(f"{url}/emay/reports", headers=ENCRYPTED, timeout=5,
                          data=encrypted(emay_reports(imsId=bad))),
            requests.post(f"{url}/emay/{EMAY_TOKEN}/reports", timeout=5,
                          data={"reports": json.dumps(emay_reports(customImsId=bad))}),
        ]
        assert [a.status_code for a in answers] == [400] * 5, repr(bad)
    for path in (f"/eims/..%2F..%2F{EIMS_TOKEN}/reports", "/eims/%2e%2e/reports",
                 f"/eims/{EIMS_TOKEN}%00/reports", f"/eims/%2F{EIMS_TOKEN}/reports",
                 f"/eims//{EIMS_TOKEN}/reports", f"/emay/..%2F{EMAY_TOKEN}/reports",
                 f"/eims/{EIMS_TOKEN}%2F..%2F..%2Freports"):
        body = eims_page()
        status, _ = exchange(port, f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert status == 404, path
    assert nothing_kept(data_root)
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(p == data_root / "landing" or data_root / "landing" in p.parents
               for p in created), created
    assert healthy(url)


# --- the access log ----------------------------------------------------------------------
def test_no_token_or_password_reaches_the_access_log(tmp_path: Path, data_root: Path) -> None:
    """Whatever case, encoding or route the request used, read in the real log output."""
    receiver = ReceiverProcess(tmp_path, data_root).start()
    try:
        port = receiver.port
        targets = [
            f"GET /EIMS/{EIMS_TOKEN}/reports", f"PUT /Eims/{EIMS_TOKEN}/reports",
            f"PUT /eims/{EIMS_TOKEN}/REPORTS", f"PUT /eims%2F{EIMS_TOKEN}/reports",
            f"PUT /%65ims/{EIMS_TOKEN}/reports", f"GET /eims/x/{EIMS_TOKEN}",
            f"GET /eims/{EIMS_TOKEN}", f"PUT /sms-receiver/EIMS/{EIMS_TOKEN}/reports",
            f"PUT /eims/{EIMS_TOKEN}/reports", f"POST /EMAY/{EMAY_TOKEN}/reports",
            f"POST /emay/{EMAY_TOKEN}/reports", f"POST /emay/reports/{EMAY_TOKEN}",
            f"GET /CHUANGLAN/reports?receiver={CL_RECEIVER}&PSWD={CL_PASSWORD}",
            f"GET /chuanglan/mo?receiver={CL_RECEIVER}&p%73wd={CL_PASSWORD}&msg=hi",
            f"GET /nowhere?Receiver={CL_RECEIVER}&Pswd={CL_PASSWORD}",
        ]
        for target in targets:
            exchange(port, f"{target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           "Content-Length: 2\r\n\r\n{}".encode())
        assert healthy(receiver.url)
    finally:
        receiver.stop()
    log = receiver.log()
    assert log.count(" HTTP/1.1\" ") >= len(targets)  # every request has its access line
    for secret in (*SECRETS, CL_RECEIVER):
        assert secret not in log
    assert "/EIMS/***/reports" in log and "/emay/***/reports" in log


# --- slow clients and the connection bound ----------------------------------------------
class SlowClient(threading.Thread):
    """Sends ``head``, then ``drip`` every ``every`` seconds until the server hangs up."""

    def __init__(self, port: int, head: bytes, drip: bytes, every: float = 0.2,
                 give_up_s: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.port, self.head, self.drip, self.every = port, head, drip, every
        self.give_up_s = give_up_s
        self.answer = b""
        self.closed_after: float | None = None

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            start = time.monotonic()
            if self.head:
                sock.sendall(self.head)
            sock.settimeout(self.every)
            while time.monotonic() - start < self.give_up_s:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    try:
                        if self.drip:
                            sock.sendall(self.drip)
                    except OSError:
                        break
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.answer += data
            else:
                return  # still open when we gave up
            self.closed_after = time.monotonic() - start


@pytest.mark.parametrize("http", ["auto", "h11"])  # auto: httptools when installed
def test_slow_clients_are_cut_off_while_pushes_go_on(tmp_path: Path, data_root: Path,
                                                     http: str) -> None:
    limits = {"header_timeout_s": 1, "body_timeout_s": 1}
    receiver = ReceiverProcess(tmp_path, data_root, config_with(**limits), http=http).start()
    port = receiver.port
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    eims = f"PUT /eims/{EIMS_TOKEN}/reports HTTP/1.1\r\n".encode()
    clients = {
        "idle": SlowClient(port, b"", b""),
        "slow headers": SlowClient(port, eims + host + b"X-Slow: ", b"a"),
        "slow request line": SlowClient(port, b"GET /hea", b"l"),
        "slow body": SlowClient(port, eims + host + b"Content-Length: 5000\r\n\r\n[", b" "),
        "slow chunks": SlowClient(port, b"POST /emay/reports HTTP/1.1\r\n" + host
                                  + b"Transfer-Encoding: chunked\r\nappId: x\r\n\r\n",
                                  b"1\r\nx\r\n"),
        "unread body": SlowClient(port, b"GET /chuanglan/mo HTTP/1.1\r\n" + host
                                  + b"Content-Length: 5000\r\n\r\n", b"z"),
    }
    try:
        for client in clients.values():
            client.start()
        # meanwhile a vendor's push goes through, and keeps its connection for another
        with requests.Session() as vendor:
            for n in range(3):
                assert vendor.put(f"{receiver.url}/eims/{EIMS_TOKEN}/reports",
                                  data=eims_page(first=10 + n), timeout=5).text == "ok"
        for client in clients.values():
            client.join(20)
        assert healthy(receiver.url)
    finally:
        receiver.stop()
    for name, client in clients.items():
        assert client.closed_after is not None, f"{name}: never closed"
        # the limit plus the body grace, and a wide margin for a loaded machine
        assert client.closed_after < 1 + 1 + 5, (name, client.closed_after)
    for name in ("slow headers", "slow request line", "slow body", "slow chunks"):
        assert clients[name].answer.startswith(b"HTTP/1.1 408 "), (name, clients[name].answer)
    assert clients["idle"].answer == b""
    assert len(landed_files(DataRoot(data_root))) == 3


def test_connections_beyond_the_bound_get_503(tmp_path: Path, data_root: Path) -> None:
    config = config_with(max_connections=3, header_timeout_s=60)
    receiver = ReceiverProcess(tmp_path, data_root, config).start()
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 10
        while len(held) < 3 and time.monotonic() < deadline:
            sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            if read_response(sock) != (200, b"ok"):  # the server has yet to see an
                sock.close()                          # earlier client's close
                time.sleep(0.1)
                continue
            sock.sendall(b"GET /health HTTP/1.1\r\n")  # served, then halfway into another
            held.append(sock)
        assert len(held) == 3
        assert requests.get(f"{receiver.url}/health", timeout=5).status_code == 503
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while not healthy(receiver.url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert healthy(receiver.url)
    finally:
        for sock in held:
            sock.close()
        receiver.stop()


def test_request_headers_are_capped(serve: Any) -> None:
    port = serve().port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for _ in range(200):
                sock.sendall(b"X-Filler: " + b"f" * 1000 + b"\r\n")
        except OSError:
            pass  # closed on us mid-way
        assert read_response(sock)[0] == 431
        assert closed_by_server(sock)
    assert exchange(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") == (200, b"ok")


# --- the disk ------------------------------------------------------------------------------
def test_health_is_503_while_no_push_can_be_stored(serve: Any, data_root: Path,
                                                   tmp_path: Path) -> None:
    url = serve().url
    assert healthy(url)
    data_root.mkdir(parents=True, exist_ok=True)
    landing = data_root / "landing"
    for path in landing.iterdir():
        path.unlink()
    landing.rmdir()
    landing.write_text("a file where the landing folder should be")
    assert requests.get(f"{url}/health", timeout=5).status_code == 503
    assert requests.put(f"{url}/eims/{EIMS_TOKEN}/reports", data=eims_page(),
                        timeout=5).status_code == 503
    landing.unlink()
    assert healthy(url)                          # recovers by itself
    if os.geteuid() != 0:                        # permissions do not stop root
        landing.chmod(0o555)
        try:
            assert requests.get(f"{url}/health", timeout=5).status_code == 503
        finally:
            landing.chmod(0o755)
    assert list(landing.iterdir()) == []         # no probe file left behind

    full = ReceiverProcess(tmp_path, tmp_path / "full", file_size_cap=0).start(healthy=False)
    try:
        assert requests.get(f"{full.url}/health", timeout=5).status_code == 503
    finally:
        full.stop()
    assert "health: cannot store pushes" in full.log()


def test_a_refused_write_leaves_no_file_behind(tmp_path: Path, data_root: Path) -> None:
    """The disk fills mid-write: 503, and neither the temporary file nor a partial one
    stays (each would wait an hour for compaction to remove it)."""
    receiver = ReceiverProcess(tmp_path, data_root, file_size_cap=1024).start()
    try:
        url = receiver.url
        big = eims_page(rows=30)  # its landing file is well over the cap
        for _ in range(3):
            assert requests.put(f"{url}/eims/{EIMS_TOKEN}/reports", data=big,
                                timeout=5).status_code == 503
        assert nothing_kept(data_root)
        assert healthy(url)
        assert requests.put(f"{url}/eims/{EIMS_TOKEN}/reports", data=eims_page(),
                            timeout=5).text == "ok"   # what fits is still stored
    finally:
        receiver.stop()
    assert len(landed_files(DataRoot(data_root))) == 1
    assert "errno 27" in receiver.log()                  # EFBIG: the injected failure
