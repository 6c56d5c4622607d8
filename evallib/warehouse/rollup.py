"""`evallib rollup`: score rollups per day and per run, so an aggregate over a year of
traffic or over every run reads thousands of rows instead of millions. The traffic rollups
(health, latency, quality and feedback per day × release × variant × strata) are specified
in `evallib.warehouse.online_rollups` and kept fresh the same way, day by day.

Both rollups (`schema.ROLLUPS`) hold the mergeable moments of scores (rows, scored rows,
sum, sum of squares, rows passed) per metric × strata, so every mean, sd and stratum split
the dashboard shows pools from them exactly:

- ``online_daily_rollup``: per UTC day of ``online_scores``;
- ``run_metric_rollup``: per run of ``scores``.

A rollup is read only while it is fresh; `connect()` reads the raw rows of everything else
and unites both in the views ``online_score_moments`` and ``run_score_moments``, so a query
answers the same with rollups, without, or with some days rolled up:

- each rollup is one file (DuckDB opens a file in about half a millisecond: 365 daily files
  would cost more than the rows they save). Its footer maps every day to the fingerprint of
  the part files it summarised (`catalog.Listing.fingerprints`: which original files,
  unchanged by compaction), and every run to the write it summarised;
- a late score adds a file to its day, the fingerprint moves on, and that day is read raw
  until the next rollup; replacing a run commits another write, and likewise;
- a rollup writes a new file with the still-fresh rows of the current one plus the new
  ones; the newest readable file is the current one, older ones are deleted after a grace
  period (an open connection may still read them).

``--engine duckdb`` (the default) aggregates in process; ``--engine spark`` runs the same
aggregation on Apache Spark (`evallib.warehouse.rollup_spark`, local mode unless
configured) over the same Parquet files, for warehouses larger than one machine. Both
write through the same writer, one atomic file per day or run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import date

import duckdb
import polars as pl
import pyarrow.parquet as pq

from ..errors import EvallibError
from . import online_rollups as traffic
from . import schema as S
from .catalog import (
    MOMENTS,
    SOURCE,
    Current,
    Listing,
    Part,
    current,
    list_table,
    write_id,
)
from .db import _read, connect, fetched
from .snapshot import snapshot
from .store import Store

ENGINES = ("duckdb", "spark")


@dataclass
class Plan:
    """What is not rolled up yet: per day (per run), the files to summarise and the
    fingerprint (write_id) to record for it."""

    days: dict[str, tuple[str, list[Part]]] = field(default_factory=dict)
    runs: dict[str, tuple[str, list[Part]]] = field(default_factory=dict)
    daily: Current = field(default_factory=Current)
    per_run: Current = field(default_factory=Current)
    # the traffic rollups (evallib.warehouse.online_rollups), by table name: (current, days to do)
    traffic: dict[str, tuple[Current, dict[str, tuple[str, list[Part]]]]] = \
        field(default_factory=dict)
    listings: dict[str, Listing] = field(default_factory=dict)


@dataclass
class RollupReport:
    engine: str
    days: int
    runs: int
    rows: int
    fresh_days: int
    fresh_runs: int
    seconds: float
    removed: list[str] = field(default_factory=list)  # superseded rollup files
    traffic_days: int = 0  # days rolled up again for the traffic rollups (the most of any)


def plan(store: Store, since: date | None = None) -> Plan:
    """Days (from ``since``) and runs (started from ``since``) without a fresh rollup."""

    snap = snapshot(store)  # every table listed once
    listings = {t.name: snap.listings[t.name]
                for t in (S.ONLINE_SCORES, S.ONLINE_TRACES, S.FEEDBACK, S.ONLINE_RETRIEVALS,
                          S.HUMAN_LABELS)}
    online = listings[S.ONLINE_SCORES.name]
    fingerprints = online.fingerprints()
    out = Plan(daily=current(snap.listings[S.ONLINE_DAILY_ROLLUP.name], fingerprints),
               listings=listings)
    for p in online.parts:
        day = p.partition
        if day and day not in out.daily.fresh and (since is None or day >= since.isoformat()):
            out.days.setdefault(day, (fingerprints[day], []))[1].append(p)
    for spec in traffic.SPECS:
        fps = traffic.fingerprints(spec, listings)
        cur, todo = current(snap.listings[spec.table.name], fps), {}
        for p in listings[spec.source.name].parts:
            day = p.partition
            if day and day not in cur.fresh and (since is None or day >= since.isoformat()):
                todo.setdefault(day, (fps[day], []))[1].append(p)
        out.traffic[spec.table.name] = (cur, todo)

    with connect(snap) as con:  # the committed write of each run, as readers see it
        runs = con.sql("SELECT run_id, write_id, started_at FROM runs").pl()
    writes = dict(zip(runs["run_id"], runs["write_id"], strict=True))
    wanted = set(runs["run_id"]) if since is None else \
        set(runs.filter(pl.col("started_at").dt.date() >= since)["run_id"])
    out.per_run = current(snap.listings[S.RUN_METRIC_ROLLUP.name], writes)
    for p in snap.listings[S.SCORES.name].parts:
        run = p.partition
        if run in wanted and run not in out.per_run.fresh and write_id(p) == writes[run]:
            out.runs.setdefault(run, (writes[run], []))[1].append(p)
    return out


def rollup(root: str | os.PathLike[str] | Store | None = None, *, engine: str = "duckdb",
           since: date | None = None, grace: float = 600.0) -> RollupReport:
    """Roll up every day and run without a fresh rollup (from ``since``); then delete
    rollup files superseded more than ``grace`` seconds ago."""
    if engine not in ENGINES:
        raise EvallibError(f"unknown rollup engine {engine!r}; use one of {', '.join(ENGINES)}")
    store = root if isinstance(root, Store) else Store(root)
    if engine == "spark" and not store.is_local:
        raise EvallibError(f"--engine spark reads local warehouses; for {store.root} use "
                           "--engine duckdb")
    started = time.perf_counter()
    todo = plan(store, since)
    rows = 0
    for table, key, items, cur, source in (
            (S.ONLINE_DAILY_ROLLUP, "date", todo.days, todo.daily, S.ONLINE_SCORES),
            (S.RUN_METRIC_ROLLUP, "run_id", todo.runs, todo.per_run, S.SCORES)):
        if not items and not cur.stale:
            continue  # the current file holds, as it is
        parts = [p for _, ps in items.values() for p in ps]
        if engine == "spark":
            from .rollup_spark import aggregate as spark_aggregate

            new = spark_aggregate([p.url for p in parts], store.url(source.name), key)
        else:
            new = aggregate(store, parts, source)
        rows += _write(store, table, key, cur, {k: v for k, (v, _) in items.items()}, new)
    for spec in traffic.SPECS:
        cur, items = todo.traffic[spec.table.name]
        if not items and not cur.stale:
            continue
        parts = [p for _, ps in items.values() for p in ps]
        joined = traffic.joined_parts(spec, todo.listings, set(items))
        if engine == "spark":
            from .rollup_spark import aggregate_sql

            new = aggregate_sql(spec, [p.url for p in parts],
                                {n: [p.url for p in ps] for n, ps in joined.items()}, store)
        else:
            new = aggregate_traffic(store, spec, parts, joined)
        rows += _write(store, spec.table, "date", cur,
                       {k: v for k, (v, _) in items.items()}, new)
    removed = remove_superseded(store, grace)
    return RollupReport(engine, len(todo.days), len(todo.runs), rows, len(todo.daily.fresh),
                        len(todo.per_run.fresh), time.perf_counter() - started, removed,
                        max((len(d) for _, d in todo.traffic.values()), default=0))


def aggregate(store: Store, parts: list[Part], table: S.Table) -> pl.DataFrame:
    """The moments of these part files per partition × metric × strata, with DuckDB."""

    key = table.partition
    if not parts:
        return pl.DataFrame(schema={key: pl.Date if key == "date" else pl.String,
                                    **_moment_schema()})
    with duckdb.connect(":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        if not store.is_local:
            con.register_filesystem(store.fs)
        con.execute(f"CREATE VIEW src AS {_read(fetched(store, parts), table)}")
        return con.sql(f"SELECT {key}, metric, strata_json, {MOMENTS} FROM src "
                       f"GROUP BY {key}, metric, strata_json").pl()


def aggregate_traffic(store: Store, spec: traffic.Spec, parts: list[Part],
                      joined: dict[str, list[Part]]) -> pl.DataFrame:
    """A traffic rollup's rows for these part files (and the rows they join)."""

    with duckdb.connect(":memory:") as con:
        con.execute("SET TimeZone = 'UTC'")
        if not store.is_local:
            con.register_filesystem(store.fs)
        sql = spec.sql("duckdb", f"({_read(fetched(store, parts), spec.source)})",
                       {n: f"({_read(fetched(store, ps), spec.joins[n])})"
                        for n, ps in joined.items()})
        return con.sql(sql).pl()


def _moment_schema() -> dict[str, pl.DataType]:
    empty = pl.from_arrow(S.RUN_METRIC_ROLLUP.schema.empty_table())
    return {n: t for n, t in empty.schema.items() if n != "run_id"}


def _write(store: Store, table: S.Table, key: str, cur: Current, sources: dict[str, str],
           new: pl.DataFrame) -> int:
    """One new file: the current file's fresh rows and the new ones, sorted so a day range
    or a run reads few row groups; its footer maps each day (run) to its source."""
    fs = None if store.is_local else store.fs
    frames = [pl.from_arrow(new.select(table.schema.names).to_arrow().cast(table.schema))] \
        if new.height else []
    if cur.part is not None and cur.fresh:
        keep = sorted(cur.fresh)
        values = [date.fromisoformat(k) for k in keep] if key == "date" else keep
        kept = pq.read_table(cur.part.path, filesystem=fs, filters=[(key, "in", values)])
        frames.append(pl.from_arrow(kept.cast(table.schema)))
    rows = pl.concat(frames) if frames else pl.DataFrame(
        schema=dict(pl.from_arrow(table.schema.empty_table()).schema))
    order = [c for c in ("dim", "grp", "release", "variant", "metric", "faith", "strata_json",
                         "bin")
             if c in rows.columns and c not in table.lead]
    # by day (a date range reads few row groups), or first by what every query picks
    rows = rows.sort([*table.lead, key, *order], nulls_last=True)
    source = {**{k: cur.source[k] for k in cur.fresh}, **sources}
    store.write_part(table, rows.to_arrow().cast(table.schema), row_group_size=65_536,
                     metadata={SOURCE: json.dumps(source, sort_keys=True)})
    return new.height


def remove_superseded(store: Store, grace: float) -> list[str]:
    """Rollup files older than the current one, once it is ``grace`` seconds old."""
    now, removed = time.time(), []
    for table in S.ROLLUPS.values():
        parts = list_table(store, table).parts
        if not parts:
            continue
        newest = max(parts, key=lambda p: (p.mtime, p.name))
        old = [p for p in parts if p is not newest and now - newest.mtime >= grace]
        store.remove([p.path for p in old])
        removed += [p.path for p in old]
    return removed
