"""How fast the whole prepare step runs: messy recipients CSV in, Parquet datasets out.

Writes --rows rows (default 10 million) of spreadsheet-damaged input (the
generator of ``bench/prepare_numbers.py`` plus personalisation columns, ~2 %
duplicate numbers, some empty names, a suppression list) into a temporary
directory, then measures, each in its own process so that peak memory
(ru_maxrss) belongs to one path only (Linux carries a parent's peak over into
its children, so the input is written by a process of its own too):

* vectorised -- ``prepare()`` over every row: read the CSV, check the numbers,
  render the content, drop duplicates and suppressed numbers, count charge
  items, shard, write ``prepared/`` and ``rejected/`` under a ``DataRoot``;
* baseline   -- the same step the straightforward way, one row at a time:
  ``csv.DictReader``, ``check_number_baseline`` (one ``phonenumbers.parse`` a
  row), render, dedupe, count and shard in a Python loop, ``from_pylist`` and
  write. It runs on the first --baseline-rows rows (default 200 000), written
  as a file of their own, and is extrapolated linearly to all rows. The same
  sample then goes through ``prepare()`` and the two outputs are compared row
  by row: which rows are prepared and their ``e164`` must agree everywhere.

The sample is the head of the file because duplicates and shards depend on
row order: a contiguous slice keeps both meaningful, and the generator draws
each duplicate from the 50 000 rows before it, so the sample holds its share.

With --phases a further run of ``prepare()`` times each of its steps (wrapped
in place, the code itself untouched) and the peak memory after each.

Usage:

    python bench/prepare.py [--rows 10000000] [--baseline-rows 200000] [--seed 0]
                            [--vendor chuanglan] [--repeat 1] [--phases]
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "plugins"), str(BENCH)]
import stages  # noqa: E402  (bench/ is the script's folder)
from prepare_numbers import CITIES, GIVEN, SURNAMES, join, messy_mobiles, pick  # noqa: E402

import sms_provider.data.duplicates as duplicates_module  # noqa: E402
import sms_provider.data.prepare as prepare_module  # noqa: E402
import sms_provider.data.recipients as recipients_module  # noqa: E402
from sms_provider.data.carriers import carrier_baseline  # noqa: E402
from sms_provider.data.content import ContentTemplate  # noqa: E402
from sms_provider.data.numbers import NOT_MAINLAND, check_number_baseline  # noqa: E402
from sms_provider.data.prepare import (  # noqa: E402
    PrepareSettings,
    custom_id_prefix,
    prepare,
    shard_count,
)
from sms_provider.data.schemas import PREPARED_SCHEMA, REJECTED_SCHEMA  # noqa: E402
from sms_provider.data.storage import DataRoot  # noqa: E402
from sms_provider.segments import charge_items  # noqa: E402
from sms_provider.vendors.profile import NumberStyle  # noqa: E402
from sms_provider.vendors.profiles import profile_of  # noqa: E402

CAMPAIGN = "bench"
CONTENT = "【Shop】Hi {name}, your code is {code}"
#: the limit Chuanglan's client enforces; long enough that only pasted-in notes exceed it
MAX_CONTENT_CHARS = 536
VENDORS = ("chuanglan", "eums", "emay_fms", "emay_ims", "eims")

#: share of rows repeating the number of one of the DUPLICATE_WINDOW rows before them
DUPLICATE_SHARE = 0.02
DUPLICATE_WINDOW = 50_000
#: of the duplicates of a clean mobile, the share written differently ("+86 138...")
RESTYLED_SHARE = 0.25
EMPTY_NAME_SHARE = 0.005
#: names holding a pasted note long enough to push the text over the limit
LONG_NAME_SHARE = 0.0005
#: clean mobiles of the file on the suppression list, plus as many numbers not in it
SUPPRESSED_SHARE = 0.002


# --- input -------------------------------------------------------------------------------


def phone_column(rng: np.random.Generator, rows: int) -> pa.Array:
    """Messy phone values as ``prepare_numbers`` makes them, then ~2 % repeated numbers."""
    mobile, clean = messy_mobiles(rng, rows)
    # A merged list repeats people, often as the same cell, sometimes written another way.
    targets = np.flatnonzero(rng.random(rows) < DUPLICATE_SHARE)
    targets = targets[targets > 0]
    sources = np.maximum(0, targets - rng.integers(1, DUPLICATE_WINDOW + 1, targets.size))
    copied = mobile.take(pa.array(sources))
    restyle = (rng.random(targets.size) < RESTYLED_SHARE) & clean[sources]
    copied = pc.if_else(pa.array(restyle), join("+86 ", copied), copied)
    mask = np.zeros(rows, dtype=bool)
    mask[targets] = True
    return pc.replace_with_mask(mobile, pa.array(mask), copied)


def recipients_table(rows: int, seed: int) -> pa.Table:
    """name, mobile, city, code: what an analyst's export looks like."""
    rng = np.random.default_rng(seed)
    mobile = phone_column(rng, rows)
    name = join(pick(rng, list(SURNAMES), rows), pick(rng, list(GIVEN), rows))
    roll = rng.random(rows)
    name = pc.if_else(pa.array(roll < EMPTY_NAME_SHARE), pick(rng, ["", " ", "\u3000"], rows),
                      name)
    noted = (roll >= EMPTY_NAME_SHARE) & (roll < EMPTY_NAME_SHARE + LONG_NAME_SHARE)
    long_note = "备注" + "客户要求周末联系" * 70
    name = pc.replace_with_mask(name, pa.array(noted),
                                join(name.filter(pa.array(noted)), long_note))
    code = pc.cast(pa.array(rng.integers(10**5, 10**6, rows)), pa.string())
    return pa.table({"name": name, "mobile": mobile, "city": pick(rng, CITIES, rows),
                     "code": code})


def suppression_table(table: pa.Table, seed: int) -> pa.Table:
    """Opt-outs: some clean mobiles of the file and as many numbers that are not in it."""
    rng = np.random.default_rng(seed + 1)
    mobile = table["mobile"].combine_chunks()
    clean = np.flatnonzero(pc.match_substring_regex(mobile, r"^1[0-9]{10}$")
                           .to_numpy(zero_copy_only=False))
    chosen = rng.choice(clean, min(clean.size, int(len(mobile) * SUPPRESSED_SHARE)),
                        replace=False)
    listed = join("86", mobile.take(pa.array(np.sort(chosen))))
    absent = pc.cast(pa.array(rng.integers(8617000000000, 8617100000000, len(listed))),
                     pa.string())
    return pa.table({"e164": pa.concat_arrays([listed, absent])})


# --- the per-row baseline ----------------------------------------------------------------


def vendor_number(e164: str, vendor: str) -> str:
    """The number as ``vendor`` takes it, from E.164 digits of an accepted row."""
    style = profile_of(vendor).number_style
    if style is NumberStyle.E164:
        return e164
    if style is NumberStyle.IDD:
        return "00" + e164
    return e164[2:]  # mainland vendors: the row is known to carry calling code 86


def baseline_prepare(root: DataRoot, path: Path, settings: PrepareSettings
                     ) -> tuple[dict[str, Any], dict[str, float]]:
    """The prepare step one row at a time; returns a summary and seconds per phase."""
    spent: dict[str, float] = {}
    started = time.perf_counter()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = list(csv.DictReader(handle))
    suppressed = (set(root.read_dataset("suppression")["e164"].to_pylist())
                  if root.list_files("suppression") else set())
    spent["read"] = time.perf_counter() - started

    started = time.perf_counter()
    verdicts = [check_number_baseline(record[settings.mobile_column], settings.default_region)
                for record in records]
    spent["check numbers"] = time.perf_counter() - started

    started = time.perf_counter()
    template = ContentTemplate.parse(settings.content)
    names = template.variables
    mainland = not profile_of(settings.vendor).sends_abroad
    limit = settings.max_content_chars
    prefix = custom_id_prefix(settings.campaign_id)
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for row_number, (record, (e164, reason)) in enumerate(zip(records, verdicts, strict=True),
                                                          start=1):
        # calling codes are prefix-free, so "86..." is mainland China and nothing else
        if reason is None and mainland and not e164.startswith("86"):
            e164, reason = None, NOT_MAINLAND
        detail = ""
        empty = next((name for name in names if not record[name].strip()), None)
        content = None if empty is not None else "".join(
            piece if isinstance(piece, str) else record[piece[0]] for piece in template.pieces)
        too_long = content is not None and bool(limit) and len(content) > limit
        mobile = vendor_number(e164, settings.vendor) if e164 is not None else None
        if reason is None and content is not None and not too_long:
            if mobile in seen:
                reason, detail = "duplicate", "number already listed in an earlier row"
            seen.add(mobile)
        if reason is None:
            if empty is not None:
                reason, detail = "missing_value", f"empty column {empty}"
            elif too_long:
                reason = "content_too_long"
                detail = f"{len(content)} characters, the limit is {limit}"
            elif e164 in suppressed:
                reason, detail = "suppressed", "number is on the suppression list"
        if reason is not None:
            rejected.append({"row_number": row_number, "raw_value": record[settings.mobile_column],
                             "reason": reason, "detail": detail})
            continue
        variables = None
        if settings.template_variables is not None:
            variables = json.dumps({name: record[name] for name in settings.template_variables},
                                   ensure_ascii=False, separators=(",", ":"))
        kept.append({"row_number": row_number, "mobile": mobile, "e164": e164,
                     "content": content, "variables": variables,
                     "charge_items": charge_items(content),
                     "custom_id": f"{prefix}{row_number}",
                     "carrier": carrier_baseline(e164)})
    shards = shard_count(len(kept), settings.max_shards, settings.min_shard_rows)
    per_shard = max(1, math.ceil(len(kept) / shards))
    for position, row in enumerate(kept):
        row["shard"] = position // per_shard
    spent["render, dedupe, count, shard"] = time.perf_counter() - started

    started = time.perf_counter()
    for name in ("prepared", "rejected"):
        root.remove_dir(*root.campaign(settings.campaign_id, name))
    by_shard: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in kept:
        by_shard[row["shard"]].append(row)
    for shard, rows in sorted(by_shard.items()):
        root.write_table(pa.Table.from_pylist(rows, schema=PREPARED_SCHEMA),
                         *root.campaign(settings.campaign_id, "prepared",
                                        f"part-{shard:05d}.parquet"))
    root.write_table(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA),
                     *root.campaign(settings.campaign_id, "rejected", "part-00000.parquet"))
    spent["write"] = time.perf_counter() - started
    summary = {"input_rows": len(records), "prepared": len(kept), "rejected": len(rejected),
               "reasons": dict(Counter(row["reason"] for row in rejected))}
    return summary, spent


# --- comparing two outputs ------------------------------------------------------------------


def outcome(root: DataRoot) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Prepared and rejected rows of the bench campaign, by row number."""
    prepared = root.read_dataset(*root.campaign(CAMPAIGN, "prepared")).to_pylist()
    rejected = root.read_dataset(*root.campaign(CAMPAIGN, "rejected")).to_pylist()
    return ({row["row_number"]: row for row in prepared},
            {row["row_number"]: row for row in rejected})


def compare(vectorised: DataRoot, baseline: DataRoot, rows: int) -> dict[str, Any]:
    """Rows whose verdict (prepared or not, and e164) differs, and any other differing field."""
    v_kept, v_rejected = outcome(vectorised)
    b_kept, b_rejected = outcome(baseline)
    accounted = {"vectorised": len(v_kept) + len(v_rejected),
                 "baseline": len(b_kept) + len(b_rejected)}
    mismatched = [n for n in range(1, rows + 1)
                  if (n in v_kept, v_kept.get(n, {}).get("e164"))
                  != (n in b_kept, b_kept.get(n, {}).get("e164"))]
    fields: Counter[str] = Counter()
    for mine, theirs in ((v_kept, b_kept), (v_rejected, b_rejected)):
        for n in mine.keys() & theirs.keys():
            fields.update(key for key, value in mine[n].items() if theirs[n][key] != value)
    examples = [{"row": n, "vectorised": v_kept.get(n) or v_rejected.get(n),
                 "baseline": b_kept.get(n) or b_rejected.get(n)} for n in mismatched[:5]]
    return {"mismatches": len(mismatched), "field_differences": dict(fields),
            "accounted": accounted, "examples": examples}


# --- timing prepare()'s steps in place --------------------------------------------------------

#: (owner, attribute, label); an indented label runs inside the one above it
PHASES: list[tuple[Any, str, str]] = [
    (prepare_module, "load_recipients", "read the CSV"),
    (recipients_module, "_detect_encoding", "  encoding check over every byte"),
    (recipients_module, "_read_csv", "  pyarrow CSV parse"),
    (prepare_module, "check_numbers", "check_numbers (mainland rule inside)"),
    (prepare_module, "e164_keys", "  E.164 as integers"),
    (prepare_module, "format_for_vendor", "format_for_vendor"),
    (ContentTemplate, "render", "render content"),
    (ContentTemplate, "empty_column", "empty_column"),
    (prepare_module, "later_repeats", "later_repeats (duplicates)"),
    (duplicates_module, "_repeats", "  sort of packed keys"),
    (prepare_module, "load_suppressed", "load_suppressed"),
    (prepare_module, "_first_reason", "_first_reason"),
    (prepare_module, "_prepared", "_prepared (filter, ids, shards)"),
    (prepare_module, "charge_items", "  charge_items"),
    (prepare_module, "_write", "_write"),
    (DataRoot, "write_table", "  DataRoot.write_table (Parquet + fsync)"),
]


def install_phase_timers() -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Wrap each step of ``prepare()``: wall seconds, CPU seconds and peak RSS (MiB) after it.

    CPU seconds say what a step costs even while other work shares the cores.
    """
    spent: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    peak: dict[str, float] = {}

    def timed(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started, cpu_started = time.perf_counter(), cpu_seconds()
            try:
                return func(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - started
                cpu[label] += cpu_seconds() - cpu_started
                peak[label] = peak_rss_mib()
        return wrapper

    for owner, attribute, label in PHASES:
        setattr(owner, attribute, timed(label, getattr(owner, attribute)))
    return spent, cpu, peak


# --- the stages, each run in a child process ------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User plus system time of every thread so far: on a shared machine the wall clock
    also counts other people's work, this does not."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def settings_for(vendor: str) -> PrepareSettings:
    """What the campaign operator would pass for ``vendor`` (FMS sends the variables)."""
    template_variables = ContentTemplate.parse(CONTENT).variables if vendor == "emay_fms" else None
    return PrepareSettings(campaign_id=CAMPAIGN, vendor=vendor, content=CONTENT,
                           max_content_chars=MAX_CONTENT_CHARS,
                           template_variables=template_variables)


def stage_generate(tmp: Path, rows: int, sample: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    table = recipients_table(rows, seed)
    write = pacsv.WriteOptions(quoting_style="needed")
    pacsv.write_csv(table, tmp / "recipients.csv", write)
    pacsv.write_csv(table.slice(0, sample), tmp / "sample.csv", write)
    suppression = suppression_table(table, seed)
    for name in ("full", "sample-vectorised", "sample-baseline"):
        DataRoot(tmp / name).write_table(suppression, "suppression", "part-00000.parquet")
    return {"seconds": time.perf_counter() - started,
            "bytes": (tmp / "recipients.csv").stat().st_size, "suppressed": len(suppression)}


def warm_up(vendor: str) -> None:
    """Imports and caches settled on a tiny file, so the peak measured is the work's."""
    with tempfile.TemporaryDirectory(prefix="prepare-warm-") as tmp:
        path = Path(tmp) / "warm.csv"
        path.write_text("name,mobile,city,code\n王伟,13800138000,北京,123456\n", "utf-8")
        prepare(DataRoot(Path(tmp) / "root"), str(path), settings_for(vendor))


def stage_vectorised(tmp: Path, vendor: str, phases: bool) -> dict[str, Any]:
    warm_up(vendor)
    spent, cpu_spent, peak = install_phase_timers() if phases else ({}, {}, {})
    before = peak_rss_mib()
    cpu = cpu_seconds()
    started = time.perf_counter()
    summary = prepare(DataRoot(tmp / "full"), str(tmp / "recipients.csv"), settings_for(vendor))
    total = time.perf_counter() - started
    return {"rows": summary.input_rows, "total_s": total, "cpu_s": cpu_seconds() - cpu,
            "load": os.getloadavg()[0], "peak_rss_mib": peak_rss_mib(),
            "rss_before_mib": before, "summary": summary.as_dict(),
            "phases": [(label, spent.get(label, 0.0), cpu_spent.get(label, 0.0), peak.get(label))
                       for _, _, label in PHASES]}


def stage_baseline(tmp: Path, vendor: str) -> dict[str, Any]:
    warm_up(vendor)
    settings = settings_for(vendor)
    before = peak_rss_mib()
    cpu = cpu_seconds()
    started = time.perf_counter()
    summary, spent = baseline_prepare(DataRoot(tmp / "sample-baseline"), tmp / "sample.csv",
                                      settings)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    peak = peak_rss_mib()
    # the vectorised path on the very same rows, for the comparison (its peak is not reported)
    started = time.perf_counter()
    mine = prepare(DataRoot(tmp / "sample-vectorised"), str(tmp / "sample.csv"), settings)
    vectorised_s = time.perf_counter() - started
    agreement = compare(DataRoot(tmp / "sample-vectorised"), DataRoot(tmp / "sample-baseline"),
                        summary["input_rows"])
    return {"sample": summary["input_rows"], "sample_s": elapsed, "cpu_s": cpu, "phases": spent,
            "peak_rss_mib": peak, "rss_before_mib": before, "summary": summary,
            "vectorised_sample_s": vectorised_s, "vectorised_reasons": mine.reasons,
            **agreement}


# --- driver ----------------------------------------------------------------------------------


def run_stage(*args: str) -> dict[str, Any]:
    return stages.run_stage(__file__, *args)


def reasons_line(reasons: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in Counter(reasons).most_common())


def report_phases(run: dict[str, Any]) -> Iterator[str]:
    total, total_cpu = run["total_s"], run["cpu_s"]
    top = top_cpu = 0.0
    yield f"  {'step':<44} {'wall':>7}   share {'CPU':>7}   memory"
    for label, seconds, cpu, peak in run["phases"]:
        if not label.startswith(" "):
            top += seconds
            top_cpu += cpu
        memory = f"peak RSS after {peak:,.0f} MiB" if peak is not None else "not called"
        yield (f"  {label:<44} {seconds:7.2f} s {100 * seconds / total:4.0f} % "
               f"{cpu:7.2f} s   {memory}")
    other = total - top
    yield (f"  {'the rest (masks, reasons, filters inline)':<44} {other:7.2f} s "
           f"{100 * other / total:4.0f} % {total_cpu - top_cpu:7.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vendor", choices=VENDORS, default="chuanglan",
                        help="decides the number format and whether foreign numbers go")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the vectorised stage this many times, report the fastest "
                             "(the machine may be shared)")
    parser.add_argument("--phases", action="store_true",
                        help="one more vectorised run, timing each step of prepare()")
    parser.add_argument("--stage", choices=["generate", "vectorised", "baseline"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sample = min(args.baseline_rows, args.rows)
    if args.stage == "generate":
        print(json.dumps(stage_generate(args.tmp, args.rows, sample, args.seed)))
        return 0
    if args.stage == "vectorised":
        print(json.dumps(stage_vectorised(args.tmp, args.vendor, args.phases)))
        return 0
    if args.stage == "baseline":
        print(json.dumps(stage_baseline(args.tmp, args.vendor)))
        return 0

    common = ["--tmp", "", "--vendor", args.vendor]
    with tempfile.TemporaryDirectory(prefix="prepare-bench-") as tmp:
        common[1] = tmp
        made = run_stage("--stage", "generate", *common, "--rows", str(args.rows),
                         "--baseline-rows", str(sample), "--seed", str(args.seed))
        print(f"input:      {args.rows:,} rows, {made['bytes'] / 2**20:,.0f} MiB CSV, written "
              f"in {made['seconds']:.1f} s; suppression list of {made['suppressed']:,} numbers")
        # The 400 MiB just written would otherwise reach the disk during the first timed run.
        os.sync()
        load = os.getloadavg()[0]
        runs = [run_stage("--stage", "vectorised", *common) for _ in range(max(1, args.repeat))]
        fast = min(runs, key=lambda run: run["total_s"])
        profiled = run_stage("--stage", "vectorised", *common, "--phases") if args.phases \
            else None
        slow = run_stage("--stage", "baseline", *common)

    rows = fast["rows"]
    summary = fast["summary"]
    print(f"machine:    {len(os.sched_getaffinity(0))} CPUs, 1-minute load average {load:.2f} "
          f"before the vectorised runs, {fast['load']:.2f} after the one reported"
          + (f" (fastest of {len(runs)}: " + ", ".join(f"{run['total_s']:.1f} s" for run in runs)
             + ")" if len(runs) > 1 else ""))
    print(f"vectorised: prepare() on {rows:,} rows in {fast['total_s']:.2f} s -> "
          f"{rows / fast['total_s']:,.0f} rows/s (aim: 1,000,000), CPU {fast['cpu_s']:.1f} s "
          f"(user+sys, all threads), peak RSS {fast['peak_rss_mib']:,.0f} MiB "
          f"({fast['rss_before_mib']:,.0f} MiB of it interpreter and libraries)")
    print(f"            {summary['prepared']:,} prepared in {len(summary['shards'])} shards, "
          f"{summary['rejected']:,} rejected, {summary['estimated_items']:,} charge items")
    print(f"            rejected: {reasons_line(summary['reasons'])}")
    rate = slow["sample"] / slow["sample_s"]
    extrapolated = slow["sample_s"] * rows / max(slow["sample"], 1)
    print(f"baseline:   per row, on the first {slow['sample']:,} rows: {slow['sample_s']:.1f} s -> "
          f"{rate:,.0f} rows/s (CPU {slow['cpu_s']:.1f} s); extrapolated linearly to {rows:,} "
          f"rows: {extrapolated:,.0f} s; "
          f"peak RSS {slow['peak_rss_mib']:,.0f} MiB on the sample "
          f"({slow['rss_before_mib']:,.0f} MiB before; it grows with the rows)")
    print("            " + ", ".join(f"{name} {seconds:.1f} s"
                                      for name, seconds in slow["phases"].items()))
    print(f"speed-up:   {extrapolated / fast['total_s']:,.0f}x (vectorised on the same sample: "
          f"{slow['vectorised_sample_s']:.2f} s)")
    print(f"agreement on the sample: {slow['mismatches']} rows differ in prepared-or-rejected or "
          f"e164; other fields differing: {slow['field_differences'] or 'none'}; rows accounted "
          f"for: {slow['accounted']}")
    print(f"            baseline rejected:   {reasons_line(slow['summary']['reasons'])}")
    print(f"            vectorised rejected: {reasons_line(slow['vectorised_reasons'])}")
    for example in slow["examples"]:
        print(f"  {example}")
    if profiled is not None:
        print(f"phases of prepare() (a separate run: {profiled['total_s']:.2f} s, CPU "
              f"{profiled['cpu_s']:.1f} s, peak RSS {profiled['peak_rss_mib']:,.0f} MiB, load "
              f"{profiled['load']:.2f} after):")
        for line in report_phases(profiled):
            print(line)
    return 1 if slow["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
