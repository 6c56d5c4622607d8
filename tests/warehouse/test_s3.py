"""A warehouse on S3 (a moto server on 127.0.0.1, reached through bench/latency_proxy.py
adding a few milliseconds a request, so concurrency and round trips are real): write, read,
import, check."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from evallib import Warehouse, connect, queries
from evallib.cli import main

pytest.importorskip("s3fs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROXY = Path(__file__).resolve().parents[2] / "bench" / "latency_proxy.py"
DELAY = 0.005  # seconds a request: real S3 takes 20-50 ms, the bench measures that


def _serving(url: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto_server, and the latency proxy in front of it (the endpoint every test uses)."""
    port, proxied = _free_port(), _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    procs = [subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([sys.executable, str(PROXY), str(proxied), str(port), str(DELAY)])]
    try:
        _serving(f"http://127.0.0.1:{port}")
        _serving(f"http://127.0.0.1:{proxied}")
        yield f"http://127.0.0.1:{proxied}"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def aws(endpoint: str) -> dict[str, str]:
    """The environment that points boto at the test server."""
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, request):
    """A new bucket for the test, and the environment to reach it."""
    for name, value in aws(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    unique = hashlib.blake2b(request.node.nodeid.encode(), digest_size=3).hexdigest()
    name = f"evals-{slug}-{unique}"
    fs.mkdir(name)
    return f"s3://{name}/team"


def test_record_and_read_back_on_s3(bucket, capsys):
    wh = Warehouse(bucket)
    run_id = wh.record_run({"name": "nightly", "dataset": "support"},
                           [{"case_id": "a", "strata": {"query_type": "billing"}},
                            {"case_id": "b", "strata": {"query_type": "account"}}],
                           [{"case_id": "a", "metric": "correctness", "value": 1,
                             "kind": "binary"}])
    wh.record_online(traces=[{"trace_id": "t1", "timestamp": "2026-11-01T10:00:00Z",
                              "strata": {"segment": "pro"}}],
                     feedback=[{"trace_id": "t1", "timestamp": "2026-11-01T10:01:00Z",
                                "kind": "thumbs", "value": 1}])
    wh.record_online(scores=[{"trace_id": "t1", "timestamp": "2026-11-03T10:00:00Z",
                              "metric": "m", "value": 1, "kind": "binary"}])  # judged later
    con = connect(bucket)
    assert con.sql("SELECT strata_json FROM online_scores").fetchall() == [('{"segment":"pro"}',)]
    assert con.sql("SELECT c.strata['query_type'], s.value FROM scores s "
                   "JOIN cases c USING (run_id, case_id)").fetchall() == [("billing", 1.0)]
    assert con.sql("SELECT count(*) FROM feedback").fetchall() == [(1,)]
    assert main(["runs", "--json", "--warehouse", bucket]) == 0
    assert [r["run_id"] for r in json.loads(capsys.readouterr().out)] == [run_id]
    assert main(["check", "--warehouse", bucket]) == 0


def test_bad_import_leaves_the_bucket_unchanged(bucket, tmp_path, capsys):
    good = tmp_path / "g.jsonl"
    good.write_text('{"case_id": "a", "scores": {"m": true}}\n')
    assert main(["import", "jsonl", str(good), "--run-name", "x", "--warehouse", bucket]) == 0
    import s3fs

    before = sorted(s3fs.S3FileSystem().find(bucket))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"case_id": "a"}\n{"case_id": "b", "cost_usd": -1}\n')
    assert main(["import", "jsonl", str(bad), "--run-name", "y", "--warehouse", bucket]) == 2
    assert "b.jsonl:2, field 'cost_usd'" in capsys.readouterr().err
    assert sorted(s3fs.S3FileSystem().find(bucket)) == before


def test_compact_check_and_a_truncated_file_on_s3(bucket, capsys):
    import s3fs

    wh = Warehouse(bucket)
    for b in range(3):
        traces = [{"trace_id": f"t{b}-{k}", "timestamp": "2026-11-01T10:00:00Z"}
                  for k in range(4)]
        wh.record_online(traces, [{"trace_id": t["trace_id"], "timestamp": t["timestamp"],
                                   "metric": "m", "value": 1, "kind": "binary"}
                                  for t in traces])
    fs = s3fs.S3FileSystem()
    day = f"{bucket}/online_scores/date=2026-11-01"
    cut = f"{day}/part-20261101T000000-cut.parquet"
    fs.pipe(cut, fs.cat(fs.glob(f"{day}/part-*.parquet")[0])[:100])  # a half-copied file

    def seen() -> tuple:
        with connect(bucket) as con:
            return (con.sql("SELECT count(*) FROM online_scores").fetchall()[0][0],
                    con.sql("SELECT count(DISTINCT trace_id) FROM online_traces").fetchall()[0][0],
                    con.sql("SELECT path FROM unreadable_files").fetchall())

    assert seen() == (12, 12, [(cut,)])
    assert main(["compact", "--warehouse", bucket, "--grace", "0"]) == 0
    assert len(fs.glob(f"{bucket}/online_traces/date=2026-11-01/part-*.parquet")) == 1
    assert len(fs.glob(f"{day}/part-*.parquet")) == 2  # the merged file; the cut one untouched
    assert seen() == (12, 12, [(cut,)])
    capsys.readouterr()
    assert main(["check", "--warehouse", bucket]) == 1
    assert f"quarantined {cut.removeprefix('s3://')}" in capsys.readouterr().out
    assert fs.exists(f"{bucket}/_quarantine/online_scores/date=2026-11-01/"
                     "part-20261101T000000-cut.parquet")
    assert seen() == (12, 12, [])
    with connect(bucket) as con:
        raw = queries.online_daily(con, "m", date(2026, 11, 1), date(2026, 11, 1))
    assert main(["rollup", "--warehouse", bucket]) == 0  # rollups on S3 read the same
    with connect(bucket) as con:
        assert con.sql("SELECT count(*) FROM online_scores_unrolled").fetchall() == [(0,)]
        assert queries.online_daily(con, "m", date(2026, 11, 1), date(2026, 11, 1)).rows() \
            == raw.rows() == [(date(2026, 11, 1), "binary", 12, 1.0, 0.0)]
