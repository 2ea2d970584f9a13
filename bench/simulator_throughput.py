"""How many batch requests a second the simulator holds on this machine.

Starts the simulator as its own process, then drives EUMS sends (the cheapest
client) from several threads with keep-alive sessions for a fixed time, and
prints requests/second and messages/second. Usage:

    python bench/simulator_throughput.py [--seconds 10] [--threads 8] [--batch 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from sms_provider.vendors.base import OutboundMessage  # noqa: E402
from sms_provider.vendors.registry import build_client  # noqa: E402
from tests.simulator_harness import SimulatorProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    config = {"eums": {"name": "bench", "password": "bench-pass", "aes_key": "0123456789abcdef",
                       "balance": 10**12},
              "simulation": {"report_delay_s": 3600}}
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimulatorProcess(Path(tmp), config).start()
        host, port = sim.base_url.rsplit(":", 1)
        counts = [0] * args.threads
        errors = [0] * args.threads
        stop = time.monotonic() + args.seconds
        batch = [OutboundMessage(f"138{i:08d}", "【Bench】load test message")
                 for i in range(args.batch)]

        def worker(slot: int) -> None:
            client = build_client("eums", host=host, port=int(port), login="bench",
                                  password="bench-pass")
            while time.monotonic() < stop:
                try:
                    client.send(batch)
                    counts[slot] += 1
                except Exception:
                    errors[slot] += 1
            client.close()

        started = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        sim.stop()
    total = sum(counts)
    print(f"simulator: {total / elapsed:,.0f} requests/s, "
          f"{total * args.batch / elapsed:,.0f} messages/s "
          f"({args.threads} client threads, {args.batch} numbers a request, "
          f"{elapsed:.1f} s, {sum(errors)} errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
