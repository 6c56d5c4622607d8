"""`evallib report --month`: the monthly review as Markdown and self-contained HTML, on the
demo (the judge-drift month flagged, the planted regression listed) and on edge cases."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from evallib import connect
from evallib.analysis.report import (
    month_bounds,
    monthly_review,
    review_trends,
    to_html,
    to_markdown,
)
from evallib.cli import main


def _months(root: str) -> tuple[str, str]:
    """(the judge-drift month, the month of the newest run) of the demo warehouse."""
    scores = pl.read_parquet(f"{root}/online_scores/*/*.parquet", hive_partitioning=True)
    drift = f"{scores.filter(pl.col('scorer_version').str.contains('nano'))['date'].min():%Y-%m}"
    runs = pl.read_parquet(f"{root}/runs/*.parquet")
    return drift, f"{runs['started_at'].max():%Y-%m}"


@pytest.fixture(scope="module")
def drift_review(demo_root: str):
    drift, _ = _months(demo_root)
    with connect(demo_root) as con:
        return monthly_review(con, drift, n_boot=300)


def test_one_computation_of_every_months_trends_serves_each_review(demo_root: str,
                                                                   drift_review) -> None:
    """A month's correlations depend on its own traffic only: the trends of every month,
    computed once (as the Correlation page caches them), give each review unchanged."""
    with connect(demo_root) as con:
        trends = review_trends(con, n_boot=300)
        assert trends.correlations["month"].n_unique() >= 2
        shared = monthly_review(con, drift_review.month, n_boot=300, trends=trends)
    for name in ("correlations", "trend", "agreement", "agreement_trend", "score_cells"):
        assert getattr(shared, name).equals(getattr(drift_review, name)), name
    assert shared.trend["month"].max() == drift_review.month


def test_month_bounds() -> None:
    assert [str(d) for d in month_bounds("2026-02")] == ["2026-02-01", "2026-02-28"]
    for bad in ("2026-13", "2026-1", "Sept", ""):
        with pytest.raises(Exception, match="YYYY-MM"):
            month_bounds(bad)


def test_the_drift_month_report_flags_the_judge(drift_review) -> None:
    md = to_markdown(drift_review)
    findings = md.split("## Findings")[1].split("\n## ")[0]
    assert re.search(r"🚩 correctness vs thumbs: pointbiserial 0\.\d\d .*below 0\.7 "
                     r"\(new this month\)", findings)
    assert "🚩 judge vs humans on correctness" in findings
    assert "🧭 score faithfulness drifted (major" in findings
    for section in ("## Offline scores vs user feedback (trace level)", "## Month by month",
                    "## Release level", "## Judge vs human labels", "## Drift", "## Alerts",
                    "## Gate failures", "## Regressions"):
        assert section in md
    # the month-by-month table has a column per month up to this one, the last flagged
    row = next(line for line in md.splitlines()
               if line.startswith("| correctness | thumbs |"))
    assert re.search(r"🚩 0\.\d\d \|$", row)


def test_html_is_self_contained_with_figures(drift_review) -> None:
    html = to_html(drift_review)
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?(https?:)?//", html)
    assert html.count("Plotly.newPlot") >= 4  # binned, trend, release, agreement, drift
    assert html.count("plotly.js v") <= 2  # the library inlined once
    assert "🚩 correctness vs thumbs" in html


def test_the_newest_month_lists_the_planted_regression(demo_root: str) -> None:
    _, newest = _months(demo_root)
    with connect(demo_root) as con:
        review = monthly_review(con, newest, n_boot=100)
    regressions = [r for r in review.regressions
                   if r["slice"] == "query_type=billing × difficulty=hard"]
    assert regressions and regressions[0]["run"].endswith("-candidate")
    assert all(r["after"] < r["before"] and r["p_adjusted"] < 0.05 for r in regressions)
    assert "query_type=billing × difficulty=hard" in to_markdown(review)


def test_report_cli_writes_markdown_and_html(demo_root: str, tmp_path: Path, capsys) -> None:
    drift, _ = _months(demo_root)
    md, html = tmp_path / "review.md", tmp_path / "review.html"
    assert main(["report", "--warehouse", demo_root, "--month", drift, "--out", str(md)]) == 0
    assert md.read_text().startswith(f"# Monthly review {drift}")
    assert main(["report", "--warehouse", demo_root, "--month", drift, "--out",
                 str(html)]) == 0
    assert html.read_text().startswith("<!doctype html>")
    assert main(["report", "--warehouse", demo_root, "--month", "2026-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
    assert main(["report", "--warehouse", demo_root, "--month", drift, "--out",
                 str(tmp_path / "missing" / "r.md")]) == 2


def test_a_month_without_traffic_and_an_empty_warehouse(demo_root: str, empty_root: str,
                                                        capsys) -> None:
    assert main(["report", "--warehouse", demo_root, "--month", "2001-01"]) == 0
    out = capsys.readouterr().out
    assert "No production traffic in this month" in out and "- Nothing flagged." in out
    assert main(["report", "--warehouse", empty_root, "--month", "2026-01"]) == 0
    assert "# Monthly review 2026-01" in capsys.readouterr().out
