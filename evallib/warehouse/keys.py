"""Keys that hold across writes: one row per key, whatever was retried or sent twice.

Production data arrives from many writers with no coordination (samplers, importers, a
judge scoring later), and any of them may retry. So the tables below are keyed, and the
rule every reader applies (written out for plain readers in warehouse/README.md) is:

    within a partition, one row per key: the row of the newest part file wins.

Part file names start with the writer's UTC clock to the microsecond
(``part-20261205T163000123456-<id>.parquet``), so "newest" is the name's order. A re-sent
identical row changes nothing; a newer version of a row (a re-score, an edited label)
replaces the older one. The partition is the UTC day of the row's ``timestamp``: a re-send
carries the same timestamp, and `evallib score-online` writes scores at their trace's.

Where the rule costs: `evallib.warehouse.db` applies it only to the files of a partition
that share a key with another of its files (a single file is unique by construction: a
batch with a repeated key is refused). It finds them by reading the key columns of each
partition with several files once, when the partition's files change; a recorder's flushes
share no key, so only a retried flush or a re-score pays. `evallib compact` merges a
partition into one deduplicated file. Imports read the keys their rows touch and
write only new or changed rows (`Warehouse.merge_online`), so a retried import adds no file.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema as S

# Tables whose key holds across writes (offline tables are selected by their run's write).
# (dataset_cases: a version is stored once, but two writers may store it at the same moment.)
LATEST_WINS = frozenset({"online_traces", "online_scores", "online_retrievals", "feedback",
                         "human_labels", "dataset_cases"})

# Epoch microseconds of a timestamp, per SQL engine (`evallib rollup --engine`).
_EPOCH_US = {"duckdb": "epoch_us", "spark": "unix_micros"}


def derived_event_id(engine: str = "duckdb") -> str:
    """A feedback event's id when its sender gave none: what makes two events the same one.
    DuckDB computes it for the writer and for files written before the column existed (Spark
    for its rollups), so all agree to the bit (epoch microseconds: no time zone or format in
    between)."""
    return (f"md5(concat_ws('|', trace_id, kind, CAST({_EPOCH_US[engine]}(timestamp) AS STRING), "
            "coalesce(user_id, '')))")


DERIVED_EVENT_ID = derived_event_id("duckdb")


def is_keyed(table: S.Table) -> bool:
    return table.name in LATEST_WINS


def key_columns(table: S.Table) -> list[str]:
    """The columns one row per value of which a reader keeps: the partition and the key."""
    return ([table.partition] if table.partition else []) + list(table.key)


def key_sql(table: S.Table) -> str:
    """The key as SQL expressions (feedback files written before ``event_id`` lack it)."""
    cols = key_columns(table)
    if table.name == "feedback":
        cols = [f"coalesce(event_id, {DERIVED_EVENT_ID})" if c == "event_id" else c
                for c in cols]
    return ", ".join(cols)


def latest_rows(read_sql: str, table: S.Table) -> str:
    """``read_sql`` (one read_parquet over files listed oldest first) cut to one row per key."""
    return (f"{read_sql} QUALIFY row_number() OVER (PARTITION BY {key_sql(table)} "
            "ORDER BY file_index DESC) = 1")


def fill_event_ids(data: pa.Table) -> pa.Table:
    """Feedback rows without an ``event_id`` get the derived one."""
    if data.num_rows == 0 or data["event_id"].null_count == 0:
        return data
    with duckdb.connect(":memory:") as con:
        con.register("batch", data)
        ids = con.sql(f"SELECT coalesce(event_id, {DERIVED_EVENT_ID}) AS id FROM batch"
                      ).to_arrow_table()["id"]
    return data.set_column(data.column_names.index("event_id"), "event_id",
                           ids.cast(pa.string()))


def read_part(path: str, table: S.Table, fs: object = None, filters: object = None
              ) -> pa.Table:
    """A part file's rows (those ``filters`` keep) in the table's current file schema: a file
    written before an added column gets it (feedback events their derived id)."""
    data = pq.read_table(path, filesystem=fs, filters=filters)
    for name in table.added:
        if name not in data.column_names:
            data = data.append_column(name, pa.nulls(data.num_rows,
                                                     table.schema.field(name).type))
    data = data.select(table.schema.names).cast(table.schema)
    return fill_event_ids(data) if table.name == "feedback" else data


def keep_latest(data: pa.Table, table: S.Table) -> pa.Table:
    """Rows concatenated oldest file first → one row per key, the last one (compaction)."""
    if not is_keyed(table) or data.num_rows == 0:
        return data
    with duckdb.connect(":memory:") as con:
        con.register("batch", data.append_column("_row", pa.array(range(data.num_rows))))
        keys = ", ".join(table.key)  # one partition at a time: the key alone
        return con.sql(f"SELECT * EXCLUDE (_row) FROM batch QUALIFY row_number() OVER "
                       f"(PARTITION BY {keys} ORDER BY _row DESC) = 1 ORDER BY _row"
                       ).to_arrow_table().cast(data.schema)
