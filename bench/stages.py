"""Running one stage of a benchmark in a child process, so each measures a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any


def run_stage(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with ``args``; its last line of output is the stage's JSON result."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(f"stage {args[:2]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_speed() -> float:
    """Seconds this machine takes for a fixed pure-Python loop (ten million additions).

    A shared machine's speed drifts by a factor of two and more from one hour
    to the next; printed beside a benchmark's figures, it says which machine
    they came from. Fastest of three, so a passing stall does not count.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best
