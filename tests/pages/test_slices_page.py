"""The Slices page in a real Streamlit runtime (AppTest) over the demo warehouse.

Expected numbers come from the raw Parquet files read with polars (or, against a baseline,
from `evallib.analysis.compare.compare_runs`, which the Compare page already checks), not from the
queries the page calls."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

import evallib
from evallib.analysis.compare import compare_runs
from tests.apptest import APP, open_app
from tests.apptest import runs_newest_first as _runs

PAGE = "pages/slices.py"
BILLING_HARD = "query_type=billing × difficulty=hard"


_open = partial(open_app, PAGE, timeout=90)


def _frame(at: AppTest, column: str) -> pl.DataFrame:
    """The first dataframe on the page that has ``column``."""
    return next(pl.from_pandas(d.value) for d in at.dataframe if column in d.value.columns)


def _raw_cells(root: str, run: str, metric: str) -> pl.DataFrame:
    scores = pl.read_parquet(f"{root}/scores/run_id={run}/*.parquet").filter(
        pl.col("metric") == metric)
    cases = pl.read_parquet(f"{root}/cases/run_id={run}/*.parquet")
    return scores.join(cases.select("case_id", "strata"), on="case_id").with_columns(
        pl.col("strata").map.get("query_type").alias("query_type"),
        pl.col("strata").map.get("difficulty").alias("difficulty"),
    ).group_by("query_type", "difficulty").agg(
        pl.col("value").count().alias("n"), pl.col("value").mean().alias("mean"))


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


def test_one_run_per_cell_with_n_and_small_cells_marked(demo_app) -> None:
    newest = _runs(demo_app)["run_id"][0]
    at = _open()
    assert at.selectbox(key="slices_run").value == newest
    assert (at.selectbox(key="key").value, at.selectbox(key="key2").value) == (
        "query_type", "difficulty")
    shown = _frame(at, "mean [95% CI]")
    want = _raw_cells(demo_app, newest, "correctness")
    joined = shown.join(want, on=["query_type", "difficulty"], suffix="_raw")
    assert joined.height == want.height == shown.height == 15
    assert (joined["n"] == joined["n_raw"]).all()
    assert joined["mean"].to_list() == pytest.approx(joined["mean_raw"].to_list())
    assert joined["small n"].to_list() == (joined["n"] < 30).to_list()
    heat = at.get("plotly_chart")[0]
    assert '"heatmap"' in heat.proto.spec
    one_key = _frame(_open(key2="(none)"), "mean [95% CI]")  # 5 bigger cells
    assert one_key.height == 5 and one_key["n"].sum() == want["n"].sum()
    assert one_key["small n"].to_list() == (one_key["n"] < 30).to_list()
    assert (one_key["n"] >= 30).any()


def test_a_cell_lists_its_cases(demo_app) -> None:
    newest = _runs(demo_app)["run_id"][0]
    at = _open(cell=BILLING_HARD)
    cases = _frame(at, "value")
    raw = pl.read_parquet(f"{demo_app}/cases/run_id={newest}/*.parquet").filter(
        (pl.col("strata").map.get("query_type") == "billing")
        & (pl.col("strata").map.get("difficulty") == "hard"))
    assert sorted(cases["case_id"]) == sorted(raw["case_id"])
    assert cases["value"].drop_nulls().is_sorted()  # lowest scores first


def test_against_the_baseline_each_cell_is_the_compare_test(demo_app) -> None:
    runs = _runs(demo_app)
    cand, base = runs["run_id"][0], runs.slice(1).filter(pl.col("approved"))["run_id"][0]
    at = _open(vs=base, cell=BILLING_HARD)
    shown = _frame(at, "p adjusted")
    with evallib.connect(demo_app) as con:
        result = compare_runs(con, cand, base, by=[["query_type", "difficulty"]])
    want = {(s.slice["query_type"], s.slice["difficulty"]): s for s in result.slices
            if s.metric == "correctness"}
    assert shown.height == len(want) == 15
    for row in shown.iter_rows(named=True):
        qt, diff = (part.split("=")[1] for part in row["slice"].split(" × "))
        s = want[(qt, diff)]
        assert (row["n"], row["delta"]) == (s.n, pytest.approx(s.delta))
        if s.testable:
            assert row["p adjusted"] == pytest.approx(s.p_adjusted)
        else:  # untestable (no case changed, or too few to reach alpha): not in BH
            assert row["p adjusted"] is None or row["p adjusted"] != row["p adjusted"]
    worst = shown.row(0, named=True)  # the planted regression, worst first
    assert worst["slice"] == BILLING_HARD and worst["delta"] < -0.15
    cases = _frame(at, "candidate output")
    assert cases.height == want[("billing", "hard")].n  # every case of the cell
    assert (cases["delta"].drop_nulls() <= 0).all()  # the slice only got worse


def test_online_cells_and_their_traces(demo_app) -> None:
    at = _open(source="Online", key="query_type", key2="difficulty", online_metric="correctness",
               cell=BILLING_HARD)
    shown = _frame(at, "mean [95% CI]")
    scores = pl.read_parquet(f"{demo_app}/online_scores/*/*.parquet").filter(
        pl.col("metric") == "correctness").with_columns(
        pl.col("strata_json").str.json_path_match("$.query_type").alias("query_type"),
        pl.col("strata_json").str.json_path_match("$.difficulty").alias("difficulty"))
    want = scores.group_by("query_type", "difficulty").agg(pl.col("value").count().alias("n"))
    joined = shown.join(want, on=["query_type", "difficulty"], suffix="_raw")
    assert joined.height == shown.height and (joined["n"] == joined["n_raw"]).all()
    traces = _frame(at, "trace_id")
    billing_hard = scores.filter((pl.col("query_type") == "billing")
                                 & (pl.col("difficulty") == "hard"))
    assert 0 < traces.height <= 500
    assert set(traces["trace_id"]) <= set(billing_hard["trace_id"])
    assert traces["value"].drop_nulls().is_sorted()


def test_coverage_weights_the_golden_set_by_traffic(demo_app) -> None:
    """Post-stratification recomputed by hand: each (query_type, difficulty) cell's mean of
    correctness weighted by its share of the scored production traces (the sidebar's whole
    range)."""
    newest = _runs(demo_app)["run_id"][0]
    at = _open()
    table = _frame(at, "production-weighted [95% CI]")
    traces = pl.read_parquet(f"{demo_app}/online_traces/*/*.parquet")
    scored = pl.read_parquet(f"{demo_app}/online_scores/*/*.parquet")["trace_id"].unique()
    shares = traces.filter(pl.col("trace_id").is_in(scored.implode())).with_columns(
        pl.col("strata").map.get("query_type").alias("query_type"),
        pl.col("strata").map.get("difficulty").alias("difficulty"),
    ).group_by("query_type", "difficulty").len("traffic")
    cells = _raw_cells(demo_app, newest, "correctness").join(
        shares, on=["query_type", "difficulty"])
    weighted = (cells["mean"] * cells["traffic"]).sum() / cells["traffic"].sum()
    plain = (cells["mean"] * cells["n"]).sum() / cells["n"].sum()
    row = table.filter(pl.col("metric") == "correctness").row(0, named=True)
    assert row["production-weighted [95% CI]"].startswith(f"{weighted:.3f} [")
    assert row["golden set mean [95% CI]"].startswith(f"{plain:.3f} [")
    assert row["difference"] == pytest.approx(weighted - plain)
    # the demo's golden set over-samples hard cases: production does better than it says
    assert weighted > plain + 0.03 and row["differs"]
    mix = _frame(at, "golden set")
    assert mix["production"].sum() == pytest.approx(100.0)  # percent


def test_empty_warehouse_says_how_to_get_data(monkeypatch, empty_root) -> None:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", empty_root)
    for page in (PAGE, "pages/rag.py"):
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page(page).run()
        assert not at.exception
        assert any("has no" in str(i.value) for i in at.info)


def test_a_run_without_strata_or_retrievals(monkeypatch, tmp_path: Path) -> None:
    """An imported run with nothing to slice and no retrievals: both pages say so."""
    from evallib import Warehouse

    Warehouse(tmp_path).record_run(
        {"name": "bare", "dataset": "d"}, [{"case_id": "a"}, {"case_id": "b"}],
        [{"case_id": c, "metric": "correctness", "value": v, "kind": "binary",
          "passed": v == 1} for c, v in (("a", 1.0), ("b", 0.0))])
    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(tmp_path))
    at = _open()
    assert any("no strata" in str(i.value) for i in at.info)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/rag.py").run()
    assert not at.exception, [e.value for e in at.exception]
    infos = " ".join(str(i.value) for i in at.info)
    assert "No case has retrieved documents" in infos
    assert "1 failing without retrieval data" in infos
