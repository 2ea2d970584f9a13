"""One campaign of 200k recipients through one Celery worker and through two.

Each run starts the loopback cluster of ``tests/cluster/stack.py`` (CeleryExecutor
on PostgreSQL and Redis, the simulator as the vendor) with one or two workers of
``--concurrency`` task slots each, triggers ``sms_campaign`` through the REST API
and times the send phase: from the first send shard's start to the last one's end,
as the task instances record them. The simulator holds every send for
``--latency`` seconds (a vendor's round trip; the vendor itself is not the limit),
so what is measured is how many shards the workers keep in flight. Prints
recipients/s for each and the ratio (the aim: two workers ≥1.7× one). On a 2-core
machine the workers, the scheduler and the simulator share the cores: read the
figure beside the load it was measured under.

    python bench/cluster_send.py [--recipients 200000] [--concurrency 2] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIM = 1.7  # two workers against one, when the vendor is not the limit
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from tests.cluster.stack import ClusterStack  # noqa: E402


def write_recipients(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile"])
        writer.writerows([f"137{n:08d}"] for n in range(10_000_000, 10_000_000 + count))


def send_rate(workers: int, args: argparse.Namespace) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="sms-bench-cluster-"))
    names = [f"bench-{i}" for i in range(workers)]
    cores = sorted(os.sched_getaffinity(0))
    pinned = ({name: {cores[i % len(cores)]} for i, name in enumerate(names)}
              if args.core_per_worker else None)
    stack = ClusterStack(workdir, workers=names, concurrency=args.concurrency,
                         extras={"eums": {"max_batch": 1000, "send_concurrency": 4}},
                         worker_cpus=pinned)
    try:
        stack.start()
        stack.sim.faults({"kind": "latency", "vendor": "eums", "path": "send",
                          "latency_s": args.latency})
        write_recipients(workdir / "recipients.csv", args.recipients)
        run_id = stack.trigger("sms_campaign", {
            "campaign_id": f"bench-{workers}", "recipients": str(workdir / "recipients.csv"),
            "conn_id": "sms_eums", "content": "【Shop】The sale starts today"})
        state = stack.wait_run("sms_campaign", run_id, args.timeout)
        if state != "success":
            raise SystemExit(f"the campaign ended {state}; logs in {workdir}")
        shards = [t for t in stack.task_instances("sms_campaign", run_id)
                  if t["task_id"] == "send"]
        start = min(datetime.fromisoformat(t["start_date"]) for t in shards)
        end = max(datetime.fromisoformat(t["end_date"]) for t in shards)
        seconds = (end - start).total_seconds()
        hosts = sorted({t["hostname"] for t in shards})
        for t in sorted(shards, key=lambda t: t["start_date"]):
            began = datetime.fromisoformat(t["start_date"])
            queued = datetime.fromisoformat(t["queued_when"])
            print(f"  shard {t['map_index']}: queued at {(queued - start).total_seconds():5.1f}"
                  f" s, on {t['hostname']} from {(began - start).total_seconds():5.1f} s for "
                  f"{(datetime.fromisoformat(t['end_date']) - began).total_seconds():5.1f} s",
                  flush=True)
        assert stack.sim.count("eums") == args.recipients
        rate = args.recipients / seconds
        print(f"{workers} worker(s) {hosts}: {len(shards)} shards, send phase {seconds:.1f} s, "
              f"{rate:,.0f} recipients/s", flush=True)
        return rate
    finally:
        stack.stop()
        if args.keep:
            print(f"  logs kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="task slots per worker (default 2)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds the simulator holds each send (default 0.05)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--core-per-worker", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="each worker and its tasks on a core of its own, as on hosts "
                             "of their own (default); --no-core-per-worker: any core")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's folder (the services' logs) and say where")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    one = send_rate(1, args)
    two = send_rate(2, args)
    ratio = two / one
    verdict = "meets" if ratio >= AIM else "BELOW"
    print(f"two workers / one: {ratio:.2f}x, {verdict} the aim of {AIM}x; "
          f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
