"""How fast one campaign reconciles: --rows submissions against as many delivery reports.

Generates, column-wise, a campaign of --rows prepared recipients (default 10
million) with their submissions (0.3 % refused by the vendor, 0.2 % ambiguous)
and --rows delivery reports on the connection: one final report per reported
message (90 % delivered, 8 % failed, 2 % never reported), and to make up the
count, copies of a report (a replayed push, ~1.1 % of reports), PENDING
reports before the final one (~0.6 %), FAILED reports a later DELIVERED
overrides (~0.3 %) and reports for messages no campaign sent (~0.3 %); the
reports of ambiguous messages carry only our custom id. Message ids are
19-digit numbers, as several vendors' are. Everything is written as Parquet in
a temporary directory the way the pipeline lays it out (8 submission shards,
report files of 100 000 rows under ``date=`` folders), then
``reconcile_campaign`` is timed in a process of its own, so that its peak
memory (ru_maxrss) is its own.

The same-run baseline is the code that held whole campaigns in memory (taken
from the repository's history by ``tests/reconcile_reference.py``), run on the
same input in a child process of its own just before. The verdict is against
the aim: at most 15 s and a peak RSS under 2 GiB at 10M x 10M. With
--compare-rows N both are first run on an N-row sample and every output file
compared (the run fails if any differs). With --phases the same run also
times each step (functions wrapped in place).

Usage:

    python bench/reconcile.py [--rows 10000000] [--vendor emay_ims|eums|chuanglan]
                              [--seed 0] [--repeat 1] [--phases] [--no-baseline]
                              [--compare-rows 1000000]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))
import stages  # noqa: E402  (bench/ is the script's folder)

sys.path.insert(0, str(ROOT))
from sms_provider.data import html_report, reports  # noqa: E402
from sms_provider.data.reconcile import (  # noqa: E402
    accounts,
    campaign,
    discrepancies,
    matching,
    outcomes,
    reading,
    reconcile_campaign,
    writer,
)
from sms_provider.data.schemas import (  # noqa: E402
    PREPARED_SCHEMA,
    REJECTED_SCHEMA,
    REPORT_SCHEMA,
    SUBMISSION_SCHEMA,
)
from sms_provider.data.storage import DataRoot  # noqa: E402
from tests import reconcile_reference as reference  # noqa: E402

CAMPAIGN = "bench"
CONN = "sms_bench"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
#: submissions spread over four hours that ended 70 hours before NOW: the window
#: (72 h) closes in the middle of the campaign, so both PENDING and UNKNOWN occur
START_MS = int((NOW - timedelta(hours=74)).timestamp() * 1000)
SPREAD_MS = 4 * 3600 * 1000
SHARDS = 8
REPORT_FILE_ROWS = 100_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _text(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(numbers).cast(pa.string()), "")


def _choice(rng: np.random.Generator, n: int, names: list[str], p: list[float]
            ) -> tuple[np.ndarray, pa.Array]:
    codes = rng.choice(len(names), size=n, p=p).astype(np.int8)
    return codes, pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(
        pa.string())


def _ts(ms: np.ndarray) -> pa.Array:
    return pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def generate(tmp: Path, rows: int, vendor: str, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    root = DataRoot(tmp)
    n = rows
    row_number = np.arange(1, n + 1, dtype=np.int64)
    mobile = _text("139", rng.integers(10_000_000, 99_999_999, n))
    if vendor == "emay_ims":
        mobile = pc.binary_join_element_wise("0086", mobile, "")
    custom_id = _text("5f2c9a1e", row_number)
    shard = (row_number * SHARDS // (n + 1)).astype(np.int32)
    prepared = pa.table({
        "row_number": row_number, "mobile": mobile, "e164": pc.utf8_slice_codeunits(mobile, -11),
        "content": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int8)), pa.array(["【Shop】Your code is ready"])
        ).cast(pa.string()),
        "variables": pa.nulls(n, pa.string()),
        "charge_items": pa.array(rng.choice([1, 2], n, p=[0.9, 0.1]), pa.int32()),
        "custom_id": custom_id, "shard": pa.array(shard),
        "carrier": pa.nulls(n, pa.string())}, schema=PREPARED_SCHEMA)

    status_code, status = _choice(rng, n, ["submitted", "rejected", "ambiguous"],
                                  [0.995, 0.003, 0.002])
    submitted_ms = START_MS + np.sort(rng.integers(0, SPREAD_MS, n))
    request = row_number // 1000
    if vendor == "chuanglan":  # one msgid per request
        message_id = _text("26031012", 10_000_000 + request)
    else:
        message_id = _text("26031012", 10_000_000_000 + row_number * 7)
    sub_custom = (pc.binary_join_element_wise("5f2c9a1e-", pa.array(request).cast(pa.string()),
                                              "") if vendor == "eums" else custom_id)
    ambiguous = status_code == 2
    submissions = pa.table({
        "campaign_id": pa.array([CAMPAIGN] * 1, pa.string()).take(np.zeros(n, np.int64)),
        "conn_id": pa.array([CONN]).take(np.zeros(n, np.int64)),
        "vendor": pa.array([vendor]).take(np.zeros(n, np.int64)),
        "shard": pa.array(shard), "chunk": pa.array((request % 100000).astype(np.int32)),
        "row_number": row_number, "mobile": mobile,
        "message_id": pc.if_else(pa.array(ambiguous), None, message_id),
        "custom_id": sub_custom,
        "charge_items": pc.if_else(pa.array(ambiguous), 0, prepared["charge_items"]),
        "vendor_code": pc.if_else(pa.array(status_code == 1), "E_MOBILE", "0"),
        "status": status, "description": pa.array([""]).take(np.zeros(n, np.int64)),
        "submitted_at": _ts(submitted_ms)}, schema=SUBMISSION_SCHEMA)
    for s in range(SHARDS):
        mask = pa.array(shard == s)
        root.write_table(prepared.filter(mask), "campaigns", CAMPAIGN, "prepared",
                         f"part-{s:05d}.parquet")
        root.write_table(submissions.filter(mask), "campaigns", CAMPAIGN, "submissions",
                         f"part-{s:05d}.parquet")
    root.write_table(pa.table({"row_number": pa.array([n + 1], pa.int64()),
                               "raw_value": ["1.38E+10"], "reason": ["mangled_number"],
                               "detail": [""]}, schema=REJECTED_SCHEMA),
                     "campaigns", CAMPAIGN, "rejected", "part-00000.parquet")

    # --- reports: one final report per reported message, then copies, PENDING, flips ----
    outcome, _ = _choice(rng, n, ["delivered", "failed", "silent"], [0.90, 0.08, 0.02])
    reported = np.flatnonzero((outcome != 2) & (status_code != 1))
    extra = n - len(reported)  # the rest of the --rows reports: copies, PENDING, flips, strays
    copies = rng.choice(reported, extra // 2)
    pendings = rng.choice(reported, extra // 4)
    flips = rng.choice(reported, extra // 8)
    strays = extra - len(copies) - len(pendings) - len(flips)
    delay = rng.exponential(30_000, n).astype(np.int64) + 2_000
    idx = np.concatenate([reported, copies, pendings, flips])
    kind = np.concatenate([np.zeros(len(reported), np.int8), np.zeros(len(copies), np.int8),
                           np.ones(len(pendings), np.int8), np.full(len(flips), 2, np.int8)])
    report_ms = submitted_ms[idx] + delay[idx]
    report_ms[kind == 1] -= 1_000          # PENDING: before the final one
    report_ms[kind == 2] -= 500            # an earlier FAILED the final DELIVERED overrides
    final_state = np.where(outcome[idx] == 0, 0, 1)
    state = np.where(kind == 1, 2, np.where(kind == 2, 1, final_state)).astype(np.int8)
    msg = message_id.take(pa.array(idx))
    ambiguous_report = ambiguous[idx]
    if vendor in ("emay_ims", "eums"):  # ambiguous: the report carries an id we never saw
        msg = pc.if_else(pa.array(ambiguous_report),
                         _text("99999", np.arange(len(idx))), msg)
    rep_custom = sub_custom.take(pa.array(idx)) if vendor in ("emay_ims", "eums") \
        else pa.nulls(len(idx), pa.string())
    names = pa.array(["DELIVRD", "UNDELIV", "PENDING"])
    raw_state = pa.DictionaryArray.from_arrays(pa.array(state), names).cast(pa.string())
    norm = pa.DictionaryArray.from_arrays(
        pa.array(state), pa.array(["DELIVERED", "FAILED", "PENDING"])).cast(pa.string())
    received_ms = report_ms + rng.integers(100, 60_000, len(idx))
    received_ms[len(reported):len(reported) + len(copies)] += 600_000  # a replayed push
    stray_ms = START_MS + rng.integers(0, SPREAD_MS, strays)
    reports = pa.table({
        "conn_id": pa.array([CONN]).take(np.zeros(len(idx) + strays, np.int64)),
        "vendor": pa.array([vendor]).take(np.zeros(len(idx) + strays, np.int64)),
        "message_id": pa.concat_arrays([msg, _text("88888", np.arange(strays))]),
        "custom_id": pa.concat_arrays([rep_custom, pa.nulls(strays, pa.string())]),
        "mobile": pa.concat_arrays([pc.utf8_slice_codeunits(mobile.take(pa.array(idx)), -11),
                                    _text("138", rng.integers(10_000_000, 99_999_999,
                                                              strays))]),
        "raw_state": pa.concat_arrays([raw_state, pa.array(["DELIVRD"] * strays)]),
        "status": pa.concat_arrays([norm, pa.array(["DELIVERED"] * strays)]),
        "description": pa.array([""]).take(np.zeros(len(idx) + strays, np.int64)),
        "submit_time": _ts(np.concatenate([submitted_ms[idx], stray_ms])),
        "report_time": _ts(np.concatenate([report_ms, stray_ms + 5_000])),
        "received_at": _ts(np.concatenate([received_ms, stray_ms + 6_000])),
        "source": pa.array(["push"]).take(np.zeros(len(idx) + strays, np.int64)),
        "raw": pa.concat_arrays([pc.binary_join_element_wise('{"id":"', msg, '"}', ""),
                                 pa.array(['{"id":"stray"}'] * strays)]),
        "report_key": pa.concat_arrays([
            pc.binary_join_element_wise(msg, raw_state, pa.array(report_ms).cast(pa.string()),
                                        "|"),
            _text("stray-", np.arange(strays))]),
    }, schema=REPORT_SCHEMA)
    reports = reports.sort_by("received_at")
    days = pc.strftime(reports["received_at"], format="%Y-%m-%d")
    files = 0
    for start in range(0, reports.num_rows, REPORT_FILE_ROWS):
        part = reports.slice(start, REPORT_FILE_ROWS)
        day = days[start].as_py()
        root.write_table(part, "reports", CONN, f"date={day}", f"push-{start:010d}.parquet")
        files += 1
    return {"seconds": time.perf_counter() - started, "reports": reports.num_rows,
            "report_files": files, "submissions": n}


PHASES = {  # (where it is defined, attribute): what each wrapped step does
    "read submissions + reports": (reading, "read"),
    "match + pick (Account)": (accounts.Account, "_match"),
    "  match keys (index_in)": (matching, "lookup"),
    "  dedupe (copies)": (reports, "dedupe"),
    "prepared -> rows": (outcomes, "reconcile_rows"),
    "reconciliation table": (outcomes, "reconciliation_table"),
    "summary": (outcomes, "summary_table"),
    "discrepancies": (discrepancies, "find_discrepancies"),
    "write Parquet": (writer, "write_dataset"),
    "report.html": (html_report, "render"),
}
#: the modules that call those steps by a name of their own
CALLERS = (accounts, campaign, discrepancies, matching, outcomes, reading, writer)


def _wrap(spent: dict[str, list[float]]) -> None:
    """Wall and CPU seconds (all threads) of each step; CPU barely moves when the
    machine is shared, so it says where the work is even when wall time does not.

    A step is replaced where it is defined and in every module that imported it
    by name, so each call is timed once whichever module makes it."""
    for name, (owner, attr) in PHASES.items():
        original = getattr(owner, attr)

        def timed(*args: Any, __f: Any = original, __name: str = name, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return __f(*args, **kwargs)
            finally:
                total = spent.setdefault(__name, [0.0, 0.0])
                total[0] += time.perf_counter() - t0
                total[1] += time.process_time() - c0

        wrapped = functools.wraps(original)(timed)
        for holder in (owner, *CALLERS):
            if getattr(holder, attr, None) is original:
                setattr(holder, attr, wrapped)


def run(tmp: Path, phases: bool) -> dict[str, Any]:
    spent: dict[str, list[float]] = {}
    if phases:
        _wrap(spent)
    before = peak_rss_mib()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = reconcile_campaign(DataRoot(tmp), CAMPAIGN, now=NOW)
    elapsed = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    return {"seconds": elapsed, "cpu_s": cpu_s, "sys_s": used.ru_stime - cpu.ru_stime,
            "peak_rss_mib": peak_rss_mib(),
            "rss_before_mib": before,
            "counts": result.counts, "discrepancies": result.discrepancies, "phases": spent}


def run_stage(*args: str) -> dict[str, Any]:
    return stages.run_stage(__file__, *args)


#: the aim at 10M x 10M: wall seconds at most, peak RSS below (MiB)
AIM_SECONDS = 15.0
AIM_RSS_MIB = 2048.0


def _verdict(run: dict[str, Any], rows: int) -> str:
    met = run["seconds"] <= AIM_SECONDS and run["peak_rss_mib"] < AIM_RSS_MIB
    scale = "" if rows == 10_000_000 else f" (the aim is for 10M x 10M; this run: {rows:,})"
    return (f"{'met' if met else 'NOT met'}: {run['seconds']:.2f} s "
            f"{'<=' if run['seconds'] <= AIM_SECONDS else '>'} {AIM_SECONDS:g} s, peak "
            f"{run['peak_rss_mib']:,.0f} MiB {'<' if run['peak_rss_mib'] < AIM_RSS_MIB else '>='}"
            f" {AIM_RSS_MIB:,.0f} MiB{scale}")


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _compare(rows: int, vendor: str, seed: int, old_tree: Path) -> bool:
    """The in-memory reference and the streaming code on one ``rows`` sample: every output
    file must be identical."""
    with tempfile.TemporaryDirectory(prefix="reconcile-compare-") as tmp:
        inputs = Path(tmp) / "inputs"
        run_stage("--stage", "generate", "--tmp", str(inputs), "--rows", str(rows),
                  "--vendor", vendor, "--seed", str(seed))
        old = reference.copy_root(inputs, Path(tmp) / "old")
        new = reference.copy_root(inputs, Path(tmp) / "new")
        reference.run(old_tree, old, CAMPAIGN, NOW.isoformat())
        reference.run(ROOT / "plugins", new, CAMPAIGN, NOW.isoformat())
        found = reference.compare(old, new, CAMPAIGN)
    same = not found["differences"]
    print(f"compare:  {rows:,} {vendor} rows, in-memory reference vs streaming: "
          + (f"identical ({found['files']} files, {found['rows']:,} Parquet rows compared)"
             if same else "DIFFERENT:\n  " + "\n  ".join(found["differences"])))
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--vendor", default="emay_ims", choices=["emay_ims", "eums",
                                                                 "chuanglan"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="time this many runs, report the fastest (the machine may be shared)")
    parser.add_argument("--phases", action="store_true", help="one more run, timing each step")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the same-run baseline (the in-memory reference)")
    parser.add_argument("--compare-rows", type=int, default=0, metavar="N",
                        help="also check on an N-row sample (1000000, say) that the in-memory "
                             "reference and the streaming code write identical outputs")
    parser.add_argument("--stage", choices=["generate", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "generate":
        print(json.dumps(generate(args.tmp, args.rows, args.vendor, args.seed)))
        return 0
    if args.stage == "run":
        print(json.dumps(run(args.tmp, args.phases)))
        return 0

    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        old_tree = None if args.no_baseline and not args.compare_rows else \
            reference.reference_tree(Path(tmp) / "reference")
        if old_tree is None and not args.no_baseline:
            print(f"baseline: no git history with {reference.REFERENCE_COMMIT} here")
        data = Path(tmp) / "data"
        made = run_stage("--stage", "generate", "--tmp", str(data), "--rows", str(args.rows),
                         "--vendor", args.vendor, "--seed", str(args.seed))
        size = sum(f.stat().st_size for f in data.rglob("*.parquet")) / 2**20
        print(f"input:    {made['submissions']:,} {args.vendor} submissions, "
              f"{made['reports']:,} reports in {made['report_files']} files "
              f"({size:,.0f} MiB of Parquet), written in {made['seconds']:.1f} s")
        loads = [_load()]
        baseline = None
        if old_tree is not None and not args.no_baseline:
            baseline = reference.run(old_tree, data, CAMPAIGN, NOW.isoformat())
            loads.append(_load())
        runs = []
        for _ in range(max(1, args.repeat)):
            runs.append(run_stage("--stage", "run", "--tmp", str(data)))
            loads.append(_load())
        profiled = run_stage("--stage", "run", "--tmp", str(data), "--phases") if args.phases \
            else None
        # last: reading the compared tables would raise this process's peak RSS, which every
        # child started after it inherits as its own starting ru_maxrss
        same = _compare(args.compare_rows, args.vendor, args.seed, old_tree) \
            if args.compare_rows and old_tree is not None else None
    fast = min(runs, key=lambda r: r["seconds"])
    print(f"machine:  {len(os.sched_getaffinity(0))} CPUs, load average (1/5/15 min) "
          f"{' -> '.join(loads)} (before the first run, after each)"
          + (f"; fastest of {len(runs)}: " + ", ".join(f"{r['seconds']:.1f}" for r in runs)
             if len(runs) > 1 else ""))
    print(f"reconcile_campaign: {fast['seconds']:.2f} s ({fast['cpu_s']:.1f} s of CPU, "
          f"{fast['sys_s']:.1f} of it system), peak RSS {fast['peak_rss_mib']:,.0f} MiB "
          f"({fast['rss_before_mib']:,.0f} MiB before; ru_maxrss of the child process)")
    if baseline is not None:
        print(f"baseline: the in-memory reference ({reference.REFERENCE_COMMIT[:10]}), same "
              f"run, same input: {baseline['seconds']:.2f} s ({baseline['cpu_s']:.1f} s of CPU "
              f"with imports), peak RSS "
              f"{baseline['peak_rss_mib']:,.0f} MiB; ratio time "
              f"{fast['seconds'] / baseline['seconds']:.2f}x, "
              f"peak RSS {fast['peak_rss_mib'] / baseline['peak_rss_mib']:.2f}x"
              + ("" if baseline["counts"] == fast["counts"]
                 and baseline["discrepancies"] == fast["discrepancies"]
                 else "; COUNTS DIFFER"))
    print("verdict:  " + _verdict(fast, args.rows))
    print("counts:   " + ", ".join(f"{k} {v:,}" for k, v in fast["counts"].items()))
    print("discrepancies: " + ", ".join(f"{k} {v:,}" for k, v in fast["discrepancies"].items()))
    if profiled is not None:
        print(f"phases (a separate run, {profiled['seconds']:.2f} s; nested steps indented):")
        for name, (wall, cpu) in profiled["phases"].items():
            print(f"  {name:<34} {wall:6.2f} s  ({cpu:5.2f} s CPU)")
    return 0 if same is not False else 1


if __name__ == "__main__":
    sys.exit(main())
