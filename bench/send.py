"""How close the ledgered send path comes to a bare HTTP loop sending the same chunks,
for every vendor and wire mode.

A shard is sent through ``ShardSender`` (plan, ledger intent and outcome around
every request, the vendor client's checks, signing or encryption and answer
parsing, the submissions table); the floor to compare it with is what the same
machine does when it only posts the very same requests. Both go to the vendor
simulator, each against a fresh simulator process, so neither inherits the
other's accepted messages; after each, the simulator must hold exactly the
shard's recipients. The target is our path at 80% or more of the bare loop's
throughput, judged on the median of --repeat alternated pairs (see ``report``).
The cases (vendor, mode, shard shape) are in ``bench/send_cases.py``.

Measured, in this order:

* ``bare loop``: --concurrency threads (one where the vendor takes one request
  at a time: EIMS md5), each with its own keep-alive ``requests.Session``,
  post the client's own requests, every one made by the client (signed,
  encrypted, compressed) and caught before it reached the wire, all before the
  clock starts, so the loop measures HTTP only;
* ``send path``: ``ShardSender.run`` with a SQLite ledger file in a temporary
  directory on disk, as deployed; its wall time is split into planning,
  sending and building the submissions table;
* with ``--ledger-share`` (default): the send path again with the
  SQLite file on tmpfs (``/dev/shm``: no disk syncs) and with the ledger kept in
  a dict (no SQL at all). ``sqlite://`` cannot stand in: SQLAlchemy gives every
  thread its own empty in-memory database, so the workers find no table.

Client CPU is this process's CPU time; simulator CPU is read from ``/proc``.
On a 2-core machine both share the cores, so client CPU is throughput lost;
the load average is printed with every case.

    python bench/send.py [--vendor eums|...|all] [--mode ver1] [--recipients N]
                         [--batch N] [--concurrency 4] [--repeat 3] [--no-ledger-share]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT), str(ROOT / "bench")]

from send_cases import CASES, VENDORS, SendCase, cases_for  # noqa: E402
from send_memory_ledger import MemoryLedger  # noqa: E402

from sms_provider.data.ledger import ChunkRecord, SendLedger  # noqa: E402
from sms_provider.data.send import Chunk, ShardResult, ShardSender, plan_chunks  # noqa: E402
from sms_provider.vendors.base import VendorClient  # noqa: E402
from sms_provider.vendors.registry import build_client  # noqa: E402
from tests.simulator_harness import SimulatorProcess  # noqa: E402

CAMPAIGN = "bench-send"
TIMEOUT = (5.0, 30.0)  # the client's own defaults, so both paths wait alike
TARGET = 0.80
#: memory-backed, so a SQLite file there costs no disk syncs (a mkdtemp directory inside)
TMPFS = Path("/dev/shm")  # noqa: S108


# --- the bare loop's requests: the client's own, caught before the wire --------------
@dataclasses.dataclass(frozen=True)
class WireRequest:
    """One request as it would leave: method, URL, encoded body, headers."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str]


class _Captured(Exception):
    """Raised in place of the HTTP call to hand the client's request back."""

    def __init__(self, request: WireRequest) -> None:
        super().__init__(request.url)
        self.request = request


def captured_requests(client: VendorClient, chunks: Sequence[Chunk],
                      template_id: str | None) -> list[WireRequest]:
    """Every chunk's request exactly as the client makes it, none of them sent.

    The client's session is replaced by one that encodes the request as
    ``requests`` would and raises it back, so the bare loop posts the very
    bytes (signature, encryption, gzip included) and headers our path posts.
    """
    session = client.http.session
    original = session.request
    kwargs: dict[str, Any] = {} if template_id is None else {"template_id": template_id}

    def record(method: str, url: str, **fields: Any) -> requests.Response:
        prepared = requests.Request(method, url, params=fields.get("params"),
                                    data=fields.get("data"), json=fields.get("json"),
                                    headers=fields.get("headers")).prepare()
        body = prepared.body or b""
        raise _Captured(WireRequest(method, prepared.url or url,
                                    body.encode() if isinstance(body, str) else body,
                                    dict(prepared.headers)))

    out: list[WireRequest] = []
    session.request = record  # type: ignore[method-assign]
    try:
        for chunk in chunks:
            try:
                client.send(chunk.messages, **kwargs)
            except _Captured as got:
                out.append(got.request)
            else:
                raise SystemExit("the client sent nothing through its session")
    finally:
        session.request = original  # type: ignore[method-assign]
    return out


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
    load: float = 0.0  # the 1-minute load average as the pass began

    def line(self) -> str:
        sim = f"{self.sim_cpu:5.1f}" if self.sim_cpu is not None else "  n/a"
        return (f"{self.label:<26} {self.recipients / self.seconds:>11,.0f}"
                f" {self.requests / self.seconds:>8,.1f} {self.seconds:>7.2f}"
                f" {self.client_cpu:>6.1f} {sim:>5} {self.load:>5.1f}  {self.phases}")


#: cpu s: CPU seconds of this process (the client); sim s: of the simulator
HEADER = (f"{'path':<26} {'recipients/s':>11} {'req/s':>8} {'wall s':>7} {'cpu s':>6}"
          f" {'sim s':>5} {'load':>5}  phases")


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

    def __init__(self, workdir: Path, case: SendCase) -> None:
        workdir.mkdir(parents=True)
        config = {case.vendor: {**case.simulator_config(), "balance": 10**12},
                  "simulation": {"report_delay_s": 3600}}
        self.process = SimulatorProcess(workdir, config)

    def __enter__(self) -> SimulatorProcess:
        return self.process.start()

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


def bare_loop(wire: Sequence[WireRequest], concurrency: int) -> float:
    """Post every request from ``concurrency`` threads, one keep-alive Session each.

    Returns the wall time; any answer but HTTP 200 stops the bench (whether the
    vendor took every recipient is checked on the simulator afterwards).
    """
    sessions = [requests.Session() for _ in range(concurrency)]
    pending = iter(wire)
    lock = threading.Lock()
    failures: list[str] = []

    def work(session: requests.Session) -> None:
        try:
            while not failures:
                with lock:
                    request = next(pending, None)
                if request is None:
                    return
                resp = session.request(request.method, request.url, data=request.body,
                                       headers=request.headers, timeout=TIMEOUT)
                if resp.status_code != 200:
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


def make_client(case: SendCase, sim: SimulatorProcess, batch: int | None) -> VendorClient:
    """The client as a send task builds it (registry, connection-shaped fields)."""
    extras = {**case.extras, **({"max_batch": str(batch)} if batch else {})}
    login, password = case.login()
    return build_client(case.vendor, host=sim.host, port=sim.port, login=login,
                        password=password, extras=extras)


def send_path(client: VendorClient, ledger: SendLedger, table: pa.Table, concurrency: int,
              template_id: str | None) -> tuple[ShardResult, float, float, str]:
    """One timed ``ShardSender.run``: result, wall and send-phase seconds, phase split."""
    sender = PhaseTimedSender(client, ledger, CAMPAIGN, 0, concurrency=concurrency,
                              template_id=template_id)
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




def measure_case(case: SendCase, args: argparse.Namespace, workdir: Path,
                 shm: Path | None) -> list[Run]:
    """Alternated bare and send passes of one case (and the ledger's share, if asked)."""
    n = args.recipients or case.recipients
    t0 = time.perf_counter()
    table = case.table(n)
    print(f"\n== {case.name}: prepared {n:,} recipients in {time.perf_counter() - t0:.1f} s")
    bare_threads = 1 if case.serial else args.concurrency
    runs: list[Run] = []
    passes = iter(range(10**6))
    root = workdir / case.name.replace("/", "-")

    def bare_pass() -> None:
        # The bare loop: its requests are made by the client before the clock starts.
        with FreshSimulator(root / f"sim-{next(passes)}", case) as sim:
            client = make_client(case, sim, args.batch)
            chunks = plan_chunks(table, campaign_id=CAMPAIGN, shard=0,
                                 max_batch=client.max_batch,
                                 personalised=client.personalised_batches,
                                 custom_id_scope=client.custom_id_scope)
            wire = captured_requests(client, chunks, case.template_id)
            client.close()
            if not runs:
                print(f"{len(chunks):,} requests of up to {len(chunks[0]):,} recipients; "
                      f"{args.concurrency} in flight, the bare loop {bare_threads}"
                      + (f" ({case.serial})" if case.serial else ""))
            load = os.getloadavg()[0]
            cpu, sim_cpu = time.process_time(), simulator_cpu(sim)
            seconds = bare_loop(wire, bare_threads)
            cpu, sim_cpu = time.process_time() - cpu, _delta(simulator_cpu(sim), sim_cpu)
            check_count(sim, case.vendor, n, "bare loop")
            runs.append(Run(BARE, n, len(chunks), seconds, cpu, sim_cpu, load=load))
            # Many planned requests left alive would slow the send path's garbage
            # collections below, which no real send task carries.
            del wire, chunks

    def send_pass(label: str, open_ledger: Callable[[], SendLedger]) -> None:
        with FreshSimulator(root / f"sim-{next(passes)}", case) as sim:
            client = make_client(case, sim, args.batch)
            ledger = open_ledger()
            load = os.getloadavg()[0]
            try:
                cpu, sim_cpu = time.process_time(), simulator_cpu(sim)
                result, seconds, sending, phases = send_path(client, ledger, table,
                                                             args.concurrency, case.template_id)
                cpu, sim_cpu = time.process_time() - cpu, _delta(simulator_cpu(sim), sim_cpu)
            finally:
                ledger.close()
                client.close()
            if not result.complete or result.counts != {"submitted": n}:
                raise SystemExit(f"{label}: {result.counts}, errors {result.errors[:3]}")
            check_count(sim, case.vendor, n, label)
            runs.append(Run(label, n, runs[0].requests, seconds, cpu, sim_cpu, phases,
                            sending, load))

    root.mkdir(parents=True)
    for i in range(args.repeat):  # alternated, so a busy spell hits both paths alike
        bare_pass()
        send_pass(LEDGER_FILE, lambda i=i: SendLedger(f"sqlite:///{root / f'ledger-{i}.sqlite'}"))
    if args.ledger_share and shm is not None:
        share = shm / case.name.replace("/", "-")
        share.mkdir()
        send_pass("send path, ledger tmpfs",
                  lambda: SendLedger(f"sqlite:///{share / 'ledger.sqlite'}"))
    if args.ledger_share:
        send_pass("send path, no ledger", MemoryLedger)
    print(HEADER)
    for run in runs:
        print(run.line())
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendor", choices=[*VENDORS, "all"], default="eums")
    parser.add_argument("--mode", default=None,
                        help="one of the vendor's modes (default: every one); "
                             f"the cases: {', '.join(case.name for case in CASES)}")
    parser.add_argument("--recipients", type=int, default=None,
                        help="recipients of every pass (default: the case's own)")
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
    if args.recipients is not None and not 1 <= args.recipients <= 10**8:
        parser.error("--recipients must be between 1 and 100000000")  # 10**8 unique numbers
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cases = cases_for(args.vendor, args.mode)

    verdicts: list[tuple[SendCase, Verdict]] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        shm = (Path(stack.enter_context(tempfile.TemporaryDirectory(dir=TMPFS)))
               if TMPFS.is_dir() else None)
        for case in cases:
            runs = measure_case(case, args, Path(tmp), shm)
            verdicts.append((case, report(runs)))
            if case.note:
                print(f"  note: {case.note}")
    if len(verdicts) > 1:
        print_table(verdicts)
    return 0


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A case's figures for the summary table (medians over the alternated pairs)."""

    ours: float        # recipients/s of the send path
    bare: float        # recipients/s of the bare loop
    ratio: float       # median pair's ratio
    sim_cpu: float | None   # the simulator's CPU seconds in a bare / send pass (median)
    sim_cpu_ours: float | None
    no_ledger: float | None  # the send path without a ledger against the fastest bare pass
    load: float        # the load average over the case's passes (median)


def print_table(verdicts: Sequence[tuple[SendCase, Verdict]]) -> None:
    """Every case on one line: the table ``docs/benchmarks.md`` takes its send rows from."""
    print(f"\n{'case':<28} {'ours rcpt/s':>11} {'bare rcpt/s':>11} {'ratio':>6} "
          f"{'verdict':>7} {'no ledger':>9} {'sim cpu s bare/ours':>19} {'load':>5}")
    for case, v in verdicts:
        sim = ("n/a" if v.sim_cpu is None or v.sim_cpu_ours is None
               else f"{v.sim_cpu:.1f}/{v.sim_cpu_ours:.1f}")
        verdict = "meets" if v.ratio >= TARGET else "BELOW"
        bare = "—" if v.no_ledger is None else f"{v.no_ledger:.0%}"
        print(f"{case.name:<28} {v.ours:>11,.0f} {v.bare:>11,.0f} {v.ratio:>6.1%} "
              f"{verdict:>7} {bare:>9} {sim:>19} {v.load:>5.1f}")
    print("ratio: median of the alternated pairs; no ledger: one pass with the ledger in a "
          "dict against the fastest bare pass; sim cpu: the simulator's CPU seconds in a "
          "bare / send pass (medians); load: 1-minute load average (median)")


def _delta(after: float | None, before: float | None) -> float | None:
    """A CPU reading's growth, unknown if either reading is."""
    return None if after is None or before is None else after - before


BARE = "bare requests loop"
LEDGER_FILE = "send path, ledger file"


def report(runs: Sequence[Run]) -> Verdict:
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
    return Verdict(
        ours=statistics.median(r.recipients / r.seconds for r in ours_all),
        bare=statistics.median(r.recipients / r.seconds for r in bares),
        ratio=ratio, sim_cpu=_median_known(r.sim_cpu for r in bares),
        sim_cpu_ours=_median_known(r.sim_cpu for r in ours_all),
        no_ledger=bare.seconds / memory.seconds if memory else None,
        load=statistics.median(r.load for r in runs))


def _median_known(values: Iterator[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


if __name__ == "__main__":
    sys.exit(main())
