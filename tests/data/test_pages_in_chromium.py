"""The index page and a campaign report, opened in headless Chromium as a person would:
they load without console errors or outside requests and show their charts.

Screenshots go to ``$SMS_SCREENSHOTS`` (default a temporary folder), never into the
repository. Without Chromium the tests are skipped with how to install it; ``make test``
installs it first (Debian's ``chromium`` package, as root).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sms_provider.data.prices import PriceBook
from sms_provider.data.reconcile import reconcile_all
from sms_provider.data.storage import DataRoot
from tests.browser_harness import Browser, chromium_path
from tests.data.test_across_campaigns import PRICES
from tests.data.test_across_campaigns import root as campaigns_root  # noqa: F401
from tests.data.test_reconcile import NOW

pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="no Chromium: apt-get install -y chromium (make test does it as root), "
           "or point SMS_CHROMIUM at one")


@pytest.fixture(scope="module")
def browser() -> Browser:
    with Browser(chromium_path() or "") as b:
        yield b


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SMS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_harness_sees_errors(browser: Browser, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="missing.png"><script>console.error("bad");'
                    'throw new Error("boom")</script><svg width="10" height="10"></svg>'
                    '</body></html>')
    visit = browser.visit(page.as_uri())
    assert any("boom" in e for e in visit.errors) and any("bad" in e for e in visit.errors)
    assert visit.failed_requests  # the missing image


def test_index_and_report_load_cleanly_and_show_their_charts(
        browser: Browser, campaigns_root: DataRoot, shots: Path) -> None:  # noqa: F811
    reconcile_all(campaigns_root, now=NOW, prices=PriceBook.constant(PRICES))
    index = Path(campaigns_root.path("campaigns", "index.html"))
    visit = browser.visit(index.as_uri(), shots / "index.png")
    assert visit.errors == [] and visit.outside_requests == [] and visit.failed_requests == []
    charts = visit.shown["charts"]
    assert [c["label"] for c in charts] == ["spend (CNY)", "delivered / sent"]
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 150 and chart["marks"] > 5
    assert visit.shown["width"] <= 1280  # nothing wider than the window
    assert "feb-eums/report.html" in visit.shown["links"]

    report = index.parent / "feb-eums" / "report.html"
    visit = browser.visit(report.as_uri(), shots / "report.png")
    assert visit.errors == [] and visit.outside_requests == [] and visit.failed_requests == []
    assert {"Money", "Carriers", "Funnel", "Failure reasons"} <= set(visit.shown["headings"])
    assert len(visit.shown["charts"]) >= 4
    assert all(c["width"] > 0 and c["height"] > 0 for c in visit.shown["charts"])
    assert visit.shown["width"] <= 1280
    assert visit.screenshot is not None and visit.screenshot.stat().st_size > 10_000
