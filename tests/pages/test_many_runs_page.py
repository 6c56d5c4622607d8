"""The Runs × slices page in a real Streamlit runtime (AppTest) over the demo warehouse.

Which runs the page picks is recomputed from the raw Parquet files with polars; its numbers
must be `evallib.analysis.many_runs.compare_many`'s (tested against Compare in
test_many_runs.py)."""

from __future__ import annotations

import csv
import io
import json
from functools import partial

import polars as pl
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from evallib import Warehouse, connect
from evallib.analysis.many_runs import compare_many
from tests.apptest import open_app
from tests.apptest import runs_newest_first as _runs

PAGE = "pages/many_runs.py"
BILLING_HARD = "query_type=billing × difficulty=hard"


_open = partial(open_app, PAGE, timeout=60)


def _heatmap(at: AppTest) -> dict:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)["data"][0]


def _text(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("info", "caption", "warning", "error",
                                               "success") for e in getattr(at, kind))


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


def test_defaults_to_the_newest_run_and_the_last_releases_all_in_the_url(demo_app) -> None:
    runs = _runs(demo_app)
    newest = runs["run_id"][0]
    releases = runs.filter(pl.col("approved"))["run_id"].head(5).to_list()
    at = _open()
    expected = [r for r in reversed(runs["run_id"].to_list()) if r in {newest, *releases}]
    assert at.query_params["runs"] == expected  # oldest first, written to the URL
    assert at.query_params["reference"] == [r for r in releases if r != newest][0]
    assert at.multiselect(key="pick_runs").value == expected
    heat = _heatmap(at)
    assert len(heat["x"]) == len(expected) and "(reference)" in " ".join(heat["x"])
    assert heat["y"][0] == "all cases"
    assert "One Benjamini–Hochberg family for this view" in _text(at)


def test_the_planted_regression_stands_out_in_the_candidates_column_only(demo_app) -> None:
    at = _open(metric="faithfulness")
    (verdict,) = at.error
    assert verdict.value.startswith("Worse than")
    assert f"candidate in {BILLING_HARD}" in verdict.value
    heat = _heatmap(at)
    row = heat["y"].index(BILLING_HARD)
    words = ["worse" in t for t in heat["text"][row]]
    assert words == [False] * (len(words) - 1) + [True]  # the newest column, alone
    worst = min((z, i, j) for i, zr in enumerate(heat["z"]) if i > 0
                for j, z in enumerate(zr) if z is not None)
    assert worst[1:] == (row, len(words) - 1)  # the reddest slice cell of the grid
    # Nowhere else is a slice worse.
    elsewhere = [t for i, tr in enumerate(heat["text"]) if i not in (0, row) for t in tr]
    assert not any("worse" in t for t in elsewhere)


def test_the_table_and_heatmap_show_compare_many_numbers(demo_app) -> None:
    runs = _runs(demo_app)["run_id"].to_list()
    chosen, reference = [runs[5], runs[2], runs[0]], runs[2]
    at = _open(runs=chosen, reference=reference, metric="tone", by="query_type")
    assert at.query_params["runs"] == [runs[5], runs[2], runs[0]]
    with connect(demo_app) as con:
        result = compare_many(con, chosen, reference, "tone", by=["query_type"])
    table = at.dataframe[0].value
    assert len(table) == len(result.cells) == 3 * (1 + 5)
    cells = {(r.run_id, json.dumps(r.slice)): r for r in result.cells}
    labels = {r.label: r.run_id for r in result.runs}
    for row in table.to_dict("records"):
        slice_ = {} if row["Slice"] == "all cases" else dict(
            [row["Slice"].split("=", 1)])
        c = cells[(labels[row["Run"]], json.dumps(slice_))]
        assert row["Cases"] == c.n and row["Mean"] == pytest.approx(c.mean)
        assert row["Verdict"] == ("reference" if c.run_id == reference else
                                  "worse" if c.significant and c.delta < 0 else
                                  "better" if c.significant else "no significant change")
    heat = _heatmap(at)
    assert heat["y"] == ["all cases", *sorted(f"query_type={v}" for v in
                                              ("account", "billing", "policy", "product",
                                               "technical"))]
    # The worst first: significant drops lead the table.
    verdicts = table["Verdict"].tolist()
    assert verdicts == sorted(verdicts, key=lambda v: v != "worse")


def test_flaky_cases_worst_first_with_their_csv(demo_app,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes the page hands the browser, caught where Streamlit stores them."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    served: dict[str, bytes] = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def spy(self, data, mimetype, kind, filename=None):
        served[filename] = data
        return store(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    at = _open(metric="correctness")
    flaky = at.dataframe[1].value
    assert len(flaky) > 0
    shares = flaky["Pass share (%)"].tolist()
    assert shares == sorted(shares) and min(shares) > 0 and max(shares) < 100
    first = flaky.iloc[0]
    outcomes = [first[c] for c in flaky.columns[4:-1]]
    assert set(outcomes) <= {"pass", "fail", "—"} and "pass" in outcomes
    assert first["Passes"] == f"{outcomes.count('pass')} of {len(outcomes)}"
    rows = list(csv.DictReader(io.StringIO(
        served["flaky-correctness.csv"].decode("utf-8-sig"), newline="")))
    assert [r["Case"] for r in rows] == flaky["Case"].tolist()
    assert [r["Passes"] for r in rows] == flaky["Passes"].tolist()
    cells = list(csv.DictReader(io.StringIO(
        served["runs-x-slices-correctness.csv"].decode("utf-8-sig"), newline="")))
    assert len(cells) == len(at.dataframe[0].value)


def test_one_run_or_an_empty_warehouse(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(tmp_path))
    at = _open()
    assert "has no" in _text(at)
    Warehouse(str(tmp_path)).record_run(
        {"run_id": "only", "name": "only", "dataset": "d"},
        [{"case_id": "c1"}], [{"case_id": "c1", "metric": "m", "value": 1.0,
                               "kind": "binary"}])
    st.cache_resource.clear()  # what the Refresh button does: a new snapshot
    at = _open()
    assert "a comparison needs two" in _text(at)
