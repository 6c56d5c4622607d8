"""Recording API: round trip through real Parquet and DuckDB, validation, replace, commit."""

from __future__ import annotations

import glob
import os
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evallib import DataError, RunExistsError, Warehouse, connect
from evallib.warehouse.schema import CASES

RUN = {"name": "nightly", "dataset": "support", "model": "m-1", "judge_version": "j1"}


def _cases(n: int = 3) -> list[dict]:
    return [{"case_id": f"c{i}", "input": f"q{i}", "expected": f"a{i}",
             "strata": {"query_type": "billing" if i % 2 else "account"},
             "latency_ms": 100.0 + i, "tokens_in": 10, "tokens_out": 5, "cost_usd": 0.001,
             "tags": ["critical"] if i == 0 else []} for i in range(n)]


def _scores(n: int = 3) -> list[dict]:
    return [{"case_id": f"c{i}", "metric": "correctness", "value": float(i % 2),
             "kind": "binary", "passed": bool(i % 2)} for i in range(n)]


def test_round_trip_every_table(tmp_path):
    wh = Warehouse(tmp_path)
    run_id = wh.record_run(
        {**RUN, "started_at": "2026-11-01T09:00:00+01:00", "tags": ["ci"], "approved": True},
        _cases(), _scores(),
        [{"case_id": "c1", "doc_id": "kb-7", "rank": 1, "relevant": True, "cited": False}],
    )
    wh.record_online(
        traces=[{"trace_id": "t1", "timestamp": "2026-11-02T23:30:00Z", "release": "v1",
                 "strata": {"segment": "pro"}, "refusal": False}],
        scores=[{"trace_id": "t1", "timestamp": "2026-11-02T23:31:00Z", "metric": "faith",
                 "value": 4, "kind": "ordinal", "passed": True}],
        feedback=[{"trace_id": "t1", "timestamp": "2026-11-03T00:10:00Z", "kind": "thumbs",
                   "value": 1}],
        retrievals=[{"trace_id": "t1", "timestamp": "2026-11-02T23:30:00Z", "doc_id": "kb-1",
                     "rank": 1}],
    )
    wh.record_human_labels([{"trace_id": "t1", "metric": "correctness", "value": 1,
                             "labeler": "ana", "labeled_at": "2026-11-04T10:00:00Z"}])
    con = connect(tmp_path)
    run = con.sql("SELECT * FROM runs").pl().row(0, named=True)
    assert run["run_id"] == run_id and run["approved"] is True and run["tags"] == ["ci"]
    assert run["started_at"] == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # stored in UTC
    assert len(run["dataset_version"]) == 12
    joined = con.sql(
        "SELECT c.case_id, c.strata['query_type'] AS qt, s.value FROM cases c "
        "JOIN scores s USING (run_id, case_id) ORDER BY c.case_id").pl()
    assert joined.to_dicts() == [{"case_id": "c0", "qt": "account", "value": 0.0},
                                 {"case_id": "c1", "qt": "billing", "value": 1.0},
                                 {"case_id": "c2", "qt": "account", "value": 0.0}]
    assert con.sql("SELECT doc_id FROM retrievals").fetchall() == [("kb-7",)]
    # the trace's UTC day is its partition, feedback lands on its own day
    assert con.sql("SELECT CAST(date AS VARCHAR) FROM online_traces").fetchall() == \
        [("2026-11-02",)]
    assert con.sql("SELECT CAST(date AS VARCHAR) FROM feedback").fetchall() == [("2026-11-03",)]
    assert con.sql("SELECT count(*) FROM online_scores JOIN online_retrievals "
                   "USING (trace_id)").fetchall() == [(1,)]
    assert con.sql("SELECT labeler FROM human_labels").fetchall() == [("ana",)]
    # open format: the files read as plain hive-partitioned Parquet without evallib
    files = glob.glob(str(tmp_path / "scores" / "run_id=*" / "part-*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).num_rows == 3


def test_polars_and_arrow_batches_are_accepted(tmp_path):
    wh = Warehouse(tmp_path)
    cases = pl.DataFrame({"case_id": ["a", "b"], "input": ["x", "y"]})
    scores = pa.table({"case_id": ["a", "b"], "metric": ["m", "m"], "value": [0.5, float("nan")],
                       "kind": ["continuous", "continuous"]})
    wh.record_run(RUN, cases, scores)
    values = connect(tmp_path).sql("SELECT value FROM scores ORDER BY case_id").fetchall()
    assert values == [(0.5,), (None,)]  # NaN is stored as "could not score"


def test_empty_and_absent_tables_have_typed_views(tmp_path):
    con = connect(tmp_path / "nothing-here")
    for view in ("runs", "cases", "scores", "retrievals", "online_traces", "online_scores",
                 "online_retrievals", "feedback", "human_labels"):
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]
    got = con.sql("SELECT * FROM scores").pl()
    assert got.schema["value"] == pl.Float64 and "run_id" in got.columns


@pytest.mark.parametrize(
    ("table", "bad", "row", "field", "words"),
    [
        ("scores", {"kind": "binry"}, 1, "kind", "not one of binary"),
        ("scores", {"value": 3.0}, 1, "value", "must be 0 or 1"),
        ("scores", {"value": "high"}, 1, "value", "not a valid number"),
        ("scores", {"value": float("inf"), "kind": "continuous"}, 1, "value", "finite"),
        ("scores", {"metric": None}, 1, "metric", "required"),
        ("scores", {"case_id": "ghost"}, 1, "case_id", "not among the run's cases"),
        ("scores", {"case_id": "c0"}, 1, "metric", "duplicate"),
        ("scores", {"colour": "red"}, 1, "colour", "unknown field"),
        ("cases", {"latency_ms": -5.0}, 1, "latency_ms", "negative"),
        ("cases", {"tokens_in": 1.5}, 1, "tokens_in", "integer"),
        ("cases", {"strata": "billing"}, 1, "strata", "object"),
        ("cases", {"case_id": ""}, 1, "case_id", "empty"),
        ("cases", {"case_id": "c0"}, 1, "case_id", "duplicate"),
    ],
)
def test_bad_rows_are_refused_by_row_and_field(tmp_path, table, bad, row, field, words):
    wh = Warehouse(tmp_path)
    data = {"cases": _cases(), "scores": _scores()}
    data[table][row] = {**data[table][row], **bad}
    with pytest.raises(DataError) as err:
        wh.record_run(RUN, data["cases"], data["scores"])
    assert (err.value.source, err.value.row, err.value.field) == (table, row, field)
    assert words in str(err.value)
    assert not os.path.exists(tmp_path / "runs")  # nothing was written


def test_bad_run_metadata_is_refused(tmp_path):
    wh = Warehouse(tmp_path)
    for run, field in [({"dataset": "d"}, "name"), ({**RUN, "run_id": "a/b"}, "run_id"),
                       ({**RUN, "modle": "x"}, "modle"),
                       ({**RUN, "started_at": "yesterday"}, "started_at")]:
        with pytest.raises(DataError) as err:
            wh.record_run(run, _cases())
        assert err.value.field == field


def test_online_bad_rows_name_table_row_and_field(tmp_path):
    wh = Warehouse(tmp_path)
    ok = {"trace_id": "t", "timestamp": "2026-11-02T10:00:00Z", "kind": "thumbs", "value": 1}
    with pytest.raises(DataError) as err:
        wh.record_online(feedback=[ok, {**ok, "kind": "smiley"}])
    assert (err.value.source, err.value.row, err.value.field) == ("feedback", 1, "kind")
    with pytest.raises(DataError) as err:
        wh.record_online(traces=[{"trace_id": "t", "timestamp": "noon"}])
    assert err.value.field == "timestamp"
    assert not os.path.exists(tmp_path / "online_traces")


def test_existing_run_is_refused_unless_replace(tmp_path):
    wh = Warehouse(tmp_path)
    run_id = wh.record_run({**RUN, "run_id": "r1"}, _cases(3), _scores(3))
    with pytest.raises(RunExistsError):
        wh.record_run({**RUN, "run_id": run_id}, _cases(1))
    wh.record_run({**RUN, "run_id": run_id, "model": "m-2"}, _cases(2), _scores(2),
                  replace=True)
    con = connect(tmp_path)
    assert con.sql("SELECT model FROM runs").fetchall() == [("m-2",)]
    assert con.sql("SELECT count(*) FROM cases").fetchall() == [(2,)]
    assert con.sql("SELECT count(*) FROM scores").fetchall() == [(2,)]
    # the replaced write's files are gone, not just hidden
    assert len(glob.glob(str(tmp_path / "cases" / "*" / "part-*.parquet"))) == 1


def test_data_without_its_runs_row_is_invisible(tmp_path):
    """The runs row is the commit: cases and scores of an uncommitted write never show."""
    wh = Warehouse(tmp_path)
    wh.record_run({**RUN, "run_id": "r1"}, _cases(), _scores())
    full = pa.Table.from_pylist(
        [{c: None for c in CASES.schema.names} | {"write_id": "w-dead", "case_id": k}
         for k in ("x", "y")], schema=CASES.schema)
    wh.store.write_part(CASES, full, "r1")
    wh.store.write_part(CASES, full, "r2")
    con = connect(tmp_path)
    assert con.sql("SELECT count(*) FROM cases").fetchall() == [(3,)]
    assert con.sql("SELECT count(*) FROM _all_cases").fetchall() == [(7,)]


def test_same_cases_same_dataset_version(tmp_path):
    wh = Warehouse(tmp_path)
    a = wh.record_run(RUN, _cases())
    b = wh.record_run(RUN, list(reversed(_cases())))
    c = wh.record_run(RUN, _cases(4))
    v = dict(connect(tmp_path).sql("SELECT run_id, dataset_version FROM runs").fetchall())
    assert v[a] == v[b] != v[c]


def test_large_batch_validates_vectorised(tmp_path):
    n = 200_000
    ids = [f"c{i}" for i in range(n // 2)]
    cases = pa.table({"case_id": ids})
    scores = pa.table({"case_id": ids * 2, "metric": ["a"] * (n // 2) + ["b"] * (n // 2),
                       "value": [1.0, 0.0] * (n // 2), "kind": ["binary"] * n})
    Warehouse(tmp_path).record_run(RUN, cases, scores)
    assert connect(tmp_path).sql("SELECT count(*), sum(value) FROM scores").fetchall() == \
        [(n, n / 2)]


def test_a_connection_is_a_snapshot_of_committed_runs(tmp_path):
    wh = Warehouse(tmp_path)
    wh.record_run({**RUN, "run_id": "r1"}, _cases(), _scores())
    before = connect(tmp_path)
    wh.record_run({**RUN, "run_id": "r2"}, _cases(), _scores())
    assert before.sql("SELECT count(DISTINCT run_id) FROM scores").fetchall() == [(1,)]
    assert connect(tmp_path).sql("SELECT count(DISTINCT run_id) FROM scores").fetchall() == \
        [(2,)]


def test_scores_carry_their_strata_in_one_canonical_form(tmp_path):
    wh = Warehouse(tmp_path)
    wh.record_run(RUN, [{"case_id": "a", "strata": {"q": "billing", "d": "hard"}},
                        {"case_id": "b", "strata": {"d": "hard", "q": "billing"}},
                        {"case_id": "c"}],
                  [{"case_id": k, "metric": "m", "value": 1, "kind": "binary"} for k in "abc"])
    wh.record_online(traces=[{"trace_id": "t", "timestamp": "2026-11-01T10:00:00Z",
                              "strata": {"segment": "pro"}}])
    wh.record_online(scores=[{"trace_id": "t", "timestamp": "2026-11-02T09:00:00Z",
                              "metric": "m", "value": 1, "kind": "binary"}])  # a day later
    con = connect(tmp_path)
    assert con.sql("SELECT case_id, strata_json FROM scores ORDER BY 1").fetchall() == [
        ("a", '{"d":"hard","q":"billing"}'), ("b", '{"d":"hard","q":"billing"}'), ("c", None)]
    assert con.sql("SELECT strata_json FROM online_scores").fetchall() == [('{"segment":"pro"}',)]


def test_separator_characters_in_strata_are_refused(tmp_path):
    with pytest.raises(DataError) as err:
        Warehouse(tmp_path).record_run(RUN, [{"case_id": "a", "strata": {"q": "x"}},
                                             {"case_id": "b", "strata": {"q\x1f": "y"}}])
    assert (err.value.row, err.value.field) == (1, "strata")
