"""The local cache of an object-storage warehouse (`evallib.warehouse.cache`) and the
snapshots over it: the same answers as local disk with the cache cold, warm, and after the
files it holds were compacted away or replaced; its size bound; a damaged copy is noticed
and fetched again. Against moto through the latency proxy (tests/warehouse/test_s3.py's
fixtures)."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from evallib import Warehouse, connect, queries
from evallib.cli import main
from evallib.warehouse import Live, catalog, snapshot
from evallib.warehouse import schema as S
from evallib.warehouse.cache import STAMP, PartCache, parse_size, settings
from evallib.warehouse.db import open_snapshot, read_paths
from evallib.warehouse.store import Store
from tests.warehouse.test_s3 import aws, bucket, s3_endpoint  # noqa: F401  (fixtures)

pytest.importorskip("s3fs")

# Views that read rows as they are stored (the others aggregate them; compared by query)
ROW_VIEWS = (*S.TABLES, "online_daily_rollup", "run_metric_rollup", "online_scores_unrolled",
             "scores_unrolled")


@pytest.fixture(scope="module")
def demo_bucket(s3_endpoint: str, demo_root: str) -> str:  # noqa: F811
    """The small demo warehouse, copied into a bucket once (tests only read it)."""
    import s3fs

    with pytest.MonkeyPatch.context() as mp:
        for name, value in aws(s3_endpoint).items():
            mp.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("evals-demo")
        fs.put(demo_root.rstrip("/") + "/", "evals-demo/team/", recursive=True)
    return "s3://evals-demo/team"


@pytest.fixture
def remote(bucket: str, demo_bucket: str) -> str:  # noqa: F811
    """The demo warehouse on S3 (and the test's own empty bucket beside it)."""
    return demo_bucket


def _rows(con) -> dict[str, tuple]:
    """Every stored row of every table, as a count and an order-free hash."""
    return {v: con.sql(f"SELECT count(*), sum(hash(x)) FROM (SELECT * FROM {v}) x")
            .fetchall()[0] for v in ROW_VIEWS}


def _answers(con) -> dict[str, pl.DataFrame]:
    """What the pages ask, over the aggregating views."""
    first, last = queries.online_date_range(con).row(0)
    return {"runs": queries.runs_overview(con),
            "summary": queries.run_metric_summary(con),
            "health": queries.online_health(con, first, last),
            "quality": queries.online_quality(con, first, last),
            "daily": queries.online_daily(con, "correctness", first, last),
            "feedback": queries.online_feedback(con, first, last)}


def _same(local, remote) -> None:
    assert _rows(remote) == _rows(local)
    mine, theirs = _answers(remote), _answers(local)
    for name, frame in theirs.items():
        assert_frame_equal(mine[name], frame, check_exact=False, rel_tol=1e-9), name


def _copies(store: Store) -> list[Path]:
    return sorted(Path(store.cache.root).rglob("*.parquet"))


def test_cold_and_warm_cache_answer_like_local_disk(remote: str, demo_root: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    local = connect(demo_root)
    monkeypatch.setattr(catalog, "WHOLE", 0)  # nothing fetched whole up front: DuckDB reads
    with connect(remote, read_only=True) as cold:  # …through the cache, fetching each file
        paths = read_paths(snapshot(remote))
        assert any(p.startswith("evallib-cache://") for p in paths.values())
        _same(local, cold)
    store = Store(remote)
    assert _copies(store)  # what the queries read is held now
    paths = read_paths(snapshot(remote))
    assert set(paths.values()) <= {str(p) for p in _copies(store)}  # every file local now
    with connect(remote, read_only=True) as warm:
        _same(local, warm)


def test_a_new_process_reuses_the_cache(remote: str, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    catalog._CACHE.clear()  # as in a new process
    assert main(["runs", "--json", "--warehouse", remote]) == 0
    first = capsys.readouterr().out
    index = Path(os.environ["EVALLIB_CACHE_DIR"], "footers")
    assert list(index.glob("*.json"))  # footers parsed once, kept for the next process
    catalog._CACHE.clear()  # as in a new process
    import s3fs

    calls: list[str] = []
    cat_file = s3fs.S3FileSystem._cat_file

    async def counting(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(path)
        return await cat_file(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", counting)
    assert main(["runs", "--json", "--warehouse", remote]) == 0
    assert capsys.readouterr().out == first
    assert calls == []  # listings only: no footer, no file fetched again


def test_no_stale_file_after_compaction_and_replace(bucket: str, tmp_path: Path) -> None:  # noqa: F811
    """Files the cache holds are merged away by `evallib compact` and a run is replaced
    with ``--replace`` between two snapshots: the second sees exactly what local disk
    sees."""
    day = datetime(2026, 11, 2, 9, tzinfo=UTC)
    for root in (bucket, str(tmp_path)):
        wh = Warehouse(root)
        wh.record_run({"name": "r", "dataset": "d", "run_id": "run-1"},
                      [{"case_id": "a"}, {"case_id": "b"}],
                      [{"case_id": "a", "metric": "m", "value": 1, "kind": "binary"}])
        for b in range(3):
            wh.record_online([{"trace_id": f"t{b}-{k}", "timestamp": day} for k in range(4)],
                             [{"trace_id": f"t{b}-{k}", "timestamp": day, "metric": "m",
                               "value": k % 2, "kind": "binary"} for k in range(4)])
    first = snapshot(bucket)
    with connect(first) as con:  # fills the cache
        assert con.sql("SELECT count(*) FROM online_scores").fetchall() == [(12,)]
    for root in (bucket, str(tmp_path)):
        assert main(["compact", "--warehouse", root, "--grace", "0"]) == 0
        Warehouse(root).record_run({"name": "r", "dataset": "d", "run_id": "run-1"},
                                   [{"case_id": "a"}, {"case_id": "c"}],
                                   [{"case_id": "c", "metric": "m", "value": 0,
                                     "kind": "binary"}], replace=True)
    second = snapshot(bucket, first)  # incremental: the runs and the day re-listed
    with connect(second) as con, connect(str(tmp_path)) as local:
        rows, expected = _rows(con), _rows(local)
        del rows["runs"], expected["runs"]  # write ids and commit times differ
        assert rows == expected
        assert con.sql("SELECT case_id, value FROM scores").fetchall() == [("c", 0.0)]
        assert con.sql("SELECT count(*) FROM online_scores").fetchall() == [(12,)]
    gone = {p.path for listing in first.listings.values() for p in listing.parts} - \
        {p.path for listing in second.listings.values() for p in listing.parts}
    assert gone  # the originals merged away and the replaced run's files
    served = set(read_paths(second).values())
    store = Store(bucket)
    assert not any(store.cache.path(p) in served for listing in first.listings.values()
                   for p in listing.parts if p.path in gone)


def test_the_cache_stays_within_its_size(remote: str, demo_root: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 300_000  # a fraction of the warehouse
    monkeypatch.setenv("EVALLIB_CACHE_SIZE", str(limit))
    store = Store(remote)
    assert store.cache.settings.max_bytes == limit
    with connect(remote) as con:  # what does not fit is read through, not kept
        _same(connect(demo_root), con)
    held = sum(p.stat().st_size for p in _copies(store))
    assert 0 < held <= limit
    # Copies last used an hour ago give way (least recently used first) to the files of
    # another warehouse
    for p in _copies(store):
        os.utime(p, (time.time() - 3600, STAMP))
    old = set(_copies(store))
    import s3fs

    other = remote.replace("s3://", "").split("/")[0] + "-b"
    s3fs.S3FileSystem().mkdir(other)
    Warehouse(f"s3://{other}/wh").record_online(
        [{"trace_id": f"t{i}", "timestamp": datetime(2026, 11, 1, tzinfo=UTC)}
         for i in range(100)])
    with connect(f"s3://{other}/wh") as con:
        assert con.sql("SELECT count(*) FROM online_traces").fetchall() == [(100,)]
    now = set(_copies(store))
    assert now - old and old - now  # new copies came in, the oldest went
    assert sum(p.stat().st_size for p in now) <= limit


@pytest.mark.parametrize("damage", ["overwritten", "truncated"])
def test_a_damaged_copy_is_noticed_and_fetched_again(remote: str, demo_root: str,
                                                     damage: str) -> None:
    store = Store(remote)
    with connect(remote) as con:
        before = _rows(con)
    copy = max(_copies(store), key=lambda p: p.stat().st_size)
    good = copy.read_bytes()
    with open(copy, "r+b") as f:
        if damage == "truncated":
            f.truncate(len(good) // 2)
        else:
            f.seek(len(good) // 2)
            f.write(b"\0" * 64)
    catalog._CACHE.clear()
    corrupt = store.cache.corrupt
    with connect(remote) as con:
        assert _rows(con) == before == _rows(connect(demo_root))
    assert store.cache.corrupt == corrupt + 1
    assert copy.read_bytes() == good and int(copy.stat().st_mtime) == STAMP


def test_live_snapshot_follows_new_data(bucket: str) -> None:  # noqa: F811
    wh = Warehouse(bucket)
    now = datetime.now(UTC)
    wh.record_online([{"trace_id": f"t{d}", "timestamp": now - timedelta(days=d)}
                      for d in range(10)])
    wh.record_run({"name": "old", "dataset": "d"}, [{"case_id": "x"}])
    live = Live(bucket, every=3600)
    con = live.connection()
    key = live.snapshot().key
    assert live.refresh().key == key and live.connection() is con  # nothing new, same one

    wh.record_online([{"trace_id": "fresh", "timestamp": now}],
                     [{"trace_id": "fresh", "timestamp": now, "metric": "m", "value": 1,
                       "kind": "binary"}])
    wh.record_run({"name": "new", "dataset": "d", "run_id": "new-run"}, [{"case_id": "x"}],
                  [{"case_id": "x", "metric": "m", "value": 1, "kind": "binary"}])
    snap = live.refresh()
    assert snap.key != key and snap.full_at < snap.taken_at  # incremental
    con = live.connection()
    assert con.sql("SELECT count(*) FROM online_traces WHERE trace_id = 'fresh'"
                   ).fetchall() == [(1,)]
    assert con.sql("SELECT count(*) FROM scores WHERE run_id = 'new-run'").fetchall() == [(1,)]

    old_day = datetime(2020, 1, 1, tzinfo=UTC)  # a backfill of an old day: seen by the
    wh.record_online([{"trace_id": "old", "timestamp": old_day}])  # next renewal that
    live.refresh()  # (incremental)                                 lists everything again
    assert live.connection().sql("SELECT count(*) FROM online_traces WHERE trace_id = 'old'"
                                 ).fetchall() == [(0,)]
    live.refresh(full=True)
    assert live.connection().sql("SELECT count(*) FROM online_traces WHERE trace_id = 'old'"
                                 ).fetchall() == [(1,)]
    live.close()


def test_incremental_snapshot_on_local_disk_equals_a_full_one(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    now = datetime.now(UTC)
    wh.record_online([{"trace_id": "a", "timestamp": now - timedelta(days=30)}])
    first = snapshot(tmp_path)
    wh.record_online([{"trace_id": "b", "timestamp": now}])
    wh.record_run({"name": "r", "dataset": "d"}, [{"case_id": "c"}])
    later = snapshot(tmp_path, first)
    full = snapshot(tmp_path)
    assert later.key == full.key and later.full_at == first.full_at


def test_cache_status_and_clear(remote: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--warehouse", remote]) == 0
    capsys.readouterr()
    assert main(["cache", "status", "--json", "--warehouse", remote]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["directory"] == os.environ["EVALLIB_CACHE_DIR"]
    assert status["files"] > 0 and status["warehouse_files"]["cached"] > 0
    assert status["max_bytes"] == parse_size("10GB")
    assert main(["cache", "clear", "--warehouse", remote]) == 0
    assert f"removed {status['files']:,} cached part files" in capsys.readouterr().out
    assert main(["cache", "status", "--warehouse", remote]) == 0
    out = capsys.readouterr().out
    assert ": 0 part files" in out and "0 of " in out
    assert main(["runs", "--warehouse", remote]) == 0  # fetched again


def test_cache_settings_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EVALLIB_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("EVALLIB_CACHE_SIZE", "1.5GiB")
    assert settings().max_bytes == int(1.5 * 1024**3)
    assert settings().directory == tmp_path / "c"
    monkeypatch.setenv("EVALLIB_CACHE_SIZE", "lots")
    assert main(["cache", "status"]) == 2
    assert "EVALLIB_CACHE_SIZE: 'lots' is not a size" in capsys.readouterr().err
    monkeypatch.delenv("EVALLIB_CACHE_DIR")
    monkeypatch.delenv("EVALLIB_CACHE_SIZE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert settings().directory == tmp_path / "xdg" / "evallib"
    assert PartCache.get(settings()) is PartCache.get(settings())


def test_an_unwritable_cache_reads_through(remote: str, demo_root: str,
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv("EVALLIB_CACHE_DIR", str(blocked))
    catalog._CACHE.clear()
    with connect(remote) as con:
        assert _rows(con) == _rows(connect(demo_root))


def test_duckdb_threads_read_one_file_through_the_cache(bucket: str,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of many row groups, read through the cache by four DuckDB threads at once
    (DuckDB seeks, then reads: each thread needs its own position)."""
    from evallib.warehouse.validate import to_arrow

    n = 60_000
    rows = pl.DataFrame({"trace_id": [f"t{i}" for i in range(n)],
                         "timestamp": [datetime(2026, 11, 1, tzinfo=UTC)] * n,
                         "metric": ["m"] * n, "value": [float(i % 7) for i in range(n)],
                         "kind": ["continuous"] * n,
                         "date": [datetime(2026, 11, 1).date()] * n})
    table = to_arrow(S.ONLINE_SCORES, rows.to_arrow(), source="test")
    Store(bucket).write_part(S.ONLINE_SCORES, table.drop(["date"]), "2026-11-01",
                             row_group_size=2_000)
    monkeypatch.setattr(catalog, "WHOLE", 0)  # not fetched up front: read through
    for _ in range(3):
        for copy in _copies(Store(bucket)):
            copy.unlink()
        with connect(bucket, threads=4) as con:
            assert con.sql("SELECT count(*), sum(value), count(DISTINCT trace_id) FROM "
                           "online_scores").fetchall() == [(n, float(sum(i % 7 for i in
                                                                         range(n))), n)]


def test_the_newest_write_of_a_key_wins_across_cached_and_read_through_files(
        bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A retried write of a day's scores on S3: the older file already copied into the cache,
    the newer one read through it (two trees on disk). One row per key, the newer one's."""
    from evallib.warehouse.validate import to_arrow

    def scores(value: float) -> None:
        rows = pl.DataFrame({"trace_id": [f"t{i}" for i in range(100)],
                             "timestamp": [datetime(2026, 11, 1, tzinfo=UTC)] * 100,
                             "metric": ["m"] * 100, "value": [value] * 100,
                             "kind": ["continuous"] * 100,
                             "date": [datetime(2026, 11, 1).date()] * 100})
        table = to_arrow(S.ONLINE_SCORES, rows.to_arrow(), source="test")
        Store(bucket).write_part(S.ONLINE_SCORES, table.drop(["date"]), "2026-11-01")

    monkeypatch.setattr(catalog, "WHOLE", 0)  # nothing fetched up front: read through
    scores(1.0)
    with connect(bucket) as con:
        con.sql("SELECT sum(value) FROM online_scores").fetchall()  # copies the file
    scores(2.0)
    snap = snapshot(bucket)
    paths = sorted(read_paths(snap).values())
    scored = [p for p in paths if "/online_scores/" in p]
    assert len(scored) == 2 and scored[0].startswith("/") != scored[1].startswith("/"), scored
    with connect(snap) as con:
        assert con.sql("SELECT count(*), sum(value) FROM online_scores").fetchall() == \
            [(100, 200.0)]
    # the dashboard's connection finds the two files share keys (one file in each tree)
    with open_snapshot(snap, read_paths(snap), shared_keys=True) as con:
        assert con.sql("SELECT count(*), sum(value) FROM online_scores").fetchall() == \
            [(100, 200.0)]
