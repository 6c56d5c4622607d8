"""Recording results: the one writer every eval job, sampler and importer goes through."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import DataError, RunExistsError
from ..vocabulary import TRACE_DAYS_BACK
from . import keys
from . import schema as S
from .catalog import list_table
from .store import Store
from .validate import Rows, as_utc, to_arrow

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RUN_FIELDS = [c.name for c in S.RUNS.columns if c.name not in ("write_id", "committed_at")]


@dataclass
class Merged:
    """What an import did to one table: rows new to the warehouse, rows that replaced a
    stored version of their key, and rows stored already exactly so (not written again)."""

    new: int = 0
    replaced: int = 0
    present: int = 0

    def __str__(self) -> str:
        return f"{self.new} new, {self.replaced} replaced, {self.present} already present"


class Warehouse:
    """A warehouse root (local path or fsspec URL) to record into and read from.

    >>> wh = Warehouse("warehouse")
    >>> run_id = wh.record_run({"name": "nightly", "dataset": "support"}, cases, scores)
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.store = Store(root)

    @property
    def root(self) -> str:
        return self.store.root

    def connect(self):
        from .db import connect

        return connect(self.store)

    def runs(self) -> pl.DataFrame:
        with self.connect() as con:
            return con.sql("SELECT * FROM runs ORDER BY started_at").pl()

    def run_exists(self, run_id: str) -> bool:
        # A committed run has at least one case file: no such file, no run (and no query).
        if not self.store.list_parts(S.CASES, run_id) or not self.store.has_files(S.RUNS):
            return False
        with self.connect() as con:
            rows = con.sql("SELECT count(*) FROM runs WHERE run_id = $id",
                           params={"id": run_id}).fetchall()
        return rows[0][0] > 0

    # --- offline -------------------------------------------------------------------------

    def record_run(self, run: Mapping[str, Any], cases: Rows, scores: Rows = None,
                   retrievals: Rows = None, *, replace: bool = False,
                   sources: Mapping[str, str] | None = None) -> str:
        """Record one run: metadata, its cases, their scores and retrievals. Returns run_id.

        All or nothing: every table is validated before anything is written, and the run
        becomes visible only when its ``runs`` row (written last) lands.
        """
        sources = dict(sources or {})
        meta = self._run_row(run, source=sources.get("run", "run"))
        run_id = meta["run_id"]
        if not replace and self.run_exists(run_id):
            raise RunExistsError(f"run {run_id!r} is already in the warehouse at {self.root}; "
                                 "pass replace=True (CLI: --replace) to overwrite it")
        write_id = uuid.uuid4().hex
        fill = {"run_id": run_id, "write_id": write_id}
        tables = {
            "cases": to_arrow(S.CASES, cases, source=sources.get("cases", "cases"), fill=fill),
            "scores": to_arrow(S.SCORES, scores, source=sources.get("scores", "scores"),
                               fill=fill),
            "retrievals": to_arrow(S.RETRIEVALS, retrievals,
                                   source=sources.get("retrievals", "retrievals"), fill=fill),
        }
        if tables["cases"].num_rows == 0:
            raise DataError("a run needs at least one case", source=sources.get("cases", "cases"))
        known = tables["cases"]["case_id"]
        at = {}  # each score's (retrieval's) case: one hash pass checks and finds its strata
        for name in ("scores", "retrievals"):
            t = tables[name]
            at[name] = pc.index_in(t["case_id"], value_set=known)
            i = pc.index(pc.is_null(at[name]), True).as_py()
            if i >= 0:
                raise DataError(f"case_id {t['case_id'][i].as_py()!r} is not among the run's cases",
                                source=sources.get(name, name), row=i, field="case_id")
        tables["scores"] = _with_strata(tables["scores"], "case_id", tables["cases"],
                                        at["scores"])
        meta.update(write_id=write_id, committed_at=datetime.now(UTC))
        to_arrow(S.RUNS, [{**meta, "dataset_version": meta.get("dataset_version") or "-"}],
                 source=sources.get("run", "run"))  # all checked before anything is written

        previous = {n: self.store.list_parts(S.TABLES[n], run_id) for n in S.OFFLINE_DATA}
        with ThreadPoolExecutor(1) as pool:  # hash the cases while Parquet is written
            version = None if meta.get("dataset_version") is not None else \
                pool.submit(dataset_version, tables["cases"])
            for name, t in tables.items():
                if t.num_rows:
                    self.store.write_part(S.TABLES[name], t.drop(["run_id"]), run_id, write_id)
            if version is not None:
                meta["dataset_version"] = version.result()
        runs_row = to_arrow(S.RUNS, [meta], source=sources.get("run", "run"))
        self.store.write_part(S.RUNS, runs_row, write_id=write_id)  # the commit
        # Earlier writes of this run (replaced, or orphaned by a crash) are invisible now.
        self.store.remove([p for paths in previous.values() for p in paths])
        return run_id

    def _run_row(self, run: Mapping[str, Any], source: str) -> dict[str, Any]:
        if not isinstance(run, Mapping):
            raise DataError("run metadata must be a mapping", source=source)
        for key in run:
            if key not in _RUN_FIELDS:
                raise DataError(f"unknown field; expected some of: {', '.join(_RUN_FIELDS)}",
                                source=source, field=key)
        row = {k: run.get(k) for k in _RUN_FIELDS}
        for key in ("name", "dataset"):
            if not isinstance(row[key], str) or not row[key].strip():
                raise DataError("is required (a non-empty string)", source=source, field=key)
        row["started_at"] = as_utc(row["started_at"] or datetime.now(UTC))
        if not isinstance(row["started_at"], datetime):
            raise DataError(f"{row['started_at']!r} is not an ISO 8601 timestamp",
                            source=source, field="started_at")
        row["approved"] = bool(row["approved"])
        row["source"] = row["source"] or "api"
        if row["run_id"] is None:
            row["run_id"] = new_run_id(row["name"], row["started_at"])
        if not isinstance(row["run_id"], str) or not RUN_ID.match(row["run_id"]):
            raise DataError(f"{row['run_id']!r} is not a valid run_id (letters, digits, "
                            "'.', '_', '-'; at most 128)", source=source, field="run_id")
        return row

    # --- online --------------------------------------------------------------------------

    def record_online(self, traces: Rows = None, scores: Rows = None, feedback: Rows = None,
                      retrievals: Rows = None, *,
                      sources: Mapping[str, str] | None = None) -> dict[str, int]:
        """Record a batch of sampled production traffic, split into daily partitions.

        Every table is validated before any is written. Each part file is atomic; a batch
        is not (scores and feedback may arrive in later batches than their traces). A row
        whose key is already stored replaces it for every reader (`keys`): a retried batch
        counts once. Returns the rows written per table.
        """
        tables = self._online_batch(traces, scores, feedback, retrievals, sources)
        for name, t in tables.items():
            self._write_days(S.TABLES[name], t)
        return {name: t.num_rows for name, t in tables.items()}

    def merge_online(self, traces: Rows = None, scores: Rows = None, feedback: Rows = None,
                     retrievals: Rows = None, *, sources: Mapping[str, str] | None = None
                     ) -> dict[str, Merged]:
        """`record_online`, for imports: first read the stored rows of the keys the batch
        holds, then write only rows that are new or changed. Re-importing a file writes
        nothing. Returns, per table, how many rows were new, replaced or already present."""
        tables = self._online_batch(traces, scores, feedback, retrievals, sources)
        out = {}
        for name, t in tables.items():
            table = S.TABLES[name]
            merged, fresh = Merged(), []
            for day in pc.unique(t["date"]).to_pylist():
                batch = t.filter(pc.equal(t["date"], day))
                stored = _stored_rows(self.store, table, day.isoformat(), batch)
                status = _compare(table, batch, stored)
                merged.new += status.count("new")
                merged.replaced += status.count("replaced")
                merged.present += status.count("present")
                fresh.append(batch.filter(pa.array([s != "present" for s in status])))
            if fresh:
                self._write_days(table, pa.concat_tables(fresh))
            out[name] = merged
        return out

    def _online_batch(self, traces: Rows, scores: Rows, feedback: Rows, retrievals: Rows,
                      sources: Mapping[str, str] | None) -> dict[str, pa.Table]:
        """The batch validated, table by table, before anything is written."""
        sources = dict(sources or {})
        batch = {
            "online_traces": (S.ONLINE_TRACES, traces),
            "online_scores": (S.ONLINE_SCORES, scores),
            "online_retrievals": (S.ONLINE_RETRIEVALS, retrievals),
            "feedback": (S.FEEDBACK, feedback),
        }
        tables = {name: to_arrow(table, _with_date(rows), source=sources.get(name, name))
                  for name, (table, rows) in batch.items()}
        tables["online_scores"] = self._online_strata(tables["online_scores"],
                                                      tables["online_traces"])
        return tables

    def _write_days(self, table: S.Table, t: pa.Table) -> None:
        for day in pc.unique(t["date"]).to_pylist():
            part = t.filter(pc.equal(t["date"], day)).drop(["date"])
            self.store.write_part(table, part, day.isoformat())

    def _online_strata(self, scores: pa.Table, traces: pa.Table) -> pa.Table:
        """Copy each score's trace strata into it: from the batch, else from the warehouse
        (scores often arrive after their traces, e.g. from an asynchronous judge)."""
        if not scores.num_rows:
            return scores
        known = traces.select(["trace_id", "strata"])
        missing = pc.invert(pc.is_in(scores["trace_id"], known["trace_id"]))
        if pc.any(missing).as_py():
            wanted = pc.unique(pc.filter(scores["trace_id"], missing))
            days = pc.filter(scores["date"], missing)
            hi = pc.max(days).as_py()
            # a trace precedes its scores by at most TRACE_DAYS_BACK
            lo = pc.min(days).as_py() - timedelta(days=TRACE_DAYS_BACK)
            window = [str(lo + timedelta(d)) for d in range((hi - lo).days + 1)]
            # only those days' current, readable files: no connection over the warehouse
            files = [p.path for p in list_table(self.store, S.ONLINE_TRACES, window).parts]
            if files:
                earlier = pq.read_table(
                    files, columns=["trace_id", "strata"],
                    filters=pc.is_in(pc.field("trace_id"), wanted),
                    filesystem=None if self.store.is_local else self.store.fs,
                )
                known = pa.concat_tables([known, earlier.cast(known.schema)])
        return _with_strata(scores, "trace_id", known)

    def record_human_labels(self, labels: Rows, *, source: str = "human_labels") -> int:
        t = to_arrow(S.HUMAN_LABELS, labels, source=source)
        subject = pc.or_(pc.is_valid(t["trace_id"]),
                         pc.and_(pc.is_valid(t["run_id"]), pc.is_valid(t["case_id"])))
        i = pc.index(pc.invert(subject), True).as_py()
        if i >= 0:
            raise DataError("a label needs trace_id, or run_id and case_id", source=source,
                            row=i, field="trace_id")
        if t.num_rows:
            self.store.write_part(S.HUMAN_LABELS, t)
        return t.num_rows

    # --- release gate --------------------------------------------------------------------

    def record_approval(self, run_id: str, approved_by: str, note: str | None = None,
                        approved_at: datetime | None = None) -> dict[str, Any]:
        """Approve a run as a release baseline: appends a row, never edits the run (who
        approved what, and when, stays on record). Returns the row written."""
        if not self.run_exists(run_id):
            raise DataError(f"no run {run_id!r} in the warehouse at {self.root} "
                            "(see: evallib runs)", source="approve", field="run_id")
        row = {"run_id": run_id, "approved_by": approved_by, "note": note,
               "approved_at": approved_at or datetime.now(UTC)}
        self.store.write_part(S.APPROVALS, to_arrow(S.APPROVALS, [row], source="approve"))
        return row

    def record_gate_results(self, rows: Rows) -> int:
        """One gate run's rows (see `evallib.gate`), as one part file."""
        t = to_arrow(S.GATE_RESULTS, rows, source="gate_results")
        if t.num_rows:
            self.store.write_part(S.GATE_RESULTS, t)
        return t.num_rows

    # --- monitoring ----------------------------------------------------------------------

    def record_alerts(self, rows: Rows) -> int:
        """New or changed alerts (see `evallib.monitor`), as one part file; append-only,
        the latest row of an ``alert_id`` is its state."""
        t = to_arrow(S.ALERTS, rows, source="alerts")
        if t.num_rows:
            self.store.write_part(S.ALERTS, t)
        return t.num_rows

    def record_notifications(self, rows: Rows) -> int:
        """Deliveries of alert and gate notices (see `evallib.notify`), as one part file;
        append-only. Never holds a webhook URL: targets are named or fingerprinted."""
        t = to_arrow(S.NOTIFICATIONS, rows, source="notifications")
        if t.num_rows:
            self.store.write_part(S.NOTIFICATIONS, t)
        return t.num_rows


def _stored_rows(store: Store, table: S.Table, day: str, batch: pa.Table) -> pa.Table:
    """The stored rows of a day partition whose key the batch holds, as readers see them
    (one per key, the newest file's)."""
    wanted = pc.is_in(pc.field("trace_id"), pc.unique(batch["trace_id"]))  # in every file
    parts = sorted(list_table(store, table, [day]).parts, key=lambda p: p.name)
    fs = None if store.is_local else store.fs
    rows = [keys.read_part(p.path, table, fs, wanted) for p in parts]
    stored = pa.concat_tables(rows) if rows else table.schema.empty_table()
    return keys.keep_latest(stored, table)


def _compare(table: S.Table, batch: pa.Table, stored: pa.Table) -> list[str]:
    """Per batch row: "new" (key not stored), "present" (stored with every column equal)
    or "replaced" (stored, different)."""
    if stored.num_rows == 0:
        return ["new"] * batch.num_rows
    names = [n for n in table.schema.names]
    same = " AND ".join(f"b.{n} IS NOT DISTINCT FROM s.{n}" for n in names)
    on = " AND ".join(f"b.{k} = s.{k}" for k in table.key)
    with duckdb.connect(":memory:") as con:
        con.register("b", batch.drop(["date"]).append_column(
            "_row", pa.array(range(batch.num_rows))))
        con.register("s", stored)
        rows = con.sql(f"""
            SELECT CASE WHEN s.{table.key[0]} IS NULL THEN 'new'
                        WHEN {same} THEN 'present' ELSE 'replaced' END
            FROM b LEFT JOIN s ON {on} ORDER BY b._row""").fetchall()
    return [r[0] for r in rows]


def _with_date(rows: Rows) -> Rows:
    """Fill the ``date`` partition from ``timestamp`` (UTC day) when the caller left it out."""
    if rows is None:
        return None
    if hasattr(rows, "to_arrow") and not isinstance(rows, pa.Table):
        rows = rows.to_arrow()
    if isinstance(rows, pa.Table):
        if "date" in rows.column_names or "timestamp" not in rows.column_names:
            return rows
        ts = rows["timestamp"]
        if pa.types.is_timestamp(ts.type) and ts.type.tz is None:
            ts = ts.cast(pa.timestamp("us", tz="UTC"))
        if not pa.types.is_timestamp(ts.type):
            return rows  # to_arrow names the bad value
        return rows.append_column("date", pc.cast(pc.cast(ts, pa.timestamp("us", tz="UTC")),
                                                  pa.date32()))
    out = []
    for row in rows:
        if isinstance(row, Mapping) and "date" not in row and row.get("timestamp") is not None:
            row = dict(row)
            row["timestamp"] = as_utc(row["timestamp"])
            if isinstance(row["timestamp"], datetime):  # else to_arrow refuses it, by row
                row["date"] = row["timestamp"].astimezone(UTC).date()
        out.append(row)
    return out


def _with_strata(scores: pa.Table, key: str, owners: pa.Table,
                 at: pa.ChunkedArray | None = None) -> pa.Table:
    """Fill ``strata_json`` of each score from its case (or trace) in ``owners`` (``at``:
    each score's row in ``owners``, when the caller has it already)."""
    if not scores.num_rows:
        return scores
    canonical = pa.chunked_array([_strata_json(c) for c in owners["strata"].chunks],
                                 type=pa.string())
    if at is None:
        at = pc.index_in(scores[key], value_set=owners[key])
    i = scores.column_names.index("strata_json")
    return scores.set_column(i, "strata_json", pc.take(canonical, at))


def _strata_json(strata: pa.MapArray) -> pa.Array:
    """Each map as JSON with sorted keys (one stratum, one string). Vectorised: a batch has
    thousands of rows but only hundreds of distinct strata, so only those are encoded."""
    pairs = pc.binary_join_element_wise(strata.keys, strata.items, "\x1f")
    flat = pc.binary_join(pa.ListArray.from_arrays(strata.offsets, pairs,
                                                   mask=strata.is_null()), "\x1e")
    distinct = pc.unique(flat)
    encoded = pa.array([None if s is None else json.dumps(
        dict(sorted(p.split("\x1f", 1) for p in s.split("\x1e"))) if s else {},
        separators=(",", ":"), ensure_ascii=False) for s in distinct.to_pylist()],
        type=pa.string())
    return pc.take(encoded, pc.index_in(flat, value_set=distinct))


def new_run_id(name: str, started_at: datetime) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40] or "run"
    return f"{slug}-{started_at:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def dataset_version(cases: pa.Table) -> str:
    """Content hash of the cases a run used: same cases, same version, whatever their order."""
    names = ["case_id", "input", "expected", "strata", "tags"]
    cols = cases.select(names).sort_by("case_id")
    h = hashlib.sha256()
    for case_id, input_, expected, strata, tags in zip(
        *(cols[n].to_pylist() for n in names), strict=True
    ):
        h.update(repr((case_id, input_, expected, sorted(strata or []), tags)).encode())
    return h.hexdigest()[:12]
