"""Rollups: the dashboard's aggregates answer the same with them, without them, and with
some days or runs gone stale; DuckDB and Spark compute the same rollups."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from evallib import Warehouse, connect, queries
from evallib.cli import main
from evallib.demo import build_demo
from evallib.warehouse import online_rollups as traffic
from evallib.warehouse import schema as S
from evallib.warehouse.catalog import current, list_table
from evallib.warehouse.compact import compact
from evallib.warehouse.rollup import rollup
from evallib.warehouse.store import Store


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo warehouse; the demo build rolls it up."""
    root = tmp_path_factory.mktemp("rollup") / "warehouse"
    build_demo(str(root), days=40, online_per_day=120, cases=60, seed=11)
    return root


def _copy(src: Path, dst: Path, rollups: bool) -> Path:
    shutil.copytree(src, dst, ignore=None if rollups else
                    shutil.ignore_patterns(*S.ROLLUPS))
    return dst


def _answers(root: Path) -> dict[str, pl.DataFrame]:
    """Every query that reads the score moments, over the whole range and a sub-window."""
    with connect(root) as con:
        runs = queries.runs_overview(con)
        dataset, ids = runs["dataset"][0], runs["run_id"].to_list()
        first, last = queries.online_date_range(con).row(0)
        mid = first + (last - first) / 2
        out = {"summary": queries.run_metric_summary(con),
               "summary of two": queries.run_metric_summary(con, ids[:2])}
        for key in (None, "query_type", "difficulty"):
            for metric in ("correctness", "faithfulness"):
                out[f"offline {metric} {key}"] = queries.offline_trend(con, dataset, metric, key)
            out[f"online {key}"] = queries.online_daily(con, "correctness", first, last, key)
            out[f"online half {key}"] = queries.online_daily(con, "correctness", mid, last, key)
        for by, key in ((None, None), ("release", None), ("variant", None),
                        ("stratum", "difficulty")):  # the Online page's daily views
            for name in ("online_health", "online_quality", "online_feedback"):
                fn = getattr(queries, name)
                out[f"{name} {by}"] = fn(con, first, last, False, by, key)
                out[f"{name} half {by}"] = fn(con, mid, last, False, by, key)
        out["variant days"] = queries.online_variant_days(con, first, last)
        out["drift"] = queries.online_drift_counts(con, first, mid, mid + timedelta(days=1),
                                                   last)
        out["releases"] = queries.online_releases(con, mid, last)
        out["score x feedback"] = queries.score_feedback_counts(con, first, last)
        out["score x feedback half"] = queries.score_feedback_counts(con, mid, last)
        out["judge x human"] = queries.judge_human_counts(con, first, last)
        for label, start in (("", first), (" half", mid)):  # the RAG page, online
            for k in (1, 5):
                out[f"retrieval{label} {k}"] = queries.online_retrieval_metrics(con, start,
                                                                                last, k)
                out[f"generation{label} {k}"] = queries.online_generation_by_evidence(
                    con, start, last, k)
                out[f"attribution{label} {k}"] = queries.online_attribution_counts(
                    con, start, last, k, "correctness", "faithfulness")
                out[f"failure days{label} {k}"] = queries.online_failure_days(
                    con, start, last, k, "correctness", "", ("retrieval", "other"),
                    "difficulty", "hard")
    return out


def _runs(root: Path) -> int:
    with connect(root) as con:
        return con.sql("SELECT count(*) FROM runs").fetchall()[0][0]


def _traffic_unrolled(root: Path) -> dict[str, int]:
    """Per traffic rollup, the days the views read raw."""
    store = Store(str(root))
    listings = {t.name: list_table(store, t) for t in S.TABLES.values()}
    out = {}
    for spec in traffic.SPECS:
        cur = current(list_table(store, spec.table), traffic.fingerprints(spec, listings))
        days = {p.partition for p in listings[spec.source.name].parts}
        out[spec.table.name] = len(days - cur.fresh)
    return out


def _assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].height > 0, name
        # sums pooled in another order: equal to the last few bits
        assert_frame_equal(a[name], b[name], check_exact=False, rel_tol=1e-9, abs_tol=1e-12), \
            name


def _unrolled(root: Path) -> tuple[int, int]:
    """Raw score rows the views still read (days and runs not rolled up)."""
    with connect(root) as con:
        return (con.sql("SELECT count(*) FROM online_scores_unrolled").fetchall()[0][0],
                con.sql("SELECT count(*) FROM scores_unrolled").fetchall()[0][0])


def _late_score_and_a_replaced_run(root: Path) -> None:
    wh = Warehouse(root)
    with connect(root) as con:
        day = queries.online_date_range(con)["last_day"][0] - timedelta(days=3)
        trace = con.sql("SELECT trace_id FROM online_traces WHERE date = $d ORDER BY trace_id "
                        "LIMIT 1", params={"d": day}).fetchall()[0][0]
        run = queries.runs_overview(con).row(-1, named=True)
        cases = con.sql("SELECT case_id, strata FROM cases WHERE run_id = $r",
                        params={"r": run["run_id"]}).pl()
    at = datetime(day.year, day.month, day.day, 23, tzinfo=UTC)
    wh.record_online(scores=[{"trace_id": trace, "metric": "correctness", "value": 0,
                              "kind": "binary", "timestamp": at}])
    # a late trace two days before, and feedback on it: its day and the week after go stale
    late = at - timedelta(days=2)
    wh.record_online([{"trace_id": "late-trace", "timestamp": late, "release": "late",
                       "variant": "control", "latency_ms": 123.0,
                       "strata": {"difficulty": "hard"}}],
                     feedback=[{"trace_id": "late-trace", "kind": "thumbs", "value": 1,
                                "timestamp": at}])
    wh.record_run({"run_id": run["run_id"], "name": "redone", "dataset": run["dataset"],
                   "started_at": run["started_at"]},
                  cases.to_dicts(),
                  [{"case_id": c, "metric": "correctness", "value": 1.0, "kind": "binary"}
                   for c in cases["case_id"]], replace=True)


def test_same_answers_with_and_without_rollups(rolled: Path, tmp_path: Path) -> None:
    with_ = _copy(rolled, tmp_path / "with", rollups=True)
    without = _copy(rolled, tmp_path / "without", rollups=False)
    assert _unrolled(with_) == (0, 0)  # everything comes from the rollups …
    assert set(_traffic_unrolled(with_).values()) == {0}
    assert all(n > 0 for n in _unrolled(without))  # … or from the raw rows
    assert set(_traffic_unrolled(without).values()) == {40}
    for root, gap in ((with_, (0, 0)), (without, (40 - 8, _runs(without)))):
        with connect(root) as con:  # what the dashboard's hint says
            assert queries.unrolled(con).row(0) == gap
    _assert_same(_answers(with_), _answers(without))

    for root in (with_, without):  # a day and a run go stale: those are read raw
        _late_score_and_a_replaced_run(root)
    online, offline = _unrolled(with_)
    assert 0 < online < _unrolled(without)[0] and 0 < offline < _unrolled(without)[1]
    # the late trace's day; scores and feedback belong to the traces of the week before
    # them, so their days from the trace's to the last (6 days) are read raw; so do the
    # retrievals' (their trace's refusal) and the failing answers' (their trace's error).
    # RAG scores join retrievals only: the score's day. Scores × feedback join the feedback
    # of a week either side: the feedback's day (3 before the last) and the week before, 11
    assert _traffic_unrolled(with_) == {"online_trace_rollup": 1, "online_latency_rollup": 1,
                                        "online_quality_rollup": 6,
                                        "online_feedback_rollup": 6,
                                        "online_trace_drift_rollup": 1,
                                        "online_score_drift_rollup": 1,
                                        "online_rag_item_rollup": 6,
                                        "online_rag_score_rollup": 1,
                                        "online_rag_failure_rollup": 6,
                                        "online_score_feedback_rollup": 11,
                                        "online_score_label_rollup": 1}
    _assert_same(_answers(with_), _answers(without))

    report = rollup(with_)  # only the stale day and the replaced run are rolled again
    assert (report.days, report.runs) == (1, 1)
    assert _unrolled(with_) == (0, 0)
    assert set(_traffic_unrolled(with_).values()) == {0}
    _assert_same(_answers(with_), _answers(without))

    # human labels are not kept by day: an import makes every day of their rollup stale
    for root in (with_, without):
        with connect(root) as con:
            trace = con.sql("SELECT trace_id FROM online_scores WHERE metric = 'correctness' "
                            "ORDER BY trace_id LIMIT 1").fetchall()[0][0]
        Warehouse(root).record_human_labels([{"trace_id": trace, "metric": "correctness",
                                              "value": 1.0, "labeler": "ana",
                                              "labeled_at": datetime.now(UTC)}])
    assert _traffic_unrolled(with_)["online_score_label_rollup"] == 40
    assert {n for t, n in _traffic_unrolled(with_).items()
            if t != "online_score_label_rollup"} == {0}
    _assert_same(_answers(with_), _answers(without))


def test_rollups_stay_fresh_through_compaction(rolled: Path, tmp_path: Path) -> None:
    root = _copy(rolled, tmp_path / "w", rollups=True)
    with connect(root) as con:
        day = queries.online_date_range(con)["last_day"][0]
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    for i in range(2):  # two more small files on the last day
        Warehouse(root).record_online(
            [{"trace_id": f"extra-{i}", "timestamp": ts}],
            [{"trace_id": f"extra-{i}", "timestamp": ts, "metric": "correctness", "value": 1,
              "kind": "binary"}])
    rollup(root)
    before = _answers(root)
    assert _unrolled(root) == (0, 0)
    assert [m.partition for m in compact(root, grace=0).merged if m.table == "online_scores"] \
        == [str(day)]
    assert _unrolled(root) == (0, 0)  # the merged file holds the same original files
    _assert_same(_answers(root), before)


def test_one_current_file_per_rollup(rolled: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(rolled, tmp_path / "w", rollups=True)
    assert main(["rollup", "--warehouse", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["days"], report["runs"], report["rows"]) == (0, 0, 0)
    assert report["fresh_days"] == 40 and report["fresh_runs"] > 10
    _late_score_and_a_replaced_run(root)
    assert main(["rollup", "--warehouse", str(root), "--since", "2000-01-01",
                 "--grace", "0"]) == 0
    assert "rolled up 1 days of online scores and 1 runs" in capsys.readouterr().out
    for name in S.ROLLUPS:  # the superseded file is gone
        assert len(list((root / name).glob("part-*.parquet"))) == 1
    assert main(["rollup", "--warehouse", str(root), "--since", "June"]) == 2
    assert "--since: 'June' is not a date" in capsys.readouterr().err
    assert main(["rollup", "--warehouse", str(root), "--since", "7d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["days"] == 0  # nothing new since


def test_since_leaves_earlier_days_raw(rolled: Path, tmp_path: Path) -> None:
    root = _copy(rolled, tmp_path / "w", rollups=False)
    with connect(root) as con:
        first, last = queries.online_date_range(con).row(0)
    report = rollup(root, since=last - timedelta(days=9))
    assert report.days == 10
    with connect(root) as con:
        raw_days = con.sql("SELECT count(DISTINCT date) FROM online_scores_unrolled"
                           ).fetchall()[0][0]
    assert raw_days == (last - first).days + 1 - 10


def _spark_ready() -> None:
    required = os.environ.get("EVALLIB_REQUIRE_SPARK") == "1"
    reason = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        reason = "pyspark is not installed (the spark extra)"
    if reason is None and shutil.which("java") is None:
        reason = "no Java for Spark"
    if reason:
        if required:
            pytest.fail(reason)
        pytest.skip(reason)


def test_spark_and_duckdb_compute_the_same_rollups(rolled: Path, tmp_path: Path) -> None:
    _spark_ready()
    by = {}
    for engine in ("duckdb", "spark"):
        root = _copy(rolled, tmp_path / engine, rollups=False)
        report = rollup(root, engine=engine)
        assert report.days == 40 and report.runs > 10
        by[engine] = {name: pl.read_parquet(next((root / name).glob("part-*.parquet")))
                      for name in S.ROLLUPS}
        by[engine]["answers"] = _answers(root)
    for name, table in S.ROLLUPS.items():
        a, b = (by[e][name].sort(table.schema.names, nulls_last=True)
                for e in ("duckdb", "spark"))  # the group columns come first: a unique order
        assert a.height > (10 if name == "online_score_label_rollup" else 100), name  # labels: few
        assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
    _assert_same(by["duckdb"]["answers"], by["spark"]["answers"])


def test_spark_refuses_an_object_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollup", "--warehouse", "s3://bucket/x", "--engine", "spark"]) == 2
    assert "--engine spark reads local warehouses" in capsys.readouterr().err


def test_demo_dashboard_reads_rollups(demo_root: str) -> None:
    """The demo build leaves nothing to read raw: the pages aggregate rollups."""
    assert _unrolled(Path(demo_root)) == (0, 0)
