"""`evallib demo` writes a warehouse whose story holds when read back through DuckDB."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import polars as pl
import pytest
from scipy.stats import spearmanr

import evallib
from evallib.demo import REGRESSION_SLICE, DemoSummary, build_demo

TODAY = dt.date(2026, 3, 20)  # pinned: the drift month is then February, fully in the window


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSummary, object]:
    root = tmp_path_factory.mktemp("demo")
    summary = build_demo(root, days=60, online_per_day=150, cases=200, today=TODAY)
    con = evallib.connect(root)
    yield summary, con
    con.close()


def q(con, sql: str, **params) -> pl.DataFrame:
    return con.sql(sql, params=params or None).pl()


def test_runs_tell_a_release_history(demo):
    summary, con = demo
    runs = q(con, "SELECT * FROM runs ORDER BY started_at")
    assert runs.height >= 15
    assert runs["dataset"].unique().to_list() == ["support-golden"]
    approved = runs.filter(pl.col("approved"))
    assert approved.height >= 2
    assert approved["release"].null_count() == 0
    assert runs.filter(~pl.col("approved"))["release"].null_count() == runs.height \
        - approved.height

    latest = runs.row(-1, named=True)
    assert latest["run_id"] == summary.regressed_run_id
    assert latest["name"].endswith("-candidate") and not latest["approved"]
    assert runs.filter(pl.col("name").str.ends_with("-candidate")).height == 1
    assert latest["started_at"].date() in (TODAY, TODAY - dt.timedelta(days=1))
    baseline = approved.row(-1, named=True)
    assert baseline["run_id"] == summary.approved_baseline_run_id
    assert latest["dataset_version"] == baseline["dataset_version"]
    assert latest["judge_version"] == baseline["judge_version"]
    assert runs["judge_version"].n_unique() == 1


def test_latency_and_cost_move_with_the_model(demo):
    _, con = demo
    per_release = q(con, """
        SELECT r.release, r.model, r.started_at, avg(c.cost_usd) AS cost,
               median(c.latency_ms) AS latency
        FROM runs r JOIN cases c USING (run_id)
        WHERE r.approved GROUP BY ALL ORDER BY r.started_at""")
    assert per_release["model"].n_unique() >= 2
    assert per_release["cost"][-1] > 2 * per_release["cost"][0]
    assert per_release["latency"][-1] > per_release["latency"][0]


def test_the_mean_hides_a_slice_regression(demo):
    summary, con = demo
    ids = {"cand": summary.regressed_run_id, "base": summary.approved_baseline_run_id}
    paired = q(con, """
        SELECT s.case_id, s.metric,
               any_value(c.strata['query_type'] = $qt AND c.strata['difficulty'] = $diff)
                   AS in_slice,
               max(s.value) FILTER (WHERE s.run_id = $base) AS base,
               max(s.value) FILTER (WHERE s.run_id = $cand) AS cand
        FROM scores s JOIN cases c USING (run_id, case_id)
        WHERE s.run_id IN ($base, $cand) AND s.metric IN ('correctness', 'faithfulness')
        GROUP BY s.case_id, s.metric""", qt=REGRESSION_SLICE["query_type"],
               diff=REGRESSION_SLICE["difficulty"], **ids)
    paired = paired.drop_nulls(["base", "cand"])
    correctness = paired.filter(pl.col("metric") == "correctness")
    overall = correctness["cand"].mean() - correctness["base"].mean()
    sliced = correctness.filter(pl.col("in_slice"))
    assert sliced.height >= 20
    slice_delta = sliced["cand"].mean() - sliced["base"].mean()
    assert abs(overall) < 0.03
    assert slice_delta < -0.15
    # no case in the slice got better: the regression is one-sided, so a paired test sees it
    assert sliced.filter(pl.col("cand") > pl.col("base")).height == 0

    faith = paired.filter((pl.col("metric") == "faithfulness") & pl.col("in_slice"))
    assert faith["cand"].mean() < faith["base"].mean() - 0.4
    assert summary.correctness["candidate_slice"] < summary.correctness["baseline_slice"] - 0.15


def test_baseline_failures_are_mostly_retrieval(demo):
    summary, con = demo
    causes = q(con, """
        WITH failed AS (SELECT case_id FROM scores
                        WHERE run_id = $run AND metric = 'correctness' AND value = 0),
             found AS (SELECT case_id, bool_or(relevant) AS any_relevant
                       FROM retrievals WHERE run_id = $run GROUP BY case_id),
             faith AS (SELECT case_id, passed AS faithful FROM scores
                       WHERE run_id = $run AND metric = 'faithfulness')
        SELECT CASE WHEN any_relevant IS NULL THEN 'other'
                    WHEN any_relevant THEN 'generation'
                    WHEN faithful THEN 'retrieval' ELSE 'both' END AS cause,
               count(*) AS n
        FROM failed JOIN found USING (case_id) JOIN faith USING (case_id) GROUP BY cause""",
               run=summary.approved_baseline_run_id)
    total = causes["n"].sum()
    shares = {r["cause"]: r["n"] / total for r in causes.iter_rows(named=True)}
    assert total >= 25
    assert shares == pytest.approx(summary.failure_attribution, abs=1e-9)
    # a retrieval miss is "both" when its answer is unfaithful too (evallib.analysis.rag)
    assert shares["retrieval"] + shares["both"] == pytest.approx(0.55, abs=0.04)
    assert shares["retrieval"] == pytest.approx(0.35, abs=0.04)
    assert shares["both"] == pytest.approx(0.20, abs=0.04)
    assert shares["generation"] == pytest.approx(0.35, abs=0.04)
    assert shares["other"] == pytest.approx(0.10, abs=0.04)

    recall = q(con, """
        SELECT count(*) AS n, count(*) FILTER (WHERE s.value = 1.0) AS full_recall
        FROM scores s WHERE s.run_id = $run AND s.metric = 'context_recall'""",
               run=summary.approved_baseline_run_id)
    assert 0 < recall["full_recall"][0] < recall["n"][0]


def test_online_traffic_has_weekly_and_daily_cycles(demo):
    _, con = demo
    days = q(con, "SELECT date, isodow(date) AS dow, count(*) AS n FROM online_traces "
                  "GROUP BY ALL")
    assert days.height == 60
    weekday = days.filter(pl.col("dow") <= 5)["n"].mean()
    weekend = days.filter(pl.col("dow") >= 6)["n"].mean()
    assert weekday > 1.3 * weekend
    assert 100 < days["n"].mean() < 200
    hours = q(con, "SELECT hour(timestamp) AS h, count(*) AS n FROM online_traces GROUP BY h")
    by_hour = dict(zip(hours["h"], hours["n"], strict=True))
    assert by_hour[16] > 2 * by_hour[3]


def test_feedback_tracks_the_judge_except_in_the_drift_month(demo):
    summary, con = demo
    pairs = q(con, """
        SELECT strftime(s.date, '%Y-%m') AS mon, s.metric, s.value AS judge,
               f.value AS thumbs, s.scorer_version
        FROM online_scores s JOIN feedback f USING (trace_id)
        WHERE f.kind = 'thumbs' AND s.value IS NOT NULL
          AND s.metric IN ('correctness', 'faithfulness')""")
    drift = pl.col("mon") == summary.judge_drift_month
    for metric in ("correctness", "faithfulness"):
        m = pairs.filter(pl.col("metric") == metric)
        inside, outside = m.filter(drift), m.filter(~drift)
        assert inside.height >= 100 and outside.height >= 100
        rho_in = spearmanr(inside["judge"], inside["thumbs"]).statistic
        rho_out = spearmanr(outside["judge"], outside["thumbs"]).statistic
        print(metric, "Spearman outside", round(rho_out, 3), "inside", round(rho_in, 3))
        assert rho_out >= 0.5
        assert rho_in < rho_out - 0.25
    versions = pairs.group_by(drift.alias("drift")).agg(pl.col("scorer_version").unique())
    inside_v = versions.filter(pl.col("drift"))["scorer_version"][0].to_list()
    outside_v = versions.filter(~pl.col("drift"))["scorer_version"][0].to_list()
    assert not set(inside_v) & set(outside_v)  # the drifted judge is named in its rows


def test_humans_agree_with_the_judge_less_in_the_drift_month(demo):
    summary, con = demo
    agree = q(con, """
        SELECT strftime(t.date, '%Y-%m') = $drift AS drift, count(*) AS n,
               avg((h.value = s.value)::INT) AS agreement
        FROM human_labels h
        JOIN online_scores s ON s.trace_id = h.trace_id AND s.metric = h.metric
        JOIN online_traces t ON t.trace_id = h.trace_id
        GROUP BY drift""", drift=summary.judge_drift_month)
    by = {r["drift"]: r for r in agree.iter_rows(named=True)}
    assert by[True]["n"] >= 100
    assert by[False]["agreement"] >= 0.85
    assert by[True]["agreement"] < by[False]["agreement"] - 0.08


def test_production_mix_differs_from_the_golden_set(demo):
    summary, con = demo
    shares = q(con, """
        SELECT 'golden' AS src, strata['difficulty'] AS v,
               count(*) / sum(count(*)) OVER () AS share
        FROM cases WHERE run_id = $run GROUP BY ALL
        UNION ALL
        SELECT 'prod', strata['difficulty'], count(*) / sum(count(*)) OVER ()
        FROM online_traces GROUP BY ALL""", run=summary.approved_baseline_run_id)
    hard = {r["src"]: r["share"] for r in shares.filter(pl.col("v") == "hard")
            .iter_rows(named=True)}
    assert hard["golden"] > hard["prod"] + 0.1


def test_canary_runs_only_in_the_last_release_first_week(demo):
    summary, con = demo
    canary = q(con, """
        SELECT release, min(date) AS first, max(date) AS last, count(*) AS n,
               count(DISTINCT date) AS days
        FROM online_traces WHERE variant = 'canary' GROUP BY release""")
    assert canary["release"].to_list() == [summary.releases[-1]]
    assert canary["days"][0] == 7


def test_same_seed_same_data(tmp_path):
    kwargs = dict(days=14, cases=60, today=TODAY)
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    build_demo(roots[0], seed=3, online_per_day=30, **kwargs)
    build_demo(roots[1], seed=3, online_per_day=30, **kwargs)
    build_demo(roots[2], seed=4, online_per_day=0, **kwargs)  # offline only: enough to differ

    def scores(root) -> pl.DataFrame:
        with evallib.connect(root) as con:
            return q(con, """
                SELECT r.name, s.case_id, s.metric, s.value FROM scores s JOIN runs r
                USING (run_id) ORDER BY ALL""")

    def online(root) -> pl.DataFrame:
        with evallib.connect(root) as con:
            return q(con, "SELECT trace_id, metric, value FROM online_scores ORDER BY ALL")

    assert scores(roots[0]).equals(scores(roots[1]))
    assert online(roots[0]).height > 0
    assert online(roots[0]).equals(online(roots[1]))
    assert not scores(roots[0]).equals(scores(roots[2]))


def test_refuses_to_overwrite_without_force_and_force_keeps_other_files(tmp_path):
    kwargs = dict(days=14, online_per_day=5, cases=50, today=TODAY)
    first = build_demo(tmp_path, seed=1, **kwargs)
    (tmp_path / "README.md").write_text("keep me")
    (tmp_path / "notes").mkdir()
    with pytest.raises(evallib.EvallibError, match="already has data.*--force"):
        build_demo(tmp_path, seed=2, **kwargs)

    second = build_demo(tmp_path, seed=2, force=True, **kwargs)
    assert (tmp_path / "README.md").read_text() == "keep me"
    assert (tmp_path / "notes").is_dir()
    with evallib.connect(tmp_path) as con:
        run_ids = set(q(con, "SELECT run_id FROM runs")["run_id"])
        n_traces = q(con, "SELECT count(*) AS n FROM online_traces")["n"][0]
    assert first.regressed_run_id not in run_ids
    assert second.regressed_run_id in run_ids
    assert len(run_ids) == second.runs
    assert n_traces == second.rows["online_traces"]


def test_too_small_a_demo_is_refused(tmp_path):
    with pytest.raises(evallib.EvallibError, match="at least 14 days"):
        build_demo(tmp_path, days=3)


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSummary, str]:
    """The demo `make run` builds, at its default size, as of today."""
    root = tmp_path_factory.mktemp("default") / "warehouse"
    started = time.perf_counter()
    summary = build_demo(root)
    print(f"default demo: {time.perf_counter() - started:.1f} s\n{summary.describe()}")
    return summary, str(root)


def test_default_size_builds(default_demo):
    summary, root = default_demo
    assert summary.rows["scores"] >= 100_000
    assert summary.rows["online_traces"] >= 150_000
    assert abs(summary.correctness["paired_delta"]) < 0.01
    assert summary.correctness["slice_cases"] >= 30
    assert summary.today == dt.datetime.now(dt.UTC).date()
    with evallib.connect(root) as con:
        counts = q(con, "SELECT (SELECT count(*) FROM scores) AS scores, "
                        "(SELECT count(*) FROM online_traces) AS traces")
    assert counts["scores"][0] == summary.rows["scores"]
    assert counts["traces"][0] == summary.rows["online_traces"]


def test_the_readme_tells_the_demos_own_story(default_demo):
    """The README's demo section is `DemoSummary.story()` of the default build, verbatim."""
    summary, _ = default_demo
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- demo-story")[1].split("<!-- /demo-story -->")[0]
    assert block.splitlines()[1:] == summary.story()
    assert "below 0.3 there" in summary.story()[-1] and "at least 0.7" in summary.story()[-1]


def test_only_the_judges_pairs_of_the_drift_month_are_flagged(default_demo):
    summary, _ = default_demo
    judge = {(summary.judge_drift_month, m, f) for m in ("correctness", "faithfulness")
             for f in ("rating", "thumbs")}
    assert set(summary.flagged) == judge
    assert summary.feedback_r["outside_min"] >= 0.7 > 0.3 > summary.feedback_r["drift_max"]


def test_the_correlation_page_flags_exactly_the_drift_months_pairs(default_demo,
                                                                   monkeypatch):
    """Default settings (the last complete month): nothing in it is flagged, and the only
    flags on the page are the drift month's four judge pairs."""
    from streamlit.testing.v1 import AppTest

    summary, root = default_demo
    monkeypatch.setenv("EVALLIB_WAREHOUSE", root)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"),
                           default_timeout=120)
    at.run()
    at.switch_page("pages/correlation.py").run()
    assert not at.exception
    month = at.selectbox(key="month").value
    assert month != summary.judge_drift_month
    verdict = at.success[0].value
    assert f"Every score–feedback correlation in {month} is at least 0.7" in verdict
    assert not at.error and not any("below" in m.label for m in at.metric)
    table = next(d.value for d in at.dataframe if "previous month" in d.value.columns)
    assert "below 0.7" not in set(table["status"])
    (history,) = [w.value for w in at.warning if "Earlier months" in w.value]
    flagged = {pair for part in history.split("**: ", 1)[1].split("; ")
               for pair in part.split("**: ")[-1].split(", ")}
    assert history.count("**20") == 1 and f"**{summary.judge_drift_month}**" in history
    assert {" ".join(p.split()[:3]) for p in flagged} == {
        f"{m} vs {f}" for m in ("correctness", "faithfulness") for f in ("rating", "thumbs")}


def test_compare_finds_only_the_planted_slice(default_demo):
    from evallib.analysis.compare import compare_runs

    summary, root = default_demo
    with evallib.connect(root) as con:
        c = compare_runs(con, summary.regressed_run_id, summary.approved_baseline_run_id,
                         by=[("query_type", "difficulty")])
    assert not [m.metric for m in c.metrics if m.significant]
    worse = {(tuple(s.slice.values()), s.metric) for s in c.slices
             if s.significant and s.delta < 0}
    assert worse and {sl for sl, _ in worse} == {("billing", "hard")}
    # the candidate answers a little more faithfully everywhere else (what hides the slice
    # from the mean): a slice may show that, never a drop
    better = [s for s in c.slices if s.significant and s.delta > 0]
    assert all(s.metric == "faithfulness" and tuple(s.slice.values()) != ("billing", "hard")
               for s in better)


def test_every_alert_is_part_of_the_story(default_demo):
    """The detector over the whole window finds the releases that changed model (latency,
    cost), the incident (errors, tool errors, latency) and the judge swap (a score), and
    nothing else."""
    from evallib.analysis.monitor import detect

    summary, root = default_demo
    drift_start = dt.date.fromisoformat(f"{summary.judge_drift_month}-01")
    with evallib.connect(root) as con:
        first, last = evallib.queries.online_date_range(con).row(0)
        starts = dict(q(con, "SELECT release, min(date) AS d FROM online_traces "
                             "WHERE variant = 'control' GROUP BY release").iter_rows())
        alerts, _ = detect(con, first, last)
    assert alerts
    for a in alerts:
        if a.first_day == summary.incident_day:
            assert a.signal in ("error_rate", "tool_error_rate", "latency"), a.message
        elif a.first_day == drift_start:
            assert a.signal.startswith("quality:"), a.message
        else:
            assert a.signal in ("latency", "cost") and a.release is not None, a.message
            assert a.first_day in starts.values(), a.message
        assert a.status == "closed", a.message
