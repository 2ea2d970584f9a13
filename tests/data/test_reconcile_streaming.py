"""Reconciling in bounded memory writes what the whole-campaign-in-memory code wrote.

The reference is that code as it was (``tests/reconcile_reference.py`` takes
it from the repository's history); both run in child processes on copies of
the same inputs, the new one in slices far smaller than the campaign so that
every slice boundary is crossed, and every output file and ``report.html``
must be identical. ``bench/reconcile.py --compare-rows`` does the same on a
million rows.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sms_provider.data.storage import DataRoot
from tests import reconcile_reference as reference
from tests.data.test_reconcile import NOW, mixed_campaign, seed_eums_account

BENCH = reference.REPO / "bench" / "reconcile.py"
NEW = reference.REPO / "plugins"


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = reference.reference_tree(tmp_path_factory.mktemp("reference"))
    if tree is None:
        pytest.skip(f"no git history with {reference.REFERENCE_COMMIT} in this checkout")
    return tree


def same_outputs(old_tree: Path, inputs: Path, campaign_id: str, slice_rows: int) -> dict:
    old = reference.copy_root(inputs, inputs.parent / "old")
    new = reference.copy_root(inputs, inputs.parent / "new")
    reference.run(old_tree, old, campaign_id, NOW.isoformat())
    reference.run(NEW, new, campaign_id, NOW.isoformat(), slice_rows)
    return reference.compare(old, new, campaign_id)


@pytest.mark.parametrize("vendor", ["emay_ims", "eums", "chuanglan"])
def test_generated_campaign_same_outputs(old_tree: Path, tmp_path: Path, vendor: str) -> None:
    """The benchmark's campaign (copies, PENDING before final, flips, strays, ambiguous
    settled by custom id or number) at 30 000 rows, in slices of 7 000."""
    inputs = tmp_path / "inputs"
    subprocess.run([sys.executable, str(BENCH), "--stage", "generate", "--tmp", str(inputs),
                    "--rows", "30000", "--vendor", vendor], check=True, capture_output=True)
    found = same_outputs(old_tree, inputs, "bench", 7_000)
    assert found["differences"] == []
    assert found["rows"] > 30_000  # the per-recipient rows were compared, not just counts


@pytest.mark.parametrize("build, campaign_id", [
    (mixed_campaign, "c1"),  # text message ids, unsent rows, three shards, shuffled reports
    (lambda root: seed_eums_account(root, clean=False), "a"),  # statistics and balance
])
def test_hand_built_campaigns_same_outputs(old_tree: Path, tmp_path: Path,
                                           build: Callable[[DataRoot], None],
                                           campaign_id: str) -> None:
    inputs = tmp_path / "inputs"
    build(DataRoot(inputs))
    found = same_outputs(old_tree, inputs, campaign_id, 3)
    assert found["differences"] == []
