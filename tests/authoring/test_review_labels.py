"""The one path labels take into the warehouse (`evallib.authoring.review.record_labels`, used by
the Review page and by `evallib review import`): the same keys and rules both ways, labels of
a run's cases, taking a label back, and the page's stratified queue."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from evallib import DataError, Warehouse, connect
from evallib.authoring.review import record_labels, retract_label, review_queue
from evallib.cli import main
from evallib.warehouse.db import lost_file

TS = datetime(2026, 3, 2, 9, tzinfo=UTC)
SEGMENTS = ["smb"] * 12 + ["enterprise"] * 3 + ["free"] * 3


def _warehouse(root) -> Warehouse:
    """18 judged traces (pass/fail) and one run of 3 judged cases."""
    wh = Warehouse(root)
    wh.record_online(
        traces=[{"trace_id": f"t{i:02d}", "timestamp": TS, "input": f"q{i}", "output": f"a{i}",
                 "strata": {"segment": s}} for i, s in enumerate(SEGMENTS)],
        scores=[{"trace_id": f"t{i:02d}", "timestamp": TS, "metric": "correctness",
                 "value": float(i % 2), "kind": "binary", "scorer_version": "judge@v1"}
                for i in range(18)])
    wh.record_run({"run_id": "r1", "name": "nightly", "dataset": "support"},
                  cases=[{"case_id": f"c{i}", "input": f"q{i}", "output": f"a{i}"}
                         for i in range(3)],
                  scores=[{"case_id": f"c{i}", "metric": "tone", "value": 4.0,
                           "kind": "ordinal"} for i in range(3)])
    return wh


def _label(**kw) -> dict:
    return {"metric": "correctness", "value": 1.0, "labeler": "ana",
            "labeled_at": datetime.now(UTC), "note": None} | kw


def _stored(root) -> pl.DataFrame:
    with connect(root) as con:
        return con.sql("SELECT trace_id, run_id, case_id, metric, value, labeler "
                       "FROM human_labels ORDER BY ALL").pl()


def test_a_label_written_twice_is_written_once_whichever_way(tmp_path, capsys):
    """The page writes a label; writing it again, or importing a sheet with the same label
    (same trace, metric, rater, value), stores nothing new; a changed value replaces the
    rater's earlier label; another rater's label of the same trace is stored."""
    wh = _warehouse(tmp_path)
    first = record_labels(wh, [_label(trace_id="t01")], source="the Review page")
    again = record_labels(wh, [_label(trace_id="t01")], source="the Review page")
    assert (first.imported, again.imported, again.already_stored) == (1, 0, 1)
    changed = record_labels(wh, [_label(trace_id="t01", value=0.0)], source="the Review page")
    assert (changed.imported, changed.replaced) == (0, 1)
    assert _stored(tmp_path).select("value").rows() == [(0.0,)]
    sheet = tmp_path / "labels.csv"
    with sheet.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trace_id", "metric", "value", "rater"])
        w.writerows([["t01", "correctness", "no", "ana"], ["t01", "correctness", "no", "bo"]])
    assert main(["review", "import", str(sheet), "--warehouse", str(tmp_path)]) == 0
    assert "imported 1 new labels, replaced 0 changed ones (0 rows without a value, 1 " \
        "already stored)" in capsys.readouterr().out
    got = _stored(tmp_path)
    assert got.select("trace_id", "value", "labeler").rows() == [("t01", 0.0, "ana"),
                                                                 ("t01", 0.0, "bo")]


def test_the_same_rules_refuse_bad_labels_by_row_and_field(tmp_path):
    wh = _warehouse(tmp_path)
    with pytest.raises(DataError, match=r"page, label 2, field 'value': 'correctness' is "
                                        r"binary: the label must be 0/1"):
        record_labels(wh, [_label(trace_id="t01"), _label(trace_id="t02", value=3.0)],
                      source="page")
    with pytest.raises(DataError, match="'t99' is not a trace in the warehouse"):
        record_labels(wh, [_label(trace_id="t99")], source="page")
    with pytest.raises(DataError, match="'c9' is not a case of run 'r1'"):
        record_labels(wh, [_label(run_id="r1", case_id="c9", metric="tone")], source="page")
    assert _stored(tmp_path).height == 0  # all or nothing


def test_labels_of_a_runs_cases_import_and_dedupe(tmp_path, capsys):
    wh = _warehouse(tmp_path)
    record_labels(wh, [_label(run_id="r1", case_id="c0", metric="tone", value=5.0)],
                  source="page")
    sheet = tmp_path / "cases.csv"
    with sheet.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run_id", "case_id", "metric", "value", "rater"])
        w.writerows([["r1", "c0", "tone", "5", "ana"], ["r1", "c1", "tone", "3", "ana"]])
    assert main(["review", "import", str(sheet), "--warehouse", str(tmp_path)]) == 0
    assert "imported 1 new labels, replaced 0 changed ones (0 rows without a value, 1 " \
        "already stored)" in capsys.readouterr().out
    assert _stored(tmp_path).select("run_id", "case_id", "value").rows() == [
        ("r1", "c0", 5.0), ("r1", "c1", 3.0)]
    sheet.write_text("run_id,case_id,metric,value,rater\nr1,,tone,3,ana\n")
    assert main(["review", "import", str(sheet), "--warehouse", str(tmp_path)]) == 2
    assert "cases.csv:2, field 'case_id': is empty" in capsys.readouterr().err


def test_taking_a_label_back_is_atomic_for_readers(tmp_path):
    """A connection opened after the undo does not read the label; one opened before finds
    its file gone and takes a new snapshot (as every evallib reader does); plain Parquet
    readers agree at once (the replaced file is deleted); taking it back twice finds
    nothing the second time."""
    wh = _warehouse(tmp_path)
    keep, undo = _label(trace_id="t01"), _label(trace_id="t02", labeler="bo")
    record_labels(wh, [keep], source="page")
    record_labels(wh, [undo], source="page")
    before = connect(tmp_path)
    assert retract_label(wh, undo)
    with pytest.raises(duckdb.IOException) as lost:
        before.sql("SELECT count(*) FROM human_labels").fetchall()
    assert lost_file(lost.value)
    assert _stored(tmp_path)["trace_id"].to_list() == ["t01"]
    assert pl.read_parquet(f"{tmp_path}/human_labels/*.parquet")["trace_id"].to_list() == \
        ["t01"]
    assert not retract_label(wh, undo)
    assert main(["compact", "--grace", "0", "--warehouse", str(tmp_path)]) == 0
    assert _stored(tmp_path)["trace_id"].to_list() == ["t01"]
    # after compaction the kept label lives in a merged file: taking it back still works
    assert retract_label(wh, keep)
    assert _stored(tmp_path).height == 0


def test_a_label_taken_back_leaves_the_judge_agreement(tmp_path):
    """The Correlation page's judge-vs-human counts (a daily rollup, stale once labels
    change) drop the label taken back, after `evallib rollup` too."""
    from evallib import queries

    wh = _warehouse(tmp_path)
    rows = [_label(trace_id=f"t{i:02d}", value=float(i % 2)) for i in range(6)]
    record_labels(wh, rows, source="page")
    assert main(["rollup", "--grace", "0", "--warehouse", str(tmp_path)]) == 0
    retract_label(wh, rows[0])
    for _ in range(2):
        with connect(tmp_path) as con:
            counts = queries.judge_human_counts(con, TS.date(), TS.date() + timedelta(days=1))
        assert counts["n"].sum() == 5
        assert main(["rollup", "--grace", "0", "--warehouse", str(tmp_path)]) == 0


def test_the_queue_reaches_rare_strata_like_review_sample(tmp_path):
    _warehouse(tmp_path)
    from evallib import queries

    with connect(tmp_path) as con:
        pool = queries.online_review_pool(con, "correctness", TS.date(), TS.date(), "ana",
                                          ("segment",), 6, 0)
    order = review_queue(pool, 6, seed=0)
    segments = Counter(pool["stratum"][i] for i in order)
    assert segments == {'["smb"]': 2, '["enterprise"]': 2, '["free"]': 2}  # 12/3/3 traffic
    # the same seed draws the same queue; a rater's own labels leave the pool
    assert review_queue(pool, 6, seed=0) == order
    record_labels(Warehouse(tmp_path), [_label(trace_id=pool["item"][order[0]])],
                  source="page")
    with connect(tmp_path) as con:
        mine = queries.online_review_pool(con, "correctness", TS.date(), TS.date(), "ana",
                                          (), 50, 0)
        theirs = queries.online_review_pool(con, "correctness", TS.date(), TS.date(), "bo",
                                            (), 50, 0)
    assert (mine.height, theirs.height) == (17, 18)
