"""The Review and Datasets pages in headless Chromium over a Streamlit server on 127.0.0.1:
a rater labels five items, finds them in the warehouse and in the Correlation page's
judge-vs-human counts; the Datasets page draws its charts.

Skipped without /usr/bin/chromium unless EVALLIB_REQUIRE_BROWSER=1. With EVALLIB_SCREENSHOT
set (`make screenshot`), the Review page's screenshots go beside it: review.png (a label
just given) and review-calibration.png.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.test_browser import (  # noqa: F401 - fixtures
    _assert_no_exception,
    _full_page_screenshot,
    _load,
    _serve,
    browser_page,
    chromium_path,
)

pytestmark = pytest.mark.browser
RATER = "browser.rater"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


@pytest.fixture(scope="module")
def writable(demo_root: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the demo: the Review page writes labels into it."""
    root = str(tmp_path_factory.mktemp("review") / "warehouse")
    shutil.copytree(demo_root, root)
    return root


@pytest.fixture(scope="module")
def review_server(writable: str, chromium_path: str,  # noqa: F811
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serve(writable, tmp_path_factory.mktemp("streamlit-review")) as url:
        yield url


def _judge_counts(page) -> dict[str, int]:  # noqa: ANN001
    """The Correlation page's judge-vs-human labels per month, read from its chart."""
    _load(page, page.url)
    chart = page.locator(".st-key-agreement_chart .js-plotly-plot")
    chart.wait_for()
    data = chart.evaluate("el => el.data.map(t => ({name: t.name, x: t.x, c: t.customdata}))")
    trace = next(t for t in data if t["name"].startswith("correctness"))
    return {month: int(c[0]) for month, c in zip(trace["x"], trace["c"], strict=True)}


def _screenshot_path(name: str) -> str | None:
    out = os.environ.get("EVALLIB_SCREENSHOT")
    return str(Path(out).with_name(name)) if out else None


def test_a_rater_labels_five_items_and_finds_them_everywhere(
        review_server: str, writable: str, browser_page) -> None:  # noqa: F811
    page = browser_page
    scores = pl.read_parquet(f"{writable}/online_scores/*/*.parquet", hive_partitioning=True)
    newest = f"{scores['date'].max():%Y-%m}"  # the page opens on the last complete month
    correlation = f"{review_server}/correlation?month={newest}"
    page.goto(correlation)
    before = _judge_counts(page)
    _load(page, f"{review_server}/review?rater={RATER}&n=5&metric=correctness&source=Online")
    page.get_by_text("0 of 5").first.wait_for()
    _assert_no_exception(page)
    assert f"rater={RATER}" in page.url  # the name is kept in the URL
    for k in range(5):
        page.wait_for_selector(IDLE)
        if k == 1:  # the keyboard: 0 = Fail
            page.locator("h1").first.click()
            page.keyboard.press("0")
        else:
            page.get_by_role("button", name="Pass · 1" if k % 2 == 0 else "Fail · 0").click()
        page.get_by_text(f"{k + 1} of 5").first.wait_for()
        if k == 0 and (shot := _screenshot_path("review.png")):
            page.wait_for_selector(IDLE)
            page.mouse.move(0, 0)
            _full_page_screenshot(page, shot)
    page.get_by_text("Queue done").first.wait_for()
    _assert_no_exception(page)
    labels = pl.read_parquet(f"{writable}/human_labels/*.parquet") \
        .filter(pl.col("labeler") == RATER)
    assert labels.height == 5 and set(labels["metric"]) == {"correctness"}
    assert labels.sort("labeled_at")["value"].to_list() == [1.0, 0.0, 1.0, 0.0, 1.0]
    months = Counter(scores.filter(pl.col("metric") == "correctness")
                     .join(labels, on="trace_id")["date"].dt.strftime("%Y-%m").to_list())
    assert sum(months.values()) == 5
    # the Correlation page shows them once its cached snapshot is refreshed
    page.goto(correlation)
    for _ in range(5):  # a click the server has not handled yet is lost on reload: again
        page.wait_for_selector(IDLE)
        page.get_by_role("button", name="Refresh data").click()
        page.wait_for_timeout(500)
        page.wait_for_selector(IDLE)
        after = _judge_counts(page)
        if after != before:
            break
    assert {m: after[m] - before.get(m, 0) for m in after if after[m] != before.get(m, 0)} \
        == dict(months)
    _assert_no_exception(page)


def test_the_calibration_tab_flags_the_drift_judge(review_server: str,
                                                   browser_page) -> None:  # noqa: F811
    page = browser_page
    _load(page, f"{review_server}/review?rater={RATER}&metric=correctness&source=Online")
    page.get_by_role("tab", name="Agreement and calibration").click()
    page.locator(".st-key-calibration_chart .js-plotly-plot").wait_for()
    names = page.locator(".st-key-calibration_chart .js-plotly-plot").evaluate(
        "el => el.data.map(t => [t.name, t.y])")
    by_status = {name: ys for name, ys in names}
    assert any("nano" in v for v in by_status["below 0.8"])
    assert by_status["calibrated"] and not any("nano" in v for v in by_status["calibrated"])
    _assert_no_exception(page)
    if shot := _screenshot_path("review-calibration.png"):
        _full_page_screenshot(page, shot)


def test_the_datasets_page_draws_versions_growth_and_mix(review_server: str,
                                                         browser_page) -> None:  # noqa: F811
    page = browser_page
    _load(page, f"{review_server}/datasets")
    for key in ("versions_chart", "growth_chart", "mix_chart"):
        page.locator(f".st-key-{key} .js-plotly-plot").wait_for()
    _assert_no_exception(page)
    assert page.get_by_text("What changed between two versions").count() == 1
