"""How fast recipient numbers are prepared: read a messy CSV, check every number.

Writes --rows rows (default 10 million) of realistic spreadsheet-damaged input
to a CSV in a temporary directory, then measures, each in its own process so
that peak memory (ru_maxrss) belongs to one path only (the input is written by
a process of its own too: Linux carries a parent's peak over into children):

* vectorised -- ``read_recipients`` + ``check_numbers`` over every row;
* baseline   -- ``check_number_baseline`` (one ``phonenumbers.parse`` a row)
  over a random subsample (--baseline-rows, default 200 000) streamed from the
  file, extrapolated to all rows; the same subsample also goes through
  ``check_numbers`` and every differing verdict is counted (there must be none).

Usage:

    python bench/prepare_numbers.py [--rows 10000000] [--baseline-rows 200000] [--seed 0]
                                    [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins")]
import stages  # noqa: E402  (bench/ is the script's folder)

from sms_provider.data.numbers import check_number_baseline, check_numbers  # noqa: E402
from sms_provider.data.recipients import load_recipients  # noqa: E402

MOBILE_PREFIXES = [*range(130, 140), 145, 147, 150, 151, 152, 153, 155, 156, 157, 158, 159,
                   166, 167, *range(170, 179), *range(180, 190), *range(190, 200)]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "重庆"]
INTERNATIONAL = ["+1 212 555 {:04d}", "+1 (415) 555-{:04d}", "+44 7911 12{:04d}",
                 "+44 20 7946 {:04d}", "+852 5123 {:04d}", "+853 6612 {:04d}",
                 "+886 912 34{:04d}", "+7 912 345 {:04d}", "+81 90-1234-{:04d}",
                 "+65 8123 {:04d}", "0061 412 34{:04d}", "+49 151 2345{:04d}"]
JUNK = ["n/a", "无", "未知", "-", "TBD", "13800l38000", "手机号", "#N/A", "0", "138001380"]

#: share of rows per shape of input; the rest are clean 11-digit mobiles
SHAPES = {
    "plus86_spaced": 0.06, "plus86_dashed": 0.02, "86_prefix": 0.04, "0086_prefix": 0.03,
    "dashed": 0.04, "spaced": 0.03, "paren_plus86": 0.01, "full_width": 0.01,
    "float": 0.04, "sci_exact": 0.01, "sci_lost": 0.01, "padded": 0.03,
    "landline": 0.03, "toll_free": 0.01, "international": 0.02, "bad_length": 0.02,
    "bad_prefix": 0.01, "empty": 0.02, "junk": 0.01,
}


# --- input ---------------------------------------------------------------------------


def mobiles(rng: np.random.Generator, n: int) -> pa.Array:
    prefix = rng.choice(np.array(MOBILE_PREFIXES, dtype=np.int64), n)
    return pc.cast(pa.array(prefix * 10**8 + rng.integers(0, 10**8, n)), pa.string())


def join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def groups(m: pa.Array, sep: str) -> pa.Array:
    """138 0013 8000 with ``sep`` between the groups."""
    return join(pc.utf8_slice_codeunits(m, 0, 3), sep, pc.utf8_slice_codeunits(m, 3, 7), sep,
                pc.utf8_slice_codeunits(m, 7, 11))


def full_width(m: pa.Array) -> pa.Array:
    for digit in range(10):
        m = pc.replace_substring(m, str(digit), chr(0xFF10 + digit))
    return m


def pick(rng: np.random.Generator, choices: list[str], n: int) -> pa.Array:
    return pa.array(choices, pa.string()).take(pa.array(rng.integers(0, len(choices), n)))


def shaped(shape: str, rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` phone values of one shape."""
    m = mobiles(rng, n)
    simple = {
        "clean": m, "plus86_spaced": join("+86 ", groups(m, " ")),
        "plus86_dashed": join("+86-", groups(m, "-")), "86_prefix": join("86", m),
        "0086_prefix": join("0086", m), "dashed": groups(m, "-"), "spaced": groups(m, " "),
        "paren_plus86": join("(+86) ", m), "full_width": full_width(m), "float": join(m, ".0"),
        "sci_exact": join(pc.utf8_slice_codeunits(m, 0, 1), ".",
                          pc.utf8_slice_codeunits(m, 1, 11), "E+10"),
        "sci_lost": join(pc.utf8_slice_codeunits(m, 0, 1), ".",
                         pc.utf8_slice_codeunits(m, 1, 6), "E+10"),
        "padded": join(pick(rng, [" ", "\u3000", "\u00a0", "\t"], n), m,
                       pick(rng, [" ", "", "\u3000"], n)),
        "bad_length": pc.utf8_slice_codeunits(join(m, "7"), 0, 10 + 2 * (n % 2)),
        "bad_prefix": join("12", pc.utf8_slice_codeunits(m, 2, 11)),
        "empty": pick(rng, ["", " ", ""], n), "junk": pick(rng, JUNK, n),
    }
    if shape in simple:
        return simple[shape]
    suffix = rng.integers(0, 10**4, n)
    if shape == "landline":
        area = pick(rng, ["010-", "021 ", "0755-", "020", "(0571)", "+86 10 "], n)
        return join(area, pc.cast(pa.array(rng.integers(2 * 10**7, 9 * 10**7, n)), pa.string()))
    if shape == "toll_free":
        head = pick(rng, ["400-", "800-", "400 8", "4008-"], n)
        return join(head, pc.cast(pa.array(rng.integers(10**6, 10**7, n)), pa.string()))
    if shape == "international":
        templates = rng.integers(0, len(INTERNATIONAL), n)
        return pa.array([INTERNATIONAL[t].format(s) for t, s in zip(templates, suffix,
                                                                   strict=True)], pa.string())
    raise ValueError(shape)


def messy_mobiles(rng: np.random.Generator, rows: int) -> tuple[pa.Array, np.ndarray]:
    """Phone values in the mix of ``SHAPES``, in random order of shapes, and which of
    them are plain clean mobiles."""
    names = list(SHAPES)
    weights = np.array([SHAPES[name] for name in names] + [1 - sum(SHAPES.values())])
    names.append("clean")
    shape = rng.choice(len(names), rows, p=weights)
    order = np.argsort(shape, kind="stable")
    counts = np.bincount(shape, minlength=len(names))
    parts = [shaped(names[i], rng, int(counts[i])) for i in range(len(names)) if counts[i]]
    inverse = np.empty(rows, dtype=np.int64)
    inverse[order] = np.arange(rows)
    return pa.concat_arrays(parts).take(pa.array(inverse)), shape == len(names) - 1


def write_input(path: Path, rows: int, seed: int) -> None:
    """A recipient CSV: name, mobile, city, code -- rows in random order of shapes."""
    rng = np.random.default_rng(seed)
    mobile, _ = messy_mobiles(rng, rows)
    name = join(pick(rng, list(SURNAMES), rows), pick(rng, list(GIVEN), rows))
    table = pa.table({"name": name, "mobile": mobile, "city": pick(rng, CITIES, rows),
                      "code": pc.cast(pa.array(rng.integers(10**5, 10**6, rows)), pa.string())})
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


# --- the two stages, each run in a child process -------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_generate(path: Path, rows: int, seed: int) -> dict:
    started = time.perf_counter()
    write_input(path, rows, seed)
    return {"seconds": time.perf_counter() - started, "bytes": path.stat().st_size}


def stage_vectorised(path: Path) -> dict:
    check_numbers(pa.array(["13800138000"]))  # imports settled, so the peak below is the work's
    before = peak_rss_mib()
    started = time.perf_counter()
    table = load_recipients(path).table
    read = time.perf_counter() - started
    check = check_numbers(table.column("mobile"))
    total = time.perf_counter() - started
    reasons = pc.value_counts(check.reason.fill_null("valid")).to_pylist()
    return {"rows": table.num_rows, "read_s": read, "check_s": total - read, "total_s": total,
            "peak_rss_mib": peak_rss_mib(), "rss_before_mib": before,
            "verdicts": {item["values"]: item["counts"] for item in reasons}}


def sample_rows(path: Path, sample: int, seed: int) -> tuple[int, list[str]]:
    """A random sample of the mobile column, streamed: the file is never held whole."""
    with path.open("rb") as handle:
        rows = sum(1 for _ in handle) - 1
    picked = np.sort(np.random.default_rng(seed).choice(rows, min(sample, rows), replace=False))
    reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"mobile": pa.string()}, include_columns=["mobile"],
        strings_can_be_null=False))
    values: list[str] = []
    start = 0
    for batch in reader:
        end = start + batch.num_rows
        inside = picked[(picked >= start) & (picked < end)] - start
        values += batch.column(0).take(pa.array(inside)).to_pylist()
        start = end
    return rows, values


def stage_baseline(path: Path, sample: int, seed: int) -> dict:
    rows, values = sample_rows(path, sample, seed)
    started = time.perf_counter()
    baseline = [check_number_baseline(value) for value in values]
    elapsed = time.perf_counter() - started
    check = check_numbers(pa.array(values, pa.string()))
    vectorised = zip(check.e164.to_pylist(), check.reason.to_pylist(), strict=True)
    mismatched = [(value, mine, theirs) for value, mine, theirs
                  in zip(values, vectorised, baseline, strict=True)
                  if (mine[0], mine[1] is None) != (theirs[0], theirs[1] is None)]
    reasons_differ = sum(1 for mine, theirs in zip(check.reason.to_pylist(), baseline,
                                                   strict=True) if mine != theirs[1])
    return {"rows": rows, "sample": len(values), "sample_s": elapsed,
            "extrapolated_s": elapsed * rows / max(len(values), 1),
            "peak_rss_mib": peak_rss_mib(), "mismatches": len(mismatched),
            "reason_differences": reasons_differ, "examples": mismatched[:5]}


# --- driver ------------------------------------------------------------------------------


def run_stage(*args: str) -> dict:
    return stages.run_stage(__file__, *args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the vectorised stage this many times, report the fastest "
                             "(the machine may be shared)")
    parser.add_argument("--stage", choices=["generate", "vectorised", "baseline"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "generate":
        print(json.dumps(stage_generate(args.csv, args.rows, args.seed)))
        return 0
    if args.stage == "vectorised":
        print(json.dumps(stage_vectorised(args.csv)))
        return 0
    if args.stage == "baseline":
        print(json.dumps(stage_baseline(args.csv, args.baseline_rows, args.seed)))
        return 0

    with tempfile.TemporaryDirectory(prefix="prepare-numbers-") as tmp:
        path = Path(tmp) / "recipients.csv"
        made = run_stage("--stage", "generate", "--csv", str(path), "--rows", str(args.rows),
                         "--seed", str(args.seed))
        print(f"input: {args.rows:,} rows, {made['bytes'] / 2**20:,.0f} MiB CSV, "
              f"written in {made['seconds']:.1f} s")
        load = os.getloadavg()[0]
        runs = [run_stage("--stage", "vectorised", "--csv", str(path))
                for _ in range(max(1, args.repeat))]
        fast = min(runs, key=lambda run: run["total_s"])
        slow = run_stage("--stage", "baseline", "--csv", str(path),
                         "--baseline-rows", str(args.baseline_rows), "--seed", str(args.seed))

    rows = fast["rows"]
    print(f"machine:    {len(os.sched_getaffinity(0))} CPUs, load average {load:.2f} before the "
          f"vectorised run" + (f"; fastest of {len(runs)} runs" if len(runs) > 1 else ""))
    print(f"vectorised: read {fast['read_s']:.2f} s + check {fast['check_s']:.2f} s = "
          f"{fast['total_s']:.2f} s -> {rows / fast['total_s']:,.0f} rows/s "
          f"(check alone {rows / fast['check_s']:,.0f} rows/s), "
          f"peak RSS {fast['peak_rss_mib']:,.0f} MiB ({fast['rss_before_mib']:,.0f} MiB of "
          "it interpreter and libraries)")
    rate = slow["sample"] / slow["sample_s"]
    print(f"baseline:   {slow['sample']:,} sampled rows in {slow['sample_s']:.1f} s -> "
          f"{rate:,.0f} rows/s; extrapolated to {rows:,} rows: {slow['extrapolated_s']:,.0f} s "
          f"(reading excluded), peak RSS {slow['peak_rss_mib']:,.0f} MiB "
          f"(sample streamed from the file)")
    print(f"speed-up:   {slow['extrapolated_s'] / fast['check_s']:,.0f}x on the check alone")
    verdicts = Counter(fast["verdicts"])
    print("verdicts:   " + ", ".join(f"{k} {v:,}" for k, v in verdicts.most_common()))
    print(f"mismatched verdicts on the baseline sample: {slow['mismatches']} "
          f"(reason codes differing: {slow['reason_differences']})")
    for example in slow["examples"]:
        print(f"  {example}")
    return 1 if slow["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
