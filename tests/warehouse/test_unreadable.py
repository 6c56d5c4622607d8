"""A truncated or corrupt part file: the views skip it and name it, the dashboard warns and
keeps working, `evallib check` quarantines it."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from evallib import Warehouse, connect, queries
from evallib.cli import main

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DAYS = [date(2026, 2, 1) + timedelta(days=i) for i in range(3)]


def _warehouse(root: Path) -> None:
    wh = Warehouse(root)
    cases = [{"case_id": f"c{i}", "strata": {"tier": "gold" if i % 2 else "free"}}
             for i in range(10)]
    wh.record_run({"run_id": "r1", "name": "nightly", "dataset": "support"}, cases,
                  [{"case_id": c["case_id"], "metric": "correctness", "value": i % 2,
                    "kind": "binary"} for i, c in enumerate(cases)])
    for day in DAYS:
        ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        traces = [{"trace_id": f"{day}-{k}", "timestamp": ts, "strata": {"tier": "gold"}}
                  for k in range(4)]
        wh.record_online(traces, [{"trace_id": t["trace_id"], "timestamp": ts,
                                   "metric": "correctness", "value": k % 2, "kind": "binary"}
                                  for k, t in enumerate(traces)])


def _break(root: Path) -> tuple[Path, Path]:
    """A half-copied online file and a file of garbage among the run's scores."""
    good = next((root / "online_scores" / f"date={DAYS[1]}").glob("part-*.parquet"))
    truncated = good.with_name("part-20260202T120000-halfcopied.parquet")
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = root / "online_traces" / f"date={DAYS[2]}" / "part-20260203T120000-junk.parquet"
    garbage.write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")
    return truncated, garbage


def _daily_n(con) -> list[int]:
    return queries.online_daily(con, "correctness", DAYS[0], DAYS[-1])["n"].to_list()


def test_views_skip_unreadable_files_and_name_them(tmp_path: Path) -> None:
    _warehouse(tmp_path)
    truncated, garbage = _break(tmp_path)
    with pytest.raises(duckdb.Error):  # what a plain glob over the files does
        duckdb.sql(f"SELECT count(*) FROM '{tmp_path}/online_scores/*/*.parquet'").fetchall()
    with connect(tmp_path) as con:
        assert _daily_n(con) == [4, 4, 4]  # the truncated copy adds nothing, breaks nothing
        assert con.sql("SELECT count(*) FROM online_traces").fetchall() == [(12,)]
        assert queries.run_metric_summary(con)["n"].to_list() == [10]
        bad = queries.unreadable_files(con)
    assert bad["path"].to_list() == sorted([str(truncated), str(garbage)])
    reasons = dict(zip(bad["path"], bad["reason"], strict=True))
    assert "no footer" in reasons[str(truncated)]
    assert "unreadable Parquet" in reasons[str(garbage)]
    assert set(bad["table_name"]) == {"online_scores", "online_traces"}


def test_a_file_damaged_after_it_was_seen_is_checked_again(tmp_path: Path) -> None:
    _warehouse(tmp_path)
    with connect(tmp_path) as con:  # every footer read and remembered
        assert queries.unreadable_files(con).height == 0
    victim = next((tmp_path / "scores" / "run_id=r1").glob("part-*.parquet"))
    with open(victim, "r+b") as f:  # a disk error cuts it short in place
        f.truncate(victim.stat().st_size - 10)
    with connect(tmp_path) as con:
        assert queries.unreadable_files(con)["path"].to_list() == [str(victim)]
        assert queries.runs_overview(con)["n_cases"].to_list() == [10]  # cases still read
        assert queries.run_metric_summary(con).height == 0  # the scores are gone, no error


def test_check_quarantines_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _warehouse(tmp_path)
    truncated, garbage = _break(tmp_path)
    assert main(["check", "--warehouse", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(q["path"] for q in report["quarantined"]) == sorted(map(str, [truncated,
                                                                                garbage]))
    assert not truncated.exists() and not garbage.exists()
    assert (tmp_path / "_quarantine" / "online_scores" / f"date={DAYS[1]}" /
            truncated.name).exists()
    with connect(tmp_path) as con:
        assert queries.unreadable_files(con).height == 0
        assert _daily_n(con) == [4, 4, 4]
    assert main(["check", "--warehouse", str(tmp_path)]) == 0


def test_dashboard_warns_and_keeps_working(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _warehouse(tmp_path)
    truncated, garbage = _break(tmp_path)
    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/trends.py").run()
    assert not at.exception, [e.value for e in at.exception]
    warning = " ".join(w.value for w in at.warning)
    assert "2 unreadable part file(s)" in warning
    assert str(truncated) in warning and str(garbage) in warning and "evallib check" in warning
    assert len(at.get("plotly_chart")) == 2  # offline and online trends still drawn

    assert main(["check", "--warehouse", str(tmp_path)]) == 1
    # A minute later the connection and results expire (or "Refresh data" drops them; a
    # click in the sidebar of an st.navigation app does not register in AppTest 1.67).
    st.cache_resource.clear()
    st.cache_data.clear()
    at.run()
    assert not at.exception
    assert not any("unreadable" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 2


def test_late_scores_find_their_traces_beside_a_corrupt_file(tmp_path: Path) -> None:
    _warehouse(tmp_path)
    _break(tmp_path)  # garbage among the traces of DAYS[2]
    day = DAYS[2]
    Warehouse(tmp_path).record_online(scores=[{
        "trace_id": f"{day}-1", "timestamp": datetime(day.year, day.month, day.day, 18,
                                                      tzinfo=UTC),
        "metric": "relevance", "value": 0.5, "kind": "continuous"}])
    with connect(tmp_path) as con:
        assert con.sql("SELECT strata_json FROM online_scores WHERE metric = 'relevance'"
                       ).fetchall() == [('{"tier":"gold"}',)]


def test_a_corrupt_rollup_is_skipped_and_quarantined(tmp_path: Path) -> None:
    from evallib.warehouse.rollup import rollup

    _warehouse(tmp_path)
    rollup(tmp_path)
    with connect(tmp_path) as con:
        rolled = _daily_n(con)
    rollup_file = next((tmp_path / "online_daily_rollup").glob("part-*.parquet"))
    rollup_file.write_bytes(rollup_file.read_bytes()[:-20])  # cut short
    with connect(tmp_path) as con:
        assert _daily_n(con) == rolled == [4, 4, 4]  # read raw instead
        assert queries.unreadable_files(con)["path"].to_list() == [str(rollup_file)]
    assert main(["check", "--warehouse", str(tmp_path)]) == 1
    with connect(tmp_path) as con:
        assert queries.unreadable_files(con).height == 0
