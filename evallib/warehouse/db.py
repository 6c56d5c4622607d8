"""`connect()`: an embedded DuckDB connection with one view per warehouse table.

The connection is in-memory and holds only views over the part files listed when it was
made (see `evallib.warehouse.catalog`); nothing in evallib writes through it. A table with no files
yet gets an empty view of the right types, so every query works on a new or partial
warehouse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import duckdb
import pyarrow as pa

from . import keys
from . import online_rollups as traffic
from . import schema as S
from .catalog import MOMENT_COLUMNS, MOMENTS, Current, Listing, current, list_table, write_id
from .store import Store

_DUCK_TYPES = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "int64": "BIGINT",
    "bool": "BOOLEAN",
    "date32[day]": "DATE",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "map<string, string>": "MAP(VARCHAR, VARCHAR)",
    "list<item: string>": "VARCHAR[]",
    "list<item: int64>": "BIGINT[]",
}


def duck_type(t: pa.DataType) -> str:
    return _DUCK_TYPES[str(t)]


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _read(paths: str | list[str], table: S.Table, *, raw: bool = False) -> str:
    """SQL for the rows of these part files (a list, or one glob), or an empty relation of
    the table's columns. A keyed table (`keys.LATEST_WINS`) keeps one row per key in each
    partition that holds more than one file (a single file is unique already); ``raw``:
    every row of every file."""
    if not paths:
        cols = [c for c in table.columns if c.name != table.partition]
        part = [table.column(table.partition)] if table.partition else []
        typed = ", ".join(f"CAST(NULL AS {duck_type(c.type)}) AS {c.name}" for c in cols + part)
        return f"SELECT {typed} WHERE false"
    if table.partition:
        ptype = duck_type(table.column(table.partition).type)
        opts = f"hive_partitioning = true, hive_types = {{'{table.partition}': '{ptype}'}}"
    else:
        opts = "hive_partitioning = false"
    if table.added:  # files written before these columns lack them: read as null
        opts += ", union_by_name = true"
    if isinstance(paths, str) or raw or not keys.is_keyed(table):
        files = _sql_str(paths) if isinstance(paths, str) else _sql_list(paths)
        return f"SELECT * FROM read_parquet({files}, {opts})"
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        by_dir.setdefault(p.rsplit("/", 1)[0], []).append(p)
    single = [ps[0] for ps in by_dir.values() if len(ps) == 1]
    # several files: listed oldest first (names start with the writer's clock), the newest wins
    several = [p for d in sorted(by_dir) if len(by_dir[d]) > 1
               for p in sorted(by_dir[d], key=lambda p: p.rsplit("/", 1)[1])]
    reads = []
    if single:
        reads.append(f"SELECT * FROM read_parquet({_sql_list(single)}, {opts})")
    if several:
        reads.append("SELECT * FROM (" + keys.latest_rows(
            f"SELECT * FROM read_parquet({_sql_list(several)}, {opts})", table) + ")")
    rows = " UNION ALL BY NAME ".join(reads)
    if table.name == "feedback":  # files written before event_id existed: its derived value
        rows = (f"SELECT * REPLACE (coalesce(event_id, {keys.DERIVED_EVENT_ID}) AS event_id) "
                f"FROM ({rows})")
    return rows


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(_sql_str(p) for p in paths) + "]"


def _write_id(path: str) -> str:
    """``part-<stamp>-<write_id>.parquet`` → write_id."""
    return path.rsplit("/", 1)[-1].rsplit("-", 1)[-1].removesuffix(".parquet")


def connect(root: str | os.PathLike[str] | Store | None = None, *,
            threads: int | None = None, memory_limit: str | None = None,
            read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Views over the warehouse as of this call (a snapshot: every table is listed once
    here, so all queries on the connection agree; data written later shows up in a new
    connection):

    - ``runs``: the latest committed write of every run; ``approved`` is the run's flag or
      a row in ``approvals``;
    - ``cases``, ``scores``, ``retrievals``: the files of those writes only, so no query
      joins against ``runs`` to hide uncommitted files;
    - ``online_traces``, ``online_scores``, ``online_retrievals``, ``feedback``,
      ``human_labels``, ``approvals``, ``gate_results``, ``alerts``: their current part
      files (``alerts`` is append-only: `queries.alerts` keeps each alert's latest row);
    - ``online_score_moments`` (date × metric × strata_json), ``online_daily_moments``
      (date × metric), ``run_score_moments`` (run_id × metric × strata_json) and
      ``run_metric_moments`` (run_id × metric): kind, n_rows, n, sx, sxx, n_passed of scores,
      from the fresh rollups (``online_daily_rollup``, ``run_metric_rollup``) where there
      are some and from the raw rows (``online_scores_unrolled``, ``scores_unrolled``)
      elsewhere: the same numbers either way (see `evallib.warehouse.rollup`);
    - ``unreadable_files`` (table_name, path, reason): part files left out because they are
      not readable Parquet of their table (`evallib check` quarantines them).

    ``read_only`` (the dashboard's): DuckDB may then open the listed part files and nothing
    else (no COPY TO, ATTACH, INSTALL, read_csv of another file), and its configuration is
    locked so no statement can undo that.
    """
    store = root if isinstance(root, Store) else Store(root)
    config: dict[str, str | int] = {}
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    if not store.is_local:
        con.register_filesystem(store.fs)
    listings = {t.name: list_table(store, t) for t in S.TABLES.values()}
    for table in S.TABLES.values():
        offline = table.name == "runs" or table.name in S.OFFLINE_DATA
        con.execute(f"CREATE VIEW {'_all_' if offline else ''}{table.name} AS "
                    f"{_read(listings[table.name].urls, table)}")
    con.execute(
        "CREATE TABLE runs AS SELECT * EXCLUDE (write_id, committed_at) "
        # approved: the run's own flag, or a row in the append-only approvals table
        "REPLACE (approved OR run_id IN (SELECT run_id FROM approvals) AS approved), "
        "write_id, committed_at "
        "FROM _all_runs QUALIFY row_number() OVER (PARTITION BY run_id "
        "ORDER BY committed_at DESC) = 1"
    )
    committed = {w for (w,) in con.sql("SELECT write_id FROM runs").fetchall()}
    for name in S.OFFLINE_DATA:
        table = S.TABLES[name]
        files = [p for p in listings[name].urls if _write_id(p) in committed]
        con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (write_id) FROM "
                    f"({_read(files, table)})")
    writes = dict(con.sql("SELECT run_id, write_id FROM runs").fetchall())
    rollups, raw = _moment_views(con, store, listings, writes)
    raw.update(_traffic_views(con, listings, rollups))
    _unrolled_table(con, raw)
    _unreadable_table(con, {**listings, **rollups})
    if read_only:
        readable = sorted({u for listing in (*listings.values(), *rollups.values())
                           for u in listing.urls})
        con.execute(f"SET allowed_paths = [{', '.join(map(_sql_str, readable))}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def _moment_views(con: duckdb.DuckDBPyConnection, store: Store, listings: dict[str, Listing],
                  writes: dict[str, str]) -> tuple[dict[str, Listing], dict[str, set[str]]]:
    """Score moments: the fresh rows of the current rollups, plus the raw rows of the days
    and runs they miss (see `evallib.warehouse.rollup`). Returns the rollups' listings and, per
    rollup, the days (runs) read raw."""
    rollups = {t.name: list_table(store, t) for t in S.ROLLUPS.values()}
    daily = current(rollups["online_daily_rollup"], listings["online_scores"].fingerprints())
    per_run = current(rollups["run_metric_rollup"], writes)
    raw_online = [p for p in listings["online_scores"].parts if p.partition not in daily.fresh]
    raw_runs = [p for p in listings["scores"].parts
                if p.partition not in per_run.fresh and writes.get(p.partition) == write_id(p)]
    con.execute(f"CREATE VIEW online_daily_rollup AS "
                f"{_fresh_rows(daily, S.ONLINE_DAILY_ROLLUP, 'date')}")
    con.execute(f"CREATE VIEW run_metric_rollup AS "
                f"{_fresh_rows(per_run, S.RUN_METRIC_ROLLUP, 'run_id')}")
    con.execute(f"CREATE VIEW online_scores_unrolled AS "
                f"{_read([p.url for p in raw_online], S.ONLINE_SCORES)}")
    con.execute(f"CREATE VIEW scores_unrolled AS SELECT * EXCLUDE (write_id) FROM "
                f"({_read([p.url for p in raw_runs], S.SCORES)})")
    columns = ", ".join(MOMENT_COLUMNS)
    pooled = ", ".join(["any_value(kind) AS kind", *(f"sum({c})::BIGINT AS {c}" for c in
                                                     ("n_rows", "n")),
                        "sum(sx) AS sx", "sum(sxx) AS sxx", "sum(n_passed)::BIGINT AS n_passed"])
    for key, rolled, raw, fine, coarse in (
            ("date", "online_daily_rollup", "online_scores_unrolled", "online_score_moments",
             "online_daily_moments"),
            ("run_id", "run_metric_rollup", "scores_unrolled", "run_score_moments",
             "run_metric_moments")):
        # × strata_json, for splits by a stratum; and without, so the raw rows of what is
        # not rolled up group as coarsely as the question needs
        con.execute(f"CREATE VIEW {fine} AS SELECT {key}, {columns} FROM {rolled} "
                    f"UNION ALL SELECT {key}, metric, strata_json, {MOMENTS} FROM {raw} "
                    f"GROUP BY {key}, metric, strata_json")
        con.execute(f"CREATE VIEW {coarse} AS SELECT {key}, metric, {pooled} FROM {rolled} "
                    f"GROUP BY {key}, metric UNION ALL SELECT {key}, metric, {MOMENTS} "
                    f"FROM {raw} GROUP BY {key}, metric")
    return rollups, {"online_daily_rollup": {p.partition for p in raw_online if p.partition},
                     "run_metric_rollup": {p.partition for p in raw_runs if p.partition}}


def _traffic_views(con: duckdb.DuckDBPyConnection, listings: dict[str, Listing],
                   rollups: dict[str, Listing]) -> dict[str, set[str]]:
    """Per traffic rollup (`evallib.warehouse.online_rollups`): its fresh days, plus the same
    aggregate over the raw rows of the days it misses (returned, per rollup)."""
    missed = {}
    for spec in traffic.SPECS:
        cur = current(rollups[spec.table.name], traffic.fingerprints(spec, listings))
        raw = [p for p in listings[spec.source.name].parts if p.partition not in cur.fresh]
        days = {p.partition for p in raw if p.partition}
        joined = {name: f"({_read([p.url for p in parts], spec.joins[name])})"
                  for name, parts in traffic.joined_parts(spec, listings, days).items()}
        aggregate = spec.sql("duckdb", f"({_read([p.url for p in raw], spec.source)})", joined)
        con.execute(f"CREATE VIEW {spec.view} AS "
                    f"SELECT * FROM ({_fresh_rows(cur, spec.table, 'date')}) "
                    f"UNION ALL BY NAME SELECT * FROM ({aggregate})")
        missed[spec.table.name] = days
    return missed


def _unrolled_table(con: duckdb.DuckDBPyConnection, raw: dict[str, set[str]]) -> None:
    """Per rollup, the days (runs) its views read raw: `queries.unrolled`."""
    con.execute("CREATE TABLE unrolled (rollup VARCHAR, key VARCHAR)")
    rows = [(name, key) for name, keys in raw.items() for key in sorted(keys)]
    if rows:
        con.executemany("INSERT INTO unrolled VALUES (?, ?)", rows)


def _fresh_rows(cur: Current, table: S.Table, key: str) -> str:
    """The current rollup file's rows, but those of days (runs) gone stale."""
    rows = _read([cur.part.url] if cur.part else [], table)
    if not cur.stale:
        return rows
    cast = "DATE" if key == "date" else "VARCHAR"
    stale = ", ".join(f"CAST({_sql_str(k)} AS {cast})" for k in sorted(cur.stale))
    return f"SELECT * FROM ({rows}) WHERE NOT list_contains([{stale}], {key})"


def _unreadable_table(con: duckdb.DuckDBPyConnection, listings: dict[str, Listing]) -> None:
    con.execute("CREATE TABLE unreadable_files (table_name VARCHAR, path VARCHAR, "
                "reason VARCHAR)")
    rows = [(name, p.url, why) for name, listing in listings.items()
            for p, why in listing.unreadable]
    if rows:
        con.executemany("INSERT INTO unreadable_files VALUES (?, ?, ?)", rows)


# What DuckDB (or fsspec under it) says when a file a snapshot listed is gone.
_LOST = ("No files found that match the pattern", "No such file or directory",
         "FileNotFoundError", "does not exist")
T = TypeVar("T")


def lost_file(error: BaseException) -> bool:
    """Whether a query failed because a part file its snapshot listed is gone: `evallib
    compact` deleted it once merged. A new snapshot (`connect()`) reads the merged file."""
    return isinstance(error, duckdb.IOException) and any(s in str(error) for s in _LOST)


def retrying(read: Callable[[], T], attempts: int = 10) -> T:
    """Run ``read`` (which connects anew each call) again while it fails on a lost file."""
    for attempt in range(attempts):
        try:
            return read()
        except duckdb.IOException as e:
            if not lost_file(e) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def snapshot_key(root: str | os.PathLike[str] | Store | None = None) -> tuple:
    """Changes when a table gains data, a run is committed or approved: a cheap key for
    caching a connection (directory listings of ``runs/`` and ``approvals/``)."""
    store = root if isinstance(root, Store) else Store(root)
    runs = store.list_parts(S.RUNS)
    approvals = store.list_parts(S.APPROVALS)
    return (tables_present(store), len(runs), runs[-1] if runs else "", len(approvals))


def tables_present(root: str | os.PathLike[str] | Store | None = None) -> frozenset[str]:
    """Which tables have data: a cheap key for caching a connection."""
    store = root if isinstance(root, Store) else Store(root)
    return frozenset(t.name for t in S.TABLES.values() if store.has_files(t))
