"""Every page in a real Streamlit runtime (AppTest) over the demo warehouse and an empty one.

Expected numbers come from the raw Parquet read with polars, not from evallib.queries.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from evallib import Warehouse
from tests.apptest import open_app
from tests.apptest import runs_newest_first as _runs

PAGES = ["pages/runs.py", "pages/trends.py", "pages/compare.py"]


_open = partial(open_app, timeout=60)


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _series(fig: dict) -> list[str]:
    return [t["name"] for t in fig["data"] if (t.get("meta") or {}).get("role") == "series"]


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "info", "markdown", "caption", "warning")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


@pytest.mark.parametrize(("page", "tables", "charts"),
                         [(PAGES[0], 2, 0), (PAGES[1], 0, 2), (PAGES[2], 3, 1)])
def test_every_page_renders(demo_app: str, page: str, tables: int, charts: int) -> None:
    at = _open(page)
    assert at.title[0].value.endswith(Path(page).stem.capitalize())
    assert at.sidebar.code[0].value == demo_app  # the warehouse in use is shown
    assert (len(at.dataframe), len(at.get("plotly_chart"))) == (tables, charts)
    assert "has no" not in _text(at)


def test_runs_table_lists_every_run_newest_first(demo_app: str) -> None:
    runs = _runs(demo_app)
    table = _open().dataframe[0].value
    assert table["run_id"].tolist() == runs["run_id"].to_list()
    assert table["approved"].sum() == runs["approved"].sum() > 0  # a checkbox column
    assert table.columns[:2].tolist() == ["approved", "name"]  # pinned, then the metrics


def test_runs_table_shows_each_runs_mean_and_the_pair_its_interval(demo_app: str) -> None:
    runs = _runs(demo_app)
    newest = runs["run_id"][0]
    scores = pl.read_parquet(f"{demo_app}/scores/run_id={newest}/*.parquet")
    mean = scores.filter(pl.col("metric") == "correctness")["value"].mean()
    at = _open()
    table = at.dataframe[0].value
    assert table.loc[table["run_id"] == newest, "correctness"].item() == pytest.approx(mean)
    pair = at.dataframe[1].value.set_index("metric")  # the newest run is the candidate
    cell = pair.loc["correctness", "candidate [95% CI]"]
    low, high = (float(x) for x in cell.split("[")[1].rstrip("]").split(","))
    assert cell.startswith(f"{mean:.3f} [")
    assert low < mean < high


def test_runs_pair_defaults_to_newest_vs_approved_and_lands_in_the_url(demo_app: str) -> None:
    runs = _runs(demo_app)
    newest = runs["run_id"][0]
    approved = runs.slice(1).filter(pl.col("approved"))["run_id"][0]
    at = _open()
    assert at.selectbox(key="pick_candidate").value == newest
    assert at.selectbox(key="pick_baseline").value == approved
    assert (at.query_params["candidate"], at.query_params["baseline"]) == (newest, approved)
    assert "Compare" in _text(at) and "No p-values" in _text(at)


def test_runs_pair_is_seeded_from_the_url(demo_app: str) -> None:
    runs = _runs(demo_app)
    cand, base = runs["run_id"][3], runs["run_id"][7]
    at = _open(candidate=cand, baseline=base)
    assert at.selectbox(key="pick_candidate").value == cand
    assert at.selectbox(key="pick_baseline").value == base
    pair = at.dataframe[1].value.set_index("metric")

    def mean(run_id: str) -> float:
        s = pl.read_parquet(f"{demo_app}/scores/run_id={run_id}/*.parquet")
        return s.filter(pl.col("metric") == "faithfulness")["value"].mean()

    assert pair.loc["faithfulness", "delta"] == pytest.approx(mean(cand) - mean(base))
    assert len(at.metric) == len(pair)


def test_pairs_over_different_golden_set_versions_are_flagged(demo_app: str) -> None:
    runs = _runs(demo_app)
    versions = runs.unique("dataset_version", keep="first", maintain_order=True)
    if versions.height < 2:
        pytest.skip("the demo has one golden-set version")
    a, b = versions["run_id"][0], versions["run_id"][1]
    assert "different versions of the golden set" in _text(_open(candidate=a, baseline=b))
    same = runs.filter(pl.col("dataset_version") == versions["dataset_version"][0])["run_id"]
    assert "different versions" not in _text(_open(candidate=same[0], baseline=same[1]))


def test_picking_a_baseline_updates_the_url(demo_app: str) -> None:
    at = _open()
    other = _runs(demo_app)["run_id"][4]
    at.selectbox(key="pick_baseline").set_value(other).run()
    assert not at.exception
    assert at.query_params["baseline"] == other


def test_trends_draws_offline_and_online_charts(demo_app: str) -> None:
    at = _open("pages/trends.py")
    offline, online = _figures(at)
    runs = _runs(demo_app)
    assert _series(offline) == ["overall"]
    points = next(t for t in offline["data"] if t["name"] == "overall")
    assert len(points["x"]) == runs.height  # one point per run (one dataset in the demo)
    assert "array" in points["error_y"]  # each with its interval
    releases = runs.filter(pl.col("release").is_not_null())["release"].to_list()
    labels = [a["text"] for a in offline["layout"]["annotations"]]
    assert all(any(r in label for label in labels) for r in releases)
    assert _series(online) == ["overall"]
    roles = [(t.get("meta") or {}).get("role") for t in online["data"]]
    assert roles.count("band") == 1 and roles.count("count") == 1


def test_a_stratum_splits_the_series(demo_app: str) -> None:
    values = pl.read_parquet(f"{demo_app}/cases/**/*.parquet", hive_partitioning=True) \
        .select(pl.col("strata").map.get("query_type"))["strata"].drop_nulls().unique().sort()
    at = _open("pages/trends.py", stratum="query_type", online_stratum="query_type")
    offline, online = _figures(at)
    assert _series(offline) == values.to_list() and len(values) > 1
    assert len(_series(online)) > 1
    assert at.selectbox(key="stratum").value == "query_type"


def test_query_params_seed_the_metric(demo_app: str) -> None:
    at = _open("pages/trends.py", metric="faithfulness", online_metric="answer_relevance")
    assert at.selectbox(key="metric").value == "faithfulness"
    assert at.selectbox(key="online_metric").value == "answer_relevance"
    offline, online = _figures(at)
    assert "faithfulness" in offline["layout"]["yaxis"]["title"]["text"]
    assert "answer_relevance" in online["layout"]["yaxis"]["title"]["text"]


def test_an_unknown_metric_in_the_url_falls_back(demo_app: str) -> None:
    at = _open("pages/trends.py", metric="no_such_metric", stratum="x'] OR 1=1 --")
    assert at.selectbox(key="metric").value == "correctness"  # the first pass-rate metric
    assert at.selectbox(key="stratum").value == "(overall)"


def test_the_days_filter_narrows_the_online_chart(demo_app: str) -> None:
    days = pl.read_parquet(f"{demo_app}/online_scores/**/*.parquet", hive_partitioning=True) \
        ["date"].unique().sort()
    start, end = days[-10], days[-3]
    at = _open("pages/trends.py", days=[start.isoformat(), end.isoformat()])
    online = _figures(at)[1]
    line = next(t for t in online["data"] if t["name"] == "overall")
    assert line["x"][0].startswith(start.isoformat())
    assert line["x"][-1].startswith(end.isoformat())
    assert len(line["x"]) == 8


@pytest.mark.parametrize("page", [None, *PAGES])
def test_an_empty_warehouse_says_how_to_get_data_in(monkeypatch: pytest.MonkeyPatch,
                                                    empty_root: str, page: str | None) -> None:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", empty_root)
    at = _open(page)
    text = _text(at)
    for hint in ("has no", "make run", "evallib demo", "evallib import jsonl", "record_run"):
        assert hint in text
    assert not at.get("plotly_chart") and not at.dataframe


def test_offline_only_warehouse_explains_the_missing_online_part(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = str(tmp_path / "offline-only")
    Warehouse(root).record_run(
        {"name": "only", "dataset": "d", "started_at": datetime.now(UTC) - timedelta(days=1)},
        [{"case_id": "c1"}, {"case_id": "c2"}],
        [{"case_id": "c1", "metric": "ok", "value": 1.0, "kind": "binary"},
         {"case_id": "c2", "metric": "ok", "value": 0.0, "kind": "binary"}])
    monkeypatch.setenv("EVALLIB_WAREHOUSE", root)
    assert _open().dataframe[0].value["ok"].item() == 0.5
    at = _open("pages/trends.py")
    assert len(at.get("plotly_chart")) == 1
    assert "no online traffic" in _text(at)
    assert "a comparison needs two" in _text(_open("pages/compare.py"))


def test_the_sidebar_says_what_is_not_rolled_up(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """Days of traffic and runs `evallib rollup` has not covered are read raw: the sidebar
    says so (not the newest week's: late scores and feedback keep changing it)."""
    from evallib.warehouse.rollup import rollup

    root = str(tmp_path / "raw")
    wh = Warehouse(root)
    wh.record_run({"name": "r", "dataset": "d"}, [{"case_id": "c1"}],
                  [{"case_id": "c1", "metric": "ok", "value": 1.0, "kind": "binary"}])
    now = datetime.now(UTC)
    wh.record_online([{"trace_id": f"t{d}", "timestamp": now - timedelta(days=d)}
                      for d in (0, 9, 10)])
    monkeypatch.setenv("EVALLIB_WAREHOUSE", root)
    def hint() -> list[str]:
        st.cache_resource.clear()  # what the Refresh button does: a new snapshot
        st.cache_data.clear()
        return [c.value for c in _open().sidebar.caption if "not rolled up yet" in c.value]

    said = hint()
    assert said and "2 days of traffic and 1 run not rolled up yet" in said[0]
    rollup(root, grace=0)
    assert hint() == []
    wh.record_online([{"trace_id": "new", "timestamp": now}])  # today's, raw again: quiet
    assert hint() == []


def test_the_shared_palette_is_plotlys_then_d3s() -> None:
    """evallib.vocabulary spells the palette out (importing plotly there would load it for
    every `import evallib`); it must stay the one the charts were drawn with."""
    from plotly.colors import qualitative

    from evallib.vocabulary import PALETTE

    assert tuple(qualitative.Plotly + qualitative.D3) == PALETTE
