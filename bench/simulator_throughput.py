"""How many batch requests a second the simulator holds on this machine.

Starts the simulator as its own process and drives EUMS sends at it for a
fixed time from several threads over keep-alive connections, two ways:

* ``raw``: prebuilt signed requests written to plain sockets (an EUMS seed is
  valid for 30 minutes, so one request can be replayed): the load generator
  costs next to nothing, so this measures the simulator itself;
* ``client``: the real ``EumsClient`` (signing, requests, parsing), which
  shares the two cores with the simulator.

    python bench/simulator_throughput.py [--seconds 10] [--threads 8] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from sms_provider.vendors.base import OutboundMessage  # noqa: E402
from sms_provider.vendors.clock import china_stamp  # noqa: E402
from sms_provider.vendors.codec import md5_hex  # noqa: E402
from sms_provider.vendors.registry import build_client  # noqa: E402
from tests.simulator_harness import SimulatorProcess  # noqa: E402

NAME, PASSWORD = "bench", "bench-pass"
CONTENT = "【Bench】load test message"


def raw_request(port: int, batch: int) -> bytes:
    data = json.dumps({"dest": ",".join(f"138{i:08d}" for i in range(batch)),
                       "content": CONTENT}, ensure_ascii=False)
    seed = china_stamp()
    body = urlencode({"name": NAME, "seed": seed, "ver": "1", "data": data,
                      "key": md5_hex(md5_hex(PASSWORD) + seed + data)}).encode()
    head = (f"POST /eums/sms/utf8/json/send.do HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def raw_worker(port: int, request: bytes) -> Callable[[], None]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""

    def one() -> None:
        nonlocal buf
        sock.sendall(request)
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        if not head.startswith(b"HTTP/1.1 200") or not rest[:length].startswith(b'{"code": 0'):
            raise RuntimeError(rest[:200])
        buf = rest[length:]

    return one


def client_worker(host: str, port: int, batch: int) -> Callable[[], None]:
    client = build_client("eums", host=host, port=port, login=NAME, password=PASSWORD)
    messages = [OutboundMessage(f"138{i:08d}", CONTENT) for i in range(batch)]
    return lambda: client.send(messages)


def drive(make: Callable[[], Callable[[], None]], threads: int, seconds: float
          ) -> tuple[int, int, float]:
    counts, errors = [0] * threads, [0] * threads
    workers = [make() for _ in range(threads)]
    stop = time.monotonic() + seconds

    def loop(slot: int) -> None:
        while time.monotonic() < stop:
            try:
                workers[slot]()
                counts[slot] += 1
            except Exception:
                errors[slot] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts), sum(errors), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    config = {"eums": {"name": NAME, "password": PASSWORD, "aes_key": "0123456789abcdef",
                       "balance": 10**12},
              "simulation": {"report_delay_s": 3600}}
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimulatorProcess(Path(tmp), config).start()
        try:
            request = raw_request(sim.port, args.batch)
            for label, make in (
                    ("raw", lambda: raw_worker(sim.port, request)),
                    ("client", lambda: client_worker(sim.host, sim.port, args.batch))):
                total, errors, elapsed = drive(make, args.threads, args.seconds)
                print(f"simulator [{label:6}]: {total / elapsed:7,.0f} requests/s, "
                      f"{total * args.batch / elapsed:9,.0f} messages/s "
                      f"({args.threads} threads, {args.batch} numbers a request, "
                      f"{elapsed:.1f} s, {errors} errors)")
        finally:
            sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
