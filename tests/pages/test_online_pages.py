"""The Online and Correlation pages in a real Streamlit runtime (AppTest): the demo, an
empty warehouse and an offline-only one. Expected numbers come from the raw Parquet."""

from __future__ import annotations

import json
from functools import partial

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_app

ONLINE, CORRELATION = "pages/online.py", "pages/correlation.py"


_open = partial(open_app, timeout=180)


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _table(at: AppTest, column: str):  # a pandas frame
    """The first dataframe shown with this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _series(fig: dict) -> list[str]:
    return [t.get("name") for t in fig["data"] if (t.get("meta") or {}).get("role") == "series"]


def _text(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("title", "info", "markdown", "caption",
                                                 "warning", "error", "success")
                     for e in getattr(at, kind))


def _drift_month(root: str) -> str:
    scores = pl.read_parquet(f"{root}/online_scores/*/*.parquet", hive_partitioning=True)
    return f"{scores.filter(pl.col('scorer_version').str.contains('nano'))['date'].min():%Y-%m}"


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


def test_online_page_draws_health_canary_drift_and_alerts(demo_app: str) -> None:
    at = _open(ONLINE)
    assert at.title[0].value == "Online"
    figs = _figures(at)
    # health (quality+volume, latency, cost, rates, feedback), canary (2), drift (2)
    assert len(figs) == 9
    traces = pl.read_parquet(f"{demo_app}/online_traces/*/*.parquet", hive_partitioning=True)
    volume = next(t for t in figs[0]["data"] if (t.get("meta") or {}).get("role") == "count")
    assert sum(volume["y"]) == traces.height  # every sampled trace counted once
    assert _series(figs[1]) == ["p50", "p95", "p99"]
    assert len(at.dataframe) >= 4
    assert "No signal is significantly worse" in _text(at) or "is worse than" in _text(at)


def test_online_split_by_release_and_hourly_view(demo_app: str) -> None:
    releases = sorted(pl.read_parquet(f"{demo_app}/online_traces/*/*.parquet",
                                      hive_partitioning=True)["release"].unique().to_list())
    at = _open(ONLINE, split="release")
    latency = _figures(at)[1]
    names = _series(latency)
    assert {f"{r} p95" for r in releases} <= set(names)
    hourly = _open(ONLINE, grain="Hourly (last 48 h)")
    quality = _figures(hourly)[0]
    xs = next(t for t in quality["data"] if (t.get("meta") or {}).get("role") == "count")["x"]
    assert 24 < len(xs) <= 48  # one bar per hour of the last two days


def test_the_demo_canary_is_worse_on_the_online_page(demo_app: str) -> None:
    at = _open(ONLINE, view="Canary")
    assert any("canary is worse than control" in e.value for e in at.error)
    table = _table(at, "verdict")
    worse = set(table.loc[table["verdict"] == "worse", "signal"])
    assert {"latency p95", "cost"} <= worse


def test_correlation_page_flags_the_drift_month(demo_app: str) -> None:
    month = _drift_month(demo_app)
    at = _open(CORRELATION, month=month)
    assert at.title[0].value == "Correlation"
    assert at.selectbox(key="month").value == month
    # the verdict: the judge's pairs fell below 0.7 this month
    verdict = at.error[0].value
    assert verdict.startswith(f"{month}: **Fell below 0.7 this month**")
    assert "correctness vs thumbs" in verdict and "answer relevance" not in verdict
    cards = {m.label: m.value for m in at.metric}
    assert float(cards["correctness vs thumbs · :material/flag: below 0.7"]) < 0.7
    table = _table(at, "previous month")
    flagged = set(zip(*(table.loc[table["status"] == "below 0.7", c]
                        for c in ("metric", "feedback")), strict=True))
    # only the judge's scores (answer relevance is an embedding score: it holds)
    assert ("correctness", "thumbs") in flagged
    assert flagged <= {(m, f) for m in ("correctness", "faithfulness")
                       for f in ("thumbs", "rating")}
    assert len(at.get("plotly_chart")) == 4  # trend, binned, release, agreement
    trend = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "correctness vs thumbs" in _series(trend)


def test_correlation_page_other_month_and_controls(demo_app: str) -> None:
    month = _drift_month(demo_app)
    at = _open(CORRELATION)
    months = at.selectbox(key="month").options
    assert months == sorted(months, reverse=True) and month in months
    other = next(m for m in months if m != month)
    at.selectbox(key="month").set_value(other).run()
    assert not at.exception
    cards = {m.label for m in at.metric}
    assert not any("below" in label for label in cards)  # no flag outside the drift month
    at.segmented_control(key="feedback").set_value("rating").run()
    assert not at.exception
    binned = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert binned["layout"]["yaxis"]["title"]["text"] == "mean rating"


@pytest.mark.parametrize("page", [ONLINE, CORRELATION])
def test_empty_warehouse_says_how_to_get_data(monkeypatch: pytest.MonkeyPatch,
                                              empty_root: str, page: str) -> None:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", empty_root)
    at = _open(page)
    assert "has no online traffic" in _text(at)
    assert len(at.get("plotly_chart")) == 0


@pytest.fixture(scope="module")
def offline_only(tmp_path_factory: pytest.TempPathFactory) -> str:
    from evallib.demo import build_demo

    root = tmp_path_factory.mktemp("offline") / "warehouse"
    build_demo(str(root), days=20, online_per_day=0, cases=60, seed=3)
    return str(root)


@pytest.mark.parametrize("page", [ONLINE, CORRELATION])
def test_offline_only_warehouse(monkeypatch: pytest.MonkeyPatch, offline_only: str,
                                page: str) -> None:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", offline_only)
    at = _open(page)
    assert "has no online traffic" in _text(at)
    assert "Dataset (offline)" in [s.label for s in at.sidebar.selectbox]
