"""Human review: sample judged production traces into a labelling CSV, and import the
labels people filled in, for the judge-agreement analysis.

`evallib review sample` writes one row per (trace, metric): trace_id, metric, strata, input,
output, judge_score, judge_rationale, and empty ``value``, ``rater`` and ``note`` columns.
Traces already labelled for that metric are left out. ``--stratified`` draws evenly across
strata (by ``--by`` keys, else by the whole strata), so rare slices get reviewed too.

`evallib review import` stores every row with a ``value`` as a ``human_labels`` row; rows
without one are skipped (a half-done sheet imports what is done), and labels already stored
(same trace, metric and rater) are skipped, so importing a sheet twice is harmless.
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

from .datasets import unquote_cell
from .errors import DataError, EvallibError

__all__ = ["LABEL_COLUMNS", "import_labels", "parse_label", "sample_for_review"]

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
_METRIC_KINDS = """
    SELECT metric, any_value(kind) AS kind FROM online_scores
    WHERE list_contains($metrics, metric) GROUP BY metric"""
_STORED_LABELS = """
    SELECT trace_id, metric, labeler, value, note FROM human_labels
    WHERE list_contains($ids, trace_id)"""

_WORDS = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0, "pass": 1.0, "fail": 0.0,
          "y": 1.0, "n": 0.0, "👍": 1.0, "👎": 0.0}


def sample_for_review(con: Any, n: int, *, since: date, metric: str | None = None,
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
    strata = json.loads(strata_json) if strata_json else {}
    return "; ".join(f"{k}={v}" for k, v in strata.items())


def write_sheet(df: pl.DataFrame, out: str | os.PathLike[str], *, force: bool = False) -> None:
    """The labelling CSV (UTF-8, quoted, formula-safe), never over a sheet being filled."""
    from .export import write_csv

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
    from .warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read: {e}", source=src) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [unquote_cell(h) for h in reader.fieldnames or []]
    reader.fieldnames = header
    for needed in ("trace_id", "metric", "value"):
        if needed not in header:
            raise DataError(f"the sheet has no {needed!r} column (columns: {', '.join(header)})",
                            source=src)
    rows, lines, skipped = [], [], 0
    seen: dict[tuple[str, str, str], int] = {}
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
        for name in ("trace_id", "metric"):
            if not cell.get(name):
                raise DataError("is empty", source=where, field=name)
        who = cell.get("rater") or rater
        if not who:
            raise DataError("is empty; fill it or pass --rater NAME", source=where, field="rater")
        key = (cell["trace_id"], cell["metric"], who)
        if key in seen:
            raise DataError(f"a second label by {who!r} for this trace and metric "
                            f"(first on line {seen[key]})", source=where, field="value")
        seen[key] = int(where.rsplit(":", 1)[1])
        rows.append({"trace_id": cell["trace_id"], "metric": cell["metric"], "value": value,
                     "labeler": who, "labeled_at": datetime.now(UTC),
                     "note": cell.get("note") or None})
        lines.append(where)
    stored = _check_against_warehouse(wh, rows, lines)
    new = [r for r in rows if (r["trace_id"], r["metric"], r["labeler"]) not in stored]
    changed = [r for r in rows if stored.get((r["trace_id"], r["metric"], r["labeler"]),
                                             (r["value"], r["note"])) != (r["value"], r["note"])]
    if new or changed:  # a label's key holds across writes: the newest write wins
        wh.record_human_labels(new + changed, source=src)
    return ImportResult(len(new), skipped, len(rows) - len(new) - len(changed), len(changed))


def _check_against_warehouse(wh: Any, rows: list[dict[str, Any]], lines: list[str]
                             ) -> dict[tuple[str, str, str], tuple[float, str | None]]:
    """Refuse labels for unknown traces, and non-0/1 labels of binary metrics; return the
    (trace, metric, rater) labels already stored, with their (value, note)."""
    if not rows:
        return {}
    ids = sorted({r["trace_id"] for r in rows})
    with wh.connect() as con:
        known = set(con.sql(_KNOWN_TRACES, params={"ids": ids}).pl()["trace_id"].to_list())
        kinds = dict(con.sql(_METRIC_KINDS, params={
            "metrics": sorted({r["metric"] for r in rows})}).pl().iter_rows())
        stored = {(t, m, who): (v, note) for t, m, who, v, note in
                  con.sql(_STORED_LABELS, params={"ids": ids}).pl().iter_rows()}
    for r, where in zip(rows, lines, strict=True):
        if r["trace_id"] not in known:
            raise DataError(f"{r['trace_id']!r} is not a trace in the warehouse", source=where,
                            field="trace_id")
        if kinds.get(r["metric"]) == "binary" and r["value"] not in (0.0, 1.0):
            raise DataError(f"{r['metric']!r} is binary: the label must be 0/1 or yes/no, "
                            f"not {r['value']:g}", source=where, field="value")
    return stored
