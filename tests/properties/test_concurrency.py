"""Eight writer processes at once, a reader querying all along: every row lands exactly once,
and the reader never fails nor sees part of a file or part of a run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

from evallib import connect, queries

WRITERS, BATCHES, TRACES = 8, 50, 20
HALF = BATCHES // 2
RUN_AT = (10, 40)  # each writer also records an offline run before these batches
CASES, METRICS = 30, ("correctness", "relevance")
FIRST_DAY = date(2026, 3, 1)

WRITER = textwrap.dedent("""
    import os, sys, time
    from datetime import UTC, datetime, timedelta
    from evallib import Warehouse

    root, me, sync = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    wh = Warehouse(root)
    for b in range({batches}):
        if b == {half}:  # meet the reader half way, so it checks a known state
            open(os.path.join(sync, f"ready-{{me}}"), "w").close()
            while not os.path.exists(os.path.join(sync, "go")):
                time.sleep(0.01)
        if b in {run_at}:
            cases = [{{"case_id": f"c{{k}}", "strata": {{"tier": "gold" if k % 2 else "free"}}}}
                     for k in range({cases})]
            scores = [{{"case_id": c["case_id"], "metric": m, "value": k % 2, "kind": "binary"}}
                      for k, c in enumerate(cases) for m in {metrics}]
            wh.record_run({{"run_id": f"w{{me}}-b{{b}}", "name": f"w{{me}}", "dataset": "d"}},
                          cases, scores)
        ts = datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(days=b % 3)  # shared days
        traces = [{{"trace_id": f"w{{me}}-b{{b}}-t{{k}}", "timestamp": ts,
                    "strata": {{"segment": "pro"}}}} for k in range({traces})]
        scores = [{{"trace_id": t["trace_id"], "timestamp": ts, "metric": "correctness",
                    "value": k % 2, "kind": "binary"}} for k, t in enumerate(traces)]
        wh.record_online(traces, scores)
""").format(batches=BATCHES, half=HALF, run_at=RUN_AT, cases=CASES, metrics=METRICS,
            traces=TRACES)


def _snapshot(root: str) -> dict[str, object]:
    """What one reader sees through a fresh connection and the dashboard's queries."""
    with connect(root) as con:
        batches = con.sql("""
            SELECT regexp_extract(trace_id, '^(w\\d+-b\\d+)-', 1) AS batch, count(*) AS n,
                   count(DISTINCT trace_id) AS n_distinct
            FROM online_traces GROUP BY batch""").pl()
        scored = con.sql("SELECT count(*) FROM online_scores").fetchall()[0][0]
        runs = queries.runs_overview(con.cursor())
        summary = queries.run_metric_summary(con.cursor())
        daily = queries.online_daily(con.cursor(), "correctness", FIRST_DAY, date(2026, 3, 3))
    return {"batches": batches, "scored": scored, "runs": runs, "summary": summary,
            "daily": daily}


def _check_whole(seen: dict[str, object]) -> None:
    """No part of a batch file, no part of a run, no row twice."""
    batches = seen["batches"]
    assert batches.filter((batches["n"] != TRACES) | (batches["n_distinct"] != TRACES)).height == 0
    runs, summary = seen["runs"], seen["summary"]
    assert set(runs["n_cases"].to_list()) <= {CASES}
    assert summary.height == runs.height * len(METRICS)
    assert set(summary["n"].to_list()) <= {CASES}
    assert seen["daily"]["n"].sum() == seen["scored"]


def _start_writers(root: str, sync: Path) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", WRITER, root, str(i), str(sync)])
            for i in range(WRITERS)]


def test_eight_writers_and_a_reader(tmp_path: Path) -> None:
    root, sync = str(tmp_path / "warehouse"), tmp_path / "sync"
    sync.mkdir()
    procs = _start_writers(root, sync)
    snapshots = 0
    try:
        # First half: read while they write, until every writer waits at the half-way mark.
        while len(list(sync.glob("ready-*"))) < WRITERS:
            assert all(p.poll() in (None, 0) for p in procs), "a writer died"
            _check_whole(_snapshot(root))
            snapshots += 1
            time.sleep(0.05)
        half = _snapshot(root)  # everyone is paused: a known state
        _check_whole(half)
        assert half["batches"].height == WRITERS * HALF
        assert half["scored"] == WRITERS * HALF * TRACES
        assert half["runs"].height == WRITERS  # the runs before batch 10; not yet those at 40
        (sync / "go").touch()
        # Second half: keep reading until they are all done.
        while any(p.poll() is None for p in procs):
            _check_whole(_snapshot(root))
            snapshots += 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    assert [p.returncode for p in procs] == [0] * WRITERS
    assert snapshots >= 1
    final = _snapshot(root)
    _check_whole(final)
    assert final["batches"].height == WRITERS * BATCHES  # every batch, each exactly once
    assert final["scored"] == WRITERS * BATCHES * TRACES
    assert sorted(final["runs"]["run_id"].to_list()) == sorted(
        f"w{w}-b{b}" for w in range(WRITERS) for b in RUN_AT)
    with connect(root) as con:
        assert con.sql("SELECT count(DISTINCT trace_id) FROM online_scores").fetchall() == \
            [(WRITERS * BATCHES * TRACES,)]
        # the writers shared three daily partitions: many part files in each, none lost
        assert con.sql("SELECT count(DISTINCT date) FROM online_traces").fetchall() == [(3,)]
