"""Keys that hold across writes (a retried import, flush or re-send counts once), and plain
Parquet readers that follow warehouse/README.md's rule and get exactly evallib's rows."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evallib import Warehouse, connect, queries
from evallib.analysis.monitor import detect
from evallib.cli import main
from evallib.warehouse import schema as S
from evallib.warehouse.compact import compact
from evallib.warehouse.db import lost_file, retrying
from evallib.warehouse.maintenance import check
from evallib.warehouse.store import TMP_PREFIX, TMP_SUFFIX, Store

ROOT = Path(__file__).resolve().parents[2]
ONLINE = ("online_traces", "online_scores", "online_retrievals", "feedback")
TABLES = [t.name for t in S.TABLES.values()]


# --- an online file as a producer would send it: the demo's production traffic ----------

def _iso(ts: datetime) -> str:
    return ts.isoformat()


def _online_jsonl(demo_root: str, path: Path) -> int:
    """The demo's online tables as one JSONL line per trace (scores, retrieved documents and
    feedback nested, as `evallib import jsonl --kind online` reads them)."""
    def read(name: str) -> pl.DataFrame:
        return pl.read_parquet(f"{demo_root}/{name}/*/*.parquet", hive_partitioning=True)

    traces = read("online_traces").sort("timestamp", "trace_id")
    nested: dict[str, dict[str, list]] = {}
    for name, cols in (("online_scores", ["metric", "value", "kind", "passed", "scorer",
                                          "scorer_version", "rationale"]),
                       ("online_retrievals", ["doc_id", "rank", "relevant", "cited"]),
                       ("feedback", ["kind", "value", "comment", "user_id", "timestamp"])):
        for row in read(name).sort("trace_id", *cols[:2]).iter_rows(named=True):
            item = {c: row[c] for c in cols}
            if "timestamp" in item:
                item["timestamp"] = _iso(item["timestamp"])
            nested.setdefault(name, {}).setdefault(row["trace_id"], []).append(item)
    with path.open("w") as f:
        for t in traces.iter_rows(named=True):
            line = {k: t[k] for k in ("trace_id", "release", "variant", "input", "output",
                                      "latency_ms", "tokens_in", "tokens_out", "cost_usd",
                                      "error", "refusal", "tool_error")}
            line["timestamp"] = _iso(t["timestamp"])
            line["strata"] = dict(t["strata"]) if t["strata"] is not None else None
            scores = nested.get("online_scores", {}).get(t["trace_id"], [])
            line["scores"] = {s.pop("metric"): s for s in scores} or None
            line["retrieved"] = nested.get("online_retrievals", {}).get(t["trace_id"])
            line["feedback"] = nested.get("feedback", {}).get(t["trace_id"])
            f.write(json.dumps(line) + "\n")
    return traces.height


@pytest.fixture(scope="module")
def online_file(demo_root: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("online") / "online.jsonl"
    _online_jsonl(demo_root, path)
    return path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def _same(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 relative (what any page shows is far coarser): DuckDB sums in
    parallel, so the last bits of a sum depend on how rows fall into files and threads, and
    a variance from sums of squares loses more. NaN (an undefined test) equals NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (a != a and b != b) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _answers(root: str) -> dict[str, object]:
    """What the Online, Trends and Correlation pages, `alerts` and `report` read."""
    with connect(root) as con:
        first, last = queries.online_date_range(con).row(0)
        month = f"{last:%Y-%m}"
        out: dict[str, object] = {
            f"count {t}": con.sql(f"SELECT count(*) FROM {t}").fetchall() for t in TABLES}
        for name, call in {
            "health": lambda: queries.online_health(con, first, last),
            "health by release": lambda: queries.online_health(con, first, last, by="release"),
            "quality": lambda: queries.online_quality(con, first, last),
            "feedback": lambda: queries.online_feedback(con, first, last),
            "daily": lambda: queries.online_daily(con, "correctness", first, last),
            "score x feedback": lambda: queries.score_feedback_counts(con, first, last),
            "judge x human": lambda: queries.judge_human_counts(con, first, last),
        }.items():
            out[name] = call().rows()
        alerts, tests = detect(con, first, last)
        out["alerts"] = [(a.signal, a.first_day, a.last_day, a.p_value, a.n) for a in alerts]
        out["alert tests"] = tests.rows()
    code = main(["report", "--month", month, "--warehouse", root])
    assert code == 0
    return out


def _import(path: Path, root: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["import", "jsonl", str(path), "--kind", "online", "--warehouse", root]) == 0
    return capsys.readouterr().out


def test_importing_a_file_twice_changes_nothing_anyone_reads(
        online_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    once, twice = tmp_path / "once", tmp_path / "twice"
    first = _import(online_file, str(once), capsys)
    assert re.search(r"online_traces: \d+ new, 0 replaced, 0 already present", first)
    _import(online_file, str(twice), capsys)
    files = _files(twice)
    again = _import(online_file, str(twice), capsys)
    n = int(re.search(r"online_traces: (\d+) new", first).group(1))
    assert f"online_traces: 0 new, 0 replaced, {n} already present" in again
    assert _files(twice) == files  # a second import writes no file at all
    answers = _answers(str(once))
    report_once = capsys.readouterr().out
    assert _same(_answers(str(twice)), answers)
    assert capsys.readouterr().out == report_once


def _page(page: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What a page shows: every element's text and every table's cells (AppTest)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [f"{e.label}={e.value}" for e in at.metric]
    shown += [str(e.value) for kind in ("title", "markdown", "caption", "info", "warning",
                                        "error", "success") for e in getattr(at, kind)
              if "warehouse" not in str(e.value).lower()]
    shown += [list(d.value.itertuples(index=False)) for d in at.dataframe]
    assert len(shown) > 1, shown  # the page drew something
    return shown


def test_a_retried_flush_or_a_second_collector_counts_once(
        online_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's path with no read before writing (a service's recorder): the same batch
    stored twice, and a trace two collectors both shipped. Readers see one of each."""
    once, retried = tmp_path / "once", tmp_path / "retried"
    _import(online_file, str(once), capsys)
    with connect(once) as con:
        batch = {name: con.sql(f"SELECT * EXCLUDE (date) FROM {name}").to_arrow_table()
                 for name in ONLINE}
    wh = Warehouse(retried)
    kw = dict(traces=batch["online_traces"], scores=batch["online_scores"],
              retrievals=batch["online_retrievals"], feedback=batch["feedback"])
    wh.record_online(**kw)
    wh.record_online(**kw)  # the flush retried after a timeout that had in fact written
    wh.record_online(traces=batch["online_traces"].slice(0, 5))  # a second collector
    raw = pl.read_parquet(f"{retried}/online_traces/*/*.parquet")
    assert raw.height == 2 * batch["online_traces"].num_rows + 5
    answers = _answers(str(once))
    capsys.readouterr()
    assert _same(_answers(str(retried)), answers)
    for page in ("pages/online.py", "pages/trends.py", "pages/correlation.py"):
        assert _same(_page(page, retried, monkeypatch), _page(page, once, monkeypatch)), page
    # `check` tells, compaction removes them for good
    report = check(retried)
    dup = {d.table: d for d in report.duplicates}
    assert dup["online_traces"].rows == batch["online_traces"].num_rows + 5
    assert dup["feedback"].rows == batch["feedback"].num_rows
    assert main(["check", "--warehouse", str(retried)]) == 0
    assert "online_traces: " in capsys.readouterr().out
    compact(retried)
    assert check(retried).duplicates == []
    assert pl.read_parquet(f"{retried}/online_traces/*/*.parquet").height == \
        batch["online_traces"].num_rows
    assert _same(_answers(str(retried)), answers)


def test_the_newest_version_of_a_row_wins(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    score = {"trace_id": "t1", "timestamp": ts, "metric": "correctness", "value": 0.0,
             "kind": "binary", "scorer_version": "judge-1"}
    wh.record_online(traces=[{"trace_id": "t1", "timestamp": ts}], scores=[score])
    wh.record_online(scores=[{**score, "value": 1.0, "scorer_version": "judge-2"}])
    merged = wh.merge_online(scores=[{**score, "value": 1.0, "scorer_version": "judge-2"}])
    assert (merged["online_scores"].present, merged["online_scores"].replaced) == (1, 0)
    for _ in range(2):  # before and after compaction
        with connect(tmp_path) as con:
            assert con.sql("SELECT value, scorer_version FROM online_scores").fetchall() == \
                [(1.0, "judge-2")]
        compact(tmp_path)
    merged = wh.merge_online(scores=[{**score, "value": 0.5, "kind": "continuous"}])
    assert merged["online_scores"].replaced == 1


def test_feedback_events_are_keyed_by_their_id(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    thumbs = {"trace_id": "t1", "timestamp": ts, "kind": "thumbs", "value": 1.0,
              "user_id": "u1"}
    wh.record_online(feedback=[thumbs])
    wh.record_online(feedback=[thumbs])  # re-sent: the same derived id
    wh.record_online(feedback=[{**thumbs, "user_id": "u2"}])  # another user: another event
    wh.record_online(feedback=[{**thumbs, "value": 0.0, "event_id": "e-1"},
                               {**thumbs, "value": 0.0, "event_id": "e-2"}])
    wh.record_online(feedback=[{**thumbs, "value": 1.0, "event_id": "e-1"}])  # changed mind
    with connect(tmp_path) as con:
        rows = con.sql("SELECT user_id, value, event_id FROM feedback ORDER BY ALL").fetchall()
    assert len(rows) == 4
    assert ("u1", 1.0, "e-1") in rows and ("u1", 0.0, "e-2") in rows


def test_feedback_written_before_event_ids_still_reads_and_compacts(tmp_path: Path) -> None:
    old = pa.schema([f for f in S.FEEDBACK.schema if f.name != "event_id"])
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    rows = [{"trace_id": "t1", "timestamp": ts, "kind": "thumbs", "value": 1.0,
             "comment": None, "user_id": "u1"}]
    day = tmp_path / "feedback" / "date=2026-03-01"
    day.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=old),
                   day / "part-20260301T120000-oldwriter0000.parquet")
    Warehouse(tmp_path).record_online(feedback=rows)  # the same event, sent again today
    with connect(tmp_path) as con:
        assert con.sql("SELECT count(*) FROM unreadable_files").fetchall() == [(0,)]
        (n, event), = con.sql("SELECT count(*), any_value(event_id) FROM feedback").fetchall()
    assert n == 1 and len(event) == 32
    compact(tmp_path)
    merged = pl.read_parquet(f"{tmp_path}/feedback/*/*.parquet")
    assert merged["event_id"].to_list() == [event]


def test_an_edited_human_label_replaces_the_raters_earlier_one(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    label = {"trace_id": "t1", "metric": "correctness", "value": 1.0, "labeler": "ana",
             "labeled_at": datetime(2026, 3, 2, tzinfo=UTC)}
    wh.record_human_labels([label])
    wh.record_human_labels([{**label, "value": 0.0}])
    wh.record_human_labels([{**label, "labeler": "bob"}])
    with connect(tmp_path) as con:
        got = con.sql("SELECT labeler, value FROM human_labels ORDER BY ALL").fetchall()
    assert got == [("ana", 0.0), ("bob", 1.0)]


# --- plain readers -------------------------------------------------------------------------

def _rule_sql(root: Path) -> str:
    """The SQL warehouse/README.md gives plain DuckDB, pointed at this warehouse."""
    text = (ROOT / "warehouse" / "README.md").read_text()
    block = re.search(r"```sql\n(-- The rule.*?)```", text, re.S)
    assert block, "warehouse/README.md lost the plain readers' rule"
    return block.group(1).replace("'warehouse/", f"'{root}/")


def _plain_duckdb(root: Path) -> dict[str, tuple]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    missing = set()
    for statement in _rule_sql(root).split(";"):
        name = re.search(r"CREATE VIEW (\w+)", statement)
        if not name:
            continue
        try:
            con.execute(statement)
        except duckdb.IOException as e:  # "a table with no files yet has no view"
            assert "No files found" in str(e), e
            missing.add(name.group(1))
    return {name: _empty(name) if name in missing else _summary(con, name) for name in TABLES}


def _empty(name: str) -> tuple:
    number = any(c in S.TABLES[name].column_names for c in ("value", "latency_ms", "rank"))
    return (0, []) if number and S.TABLES[name].partition else (0,)


def _summary(con: duckdb.DuckDBPyConnection, name: str) -> tuple:
    """Rows, and per day (online) or run (offline) a count and a mean of a number column."""
    table = S.TABLES[name]
    count = con.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0]
    number = next((c for c in ("value", "latency_ms", "rank") if c in table.column_names), None)
    group = table.partition
    if number is None or group is None:
        return (count,)
    per = con.sql(f"SELECT {group}::VARCHAR, count(*), round(avg({number}), 9) FROM {name} "
                  "GROUP BY ALL ORDER BY ALL").fetchall()
    return (count, per)


def _evallib(root: Path) -> dict[str, tuple]:
    with connect(root) as con:
        return {name: _summary(con, name) for name in TABLES}


def _plain_polars(root: Path) -> dict[str, tuple]:
    """The same rule in polars, written from the README's words (not its SQL)."""
    def scan(name: str, files: bool = False) -> pl.DataFrame:
        table = S.TABLES[name]
        glob = f"{root}/{name}/*/*.parquet" if table.partition else f"{root}/{name}/*.parquet"
        if not list(root.glob(glob.removeprefix(f"{root}/"))):
            return pl.DataFrame()
        return pl.scan_parquet(glob, hive_partitioning=bool(table.partition),
                               include_file_paths="file" if files else None,
                               missing_columns="insert").collect()

    out: dict[str, tuple] = {}
    runs = scan("runs")
    if runs.height:
        runs = runs.sort("committed_at").unique("run_id", keep="last")
    for name in TABLES:
        table = S.TABLES[name]
        if name == "runs":
            df = runs
        elif name in S.OFFLINE_DATA:
            df = scan(name)
            if df.height:
                df = df.with_columns(pl.col("run_id").cast(pl.String)).join(
                    runs.select("run_id", "write_id"), on=["run_id", "write_id"])
        elif name in ("online_traces", "online_scores", "online_retrievals", "feedback",
                      "human_labels", "dataset_cases"):
            df = scan(name, files=True)
            if df.height:
                key = ([table.partition] if table.partition else []) + list(table.key)
                df = df.sort("file").unique(key, keep="last")
        else:
            df = scan(name)
        number = next((c for c in ("value", "latency_ms", "rank") if c in df.columns), None)
        if number is None or table.partition is None or not df.height:
            out[name] = (df.height,) if number is None or table.partition is None \
                else (0, [])
            continue
        per = (df.group_by(pl.col(table.partition).cast(pl.String))
               .agg(pl.len(), pl.col(number).mean().round(9)).sort(table.partition))
        out[name] = (df.height, [(g, n, m) for g, n, m in per.iter_rows()])
    return out


def assert_readers_agree(root: Path, step: str) -> None:
    want = _evallib(root)
    assert _plain_duckdb(root) == want, step
    got = _plain_polars(root)
    for name in TABLES:  # polars averages in another order: equal to 1e-9
        if len(want[name]) == 1 or not want[name][0]:
            assert got[name][0] == want[name][0], (step, name)
            continue
        assert got[name][0] == want[name][0], (step, name)
        for (g1, n1, m1), (g2, n2, m2) in zip(got[name][1], want[name][1], strict=True):
            assert (g1, n1) == (g2, n2) and (m1 is None and m2 is None
                                             or abs(m1 - m2) < 1e-9), (step, name, g1)


def _run(wh: Warehouse, run_id: str, shift: float, replace: bool = False) -> None:
    cases = [{"case_id": f"c{i}", "input": f"q{i}", "strata": {"query_type": "billing"},
              "latency_ms": 100.0 + i} for i in range(20)]
    scores = [{"case_id": f"c{i}", "metric": "correctness", "value": float((i + shift) % 2),
               "kind": "binary"} for i in range(20)]
    wh.record_run({"run_id": run_id, "name": run_id, "dataset": "golden"}, cases, scores,
                  replace=replace)


def test_plain_duckdb_and_polars_readers_get_evallibs_rows(
        online_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "wh"
    wh = Warehouse(root)
    _run(wh, "run-a", 0)
    _run(wh, "run-b", 1)
    _import(online_file, str(root), capsys)
    with connect(root) as con:  # and a flush that was retried: raw duplicates
        again = con.sql("SELECT * EXCLUDE (date) FROM online_traces USING SAMPLE 50 ROWS "
                        "(reservoir, 1)").to_arrow_table()
    wh.record_online(traces=again)
    wh.record_human_labels([{"trace_id": again["trace_id"][0].as_py(), "metric": "m",
                             "value": 1.0, "labeler": "ana",
                             "labeled_at": datetime(2026, 3, 1, tzinfo=UTC)}])
    assert_readers_agree(root, "imports")

    _run(wh, "run-b", 0, replace=True)
    assert_readers_agree(root, "a replaced run")

    compact(root)
    assert_readers_agree(root, "compaction")

    # a writer killed half way: an offline write never committed, a local temp file
    store = Store(root)
    orphan = pa.Table.from_pylist([{"case_id": "c0", "write_id": "dead"}],
                                  schema=S.CASES.schema)
    store.write_part(S.CASES, orphan, "run-a", write_id="dead")
    day = next((root / "online_traces").iterdir())
    (day / f"{TMP_PREFIX}{uuid.uuid4().hex}.parquet{TMP_SUFFIX}").write_bytes(b"PAR1 half")
    assert_readers_agree(root, "a killed writer")
    check(root, tmp_age=0)
    assert_readers_agree(root, "a killed writer, then check")

    _import(online_file, str(root), capsys)
    assert_readers_agree(root, "a re-import")


# --- readers whose snapshot lost a file ----------------------------------------------------

def test_a_reader_whose_snapshot_lost_a_file_takes_a_new_one(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for i in range(3):
        wh.record_online(traces=[{"trace_id": f"t{i}", "timestamp": ts + timedelta(hours=i)}])
    stale = connect(tmp_path)
    compact(tmp_path)  # deletes the three files the stale snapshot lists
    with pytest.raises(duckdb.IOException) as e:
        stale.sql("SELECT count(*) FROM online_traces").fetchall()
    assert lost_file(e.value)
    calls = []

    def read() -> int:
        con = stale if not calls else connect(tmp_path)
        calls.append(con)
        return con.sql("SELECT count(*) FROM online_traces").fetchall()[0][0]

    assert retrying(read) == 3 and len(calls) == 2


def test_the_dashboards_renewal_after_an_old_day_was_compacted(tmp_path: Path) -> None:
    """An incremental renewal re-lists only recent months: a query that finds a file of an
    older month gone (compaction deleted it) is recognised, and a full renewal reads the
    merged file."""
    from evallib.warehouse import Live

    wh = Warehouse(tmp_path)
    for day in (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC),
                datetime(2026, 5, 1, tzinfo=UTC)):
        wh.record_online(traces=[{"trace_id": uuid.uuid4().hex, "timestamp": day}])
    live = Live(tmp_path, every=3600)
    try:
        live.refresh()
        compact(tmp_path)  # merges 2026-03-01's two files and deletes them
        snap = live.refresh()  # incremental: May only, so the same files as before
        with pytest.raises(duckdb.Error) as e:  # the read-only connection's own error
            live.connection(snap.key).sql("SELECT count(*) FROM online_traces").fetchall()
        assert lost_file(e.value)  # the dashboard then renews fully (pages/_common._read)
        snap = live.refresh(full=True)
        assert live.connection(snap.key).sql(
            "SELECT count(*) FROM online_traces").fetchall() == [(3,)]
    finally:
        live.close()


def test_the_dashboard_reads_on_after_an_old_day_was_compacted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Online page, open while `evallib compact` deletes files its snapshot lists (in a
    month the 30-second renewal does not re-list): the next rerun shows the same traffic, no
    error."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    wh = Warehouse(tmp_path)
    for i, day in enumerate((datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC),
                             datetime(2026, 5, 1, tzinfo=UTC))):
        wh.record_online(traces=[{"trace_id": f"t{i}", "timestamp": day}],
                         scores=[{"trace_id": f"t{i}", "metric": "correctness", "value": i % 2,
                                  "kind": "binary", "timestamp": day}])
    monkeypatch.setenv("EVALLIB_WAREHOUSE", str(tmp_path))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/online.py").run()
    assert not at.exception, [e.value for e in at.exception]
    before = _shown(at)
    assert len(before) > 3  # charts and tables of the traffic
    compact(tmp_path)
    st.cache_data.clear()  # as if the results had expired: the queries run again
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert _shown(at) == before
    st.cache_resource.clear()


def _shown(at) -> list[str]:
    """What the page shows: its charts' figures and its tables."""
    return [*(c.proto.spec for c in at.get("plotly_chart")),
            *(d.value.to_csv() for d in at.dataframe)]


def test_only_files_that_share_a_key_pay_the_rule_and_the_newest_still_wins(
        tmp_path: Path) -> None:
    """The dashboard applies the rule only to the files of a partition that share a key
    with another of its files; the rest are unique and read plain. On random batches (a recorder's
    flushes, some retried, some re-scoring a few traces) the view is still exactly "the
    newest file's row of each key", and the files read under the rule are exactly those
    that share a key."""
    import random

    from evallib.warehouse import db
    from evallib.warehouse.snapshot import snapshot

    rng = random.Random(7)
    wh = Warehouse(tmp_path)
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    newest: dict[str, float] = {}
    batches: list[list[str]] = []
    for i in range(30):
        if i and rng.random() < 0.2:  # a retried flush: an earlier batch again
            ids = rng.choice(batches)
        elif i and rng.random() < 0.2:  # a re-score of a few traces of earlier batches
            ids = rng.sample(sorted(newest), 3)
        else:  # new traces
            ids = [f"t{i}-{j}" for j in range(5)]
        batches.append(ids)
        value = float(i)
        wh.record_online(scores=[{"trace_id": t, "timestamp": ts, "metric": "m",
                                  "value": value, "kind": "continuous"} for t in ids])
        newest.update(dict.fromkeys(ids, value))
    files = sorted((tmp_path / "online_scores" / "date=2026-03-01").glob("*.parquet"))
    assert len(files) == 30
    shared = {str(f) for f, ids in zip(files, batches, strict=True)
              if any(set(ids) & set(other) for g, other in zip(files, batches, strict=True)
                     if g != f)}
    assert 0 < len(shared) < len(files)  # some files unique, some not: both paths taken
    db._SHARED.clear()
    snap = snapshot(str(tmp_path))  # as the dashboard opens it: it keeps its connection
    with db.open_snapshot(snap, db.read_paths(snap), shared_keys=True) as con:
        got = dict(con.sql("SELECT trace_id, value FROM online_scores").fetchall())
        view = con.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'online_scores'"
                       ).fetchall()[0][0]
    assert got == newest
    assert {p for g in db._SHARED.values() for p in g} == shared
    with connect(tmp_path) as con:  # a one-shot connection: the rule over every file
        assert dict(con.sql("SELECT trace_id, value FROM online_scores").fetchall()) == newest
    ruled = view.split("QUALIFY")[0].rsplit("read_parquet(", 1)[1]
    assert {str(f) for f in files if f"'{f}'" in ruled} == shared  # the rule reads no other
