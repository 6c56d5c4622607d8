"""Failing (or regressed) cases as one wide row each, and CSV that is safe in a spreadsheet.

A case *fails* a metric when its ``passed`` flag is false, or, for a binary metric scored
without a flag, when its value is 0; a case with an ``error`` fails too. Against a baseline a
case *regresses* when a metric it passed in the baseline fails in the candidate. Metrics
with no pass criterion (no flags, not binary) never make a case fail; their values are still
exported.

The CSV is UTF-8 with a byte-order mark (so Excel reads it as UTF-8), quoted where a cell
holds a comma, quote or newline, and neutralised against formula injection: a text cell (or
header) that starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
``'``, which spreadsheets show as text instead of evaluating (OWASP's advice).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from .. import queries
from ..errors import EvallibError
from ..warehouse import Connection

__all__ = ["case_status", "failing_cases", "safe_cell", "to_csv", "write_csv"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"


def safe_cell(text: str) -> str:
    """``text`` as a spreadsheet shows it literally."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def case_status(value: pl.Expr, baseline: pl.Expr) -> pl.Expr:
    """regressed / improved / unchanged by value; null when either side is unscored."""
    return (pl.when(value.is_null() | baseline.is_null() | value.is_nan() | baseline.is_nan())
            .then(None)
            .when(value < baseline).then(pl.lit("regressed"))
            .when(value > baseline).then(pl.lit("improved"))
            .otherwise(pl.lit("unchanged")))


def _fails(passed: str, value: str) -> pl.Expr:
    return (pl.col(passed) == False) | (  # noqa: E712 (null must stay null)
        pl.col(passed).is_null() & (pl.col("kind") == "binary") & (pl.col(value) == 0))


def _passes(passed: str, value: str) -> pl.Expr:
    return (pl.col(passed) == True) | (  # noqa: E712
        pl.col(passed).is_null() & (pl.col("kind") == "binary") & (pl.col(value) == 1))


def failing_cases(con: Connection, run_id: str, baseline: str | None = None,
                  metrics: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per failing case of ``run_id`` (or, with ``baseline``, per regressed case):
    ``failed`` (or ``regressed``) lists the metrics, then the case's strata (one
    ``strata.<key>`` column each), fields, and every metric's value, pass flag and rationale
    (with a baseline also the baseline's value and pass flag). ``metrics`` limits which
    metrics can make a case fail; all columns are exported either way."""
    from .compare import resolve_run

    run_id = resolve_run(con, run_id)
    baseline = None if baseline is None else resolve_run(con, baseline, "baseline")
    long = queries.case_scores(con, run_id, baseline)
    scored = long.filter(pl.col("metric").is_not_null())
    unknown = sorted(set(metrics or ()) - set(scored["metric"].unique().to_list()))
    if unknown:
        raise EvallibError(f"run {run_id!r} has no metric {', '.join(map(repr, unknown))}")
    chosen = scored.filter(pl.col("metric").is_in(list(metrics))) if metrics else scored
    if baseline is None:
        flag = "failed"
        hits = chosen.filter(_fails("passed", "value"))
        errored = long.filter(pl.col("error").is_not_null()).select(
            "case_id", pl.lit("error").alias("metric")).unique()
        hits = pl.concat([hits.select("case_id", "metric"), errored])
    else:
        flag = "regressed"
        hits = chosen.filter(_passes("baseline_passed", "baseline_value")
                             & _fails("passed", "value")).select("case_id", "metric")
    reasons = (hits.unique().sort("case_id", "metric").group_by("case_id", maintain_order=True)
               .agg(pl.col("metric").str.join(", ").alias(flag)))
    return _wide(long, reasons, run_id, baseline, flag)


def _wide(long: pl.DataFrame, reasons: pl.DataFrame, run_id: str, baseline: str | None,
          flag: str) -> pl.DataFrame:
    fields = ["input", "output", *(["baseline_output"] if baseline else []), "expected",
              "error", "latency_ms", "tokens_in", "tokens_out", "cost_usd"]
    cases = (long.group_by("case_id", maintain_order=True)
             .agg(pl.col("strata", "tags", *fields).first()))
    keys = sorted({k for s in cases["strata"].to_list() if s for k in _pairs(s)})
    cases = cases.with_columns(
        *(pl.col("strata").map.get(k).alias(f"strata.{k}") for k in keys),
        pl.col("tags").list.join("; "),
    ).drop("strata")
    per_metric = ["value", "passed", *(["baseline_value", "baseline_passed"] if baseline
                                       else []), "rationale"]
    names = {"value": "{m}", "passed": "{m}.passed", "baseline_value": "{m}.baseline",
             "baseline_passed": "{m}.baseline_passed", "rationale": "{m}.rationale"}
    scores = long.filter(pl.col("metric").is_not_null())
    metric_cols: list[pl.DataFrame] = []
    for metric in sorted(scores["metric"].unique().to_list()):
        one = scores.filter(pl.col("metric") == metric).select(
            "case_id", *(pl.col(c).alias(names[c].format(m=metric)) for c in per_metric))
        metric_cols.append(one)
    out = reasons.join(cases, on="case_id", how="left", maintain_order="left")
    for one in metric_cols:
        out = out.join(one, on="case_id", how="left", maintain_order="left")
    run_cols = [pl.lit(run_id).alias("run_id")]
    if baseline:
        run_cols.append(pl.lit(baseline).alias("baseline_run_id"))
    out = out.with_columns(run_cols)
    front = ["run_id", *(["baseline_run_id"] if baseline else []), "case_id", flag,
             *(f"strata.{k}" for k in keys), "tags"]
    return out.select(*front, *[c for c in out.columns if c not in front])


def _pairs(strata: Any) -> list[str]:
    """Keys of one strata value as polars returns a MAP (a list of key/value structs)."""
    if isinstance(strata, dict):
        return list(strata)
    return [kv["key"] for kv in strata]


def to_csv(df: pl.DataFrame) -> bytes:
    """``df`` as spreadsheet-safe CSV bytes (see the module docstring)."""
    text_cols = [c for c, t in df.schema.items() if t == pl.String]
    safe = df.with_columns(
        pl.when(pl.col(c).str.contains(_FORMULA_PATTERN)).then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c)).alias(c) for c in text_cols)
    safe = safe.rename({c: safe_cell(c) for c in safe.columns if safe_cell(c) != c})
    return safe.write_csv(include_bom=True, quote_style="necessary").encode("utf-8")


def write_csv(df: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``to_csv(df)`` to ``path`` through a temporary file, so a reader never sees half
    a file and an existing file is only replaced by a complete one."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.inprogress")
    try:
        tmp.write_bytes(to_csv(df))
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise EvallibError(f"cannot write {target}: {e.strerror or e}") from None
