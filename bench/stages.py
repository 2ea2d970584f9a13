"""Running one stage of a benchmark in a child process, so each measures a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_stage(script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` with ``args``; its last line of output is the stage's JSON result."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(f"stage {args[:2]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
