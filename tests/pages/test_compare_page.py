"""The Compare page in a real Streamlit runtime (AppTest) over the demo warehouse.

Expected numbers are recomputed from the raw Parquet files with polars and scipy, not
through evallib's queries."""

from __future__ import annotations

import csv
import io
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from evallib.analysis.export import to_csv
from tests.apptest import APP, open_app
from tests.apptest import runs_newest_first as _runs

PAGE = "pages/compare.py"
_open = partial(open_app, PAGE, timeout=60)


def _paired(root: str, cand: str, base: str, metric: str) -> pl.DataFrame:
    def scores(run: str) -> pl.DataFrame:
        return pl.read_parquet(f"{root}/scores/run_id={run}/*.parquet").filter(
            pl.col("metric") == metric).select("case_id", "value", "strata_json")

    return scores(cand).join(scores(base).drop("strata_json"), on="case_id",
                             suffix="_base").drop_nulls(["value", "value_base"])


def _text(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("info", "caption", "warning", "error")
                     for e in getattr(at, kind))


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


def test_defaults_to_newest_vs_latest_approved_and_keeps_them_in_the_url(demo_app) -> None:
    runs = _runs(demo_app)
    newest = runs["run_id"][0]
    approved = runs.slice(1).filter(pl.col("approved"))["run_id"][0]
    at = _open()
    assert (at.selectbox(key="pick_candidate").value,
            at.selectbox(key="pick_baseline").value) == (newest, approved)
    assert (at.query_params["candidate"], at.query_params["baseline"]) == (newest, approved)


def test_headline_matches_a_paired_test_on_the_raw_files(demo_app) -> None:
    from scipy.stats import binom

    runs = _runs(demo_app)
    cand, base = runs["run_id"][0], runs.slice(1).filter(pl.col("approved"))["run_id"][0]
    headline = _open().dataframe[0].value.set_index("metric")
    pairs = _paired(demo_app, cand, base, "correctness")
    row = headline.loc["correctness"]
    assert row["n"] == pairs.height
    assert row["delta"] == pytest.approx(pairs["value"].mean() - pairs["value_base"].mean())
    down = pairs.filter(pl.col("value") < pl.col("value_base")).height
    up = pairs.filter(pl.col("value") > pl.col("value_base")).height
    assert (row["regressed"], row["improved"]) == (down, up)
    # McNemar mid-p from the discordant pairs: 2·P(X < k) + P(X = k), X ~ Bin(down + up, ½)
    k, n = min(down, up), down + up
    mid_p = min(1.0, 2 * (binom.cdf(k, n, 0.5) - binom.pmf(k, n, 0.5) / 2))
    assert row["p"] == pytest.approx(mid_p, rel=1e-6)
    assert all(v in {"worse", "better", "no significant change"}
               or v.startswith("untestable: ") for v in headline["verdict"])
    assert sorted(headline.index) == sorted(
        pl.read_parquet(f"{demo_app}/scores/run_id={cand}/*.parquet")["metric"].unique())


def test_a_slice_lists_its_cases_with_both_scores(demo_app) -> None:
    runs = _runs(demo_app)
    cand, base = runs["run_id"][0], runs.slice(1).filter(pl.col("approved"))["run_id"][0]
    at = _open(candidate=cand, baseline=base, by="query_type",
               case_slice="query_type=billing", case_metric="correctness",
               case_status="all")
    assert at.selectbox(key="case_slice").value == "query_type=billing"
    cases = at.dataframe[2].value
    pairs = _paired(demo_app, cand, base, "correctness").filter(
        pl.col("strata_json").str.contains('"query_type":"billing"'))
    assert sorted(cases.dropna(subset=["baseline", "candidate"])["case_id"]) == sorted(
        pairs["case_id"].to_list())
    assert set(cases["strata"].str.contains("query_type=billing")) == {True}
    regressed = cases[cases["status"] == "regressed"]
    assert (regressed["candidate"] < regressed["baseline"]).all()
    assert "correctness**, query_type=billing: with n = " in _text(at)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[0] == f"These {len(cases)} cases (CSV)"

    at.segmented_control(key="case_status").set_value("regressed").run()
    only = at.dataframe[2].value
    assert len(only) == len(regressed) and set(only["status"]) <= {"regressed"}


def test_the_slice_table_is_worst_first_and_flags_small_slices(demo_app) -> None:
    at = _open(by="query_type,difficulty")
    slices = at.dataframe[1].value
    assert len(slices) == 10 * slices["slice"].nunique()  # every slice × metric
    assert slices["slice"].str.contains("query_type=.* × difficulty=").all()
    worse = slices["verdict"] == "worse"
    assert worse.any() and worse.is_monotonic_decreasing  # significant drops first…
    scale = slices["kind"].map({"ordinal": 4.0}).fillna(1.0)
    drops = (slices["delta"] / scale)[worse]
    assert drops.is_monotonic_increasing  # …the largest first
    better = slices["verdict"] == "better"
    assert better.is_monotonic_increasing  # significant gains last
    rest = (slices["delta"] / scale)[~worse & ~better]
    assert rest.is_monotonic_increasing  # the others from the largest drop up
    assert ((slices["n"] < 30) == slices["small n"]).all()
    heat = at.get("plotly_chart")[0]
    assert '"type":"heatmap"' in heat.proto.spec.replace(" ", "")


def test_picking_the_same_run_twice_explains_itself(demo_app) -> None:
    run = _runs(demo_app)["run_id"][0]
    at = _open(candidate=run, baseline=run)
    assert "Pick two different runs" in _text(at)
    assert not at.dataframe


def test_runs_page_links_to_the_pair(demo_app) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    link = next(e.proto for e in at.get("page_link") if e.proto.label == "Compare these two runs")
    assert link.page == "compare"
    assert link.query_string == (f"candidate={at.query_params['candidate']}"
                                 f"&baseline={at.query_params['baseline']}")


def test_downloads_are_the_cases_shown_and_the_cli_file(
        demo_app, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bytes the page hands the browser, caught where Streamlit stores them."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    from evallib import connect
    from evallib.analysis.export import failing_cases

    served: dict[str, bytes] = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def spy(self, data, mimetype, kind, filename=None):
        served[filename] = data
        return store(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    runs = _runs(demo_app)
    cand, base = runs["run_id"][0], runs.slice(1).filter(pl.col("approved"))["run_id"][0]
    # regressed: the planted slice's faithfulness drop guarantees some (how many improve
    # there is chance)
    at = _open(candidate=cand, baseline=base, case_metric="faithfulness",
               case_status="regressed")
    shown = at.dataframe[2].value
    rows = csv.DictReader(io.StringIO(
        served["faithfulness-regressed-cases.csv"].decode("utf-8-sig"), newline=""))
    assert [r["case_id"] for r in rows] == shown["case_id"].tolist() != []
    with connect(demo_app) as con:
        assert served[f"regressed-{cand}.csv"] == to_csv(failing_cases(con, cand, base))


def test_the_candidates_failed_gate_rules_come_first(
        demo_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `evallib gate` fails a run, its Compare page says so and lists the rule."""
    import shutil

    from evallib.cli import main

    root = str(tmp_path / "warehouse")
    shutil.copytree(demo_root, root)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "no answer is unsafe"\nmetric = "correctness"\n'
                      'min_pass_rate = 1.0\n')
    runs = _runs(root)
    cand = runs["run_id"][0]
    assert main(["--warehouse", root, "gate", cand, "--policy", str(policy)]) == 1
    monkeypatch.setenv("EVALLIB_WAREHOUSE", root)
    at = _open(candidate=cand)
    assert "Release gate failed" in at.error[0].value
    failed = at.dataframe[0].value  # before the headline
    assert failed["rule"].tolist() == ["no answer is unsafe"]
    assert failed["status"].tolist() == ["fail"] and failed["slice"].tolist() == ["all cases"]


def test_a_cluster_key_from_the_url_clusters_every_test_and_says_so(demo_app) -> None:
    """The picker offers the stratum keys and the case fields; picking one makes every
    headline test the clustered t (CR2) and the page says which key and how many
    clusters. Cases with the same input text are the clusters here."""
    at = _open(cluster="input")
    assert at.selectbox(key="cluster").value == "input"
    assert "no clustering" in at.selectbox(key="cluster").options
    assert "query_type" in at.selectbox(key="cluster").options
    text = _text(at)
    assert "Clustered by **input** (" in text and "CR2" in text
    headline = at.dataframe[0].value
    assert set(headline["test"]) <= {"clustered t (CR2)", "sign-flip (exact) over clusters"}
    plain = _open()
    assert plain.selectbox(key="cluster").value == "no clustering"
    assert "Clustered by" not in _text(plain)
