"""`evallib compact`: one file per day, no row lost or read twice, beside readers and writers."""

from __future__ import annotations

import fcntl
import json
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from evallib import Warehouse, connect, queries
from evallib.cli import main
from evallib.errors import EvallibError
from evallib.warehouse import compact as compaction
from evallib.warehouse import schema as S
from evallib.warehouse.catalog import list_table
from evallib.warehouse.db import lost_file, retrying
from evallib.warehouse.store import Store

DAYS = [date(2026, 4, 1) + timedelta(days=i) for i in range(3)]
BATCH = 5


def _batch(wh: Warehouse, name: str, day: date) -> None:
    ts = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
    traces = [{"trace_id": f"{name}-{k}", "timestamp": ts, "strata": {"tier": "gold"}}
              for k in range(BATCH)]
    wh.record_online(traces,
                     [{"trace_id": t["trace_id"], "timestamp": ts, "metric": "correctness",
                       "value": k % 2, "kind": "binary"} for k, t in enumerate(traces)],
                     [{"trace_id": traces[0]["trace_id"], "timestamp": ts, "kind": "thumbs",
                       "value": 1}])


def _fill(root: Path, batches: int = 6) -> Warehouse:
    wh = Warehouse(root)
    for day in DAYS:
        for b in range(batches):
            _batch(wh, f"{day}-b{b}", day)
    return wh


def _seen(con) -> dict[str, object]:
    """What a reader sees: row counts, distinct ids, and the Trends query."""
    traces = con.sql("SELECT count(*), count(DISTINCT trace_id) FROM online_traces").fetchall()
    scores = con.sql("SELECT count(*), count(DISTINCT trace_id) FROM online_scores").fetchall()
    feedback = con.sql("SELECT count(*) FROM feedback").fetchall()[0][0]
    daily = queries.online_daily(con, "correctness", DAYS[0], DAYS[-1])
    return {"traces": traces[0], "scores": scores[0], "feedback": feedback,
            "daily": daily.select("day", "n", "mean").rows()}


def _files(root: Path, table: S.Table) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for p in list_table(Store(root), table).parts:
        out[p.partition] = out.get(p.partition, 0) + 1
    return out


def test_each_day_becomes_one_file_and_nobody_sees_a_row_twice(tmp_path: Path) -> None:
    _fill(tmp_path)
    before = connect(tmp_path)  # a snapshot taken before: it lists the originals
    expected = _seen(before)
    assert expected["traces"] == (3 * 6 * BATCH,) * 2
    report = compaction.compact(tmp_path)  # default: the originals are deleted at once
    assert {(m.table, m.files) for m in report.merged} == {
        (t, 6) for t in ("online_traces", "online_scores", "feedback")}
    assert len(report.removed) == 3 * 3 * 6 and not report.kept
    for table in (S.ONLINE_TRACES, S.ONLINE_SCORES, S.FEEDBACK):
        assert _files(tmp_path, table) == {str(d): 1 for d in DAYS}
        assert len(list(tmp_path.glob(f"{table.name}/*/part-*.parquet"))) == 3  # plain
    with connect(tmp_path) as after:
        assert _seen(after) == expected
    # The older snapshot's files are gone: its query fails on a lost file, and an evallib
    # reader takes a new snapshot (the dashboard and the CLI retry so).
    with pytest.raises(duckdb.IOException) as lost:
        _seen(before)
    assert lost_file(lost.value)
    before.close()
    assert retrying(lambda: _seen(connect(tmp_path))) == expected


def test_a_grace_keeps_the_originals_for_snapshots_taken_before(tmp_path: Path) -> None:
    _fill(tmp_path)
    before = connect(tmp_path)
    expected = _seen(before)
    report = compaction.compact(tmp_path, grace=600)
    assert len(report.kept) == 3 * 3 * 6 and not report.removed
    assert len(list(tmp_path.glob("online_traces/*/part-*.parquet"))) == 3 * 7  # both
    with connect(tmp_path) as after:
        assert _seen(after) == expected  # originals and merged file listed: each row once
    assert _seen(before) == expected  # the older snapshot still reads its files
    before.close()
    report = compaction.compact(tmp_path, grace=0)
    assert not report.merged and len(report.removed) == 3 * 3 * 6
    assert len(list(tmp_path.glob("online_traces/*/part-*.parquet"))) == 3
    with connect(tmp_path) as con:
        assert _seen(con) == expected


def test_merging_again_and_deleting_in_a_safe_order(tmp_path: Path) -> None:
    wh = _fill(tmp_path, batches=3)
    compaction.compact(tmp_path, grace=600)
    _batch(wh, "late", DAYS[1])  # a new file beside the merged one
    with connect(tmp_path) as con:
        expected = _seen(con)
    report = compaction.compact(tmp_path, grace=600)
    assert [(m.table, m.partition, m.files) for m in report.merged] == [
        ("online_traces", str(DAYS[1]), 2), ("online_scores", str(DAYS[1]), 2),
        ("feedback", str(DAYS[1]), 2)]
    with connect(tmp_path) as con:
        assert _seen(con) == expected
    # Deleting a merged file before its originals would bring them back; the order is safe,
    # and each step leaves a warehouse that reads right.
    store, removed = Store(tmp_path), []
    real_remove = store.remove

    def remove_and_read(paths: list[str]) -> None:
        real_remove(paths)
        removed.extend(paths)
        with connect(tmp_path) as con:
            assert _seen(con) == expected

    store.remove = remove_and_read  # type: ignore[method-assign]
    compaction.compact(store, grace=0)
    assert len(removed) == 3 * 3 * 3 + 3 * 2
    assert _files(tmp_path, S.ONLINE_TRACES) == {str(d): 1 for d in DAYS}


def test_a_file_written_during_compaction_is_kept(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    wh = _fill(tmp_path, batches=2)
    real_merge, wrote = compaction._merge, []

    def merge_after_a_writer(store, listing, value, parts):  # a batch lands mid-compaction
        if not wrote:
            _batch(wh, "during", DAYS[0])
            wrote.append(True)
        return real_merge(store, listing, value, parts)

    monkeypatch.setattr(compaction, "_merge", merge_after_a_writer)
    compaction.compact(tmp_path, grace=0)
    with connect(tmp_path) as con:
        seen = _seen(con)
    assert seen["traces"] == (3 * 2 * BATCH + BATCH,) * 2
    assert _files(tmp_path, S.ONLINE_TRACES)[str(DAYS[0])] == 2  # merged + the new one


def test_readers_and_writers_while_compacting(tmp_path: Path) -> None:
    wh = _fill(tmp_path, batches=4)
    stop, errors, counts = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            try:  # as evallib's readers do: a snapshot that lost a file is taken again
                seen = retrying(lambda: _seen(connect(tmp_path)))
                n, distinct = seen["traces"]
                assert n == distinct and n % BATCH == 0, seen  # no row twice, whole batches
                n_scores, distinct_scores = seen["scores"]  # (a batch's tables land apart)
                assert n_scores == distinct_scores and n_scores % BATCH == 0, seen
                assert sum(r[1] for r in seen["daily"]) == n_scores
                assert not counts or n >= counts[-1], (n, counts[-1])  # nothing lost
                counts.append(n)
            except Exception as e:  # reported below
                errors.append(e)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(4):
            for day in DAYS:
                _batch(wh, f"{day}-r{round_}", day)
            compaction.compact(tmp_path)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert counts
    with connect(tmp_path) as con:
        assert _seen(con)["traces"] == ((4 + 4) * 3 * BATCH,) * 2


def test_cli_dry_run_date_and_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path, batches=2)
    files = sorted(tmp_path.rglob("*.parquet"))
    assert main(["compact", "--warehouse", str(tmp_path), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["dry_run"] and len(plan["merged"]) == 3 * 3
    assert {m["rows"] for m in plan["merged"] if m["table"] == "online_traces"} == {2 * BATCH}
    assert sorted(tmp_path.rglob("*.parquet")) == files  # nothing changed
    ago = (datetime.now(UTC).date() - DAYS[1]).days  # `--before 7d`, as every date flag takes
    assert main(["compact", "--warehouse", str(tmp_path), "--dry-run", "--json",
                 "--before", f"{ago}d"]) == 0
    assert len(json.loads(capsys.readouterr().out)["merged"]) == 3  # DAYS[0]'s three tables

    assert main(["compact", "--warehouse", str(tmp_path), "--date", str(DAYS[1]),
                 "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert f"merged 2 files ({2 * BATCH} rows) of online_traces {DAYS[1]}" in out
    assert _files(tmp_path, S.ONLINE_TRACES) == {str(DAYS[0]): 2, str(DAYS[1]): 1,
                                                 str(DAYS[2]): 2}
    assert main(["compact", "--warehouse", str(tmp_path), "--before", str(DAYS[1])]) == 0
    assert _files(tmp_path, S.ONLINE_TRACES) == {str(DAYS[0]): 1, str(DAYS[1]): 1,
                                                 str(DAYS[2]): 2}
    assert main(["compact", "--warehouse", str(tmp_path), "--date", "April 1st"]) == 2
    assert "--date: 'April 1st' is not a date (YYYY-MM-DD)" in capsys.readouterr().err


def test_check_removes_merged_files_after_their_grace(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    _fill(tmp_path, batches=2)
    compaction.compact(tmp_path, grace=600)
    assert main(["check", "--warehouse", str(tmp_path)]) == 0  # within the hour: kept
    assert "merged by compact" not in capsys.readouterr().out
    assert main(["check", "--warehouse", str(tmp_path), "--tmp-age", "0"]) == 0
    assert capsys.readouterr().out.count("removed part file merged by compact") == 3 * 3 * 2
    assert len(list(tmp_path.glob("online_scores/*/part-*.parquet"))) == 3


def test_runs_log_is_compacted_too(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    for i in range(3):
        wh.record_run({"run_id": f"r{i}", "name": "n", "dataset": "d"}, [{"case_id": "a"}])
    wh.record_run({"run_id": "r0", "name": "again", "dataset": "d"}, [{"case_id": "a"}],
                  replace=True)
    with connect(tmp_path) as con:
        expected = queries.runs_overview(con).drop("started_at").rows()
    compaction.compact(tmp_path, grace=0)
    assert _files(tmp_path, S.RUNS) == {None: 1}
    with connect(tmp_path) as con:
        assert queries.runs_overview(con).drop("started_at").rows() == expected


def test_one_compaction_at_a_time(tmp_path: Path) -> None:
    _fill(tmp_path, batches=2)
    with open(tmp_path / ".compact.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(EvallibError, match="another `evallib compact` is running"):
            compaction.compact(tmp_path)
