"""Human review: sample judged production traces into a labelling CSV, import the labels
people filled in, and the one path every label takes into the warehouse (the CSV import
and the dashboard's Review page alike), for the judge-agreement analysis.

`evallib review sample` writes one row per (trace, metric): trace_id, metric, strata, input,
output, judge_score, judge_rationale, and empty ``value``, ``rater`` and ``note`` columns.
Traces already labelled for that metric are left out. ``--stratified`` draws evenly across
strata (by ``--by`` keys, else by the whole strata), so rare slices get reviewed too.

`evallib review import` stores every row with a ``value`` as a ``human_labels`` row; rows
without one are skipped (a half-done sheet imports what is done). A row labels a production
trace (``trace_id``) or a case of an offline run (``run_id`` and ``case_id``).

`record_labels` is where both meet. A label's key is its subject (the trace, or the run and
case), its metric and its rater: a label stored already as it is is skipped, so writing a
label twice writes it once; a changed one (another value, or another note given) is
written, and being the newest write of its key it replaces the rater's earlier label for
every reader. It refuses labels of unknown traces or cases, and non-0/1 labels of binary metrics.
`retract_label` takes one back (the Review page's undo): the part file holding it is
replaced, through the footer mechanism `evallib compact` uses, by one without it, so a
reader sees the label or not, never half a change.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import DataError, EvallibError
from ..vocabulary import strata_text
from ..warehouse import Connection
from .datasets import unquote_cell

__all__ = ["LABEL_COLUMNS", "LabelWrite", "import_labels", "label_key", "parse_label",
           "record_labels", "retract_label", "review_queue", "sample_for_review"]

LABEL_COLUMNS = ["trace_id", "metric", "strata", "input", "output", "judge_score",
                 "judge_rationale", "value", "rater", "note"]

# Constant SQL, bound parameters (as in evallib.queries).
_JUDGED = """
    SELECT s.trace_id, s.metric, s.value AS judge_score, s.rationale AS judge_rationale,
           s.strata_json, t.input, t.output
    FROM online_scores s JOIN online_traces t USING (trace_id)
    WHERE s.date >= $since AND t.date >= $since AND s.value IS NOT NULL
      AND ($metric IS NULL OR s.metric = $metric)
      AND NOT EXISTS (SELECT 1 FROM human_labels h
                      WHERE h.trace_id = s.trace_id AND h.metric = s.metric)
    ORDER BY s.trace_id, s.metric"""
_KNOWN_TRACES = """
    SELECT DISTINCT trace_id FROM online_traces WHERE list_contains($ids, trace_id)"""
_KNOWN_CASES = """
    SELECT DISTINCT run_id, case_id FROM cases
    WHERE list_contains($runs, run_id) AND list_contains($cases, case_id)"""
# the metrics' kinds from the score moments (rolled up): no scan of every score
_METRIC_KINDS = """
    SELECT metric, any_value(kind) AS kind FROM (
        SELECT metric, kind FROM online_daily_moments WHERE list_contains($metrics, metric)
        UNION ALL
        SELECT metric, kind FROM run_metric_moments WHERE list_contains($metrics, metric))
    GROUP BY metric"""
_STORED_LABELS = """
    SELECT trace_id, run_id, case_id, metric, labeler, value, note FROM human_labels
    WHERE list_contains($metrics, metric)"""

_WORDS = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0, "pass": 1.0, "fail": 0.0,
          "y": 1.0, "n": 0.0, "👍": 1.0, "👎": 0.0}


def sample_for_review(con: Connection, n: int, *, since: date, metric: str | None = None,
                      stratified: bool = False, by: Sequence[str] = (), seed: int = 0
                      ) -> pl.DataFrame:
    """``n`` judged, not yet labelled traces (all their judged metrics, or ``metric``), as
    the labelling sheet's rows."""
    if n < 1:
        raise EvallibError("--n must be at least 1")
    judged = con.sql(_JUDGED, params={"since": since, "metric": metric}).pl()
    if judged.is_empty():
        what = f"metric {metric!r}" if metric else "any metric"
        raise EvallibError(f"no judged, unlabelled traces for {what} since {since}")
    traces = judged.group_by("trace_id", maintain_order=True).agg(pl.first("strata_json"))
    rng = np.random.default_rng(seed)
    if stratified:
        keys = [_group_key(s, by) for s in traces["strata_json"].to_list()]
        chosen = _round_robin(traces["trace_id"].to_list(), keys, n, rng)
    else:
        ids = traces["trace_id"].to_list()
        chosen = [ids[i] for i in sorted(rng.choice(len(ids), min(n, len(ids)), replace=False))]
    rows = judged.filter(pl.col("trace_id").is_in(chosen))
    return rows.select(
        "trace_id", "metric",
        pl.col("strata_json").map_elements(_strata_text, return_dtype=pl.String).alias("strata"),
        "input", "output", "judge_score", "judge_rationale",
        *(pl.lit(None, pl.String).alias(c) for c in ("value", "rater", "note")),
    )


def _group_key(strata_json: str | None, by: Sequence[str]) -> str:
    strata = json.loads(strata_json) if strata_json else {}
    return json.dumps([strata.get(k) for k in by]) if by else (strata_json or "")


def _round_robin(ids: list[str], keys: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """Take one trace from each stratum in turn (each stratum shuffled), until ``n``."""
    groups: dict[str, list[str]] = {}
    for trace_id, key in zip(ids, keys, strict=True):
        groups.setdefault(key, []).append(trace_id)
    queues = [list(rng.permutation(groups[k])) for k in sorted(groups)]
    chosen: list[str] = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(str(q.pop()))
    return chosen


def _strata_text(strata_json: str | None) -> str:
    return strata_text(json.loads(strata_json) if strata_json else None)


def write_sheet(df: pl.DataFrame, out: str | os.PathLike[str], *, force: bool = False) -> None:
    """The labelling CSV (UTF-8, quoted, formula-safe), never over a sheet being filled."""
    from ..analysis.export import write_csv

    target = Path(out)
    if target.exists() and not force:
        raise EvallibError(f"{target} exists (it may hold labels); pass --force to replace it")
    write_csv(df, target)


# --- import ----------------------------------------------------------------------------------


@dataclass
class ImportResult:
    imported: int  # new labels
    without_value: int
    already_stored: int  # the same label (value and note) by the same rater
    replaced: int = 0  # a rater's changed label: the newer one is what readers see


@dataclass(frozen=True)
class LabelWrite:
    """What `record_labels` did: labels new, skipped as already stored, and replacing a
    rater's earlier label of the same subject and metric."""

    imported: int
    already_stored: int
    replaced: int = 0


def label_key(row: dict[str, Any]) -> tuple[str | None, str | None, str | None, str, str]:
    """A label's natural key: (trace_id, run_id, case_id, metric, labeler); a trace label
    has no run or case, a case label no trace."""
    if row.get("trace_id"):
        return (row["trace_id"], None, None, row["metric"], row["labeler"])
    return (None, row.get("run_id"), row.get("case_id"), row["metric"], row["labeler"])


def parse_label(cell: str) -> float | None:
    """A label cell: a number, or yes/no, true/false, pass/fail, y/n, 👍/👎; None if empty."""
    text = unquote_cell(cell).strip()
    if not text:
        return None
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number or yes/no") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def import_labels(path: str | os.PathLike[str], warehouse: Any, *, rater: str | None = None
                  ) -> ImportResult:
    """Store the labelled rows of a sheet; a bad row raises `DataError` naming its line and
    field, and then nothing is stored."""
    from ..warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    rows, lines, skipped = read_sheet(path, rater=rater)
    written = record_labels(wh, rows, source=str(path), lines=lines)
    return ImportResult(written.imported, skipped, written.already_stored, written.replaced)


def read_sheet(path: str | os.PathLike[str], *, rater: str | None = None
               ) -> tuple[list[dict[str, Any]], list[str], int]:
    """The labelled rows of a sheet (label rows, each one's ``file:line``, and how many rows
    had no value), checked row by row; `DataError` names the line and field."""
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=src) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [unquote_cell(h) for h in reader.fieldnames or []]
    reader.fieldnames = header
    for needed in ("metric", "value"):
        if needed not in header:
            raise DataError(f"the sheet has no {needed!r} column (columns: {', '.join(header)})",
                            source=src)
    if "trace_id" not in header and not {"run_id", "case_id"} <= set(header):
        raise DataError("the sheet has no 'trace_id' column, nor 'run_id' and 'case_id' "
                        f"(columns: {', '.join(header)})", source=src)
    rows, lines, skipped = [], [], 0
    seen: dict[tuple, int] = {}
    line = 1
    for record in reader:
        where, line = f"{src}:{line + 1}", reader.line_num
        cell = {k: unquote_cell(v or "").strip() for k, v in record.items() if k is not None}
        try:
            value = parse_label(cell.get("value", ""))
        except ValueError as e:
            raise DataError(str(e), source=where, field="value") from None
        if value is None:
            skipped += 1
            continue
        if not cell.get("trace_id"):
            for name in ("run_id", "case_id") if "run_id" in header else ("trace_id",):
                if not cell.get(name):
                    raise DataError("is empty", source=where, field=name)
        if not cell.get("metric"):
            raise DataError("is empty", source=where, field="metric")
        who = cell.get("rater") or rater
        if not who:
            raise DataError("is empty; fill it or pass --rater NAME", source=where, field="rater")
        row = {"trace_id": cell.get("trace_id") or None,
               "run_id": None if cell.get("trace_id") else cell.get("run_id"),
               "case_id": None if cell.get("trace_id") else cell.get("case_id"),
               "metric": cell["metric"], "value": value, "labeler": who,
               "labeled_at": datetime.now(UTC), "note": cell.get("note") or None}
        key = label_key(row)
        if key in seen:
            raise DataError(f"a second label by {who!r} for this {_what(row)} and metric "
                            f"(first on line {seen[key]})", source=where, field="value")
        seen[key] = int(where.rsplit(":", 1)[1])
        rows.append(row)
        lines.append(where)
    return rows, lines, skipped


def record_labels(warehouse: Any, rows: Sequence[dict[str, Any]], *, source: str,
                  lines: Sequence[str] | None = None) -> LabelWrite:
    """Store human labels (``trace_id``, or ``run_id`` and ``case_id``; ``metric``,
    ``value``, ``labeler``, ``labeled_at``, optional ``note``) as one part file, skipping
    those stored already as they are (a changed one replaces the earlier one). A label of
    an unknown trace or case, or a non-0/1 label of a binary metric, raises `DataError`
    naming its row (``lines[i]`` when given) and field, and then nothing is stored."""
    from ..warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    rows = [{**r, "trace_id": r.get("trace_id") or None, "run_id": r.get("run_id") or None,
             "case_id": r.get("case_id") or None} for r in rows]
    where = list(lines) if lines is not None else [f"{source}, label {i + 1}"
                                                   for i in range(len(rows))]
    stored = _check_against_warehouse(wh, rows, where)
    new = [r for r in rows if label_key(r) not in stored]
    changed = [r for r in rows if label_key(r) in stored
               and _changes(stored[label_key(r)], r["value"], r.get("note") or None)]
    if new or changed:  # a label's key holds across writes: the newest write wins
        wh.record_human_labels(new + changed, source=source)
    return LabelWrite(len(new), len(rows) - len(new) - len(changed), len(changed))


def _changes(stored: tuple[float, str | None], value: float, note: str | None) -> bool:
    """Whether a label changes the stored one: another value, or a note given that differs
    (a sheet without notes does not take a note away)."""
    return stored[0] != value or (note is not None and note != stored[1])


def _what(row: dict[str, Any]) -> str:
    return "trace" if row.get("trace_id") else "case"


def _check_against_warehouse(wh: Any, rows: list[dict[str, Any]], lines: list[str]
                             ) -> dict[tuple, tuple[float, str | None]]:
    """Refuse labels for unknown traces or cases, and non-0/1 labels of binary metrics;
    return the labels already stored: key → (value, note)."""
    if not rows:
        return {}
    traces = sorted({r["trace_id"] for r in rows if r["trace_id"]})
    runs = sorted({r["run_id"] for r in rows if not r["trace_id"] and r["run_id"]})
    cases = sorted({r["case_id"] for r in rows if not r["trace_id"] and r["case_id"]})
    metrics = sorted({r["metric"] for r in rows})
    with wh.connect() as con:
        known = set(con.sql(_KNOWN_TRACES, params={"ids": traces}).pl()["trace_id"]
                    .to_list()) if traces else set()
        known_cases = {tuple(r) for r in con.sql(_KNOWN_CASES, params={
            "runs": runs, "cases": cases}).pl().iter_rows()} if runs else set()
        kinds = dict(con.sql(_METRIC_KINDS, params={"metrics": metrics}).pl().iter_rows())
        stored = {label_key(r): (r["value"], r["note"]) for r in con.sql(
            _STORED_LABELS, params={"metrics": metrics}).pl().iter_rows(named=True)}
    for r, where in zip(rows, lines, strict=True):
        if r["trace_id"]:
            if r["trace_id"] not in known:
                raise DataError(f"{r['trace_id']!r} is not a trace in the warehouse",
                                source=where, field="trace_id")
        elif not (r["run_id"] and r["case_id"]):
            raise DataError("a label needs trace_id, or run_id and case_id", source=where,
                            field="trace_id")
        elif (r["run_id"], r["case_id"]) not in known_cases:
            raise DataError(f"{r['case_id']!r} is not a case of run {r['run_id']!r} in the "
                            "warehouse", source=where, field="case_id")
        if kinds.get(r["metric"]) == "binary" and r["value"] not in (0.0, 1.0):
            raise DataError(f"{r['metric']!r} is binary: the label must be 0/1 or yes/no, "
                            f"not {r['value']:g}", source=where, field="value")
    return stored


def retract_label(warehouse: Any, row: dict[str, Any]) -> bool:
    """Take back a stored label (the Review page's undo): the part file holding it (same
    key and ``labeled_at``) is replaced by one without it, as `evallib compact` replaces
    files (a footer names the file replaced, so a reader lists both at once and reads the
    new one; the new file keeps the old one's place in the order of writes), and the old
    one is deleted at once, so plain Parquet readers agree. A rater's earlier label of the
    same key, if any, is theirs again. False when no such label is stored."""
    import json as _json

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..warehouse import Warehouse
    from ..warehouse import schema as S
    from ..warehouse.catalog import REPLACES, list_table
    from ..warehouse.store import stamp_of

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    key, at = label_key(row), row["labeled_at"]
    listing = list_table(wh.store, S.HUMAN_LABELS)
    fs = None if wh.store.is_local else wh.store.fs
    # written (or compacted) after the label was made: the newest files, a few at most
    for part in sorted(listing.parts, key=lambda p: -p.mtime):
        if part.mtime < at.timestamp() - 60:
            break
        table = pq.read_table(part.path, filesystem=fs)
        hit = [label_key(r) == key and r["labeled_at"] == at for r in table.to_pylist()]
        if any(hit):
            # no footer of the file replaced: it says what *that* file replaced
            keep = table.filter(pc.invert(pa.array(hit))).replace_schema_metadata(None)
            wh.store.write_part(S.HUMAN_LABELS, keep, stamp=stamp_of(part.name), metadata={
                REPLACES: _json.dumps([part.name])})
            wh.store.remove([part.path])
            return True
    return False


# --- the Review page's queue ----------------------------------------------------------------


def review_queue(pool: pl.DataFrame, n: int, *, seed: int = 0) -> list[int]:
    """The order to label a pool of items in (``stratum``: each item's group key): the
    row positions of ``n`` of them, one stratum after another, as `review sample
    --stratified` draws them."""
    if pool.is_empty() or n < 1:
        return []
    rng = np.random.default_rng(seed)
    keys = [str(k) for k in pool["stratum"].to_list()]
    # strata in a seeded order, not alphabetical: a queue need not open on the same stratum
    strata = sorted(set(keys))
    rank = dict(zip(strata, (f"{r:09d}" for r in rng.permutation(len(strata))), strict=True))
    return [int(i) for i in _round_robin([str(i) for i in range(pool.height)],
                                         [rank[k] for k in keys], n, rng)]
