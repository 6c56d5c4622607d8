"""`connect()`: an embedded DuckDB connection with one view per warehouse table.

The connection is in-memory and holds only views over the Parquet globs; nothing in
evallib writes through it. A table with no files yet gets an empty view of the right
types, so every query works on a new or partial warehouse.
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa

from . import schema as S
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
}


def duck_type(t: pa.DataType) -> str:
    return _DUCK_TYPES[str(t)]


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _source(store: Store, table: S.Table) -> str:
    """SQL for the table's rows: its Parquet files, or an empty relation of its columns."""
    cols = [c for c in table.columns if c.name != table.partition]
    if not store.has_files(table):
        part = [table.column(table.partition)] if table.partition else []
        typed = ", ".join(f"CAST(NULL AS {duck_type(c.type)}) AS {c.name}" for c in cols + part)
        return f"SELECT {typed} WHERE false"
    opts = ""
    if table.partition:
        ptype = duck_type(table.column(table.partition).type)
        opts = f", hive_partitioning = true, hive_types = {{'{table.partition}': '{ptype}'}}"
    else:
        opts = ", hive_partitioning = false"
    return f"SELECT * FROM read_parquet({_sql_str(store.glob_pattern(table))}{opts})"


def connect(root: str | os.PathLike[str] | Store | None = None, *,
            threads: int | None = None, memory_limit: str | None = None
            ) -> duckdb.DuckDBPyConnection:
    """Views: runs (latest committed write per run), cases, scores, retrievals (of committed
    runs only), online_traces, online_scores, online_retrievals, feedback, human_labels."""
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
    for table in S.TABLES.values():
        view = f"_all_{table.name}" if table.name == "runs" or table.name in S.OFFLINE_DATA \
            else table.name
        con.execute(f"CREATE VIEW {view} AS {_source(store, table)}")
    con.execute(
        "CREATE VIEW runs AS SELECT * EXCLUDE (write_id, committed_at), write_id, committed_at "
        "FROM _all_runs QUALIFY row_number() OVER (PARTITION BY run_id "
        "ORDER BY committed_at DESC) = 1"
    )
    for name in S.OFFLINE_DATA:
        con.execute(
            f"CREATE VIEW {name} AS SELECT t.* EXCLUDE (write_id) FROM _all_{name} t "
            "SEMI JOIN runs r ON t.run_id = r.run_id AND t.write_id = r.write_id"
        )
    return con


def tables_present(root: str | os.PathLike[str] | Store | None = None) -> frozenset[str]:
    """Which tables have data: a cheap key for caching a connection."""
    store = root if isinstance(root, Store) else Store(root)
    return frozenset(t.name for t in S.TABLES.values() if store.has_files(t))
