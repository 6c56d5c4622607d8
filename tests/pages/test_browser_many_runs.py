"""The Runs × slices page in a real browser: a Streamlit server on 127.0.0.1 and headless
Chromium (skipped without /usr/bin/chromium unless EVALLIB_REQUIRE_BROWSER=1; never
downloads a browser). EVALLIB_SCREENSHOT_MANY_RUNS=PATH keeps a full-page screenshot."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.pages.test_browser import (  # noqa: F401 - fixtures
    _assert_no_exception,
    _full_page_screenshot,
    _load,
    browser_page,
    chromium_path,
    server,
)

pytestmark = pytest.mark.browser

BILLING_HARD = "query_type=billing × difficulty=hard"


def _settled(page) -> None:  # playwright Page
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def _heat_rows(page) -> list[str]:
    """The heatmap's y labels, top to bottom."""
    return page.evaluate("""() => [...document.querySelectorAll(
        '[data-testid="stPlotlyChart"] .ytick text')]
        .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
        .map(e => e.textContent)""")


def _worse_cells(page) -> list[tuple[str, int]]:
    """(row label, column index) of the heatmap cells whose text says "worse", matched by
    their drawn position to the axis labels."""
    return [tuple(x) for x in page.evaluate("""() => {
        const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
        const mid = e => { const b = e.getBoundingClientRect();
                           return [b.left + b.width / 2, b.top + b.height / 2]; };
        const rows = [...plot.querySelectorAll('.ytick text')].map(e => [e.textContent, mid(e)[1]]);
        const cols = [...plot.querySelectorAll('.xtick text')].map(e => mid(e)[0])
          .sort((a, b) => a - b);
        const near = (xs, v) => xs.reduce(
          (b, x, i) => Math.abs(x - v) < Math.abs(xs[b] - v) ? i : b, 0);
        return [...plot.querySelectorAll('.heatmaplayer text')]
          .filter(e => e.textContent.includes('worse'))
          .map(e => { const [x, y] = mid(e);
                      return [rows[near(rows.map(r => r[1]), y)][0], near(cols, x)]; });
    }""")]


def test_the_view_opens_on_the_release_history_and_keeps_it_in_the_url(
        server: str, browser_page, tmp_path: Path) -> None:  # noqa: F811
    page = browser_page
    _load(page, f"{server}/many_runs?metric=faithfulness")
    page.locator('[data-testid="stPlotlyChart"] .heatmaplayer').first.wait_for()
    _assert_no_exception(page)
    page.wait_for_function("location.search.includes('reference=')")
    query = parse_qs(urlparse(page.url).query)
    assert 2 <= len(query["runs"]) <= 6 and query["reference"][0] in query["runs"]
    verdict = page.locator('[data-testid="stAlert"]').first.inner_text()
    assert "Worse than" in verdict and f"candidate in {BILLING_HARD}" in verdict
    rows = _heat_rows(page)
    assert rows[0] == "all cases" and BILLING_HARD in rows
    # In the slice rows, the only cell that says "worse" is the candidate's billing × hard
    # (the newest, rightmost column); the all-cases row may show older releases' levels.
    worse = _worse_cells(page)
    assert [(row, col) for row, col in worse if row != "all cases"] == [
        (BILLING_HARD, len(query["runs"]) - 1)]
    assert "One Benjamini–Hochberg family for this view" in page.get_by_text(
        re.compile("One Benjamini–Hochberg family")).first.inner_text()
    out = os.environ.get("EVALLIB_SCREENSHOT_MANY_RUNS") or str(tmp_path / "many_runs.png")
    _full_page_screenshot(page, out)
    assert Path(out).stat().st_size > 10_000

    # The link alone reproduces the view: a fresh tab on page.url shows the same runs.
    url = page.url
    _load(page, url)
    page.locator('[data-testid="stPlotlyChart"] .heatmaplayer').first.wait_for()
    assert parse_qs(urlparse(page.url).query)["runs"] == query["runs"]
    assert _heat_rows(page) == rows


def test_change_the_reference_read_the_table_download_the_flaky_cases(
        server: str, browser_page) -> None:  # noqa: F811
    page = browser_page
    _load(page, f"{server}/many_runs?by=query_type")
    page.locator('[data-testid="stPlotlyChart"] .heatmaplayer').first.wait_for()
    before = parse_qs(urlparse(page.url).query)
    picker = page.get_by_role("combobox", name="Reference", exact=True)
    picker.click()
    page.get_by_role("option").first.click()  # the oldest run
    page.wait_for_function(
        f"!location.search.includes('reference={before['reference'][0]}')")
    _settled(page)
    after = parse_qs(urlparse(page.url).query)
    assert after["reference"][0] == before["runs"][0] and after["runs"] == before["runs"]
    page.locator('[data-testid="stPlotlyChart"] .xtick text', has_text="(reference)") \
        .first.wait_for()
    assert _heat_rows(page) == ["all cases", *sorted(
        f"query_type={v}" for v in ("account", "billing", "policy", "product", "technical"))]
    page.get_by_role("tab", name="Table").click()
    page.locator('[data-testid="stDataFrame"]').first.wait_for(state="visible")
    _assert_no_exception(page)

    button = page.get_by_role("button", name=re.compile(r"These \d+ cases \(CSV\)"))
    shown = int(re.search(r"These (\d+) cases", button.inner_text()).group(1))
    with page.expect_download() as download:
        button.click()
    data = Path(download.value.path()).read_bytes()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert len(rows) == shown > 0
    assert list(rows[0])[:4] == ["Case", "Passes", "Pass share (%)", "Flips"]
    shares = [float(r["Pass share (%)"]) for r in rows]
    assert shares == sorted(shares) and 0 < shares[0] < 100
    _assert_no_exception(page)
