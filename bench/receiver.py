"""How many pushes a second the receiver acknowledges with every one of them kept.

Starts ``python -m sms_provider.receiver`` as its own process (access log off)
and drives it for a fixed time from several threads over keep-alive
connections with prebuilt requests on plain sockets (so the load generator
costs little: it shares the machine's cores with the receiver), two ways:

* ``durable``: the real receiver: every push fsync'd (file and folder) before
  its 2xx;
* ``no fsync``: the same endpoint with ``durable: false`` in its config, which
  skips the fsyncs: the price of durability, for comparison only.

Each for the Chuanglan GET (one report a push: the worst case, one file per
report) and the EIMS PUT (50 reports a push). Every push carries distinct
reports; after the run the landing files are compacted and the distinct
reports on disk must equal the reports acknowledged (count in = count on disk).

``--slow N`` also holds N slow-loris connections (half a request, then a byte
every half second) through each receiver's run: the pushes must go on, and the
receiver must close every one of them at its header time limit (10 s).

    python bench/receiver.py [--seconds 8] [--threads 16] [--slow 300] [--dir /path]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from sms_provider.data.reports import dedupe, read_all  # noqa: E402
from sms_provider.data.schemas import REPORT_SCHEMA  # noqa: E402
from sms_provider.data.storage import DataRoot  # noqa: E402
from sms_provider.receiver.compaction import compact  # noqa: E402
from sms_provider.receiver.config import ReceiverConfig  # noqa: E402
from tests.simulator_harness import free_port  # noqa: E402

RECEIVER, PASSWORD = "bench", "bench-push-password"
TOKEN = "bench-token-0123456789abcdefghij"
CONNECTIONS = [
    {"conn_id": "bench_chuanglan", "vendor": "chuanglan", "receiver": RECEIVER,
     "password": PASSWORD},
    {"conn_id": "bench_eims", "vendor": "eims", "token": TOKEN},
]
EIMS_PAGE = 50


def start_receiver(workdir: Path, durable: bool) -> tuple[subprocess.Popen, int]:
    config = workdir / "receiver.json"
    config.write_text(json.dumps({"connections": CONNECTIONS, "durable": durable}))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sms_provider.receiver", "--port", str(port), "--config",
         str(config), "--data-root", str(workdir / "data"), "--compact-every", "0",
         "--no-access-log", "--log-level", "WARNING"], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                return proc, port
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("receiver did not come up")


def chuanglan_request(port: int, worker: int, n: int) -> tuple[bytes, int]:
    query = urlencode({"receiver": RECEIVER, "pswd": PASSWORD, "msgid": f"b{worker}-{n}",
                       "reportTime": "2401011200", "mobile": f"138{n % 10**8:08d}",
                       "status": "DELIVRD"})
    return (f"GET /chuanglan/reports?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            .encode(), 1)


def eims_request(port: int, worker: int, n: int) -> tuple[bytes, int]:
    base = (worker * 10**7 + n) * EIMS_PAGE
    rows = [[base + i, f"86138{i:08d}", 20240101120000, 0, "ok"] for i in range(EIMS_PAGE)]
    body = json.dumps({"type": "report", "cnt": EIMS_PAGE, "array": rows}).encode()
    head = (f"PUT /eims/{TOKEN}/reports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body, EIMS_PAGE


class Worker:
    """One keep-alive connection sending distinct pushes until told to stop."""

    def __init__(self, port: int, index: int, build: Callable[[int, int, int],
                 tuple[bytes, int]]) -> None:
        self.port, self.index, self.build = port, index, build
        self.pushes = self.reports = self.refused = 0

    def run(self, stop: threading.Event) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        n = 0
        while not stop.is_set():
            request, reports = self.build(self.port, self.index, n)
            n += 1
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buf) < length:
                buf += sock.recv(65536)
            buf = buf[length:]
            if head.startswith(b"HTTP/1.1 200"):
                self.pushes += 1
                self.reports += reports
            else:
                self.refused += 1
        sock.close()


class SlowClients(threading.Thread):
    """``count`` connections trickling the headers of a request they never finish."""

    def __init__(self, port: int, count: int) -> None:
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.stop = threading.Event()
        self.closed_after: list[float] = []
        self.began = time.monotonic()

    def run(self) -> None:
        socks = []
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            socks.append(sock)
        started = time.monotonic()
        while socks and not self.stop.wait(0.5):
            for sock in list(socks):
                try:
                    alive = sock.recv(4096) != b""
                    if alive:
                        continue  # an answer (408): the close follows
                except BlockingIOError:
                    try:
                        sock.send(b"a")
                        continue
                    except OSError:
                        pass
                except OSError:
                    pass
                self.closed_after.append(time.monotonic() - started)
                socks.remove(sock)
                sock.close()
        for sock in socks:
            sock.close()

    def report(self) -> str:
        if not self.closed_after:
            return f"slow clients: {self.count} held, none closed by the receiver"
        return (f"slow clients: {self.count} held, {len(self.closed_after)} closed by the "
                f"receiver, the last after {max(self.closed_after):.1f} s")


def drive(port: int, endpoint: str, seconds: float, threads: int, first_worker: int
          ) -> dict[str, float]:
    """Push for ``seconds`` over ``threads`` connections; acknowledged pushes and reports."""
    build = chuanglan_request if endpoint == "chuanglan" else eims_request
    workers = [Worker(port, first_worker + i, build) for i in range(threads)]
    stop = threading.Event()
    pool = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    started = time.monotonic()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    refused = sum(w.refused for w in workers)
    if refused:
        raise SystemExit(f"{refused} pushes refused")
    pushes, reports = sum(w.pushes for w in workers), sum(w.reports for w in workers)
    return {"pushes": pushes, "reports": reports, "pushes_s": pushes / elapsed,
            "reports_s": reports / elapsed}


def run_mode(workdir: Path, durable: bool, seconds: float, concurrency: list[int],
             slow: int = 0) -> None:
    """One receiver, every endpoint and concurrency; then compact and count."""
    proc, port = start_receiver(workdir, durable)
    acknowledged = {"chuanglan": 0, "eims": 0}
    pushes = 0
    label = "durable " if durable else "no fsync"
    slow_clients = SlowClients(port, slow) if slow else None
    if slow_clients:
        slow_clients.start()
    try:
        worker = 0
        for endpoint in ("chuanglan", "eims"):
            for threads in concurrency:
                r = drive(port, endpoint, seconds, threads, worker)
                worker += threads
                acknowledged[endpoint] += int(r["reports"])
                pushes += int(r["pushes"])
                print(f"  {endpoint:9s} {label} {threads:3d} conn: {r['pushes_s']:7.0f} "
                      f"pushes/s {r['reports_s']:8.0f} reports/s", flush=True)
    finally:
        if slow_clients:  # the receiver has until its header limit (10 s) and a margin
            slow_clients.join(max(0.0, 15.0 - (time.monotonic() - slow_clients.began)))
            slow_clients.stop.set()
            slow_clients.join(10)
            print(f"  {label}: {slow_clients.report()}", flush=True)
        proc.terminate()
        proc.wait(10)
    root = DataRoot(workdir / "data")
    config = ReceiverConfig.from_dict({"connections": CONNECTIONS})
    t0 = time.monotonic()
    result = compact(root, config)
    compact_s = time.monotonic() - t0
    for endpoint, count in acknowledged.items():
        table = read_all(root, "reports", REPORT_SCHEMA, f"bench_{endpoint}")
        on_disk = dedupe(table, "report_key").num_rows
        if on_disk != count:
            raise SystemExit(f"LOST DATA ({endpoint}, {label}): {count} reports "
                             f"acknowledged, {on_disk} on disk")
    print(f"  {label}: {sum(acknowledged.values())} reports acknowledged = on disk after "
          f"compaction ({pushes} landing files compacted in {compact_s:.1f} s, "
          f"{result.files / compact_s:.0f} files/s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per case")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 16],
                        help="concurrent connections, one case each (default 1 16)")
    parser.add_argument("--slow", type=int, default=0,
                        help="slow-loris connections held through each run (default 0)")
    parser.add_argument("--dir", default=None,
                        help="where the data root goes (default: the system temp folder); "
                             "put it on the disk you mean to measure, not a tmpfs")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="receiver-bench-", dir=args.dir))
    print(f"receiver bench: {args.seconds:g} s a case, data root under {base}, "
          f"{os.cpu_count()} CPUs (load generator included)")
    try:
        for durable in (True, False):
            workdir = base / ("durable" if durable else "nofsync")
            workdir.mkdir()
            run_mode(workdir, durable, args.seconds, args.threads, args.slow)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
