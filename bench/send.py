"""How close the ledgered send path comes to a bare HTTP loop sending the same chunks.

A shard is sent through ``ShardSender`` (plan, ledger intent and outcome around
every request, the vendor client's checks, signing and answer parsing, the
submissions table); the floor to compare it with is what the same machine does
when it only posts the very same form bodies. Both go to the vendor simulator,
each against a fresh simulator process, so neither inherits the other's
accepted messages; after each, the simulator must hold exactly --recipients
messages. The target is our path at 80% or more of the bare loop's throughput,
judged on the median of --repeat alternated pairs (see ``report``).

Measured, in this order:

* ``bare loop``: --concurrency threads, each with its own keep-alive
  ``requests.Session``, post the chunks' form bodies, all signed and
  url-encoded before the clock starts (an EUMS seed stays valid for 30
  minutes), so the loop measures HTTP only;
* ``send path``: ``ShardSender.run`` with a SQLite ledger file in a temporary
  directory on disk, as deployed; its wall time is split into planning,
  sending and building the submissions table;
* with ``--ledger-share`` (default): the send path again with the SQLite file
  on tmpfs (``/dev/shm``: no disk syncs) and with the ledger kept in a dict
  (no SQL at all). ``sqlite://`` cannot stand in: SQLAlchemy gives every
  thread its own empty in-memory database, so the workers find no table.

Client CPU is this process's CPU time; simulator CPU is read from ``/proc``.
On a 2-core machine both share the cores, so client CPU is throughput lost.

    python bench/send.py [--recipients 1000000] [--vendor eums] [--batch N]
                         [--concurrency 4] [--repeat 3] [--no-ledger-share]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pyarrow as pa
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

from sms_provider.data.ledger import (  # noqa: E402
    LEASE_S,
    ChunkRecord,
    ChunkState,
    SenderIdentity,
    SendLedger,
)
from sms_provider.data.schemas import PREPARED_SCHEMA  # noqa: E402
from sms_provider.data.send import Chunk, ShardResult, ShardSender, plan_chunks  # noqa: E402
from sms_provider.vendors.base import VendorClient  # noqa: E402
from sms_provider.vendors.clock import china_stamp  # noqa: E402
from sms_provider.vendors.registry import build_client  # noqa: E402
from tests.simulator_harness import SimulatorProcess  # noqa: E402

CAMPAIGN = "bench-send"
#: one charge item (≤ 70 characters), with the 【signature】 the gateway wants
CONTENT = "【Bench】您的验证码是 482913, 10 分钟内有效, 请勿告诉他人。"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TIMEOUT = (5.0, 30.0)  # the client's own defaults, so both paths wait alike
TARGET = 0.80
#: memory-backed, so a SQLite file there costs no disk syncs (a mkdtemp directory inside)
TMPFS = Path("/dev/shm")  # noqa: S108


# --- the prepared shard --------------------------------------------------------
def prepared_table(n: int) -> pa.Table:
    """A prepared shard of ``n`` unique mainland mobiles sharing one content.

    Built directly with pyarrow: the bench is about sending, not preparing.
    """
    mobiles = pa.array([f"138{i:08d}" for i in range(n)], pa.string())
    return pa.table({
        "row_number": pa.array(range(1, n + 1), pa.int64()),
        "mobile": mobiles,
        "e164": pa.array([f"86138{i:08d}" for i in range(n)], pa.string()),
        "carrier": pa.array(["China Mobile"] * n, pa.string()),
        "content": pa.array([CONTENT] * n, pa.string()),
        "variables": pa.nulls(n, pa.string()),
        "charge_items": pa.array([1] * n, pa.int32()),
        "custom_id": pa.array([f"r{i}" for i in range(1, n + 1)], pa.string()),
        "shard": pa.array([0] * n, pa.int32()),
    }, schema=PREPARED_SCHEMA)


# --- vendor accounts and the bare loop's request bodies ----------------------------
@dataclasses.dataclass(frozen=True)
class BenchVendor:
    """What the bench needs of a vendor: its simulator account and its raw requests."""

    login: str
    password: str
    account: dict[str, Any]   # the simulator's config for the vendor
    path: str                 # where a send is posted
    bodies: Callable[[BenchVendor, Sequence[Chunk], str], list[bytes]]  # chunks, seed


def eums_body(vendor: BenchVendor, chunk: Chunk, seed: str) -> bytes:
    """The form body EUMS ``send.do`` wants for one chunk, built from the document.

    ``key`` = md5(md5(password) + seed + data), lower-case hex; ``data`` is the
    compact JSON of dest (numbers comma-joined), content and reference. Written
    independently of the client, and checked against it before any timing.
    """
    first = chunk.messages[0]
    body: dict[str, str] = {"dest": ",".join(m.mobile for m in chunk.messages),
                            "content": first.content}
    if first.custom_id is not None:
        body["reference"] = first.custom_id
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    password_md5 = hashlib.md5(vendor.password.encode()).hexdigest()
    key = hashlib.md5((password_md5 + seed + data).encode()).hexdigest()
    return urlencode({"name": vendor.login, "seed": seed, "key": key, "ver": "1",
                      "data": data}).encode()


def eums_bodies(vendor: BenchVendor, chunks: Sequence[Chunk], seed: str) -> list[bytes]:
    """Every chunk's body under one seed: built once, before the bare loop's clock."""
    return [eums_body(vendor, chunk, seed) for chunk in chunks]


VENDORS: dict[str, BenchVendor] = {
    "eums": BenchVendor(
        "bench", "bench-pass",
        {"name": "bench", "password": "bench-pass", "aes_key": "0123456789abcdef"},
        "/eums/sms/utf8/json/send.do", eums_bodies),
}


class _Captured(Exception):
    """Raised in place of the HTTP call to hand the client's request back."""

    def __init__(self, url: str, data: Any) -> None:
        super().__init__(url)
        self.url, self.data = url, data


def check_same_bodies(client: VendorClient, vendor: BenchVendor, chunks: Sequence[Chunk],
                      base_url: str) -> None:
    """Refuse to compare unless the bare loop posts exactly what the client would.

    The client's request for the first and last chunk is caught before it
    reaches the wire and encoded as ``requests`` would; the bare body for the
    same seed must be byte-identical.
    """
    session = client.http.session
    original = session.request

    def record(method: str, url: str, **kwargs: Any) -> requests.Response:
        raise _Captured(url, kwargs.get("data"))

    session.request = record  # type: ignore[method-assign]
    try:
        for chunk in {chunks[0].index: chunks[0], chunks[-1].index: chunks[-1]}.values():
            try:
                client.send(chunk.messages)
            except _Captured as got:
                url, data = got.url, got.data
            else:
                raise SystemExit("the client sent nothing through its session")
            sent = requests.Request("POST", url, data=data).prepare().body
            sent_bytes = sent.encode() if isinstance(sent, str) else sent
            seed = parse_qs(sent_bytes.decode())["seed"][0]
            if (url != base_url + vendor.path
                    or sent_bytes != vendor.bodies(vendor, [chunk], seed)[0]):
                raise SystemExit(f"chunk {chunk.index}: the bare body differs from the "
                                 "client's request; the comparison would be unfair")
    finally:
        session.request = original  # type: ignore[method-assign]


# --- a ledger without storage ------------------------------------------------------
class MemoryLedger(SendLedger):
    """The ledger's claim / begin_send / finish in a dict: no SQL, no JSON, no disk.

    Exists so the send path can run once without its ledger cost and the gap
    to the file run gives the ledger's share (``sqlite://`` cannot: each thread
    would get its own empty database).
    """

    lease_s = LEASE_S

    def __init__(self) -> None:  # no engine on purpose
        self.url = "memory"
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, int, int], ChunkRecord] = {}

    def __repr__(self) -> str:
        return "MemoryLedger()"

    def close(self) -> None:
        self._rows.clear()

    def renew_lease(self, campaign_id: str, shard: int, owner: SenderIdentity) -> int:
        return 0  # one process, no other sender to keep out

    def claim(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
              recipients: int, *, owner: SenderIdentity | None = None) -> ChunkRecord:
        key = (campaign_id, shard, chunk)
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = ChunkRecord(campaign_id, shard, chunk, fingerprint,
                                                    recipients, ChunkState.PENDING, 0, None, None,
                                                    time.time())
            return row

    def begin_send(self, campaign_id: str, shard: int, chunk: int, fingerprint: str,
                   recipients: int, *, owner: SenderIdentity | None = None
                   ) -> tuple[bool, ChunkRecord]:
        key = (campaign_id, shard, chunk)
        with self._lock:
            row = self._rows.get(key) or ChunkRecord(campaign_id, shard, chunk, fingerprint,
                                                     recipients, ChunkState.PENDING, 0, None, None,
                                                     time.time())
            if row.state != ChunkState.PENDING:
                return False, row
            row = self._rows[key] = dataclasses.replace(
                row, state=ChunkState.INTENT, attempts=row.attempts + 1, updated_at=time.time())
            return True, row

    def finish(self, record: ChunkRecord, state: str, *, outcome: Any = None,
               error: str | None = None) -> ChunkRecord:
        key = (record.campaign_id, record.shard, record.chunk)
        with self._lock:
            row = self._rows[key]
            if row.state == ChunkState.INTENT:
                row = self._rows[key] = dataclasses.replace(
                    row, state=state, outcome=outcome, last_error=error,
                    updated_at=time.time())
            return row


# --- measuring -----------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """One measured pass over every recipient."""

    label: str
    recipients: int
    requests: int
    seconds: float
    client_cpu: float
    sim_cpu: float | None
    phases: str = ""
    send_seconds: float | None = None  # the send phase alone, between plan and result

    def line(self) -> str:
        sim = f"{self.sim_cpu:5.1f}" if self.sim_cpu is not None else "  n/a"
        return (f"{self.label:<26} {self.recipients / self.seconds:>11,.0f}"
                f" {self.requests / self.seconds:>8,.1f} {self.seconds:>7.2f}"
                f" {self.client_cpu:>6.1f} {sim:>5}  {self.phases}")


#: cpu s: CPU seconds of this process (the client); sim s: of the simulator
HEADER = (f"{'path':<26} {'recipients/s':>11} {'req/s':>8} {'wall s':>7} {'cpu s':>6}"
          f" {'sim s':>5}  phases")


def simulator_cpu(sim: SimulatorProcess) -> float | None:
    """User + system CPU seconds of the simulator, from /proc (None where there is none).

    The simulator's share of the cores explains the bare loop's ceiling.
    """
    if sim.proc is None:
        return None
    try:
        fields = Path(f"/proc/{sim.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PhaseTimedSender(ShardSender):
    """``ShardSender`` noting when planning ended and when the last chunk settled.

    ``run`` plans, sends and builds the result in one call; these two clock
    reads (once, and once per chunk) tell which phase a gap comes from.
    """

    planned_at = 0.0
    last_settled_at = 0.0

    def plan(self, table: pa.Table) -> Iterator[Chunk]:
        # Planning is lazy (the first requests leave while it goes on): note when
        # the last chunk has been planned without forcing the plan up front.
        yield from super().plan(table)
        self.planned_at = time.perf_counter()

    def _send_chunk(self, chunk: Chunk) -> ChunkRecord:
        record = super()._send_chunk(chunk)
        self.last_settled_at = max(self.last_settled_at, time.perf_counter())
        return record


class FreshSimulator:
    """A new simulator process for one measured pass, so every pass starts from nothing.

    The balance never runs out and reports fall due after the run, so the
    simulator does nothing but accept sends.
    """

    def __init__(self, workdir: Path, vendor_name: str, vendor: BenchVendor) -> None:
        workdir.mkdir(parents=True)
        config = {vendor_name: {**vendor.account, "balance": 10**12},
                  "simulation": {"report_delay_s": 3600}}
        self.process = SimulatorProcess(workdir, config)

    def __enter__(self) -> SimulatorProcess:
        return self.process.start()

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


def bare_loop(url: str, bodies: Sequence[bytes], concurrency: int) -> float:
    """Post every body from ``concurrency`` threads, one keep-alive Session each.

    Returns the wall time; any answer other than HTTP 200 with code 0 stops
    the bench, since a refused request would make the loop look faster.
    """
    sessions = [requests.Session() for _ in range(concurrency)]
    pending = iter(bodies)
    lock = threading.Lock()
    failures: list[str] = []

    def work(session: requests.Session) -> None:
        try:
            while not failures:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                resp = session.post(url, data=body, headers=FORM, timeout=TIMEOUT)
                if resp.status_code != 200 or not resp.content.startswith(b'{"code": 0,'):
                    failures.append(f"HTTP {resp.status_code}: {resp.content[:100]!r}")
        except requests.RequestException as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for s in sessions:
        s.close()
    if failures:
        raise SystemExit(f"bare loop: {len(failures)} failed request(s), first: {failures[0]}")
    return elapsed


def make_client(vendor_name: str, vendor: BenchVendor, sim: SimulatorProcess,
                batch: int | None) -> VendorClient:
    """The client as a send task builds it (registry, connection-shaped fields)."""
    extras = {"max_batch": str(batch)} if batch else {}
    return build_client(vendor_name, host=sim.host, port=sim.port, login=vendor.login,
                        password=vendor.password, extras=extras)


def send_path(client: VendorClient, ledger: SendLedger, table: pa.Table, concurrency: int
              ) -> tuple[ShardResult, float, float, str]:
    """One timed ``ShardSender.run``: result, wall and send-phase seconds, phase split."""
    sender = PhaseTimedSender(client, ledger, CAMPAIGN, 0, concurrency=concurrency)
    started = time.perf_counter()
    result = sender.run(table)
    ended = time.perf_counter()
    sending = sender.last_settled_at - sender.planned_at
    phases = (f"plan {sender.planned_at - started:.2f} s, send {sending:.2f} s, result "
              f"{ended - sender.last_settled_at:.2f} s")
    return result, ended - started, sending, phases


def check_count(sim: SimulatorProcess, vendor_name: str, expected: int, label: str) -> None:
    """A pass counts only if the simulator accepted every recipient exactly once."""
    got = sim.count(vendor_name)
    if got != expected:
        raise SystemExit(f"{label}: the simulator accepted {got:,} messages, not {expected:,}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--vendor", choices=sorted(VENDORS), default="eums")
    parser.add_argument("--batch", type=int, default=None,
                        help="recipients per request (default: the vendor's limit)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="requests in flight, for both paths")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternate bare and send passes this many times; the verdict "
                             "is the median pair (the machine may be shared)")
    parser.add_argument("--ledger-share", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the send path with the ledger on tmpfs and in memory")
    args = parser.parse_args()
    if not 1 <= args.recipients <= 10**8:  # 138 and eight digits: 10**8 unique mobiles
        parser.error("--recipients must be between 1 and 100000000")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    vendor = VENDORS[args.vendor]
    n = args.recipients

    t0 = time.perf_counter()
    table = prepared_table(n)
    print(f"prepared {n:,} recipients in {time.perf_counter() - t0:.1f} s")

    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        shm = (Path(stack.enter_context(tempfile.TemporaryDirectory(dir=TMPFS)))
               if TMPFS.is_dir() else None)
        passes = iter(range(10**6))

        def bare_pass() -> None:
            # The bare loop: its bodies are built (and checked) before the clock starts.
            with FreshSimulator(workdir / f"sim-{next(passes)}", args.vendor, vendor) as sim:
                client = make_client(args.vendor, vendor, sim, args.batch)
                chunks = plan_chunks(table, campaign_id=CAMPAIGN, shard=0,
                                     max_batch=client.max_batch,
                                     personalised=client.personalised_batches,
                                     custom_id_scope=client.custom_id_scope)
                check_same_bodies(client, vendor, chunks, sim.base_url)
                client.close()
                bodies = vendor.bodies(vendor, chunks, china_stamp())
                if not runs:
                    print(f"{len(chunks):,} requests of up to {len(chunks[0]):,} recipients, "
                          f"{args.concurrency} in flight; bodies identical to the client's")
                cpu, sim_cpu = time.process_time(), simulator_cpu(sim)
                seconds = bare_loop(sim.base_url + vendor.path, bodies, args.concurrency)
                cpu, sim_cpu = time.process_time() - cpu, _delta(simulator_cpu(sim), sim_cpu)
                check_count(sim, args.vendor, n, "bare loop")
                runs.append(Run(BARE, n, len(chunks), seconds, cpu, sim_cpu))
                # A million planned messages left alive would slow the send path's
                # garbage collections below, which no real send task carries.
                del bodies, chunks

        def send_pass(label: str, open_ledger: Callable[[], SendLedger]) -> None:
            with FreshSimulator(workdir / f"sim-{next(passes)}", args.vendor, vendor) as sim:
                client = make_client(args.vendor, vendor, sim, args.batch)
                ledger = open_ledger()
                try:
                    cpu, sim_cpu = time.process_time(), simulator_cpu(sim)
                    result, seconds, sending, phases = send_path(client, ledger, table,
                                                                 args.concurrency)
                    cpu, sim_cpu = time.process_time() - cpu, _delta(simulator_cpu(sim), sim_cpu)
                finally:
                    ledger.close()
                    client.close()
                if not result.complete or result.counts != {"submitted": n}:
                    raise SystemExit(f"{label}: {result.counts}, errors {result.errors[:3]}")
                check_count(sim, args.vendor, n, label)
                runs.append(Run(label, n, runs[0].requests, seconds, cpu, sim_cpu, phases,
                                sending))

        for i in range(args.repeat):  # alternated, so a busy spell hits both paths alike
            bare_pass()
            send_pass(LEDGER_FILE, lambda i=i: SendLedger(
                f"sqlite:///{workdir / f'ledger-{i}.sqlite'}"))
        if args.ledger_share and shm is not None:
            send_pass("send path, ledger tmpfs",
                      lambda: SendLedger(f"sqlite:///{shm / 'ledger.sqlite'}"))
        if args.ledger_share:
            send_pass("send path, no ledger", MemoryLedger)

    print(HEADER)
    for run in runs:
        print(run.line())
    report(runs)
    return 0


def _delta(after: float | None, before: float | None) -> float | None:
    """A CPU reading's growth, unknown if either reading is."""
    return None if after is None or before is None else after - before


BARE = "bare requests loop"
LEDGER_FILE = "send path, ledger file"


def report(runs: Sequence[Run]) -> None:
    """The send path's throughput against the bare loop's, the target, and the ledger's share.

    With several alternated passes the verdict is the median of the pairs'
    ratios: each pair ran back to back, so a machine that speeds up or slows
    down over the run affects both sides of a pair alike, while the fastest
    pass of each side may come from different minutes of a shared machine
    (both figures are printed).
    """
    bares = [r for r in runs if r.label == BARE]
    ours_all = [r for r in runs if r.label == LEDGER_FILE]
    bare = min(bares, key=lambda r: r.seconds)
    ours = min(ours_all, key=lambda r: r.seconds)
    fastest = bare.seconds / ours.seconds
    if len(bares) > 1:
        pairs = [b.seconds / o.seconds for b, o in zip(bares, ours_all, strict=True)]
        ratio = statistics.median(pairs)
        print(f"alternated pairs, send path / bare loop: "
              f"{', '.join(f'{x:.0%}' for x in pairs)}")
        print(f"fastest of {len(bares)} passes each: {fastest:.1%} "
              f"(wall {ours.seconds:.2f} s vs {bare.seconds:.2f} s)")
        basis = f"median of {len(pairs)} alternated pairs"
    else:
        ratio, basis = fastest, f"wall {ours.seconds:.2f} s vs {bare.seconds:.2f} s"
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(f"send path / bare loop: {ratio:.1%} of the bare loop's throughput ({basis}; "
          f"{verdict} the {TARGET:.0%} target)")
    if ours.send_seconds:
        print(f"  send phase alone (without plan and result), fastest passes: "
              f"{bare.seconds / ours.send_seconds:.1%} of the bare loop")
    by_label = {r.label: r for r in runs if r.label not in (BARE, LEDGER_FILE)}
    tmpfs, memory = by_label.get("send path, ledger tmpfs"), by_label.get("send path, no ledger")
    if memory:
        print(f"ledger share of the send path's wall time: "
              f"{1 - memory.seconds / ours.seconds:.1%} "
              f"({ours.seconds - memory.seconds:+.2f} s against no ledger; "
              f"without a ledger the path reaches {bare.seconds / memory.seconds:.1%} "
              "of the bare loop)")
    if tmpfs:
        print(f"  of which disk syncs (file on disk vs on tmpfs): "
              f"{1 - tmpfs.seconds / ours.seconds:.1%} ({ours.seconds - tmpfs.seconds:+.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
