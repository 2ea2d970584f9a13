"""The reference for reconciling in bounded memory: the whole-campaign-in-memory code as it
was before the outputs were streamed, and a comparison of two runs' outputs.

The reference is not kept as a second copy of the package: it is the
``plugins/`` tree of ``REFERENCE_COMMIT``, taken out of the repository's own
history with ``git archive`` into a temporary folder. A run of either tree is
a child process (``python tests/reconcile_reference.py run ...``) with that
tree first on its path, so the two never share a module and each one's peak
memory is its own.

``compare`` reads every output both runs wrote (each Parquet file of
``reconciliation/``, ``reconciliation_summary/``, ``discrepancies/``,
``overview/``, ``carriers/`` and the cross-campaign dataset, and
``report.html``) and lists every difference; identical outputs give none.
Used by ``tests/data/test_reconcile_streaming.py`` and ``bench/reconcile.py``.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: the last commit whose reconcile held whole campaigns in memory
REFERENCE_COMMIT = "3196bb48d6cff0a3485487748d6c75aeac967c32"
#: what a run writes (per campaign, and the cross-campaign dataset at the root)
OUTPUTS = ("reconciliation", "reconciliation_summary", "discrepancies", "overview", "carriers")


def reference_tree(into: Path) -> Path | None:
    """``plugins/`` of ``REFERENCE_COMMIT`` under ``into`` (None: no git history here)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", REFERENCE_COMMIT, "plugins"],
            capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "plugins"


def run(plugins: Path, root: Path, campaign_id: str, now: str,
        slice_rows: int | None = None) -> dict[str, Any]:
    """``reconcile_campaign`` of the tree ``plugins`` on ``root``, in a child process: its
    seconds, peak RSS (MiB, the child's own ru_maxrss) and counts."""
    args = [sys.executable, __file__, "run", str(plugins), str(root), campaign_id, now]
    if slice_rows:
        args.append(str(slice_rows))
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"reconcile under {plugins} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def copy_root(source: Path, target: Path) -> Path:
    """The inputs of a data root, copied, so that two runs write into folders of their own."""
    shutil.copytree(source, target)
    return target


def _tables(root: Path, campaign_id: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    found: dict[str, Any] = {}
    folders = [root / "campaigns" / campaign_id / name for name in OUTPUTS]
    for folder in [*folders, root / "reconciliation"]:
        for path in sorted(folder.rglob("*.parquet")):
            if not path.name.startswith(("_", ".")):
                found[str(path.relative_to(root))] = pq.read_table(path)
    return found


def compare(old: Path, new: Path, campaign_id: str) -> dict[str, Any]:
    """Every difference between two runs' outputs; ``differences`` empty: identical."""
    left, right = _tables(old, campaign_id), _tables(new, campaign_id)
    differences = [f"{name}: only in the {'reference' if name in left else 'new'} run"
                   for name in sorted(set(left) ^ set(right))]
    rows = 0
    for name in sorted(set(left) & set(right)):
        a, b = left[name], right[name]
        rows += a.num_rows
        if a.schema != b.schema:
            differences.append(f"{name}: schema {a.schema} vs {b.schema}")
        elif not a.equals(b):
            differing = [c for c in a.column_names if a.num_rows != b.num_rows
                         or not a[c].equals(b[c])]
            differences.append(f"{name}: {a.num_rows} vs {b.num_rows} rows, differing in "
                               f"{differing}")
    page = Path("campaigns", campaign_id, "report.html")
    if (old / page).read_bytes() != (new / page).read_bytes():
        differences.append(f"{page}: differs")
    return {"files": len(set(left) & set(right)) + 1, "rows": rows,
            "differences": differences}


def _child(plugins: str, root: str, campaign_id: str, now: str, *rest: str) -> None:
    sys.path.insert(0, plugins)
    from datetime import datetime

    from sms_provider.data.reconcile import reconcile_campaign
    from sms_provider.data.storage import DataRoot

    options = {"slice_rows": int(rest[0])} if rest else {}
    started = time.perf_counter()
    result = reconcile_campaign(DataRoot(root), campaign_id, now=datetime.fromisoformat(now),
                                **options)
    seconds = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "cpu_s": used.ru_utime + used.ru_stime,
                      "peak_rss_mib": used.ru_maxrss / 1024, "counts": result.counts,
                      "discrepancies": result.discrepancies}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        _child(*sys.argv[2:])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(reference_tree(Path(tmp)))
