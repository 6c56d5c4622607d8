"""`connect()`: an embedded DuckDB connection with one view per warehouse table.

The connection is in-memory and holds only views over the part files of one snapshot
(`evallib.warehouse.snapshot`, `evallib.warehouse.catalog`); nothing in evallib writes
through it. A table with no files yet gets an empty view of the right types, so every query
works on a new or partial warehouse. On an object store DuckDB reads local copies of the
files (`evallib.warehouse.cache`): those the cache holds directly, the others through it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import duckdb
import pyarrow as pa

from . import keys
from . import online_rollups as traffic
from . import schema as S
from .cache import ReadThrough
from .catalog import MOMENT_COLUMNS, MOMENTS, WARM, Current, Listing, Part, current, write_id
from .snapshot import Snapshot, snapshot
from .store import LISTERS, Store

# What every reader above the storage layer is handed: a DuckDB connection over the views.
Connection = duckdb.DuckDBPyConnection

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


Read = Callable[[list[Part], S.Table], str]  # parts of a table → the SQL of their rows
Sharing = Callable[[S.Table, list[list[str]], str], set[str]]  # see `_sharing`


def duck_type(t: pa.DataType) -> str:
    return _DUCK_TYPES[str(t)]


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _read(paths: str | list[str], table: S.Table, *, raw: bool = False,
          sharing: Sharing | None = None) -> str:
    """SQL for the rows of these part files (a list, or one glob), or an empty relation of
    the table's columns. A keyed table (`keys.LATEST_WINS`) keeps one row per key in each
    partition that holds more than one file (a single file is unique already): among the
    files ``sharing`` finds to share a key with another file of their partition, or among
    all of them without it. ``raw``: every row of every file."""
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
    by_dir: dict[str, list[str]] = {}  # by partition: a remote warehouse's files may be
    for p in paths:  # read from the cache and through it, in two trees
        by_dir.setdefault(p.rsplit("/", 2)[-2], []).append(p)
    # several files: listed oldest first (names start with the writer's clock), the newest wins
    groups = [sorted(ps, key=lambda p: p.rsplit("/", 1)[1]) for _, ps in sorted(by_dir.items())
              if len(ps) > 1]
    shared = (sharing(table, groups, opts) if sharing else
              {p for g in groups for p in g})  # without it: every file of those partitions
    single = [p for ps in by_dir.values() for p in ps if len(ps) == 1 or p not in shared]
    several = [p for g in groups for p in g if p in shared]
    reads = []
    if single:
        reads.append(f"SELECT * FROM read_parquet({_sql_list(single)}, {opts})")
    if several:
        latest = keys.latest_rows(f"SELECT * FROM read_parquet({_sql_list(several)}, {opts})",
                                  table)
        reads.append(f"SELECT * FROM ({latest})")
    rows = " UNION ALL BY NAME ".join(reads)
    if table.name == "feedback":  # files written before event_id existed: its derived value
        rows = (f"SELECT * REPLACE (coalesce(event_id, {keys.DERIVED_EVENT_ID}) AS event_id) "
                f"FROM ({rows})")
    return rows


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join(_sql_str(p) for p in paths) + "]"


# A partition's files (oldest first) → those that share a key with another of them. Part
# files never change (a name is never reused), so this holds for as long as those files
# are the partition's: a dashboard renewing its snapshot reads only the keys of partitions
# that gained or lost a file.
_SHARED: dict[tuple[str, ...], frozenset[str]] = {}
_SHARED_LOCK = threading.Lock()
_SHARED_MAX = 4096


def _sharing(con: Connection, table: S.Table, groups: list[list[str]], opts: str
             ) -> set[str]:
    """The files of these partitions (each several files) that share a key with another
    file of their partition: only their rows need the latest-wins rule, the others are
    unique. Reads the key columns of partitions not seen before, once."""
    with _SHARED_LOCK:
        todo = [g for g in groups if tuple(g) not in _SHARED]
    if todo:
        files = [p for g in todo for p in g]
        found = {files[i] for (i,) in con.sql(
            f"SELECT DISTINCT unnest(f) FROM (SELECT list(file_index) AS f FROM read_parquet("
            f"{_sql_list(files)}, {opts}) GROUP BY {keys.key_sql(table)} HAVING count(*) > 1)"
        ).fetchall()}
        with _SHARED_LOCK:
            for g in todo:
                _SHARED[tuple(g)] = frozenset(found.intersection(g))
            while len(_SHARED) > _SHARED_MAX:
                del _SHARED[next(iter(_SHARED))]
    with _SHARED_LOCK:
        return {p for g in groups for p in _SHARED.get(tuple(g), g)}


def connect(root: str | os.PathLike[str] | Store | Snapshot | None = None, *,
            threads: int | None = None, memory_limit: str | None = None,
            read_only: bool = False) -> Connection:
    """Views over the warehouse as of this call, or as of ``root`` when it is a `Snapshot`
    (every table is listed once, so all queries on the connection agree; data written later
    shows up in a new connection):

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
    snap = root if isinstance(root, Snapshot) else snapshot(root)
    return open_snapshot(snap, read_paths(snap), threads=threads, memory_limit=memory_limit,
                         read_only=read_only)


def read_paths(snap: Snapshot) -> dict[Part, str]:
    """Where DuckDB reads each current part of the snapshot: the file itself on a local
    disk; on an object store its cached copy (the small tables every connection reads and
    the rollups are fetched now if missing), else through the cache."""
    parts = {p: name for name, listing in snap.listings.items() for p in listing.parts}
    store = snap.store
    if store.is_local:
        return {p: p.url for p in parts}
    copies = store.cache.lookup(parts)
    copies.update(store.cache.fetch(store.fs, [p for p, name in parts.items()
                                               if name in WARM and p not in copies]))
    return {p: copies.get(p) or f"{ReadThrough.protocol}://{p.path}" for p in parts}


def fetched(store: Store, parts: list[Part]) -> list[str]:
    """Paths to read these parts at: on an object store their cached copies (fetched now,
    concurrently), else their URLs (DuckDB then needs ``store.fs`` registered)."""
    if store.is_local:
        return [p.url for p in parts]
    copies = store.cache.fetch(store.fs, parts)
    return [copies.get(p, p.url) for p in parts]


def open_snapshot(snap: Snapshot, paths: dict[Part, str], *, threads: int | None = None,
                  memory_limit: str | None = None, read_only: bool = False,
                  shared_keys: bool = False) -> Connection:
    """`connect()` over a snapshot whose parts DuckDB reads at ``paths``. ``shared_keys``
    (a long-lived reader's, the dashboard's): first find the files of each partition that
    share a key with another of its files (`_sharing`: reading the key columns of the
    partitions whose files changed), so its many queries apply the latest-wins rule to
    those files alone; a one-shot connection skips that read, and its queries apply the
    rule to every file of a partition with several."""
    config: dict[str, str | int] = {}
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    through = [p for p, path in paths.items() if path.startswith(ReadThrough.protocol)]
    if through:
        con.register_filesystem(ReadThrough.over(snap.store.cache, snap.store.fs, through))
    listings = snap.listings

    def files(parts: list[Part]) -> list[str]:
        return [paths[p] for p in parts]

    def read(parts: list[Part], table: S.Table) -> str:
        return _read(files(parts), table,
                     sharing=(lambda *a: _sharing(con, *a)) if shared_keys else None)

    for table in S.TABLES.values():
        offline = table.name == "runs" or table.name in S.OFFLINE_DATA
        con.execute(f"CREATE VIEW {'_all_' if offline else ''}{table.name} AS "
                    f"{read(listings[table.name].parts, table)}")
    _runs_table(con, tuple(files(listings["runs"].parts) + files(listings["approvals"].parts)))
    committed = {w for (w,) in con.sql("SELECT write_id FROM runs").fetchall()}
    for name in S.OFFLINE_DATA:
        table = S.TABLES[name]
        parts = [p for p in listings[name].parts if write_id(p) in committed]
        con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (write_id) FROM "
                    f"({read(parts, table)})")
    writes = dict(con.sql("SELECT run_id, write_id FROM runs").fetchall())
    raw = _moment_views(con, listings, writes, read)
    raw.update(_traffic_views(con, listings, read))
    _unrolled_table(con, raw)
    _unreadable_table(con, listings)
    if read_only:
        readable = sorted(set(paths.values()))
        con.execute(f"SET allowed_paths = [{', '.join(map(_sql_str, readable))}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


_RUNS: dict[tuple[str, ...], pa.Table] = {}  # the runs table of these files (the last few)


def _runs_table(con: Connection, source: tuple[str, ...]) -> None:
    """The latest committed write of every run, as a table: read from its part files once
    per process while they stay the same (a dashboard renewing its snapshot for new
    traffic reads no run again)."""
    if source not in _RUNS:
        _RUNS[source] = con.sql(
            "SELECT * EXCLUDE (write_id, committed_at) "
            # approved: the run's own flag, or a row in the append-only approvals table
            "REPLACE (approved OR run_id IN (SELECT run_id FROM approvals) AS approved), "
            "write_id, committed_at "
            "FROM _all_runs QUALIFY row_number() OVER (PARTITION BY run_id "
            "ORDER BY committed_at DESC) = 1").to_arrow_table()
        while len(_RUNS) > 4:
            del _RUNS[next(iter(_RUNS))]
    con.register("_runs_rows", _RUNS[source])
    con.execute("CREATE TABLE runs AS SELECT * FROM _runs_rows")
    con.unregister("_runs_rows")


def _moment_views(con: Connection, listings: dict[str, Listing],
                  writes: dict[str, str], read: Read) -> dict[str, set[str]]:
    """Score moments: the fresh rows of the current rollups, plus the raw rows of the days
    and runs they miss (see `evallib.warehouse.rollup`). Returns, per rollup, the days
    (runs) read raw."""
    daily = current(listings["online_daily_rollup"], listings["online_scores"].fingerprints())
    per_run = current(listings["run_metric_rollup"], writes)
    raw_online = [p for p in listings["online_scores"].parts if p.partition not in daily.fresh]
    raw_runs = [p for p in listings["scores"].parts
                if p.partition not in per_run.fresh and writes.get(p.partition) == write_id(p)]
    con.execute(f"CREATE VIEW online_daily_rollup AS "
                f"{_fresh_rows(daily, S.ONLINE_DAILY_ROLLUP, 'date', read)}")
    con.execute(f"CREATE VIEW run_metric_rollup AS "
                f"{_fresh_rows(per_run, S.RUN_METRIC_ROLLUP, 'run_id', read)}")
    con.execute(f"CREATE VIEW online_scores_unrolled AS "
                f"{read(raw_online, S.ONLINE_SCORES)}")
    con.execute(f"CREATE VIEW scores_unrolled AS SELECT * EXCLUDE (write_id) FROM "
                f"({read(raw_runs, S.SCORES)})")
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
    return {"online_daily_rollup": {p.partition for p in raw_online if p.partition},
            "run_metric_rollup": {p.partition for p in raw_runs if p.partition}}


def _traffic_views(con: Connection, listings: dict[str, Listing],
                   read: Read) -> dict[str, set[str]]:
    """Per traffic rollup (`evallib.warehouse.online_rollups`): its fresh days, plus the same
    aggregate over the raw rows of the days it misses (returned, per rollup)."""
    missed = {}
    for spec in traffic.SPECS:
        cur = current(listings[spec.table.name], traffic.fingerprints(spec, listings))
        raw = [p for p in listings[spec.source.name].parts if p.partition not in cur.fresh]
        days = {p.partition for p in raw if p.partition}
        joined = {name: f"({read(parts, spec.joins[name])})"
                  for name, parts in traffic.joined_parts(spec, listings, days).items()}
        aggregate = spec.sql("duckdb", f"({read(raw, spec.source)})", joined)
        con.execute(f"CREATE VIEW {spec.view} AS "
                    f"SELECT * FROM ({_fresh_rows(cur, spec.table, 'date', read)}) "
                    f"UNION ALL BY NAME SELECT * FROM ({aggregate})")
        missed[spec.table.name] = days
    return missed


def _unrolled_table(con: Connection, raw: dict[str, set[str]]) -> None:
    """Per rollup, the days (runs) its views read raw: `queries.unrolled`."""
    con.execute("CREATE TABLE unrolled (rollup VARCHAR, key VARCHAR)")
    rows = [(name, key) for name, keys in raw.items() for key in sorted(keys)]
    if rows:
        con.executemany("INSERT INTO unrolled VALUES (?, ?)", rows)


def _fresh_rows(cur: Current, table: S.Table, key: str, read: Read) -> str:
    """The current rollup file's rows, but those of days (runs) gone stale."""
    rows = read([cur.part] if cur.part else [], table)
    if not cur.stale:
        return rows
    cast = "DATE" if key == "date" else "VARCHAR"
    stale = ", ".join(f"CAST({_sql_str(k)} AS {cast})" for k in sorted(cur.stale))
    return f"SELECT * FROM ({rows}) WHERE NOT list_contains([{stale}], {key})"


def _unreadable_table(con: Connection, listings: dict[str, Listing]) -> None:
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
    if isinstance(error, duckdb.IOException):
        return any(s in str(error) for s in _LOST)
    # a read-only connection: DuckDB takes the missing file for a directory to search, which
    # its allowed paths forbid
    denied = re.search(r'Cannot access file "(.+?)(?:/\*\*/\*\.parquet)?"', str(error))
    return (isinstance(error, duckdb.PermissionException) and denied is not None
            and denied.group(1).endswith(".parquet") and not os.path.exists(denied.group(1)))


def retrying(read: Callable[[], T], attempts: int = 10) -> T:
    """Run ``read`` (which connects anew each call) again while it fails on a lost file."""
    for attempt in range(attempts):
        try:
            return read()
        except duckdb.Error as e:
            if not lost_file(e) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def tables_present(root: str | os.PathLike[str] | Store | None = None) -> frozenset[str]:
    """Which tables have data (one listing per table, concurrently on object stores)."""
    store = root if isinstance(root, Store) else Store(root)
    tables = list(S.TABLES.values())
    with ThreadPoolExecutor(1 if store.is_local else LISTERS) as pool:
        found = list(pool.map(store.has_files, tables))
    return frozenset(t.name for t, yes in zip(tables, found, strict=True) if yes)
