"""evallib.queries and evallib.stats against numbers worked out independently: by hand on a
tiny warehouse written through the real writer, and with polars on the demo's raw Parquet."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from evallib import Warehouse, connect, queries
from evallib.stats import t_interval, wilson_interval, with_intervals

QUOTED_KEY = "it's"  # a real stratum key with a quote in it


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two runs of "support" and one of "other", three days of online traffic."""
    root = str(tmp_path_factory.mktemp("tiny") / "warehouse")
    wh = Warehouse(root)
    cases = [{"case_id": f"c{i}", "strata": {"tier": t, QUOTED_KEY: q}}
             for i, (t, q) in enumerate([("gold", "x"), ("gold", "y"), ("silver", "x"),
                                         ("silver", "y")], start=1)]

    def scores(correct: list[float], quality: list[float | None]) -> list[dict]:
        out = [{"case_id": f"c{i}", "metric": "correctness", "value": v, "kind": "binary",
                "passed": v == 1.0} for i, v in enumerate(correct, start=1)]
        return out + [{"case_id": f"c{i}", "metric": "quality", "value": v,
                       "kind": "continuous", "passed": None if v is None else v >= 0.6}
                      for i, v in enumerate(quality, start=1)]

    wh.record_run({"run_id": "a", "name": "first", "dataset": "support", "model": "m1",
                   "judge_version": "j1", "release": "v1", "approved": True,
                   "started_at": datetime(2026, 1, 1, tzinfo=UTC)},
                  cases, scores([1, 0, 1, 1], [0.5, 0.7, None, 0.9]))
    wh.record_run({"run_id": "b", "name": "second", "dataset": "support", "model": "m2",
                   "started_at": datetime(2026, 1, 2, tzinfo=UTC)},
                  cases, scores([1, 1, 0, 0], [0.2, 0.4, 0.6, 0.8]))
    wh.record_run({"run_id": "o", "name": "elsewhere", "dataset": "other",
                   "started_at": datetime(2025, 12, 1, tzinfo=UTC)},
                  cases[:1], [{"case_id": "c1", "metric": "bleu", "value": 0.3,
                               "kind": "continuous"}])
    traces, online = [], []
    for day, values in {1: [1, 0], 2: [1, 1, 1], 3: [0]}.items():
        for j, v in enumerate(values):
            tid, ts = f"t{day}{j}", datetime(2026, 2, day, 12, j, tzinfo=UTC)
            traces.append({"trace_id": tid, "timestamp": ts, "release": f"r{min(day, 2)}",
                           "strata": {"channel": "chat" if j == 0 else "email"}})
            online.append({"trace_id": tid, "timestamp": ts, "metric": "correctness",
                           "value": float(v), "kind": "binary"})
    wh.record_online(traces, online)
    return root


@pytest.fixture(scope="module")
def con(tiny: str):
    c = connect(tiny)
    yield c
    c.close()


def test_runs_overview_newest_first_with_case_counts(con) -> None:
    runs = queries.runs_overview(con)
    assert runs["run_id"].to_list() == ["b", "a", "o"]
    assert runs["n_cases"].to_list() == [4, 4, 1]
    assert runs.filter(pl.col("approved"))["run_id"].to_list() == ["a"]
    assert runs.row(1, named=True)["release"] == "v1"
    assert {"name", "model", "dataset", "dataset_version", "judge_version", "started_at",
            "source"} <= set(runs.columns)
    assert queries.runs_overview(con, "support")["run_id"].to_list() == ["b", "a"]


def test_run_metric_summary_counts_unscored_apart(con) -> None:
    s = queries.run_metric_summary(con).filter(pl.col("run_id") == "a").sort("metric")
    correct, quality = s.row(0, named=True), s.row(1, named=True)
    assert (correct["kind"], correct["n"], correct["mean"], correct["n_passed"]) == \
        ("binary", 4, 0.75, 3)
    assert correct["sd"] == pytest.approx(statistics.stdev([1, 0, 1, 1]))
    assert (quality["n"], quality["n_unscored"]) == (3, 1)
    assert quality["mean"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert quality["sd"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.9]))
    assert quality["n_passed"] == 2
    assert queries.run_metric_summary(con, ["o"])["n_passed"].to_list() == [None]  # no flag
    only_b = queries.run_metric_summary(con, ["b"])
    assert set(only_b["run_id"]) == {"b"} and only_b.height == 2
    assert queries.run_metric_summary(con, []).height == 0


def test_lists_of_datasets_metrics_and_strata(con) -> None:
    assert queries.datasets(con)["dataset"].to_list() == ["support", "other"]
    assert queries.metrics(con, "support")["metric"].to_list() == ["correctness", "quality"]
    assert queries.metrics(con)["metric"].to_list() == ["bleu", "correctness", "quality"]
    keys = queries.strata_keys(con, "support")
    assert keys["key"].to_list() == ["tier", QUOTED_KEY]  # as the cases list them
    assert keys["n_values"].to_list() == [2, 2]
    assert queries.online_strata_keys(con)["key"].to_list() == ["channel"]
    assert queries.online_metrics(con)["metric"].to_list() == ["correctness"]


def test_offline_trend_one_point_per_run(con) -> None:
    t = queries.offline_trend(con, "support", "correctness")
    assert t["run_id"].to_list() == ["a", "b"]  # by started_at, other datasets left out
    assert t["mean"].to_list() == [0.75, 0.5]
    assert t["n"].to_list() == [4, 4]
    assert t["release"].to_list() == ["v1", None]
    assert t["approved"].to_list() == [True, False]


def test_offline_trend_split_by_stratum(con) -> None:
    t = queries.offline_trend(con, "support", "correctness", "tier")
    got = {(r["run_id"], r["stratum"]): r["mean"] for r in t.iter_rows(named=True)}
    assert got == {("a", "gold"): 0.5, ("a", "silver"): 1.0,
                   ("b", "gold"): 1.0, ("b", "silver"): 0.0}


def test_a_stratum_key_with_a_quote_is_just_a_key(con) -> None:
    t = queries.offline_trend(con, "support", "quality", QUOTED_KEY)
    a = {r["stratum"]: (r["n"], r["mean"]) for r in t.filter(pl.col("run_id") == "a")
         .iter_rows(named=True)}
    assert a["x"] == (1, pytest.approx(0.5))  # c3 is unscored
    assert a["y"] == (2, pytest.approx(0.8))


@pytest.mark.parametrize("key", ["tier'] IS NULL OR true --",
                                 "x'); DROP VIEW runs; --", "' || (SELECT 1) || '"])
def test_sql_in_a_stratum_key_is_treated_as_a_value(con, key: str) -> None:
    t = queries.offline_trend(con, "support", "correctness", key)
    assert t["stratum"].to_list() == [None, None]  # nobody has that key: one group per run
    assert t["n"].to_list() == [4, 4]
    d = queries.online_daily(con, "correctness", date(2026, 2, 1), date(2026, 2, 3), key)
    assert d["stratum"].null_count() == d.height == 3
    assert queries.runs_overview(con).height == 3  # the views are all still there


def test_sql_in_a_metric_or_dataset_matches_nothing(con) -> None:
    assert queries.offline_trend(con, "support", "correctness' OR '1'='1").height == 0
    assert queries.runs_overview(con, "x' OR 1=1 --").height == 0
    assert queries.metrics(con, "support' OR true --").height == 0


def test_online_daily_window_is_inclusive(con) -> None:
    d = queries.online_daily(con, "correctness", date(2026, 2, 1), date(2026, 2, 3))
    assert d["day"].to_list() == [date(2026, 2, 1), date(2026, 2, 2), date(2026, 2, 3)]
    assert d["n"].to_list() == [2, 3, 1]
    assert d["mean"].to_list() == [0.5, 1.0, 0.0]
    assert queries.online_daily(con, "correctness", date(2026, 2, 2),
                                date(2026, 2, 2))["n"].to_list() == [3]


def test_online_daily_split_by_stratum(con) -> None:
    d = queries.online_daily(con, "correctness", date(2026, 2, 1), date(2026, 2, 3), "channel")
    got = {(r["day"].day, r["stratum"]): (r["n"], r["mean"]) for r in d.iter_rows(named=True)}
    assert got == {(1, "chat"): (1, 1.0), (1, "email"): (1, 0.0), (2, "chat"): (1, 1.0),
                   (2, "email"): (2, 1.0), (3, "chat"): (1, 0.0)}


def test_online_range_and_releases(con) -> None:
    assert queries.online_date_range(con).row(0) == (date(2026, 2, 1), date(2026, 2, 3))
    r = queries.online_releases(con, date(2026, 2, 1), date(2026, 2, 3))
    assert r.select("release", "first_day", "n_traces").rows() == [
        ("r1", date(2026, 2, 1), 2), ("r2", date(2026, 2, 2), 4)]
    assert queries.online_releases(con, date(2026, 2, 3), date(2026, 2, 3))["release"] \
        .to_list() == ["r2"]


def test_every_query_answers_on_an_empty_warehouse(empty_root: str) -> None:
    c = connect(empty_root)
    day = date(2026, 1, 1)
    for frame in (queries.runs_overview(c), queries.run_metric_summary(c),
                  queries.datasets(c), queries.metrics(c), queries.online_metrics(c),
                  queries.strata_keys(c), queries.online_strata_keys(c),
                  queries.offline_trend(c, "d", "m"), queries.offline_trend(c, "d", "m", "k"),
                  queries.online_daily(c, "m", day, day),
                  queries.online_daily(c, "m", day, day, "k"),
                  queries.online_releases(c, day, day)):
        assert frame.height == 0
    assert queries.online_date_range(c).row(0) == (None, None)


# --- against the demo's raw Parquet, read with polars (no DuckDB, no evallib) -------------

def _raw(root: str, table: str) -> pl.DataFrame:
    files = sorted(str(p) for p in Path(root, table).rglob("part-*.parquet"))
    return pl.read_parquet(files, hive_partitioning=True)


def _committed(root: str, table: str) -> pl.DataFrame:
    """Rows of the current write of each run (what the views promise)."""
    runs = _raw(root, "runs").sort("committed_at").group_by("run_id").last()
    return _raw(root, table).join(runs.select("run_id", "write_id"), on=["run_id", "write_id"])


def test_run_metric_summary_matches_the_raw_parquet(demo_root: str) -> None:
    want = (_committed(demo_root, "scores").group_by("run_id", "metric")
            .agg(n=pl.col("value").count(), mean=pl.col("value").mean(),
                 sd=pl.col("value").std(),
                 n_passed=pl.when(pl.col("passed").count() > 0).then(pl.col("passed").sum()))
            .sort("run_id", "metric"))
    with connect(demo_root) as c:
        got = queries.run_metric_summary(c)
    assert got.select("run_id", "metric").rows() == want.select("run_id", "metric").rows()
    assert got["n"].to_list() == want["n"].to_list()
    assert got["n_passed"].to_list() == want["n_passed"].to_list()
    assert got["mean"].to_list() == pytest.approx(want["mean"].to_list())
    assert got["sd"].to_list() == pytest.approx(want["sd"].to_list())


def test_offline_trend_by_stratum_matches_the_raw_parquet(demo_root: str) -> None:
    runs = _raw(demo_root, "runs").sort("committed_at").group_by("run_id").last()
    dataset = runs.sort("started_at")["dataset"][-1]
    metric = _committed(demo_root, "scores")["metric"].sort()[0]
    cases = _committed(demo_root, "cases").select(
        "run_id", "case_id", pl.col("strata").map.get("query_type").alias("stratum"))
    want = (_committed(demo_root, "scores").filter(pl.col("metric") == metric)
            .join(runs.filter(pl.col("dataset") == dataset).select("run_id"), on="run_id")
            .join(cases, on=["run_id", "case_id"])
            .group_by("run_id", "stratum").agg(n=pl.col("value").count(),
                                               mean=pl.col("value").mean()))
    with connect(demo_root) as c:
        got = queries.offline_trend(c, dataset, metric, "query_type")
    key = ["run_id", "stratum"]
    joined = got.join(want, on=key, how="full", coalesce=True, suffix="_want", nulls_equal=True)
    assert joined.height == got.height == want.height > 1
    assert joined["n"].to_list() == joined["n_want"].to_list()
    assert joined["mean"].to_list() == pytest.approx(joined["mean_want"].to_list())


def test_online_daily_matches_the_raw_parquet(demo_root: str) -> None:
    scores = _raw(demo_root, "online_scores")
    metric = scores["metric"].sort()[0]
    last = scores["date"].max()
    start = scores["date"].filter(scores["date"] <= last).unique().sort()[-7]
    want = (scores.filter((pl.col("metric") == metric) & pl.col("date").is_between(start, last))
            .group_by("date").agg(n=pl.col("value").count(), mean=pl.col("value").mean())
            .sort("date"))
    with connect(demo_root) as c:
        got = queries.online_daily(c, metric, start, last)
    assert got["day"].to_list() == want["date"].to_list()
    assert got["n"].to_list() == want["n"].to_list()
    assert got["mean"].to_list() == pytest.approx(want["mean"].to_list())


# --- stats --------------------------------------------------------------------------------

Z95 = 1.959963984540054


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p, z2 = k / n, Z95**2
    centre, half = (p + z2 / (2 * n)), Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - half) / (1 + z2 / n), (centre + half) / (1 + z2 / n)


def test_wilson_interval_matches_the_formula() -> None:
    low, high = wilson_interval([8, 0, 20], [10, 10, 20])
    for i, (k, n) in enumerate([(8, 10), (0, 10), (20, 20)]):
        assert (low[i], high[i]) == pytest.approx(_wilson_by_hand(k, n))
    assert low[1] == 0.0 and high[2] == pytest.approx(1.0)


def test_t_interval_uses_student_t() -> None:
    low, high = t_interval([0.5], [0.1], [5])
    half = 2.7764451051977987 * 0.1 / math.sqrt(5)  # t(0.975, df=4)
    assert (low[0], high[0]) == pytest.approx((0.5 - half, 0.5 + half))


def test_with_intervals_by_kind_and_null_when_undefined() -> None:
    df = pl.DataFrame({"kind": ["binary", "binary", "continuous", "ordinal", "ordinal"],
                       "n": [10, 0, 5, 1, 3], "mean": [0.8, None, 0.5, 4.0, 3.0],
                       "sd": [0.42, None, 0.1, None, 0.0]})
    out = with_intervals(df)
    assert out.row(0, named=True)["ci_low"] == pytest.approx(_wilson_by_hand(8, 10)[0])
    assert out["ci_low"][1] is None and out["ci_high"][1] is None  # nothing scored
    assert out["ci_high"][2] == pytest.approx(0.5 + 2.7764451051977987 * 0.1 / math.sqrt(5))
    assert out["ci_low"][3] is None  # one value: no spread to speak of
    assert (out["ci_low"][4], out["ci_high"][4]) == (3.0, 3.0)
    assert with_intervals(df.head(0)).columns == [*df.columns, "ci_low", "ci_high"]
