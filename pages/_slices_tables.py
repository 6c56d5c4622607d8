"""Tables the Slices page (and the Datasets page's mix) shows, shaped from query results and
`evallib.analysis.coverage` frames. Pure polars: no streamlit, no SQL."""

from __future__ import annotations

import polars as pl

from evallib.vocabulary import MISSING, slice_label
from pages._tables import SMALL_N, interval_text

NONE = "(none)"  # "no second key" / "no baseline" in the pickers
ALL = "All cases"


def cell_label(key: str, value: str | None, key2: str | None = None,
               value2: str | None = None) -> str:
    """``query_type=billing × difficulty=hard`` (a missing value reads ``(missing)``)."""
    values = {key: value if value is not None else MISSING}
    if key2 is not None:
        values[key2] = value2 if value2 is not None else MISSING
    return slice_label(values)


def cell_grid(cells: pl.DataFrame, metric: str, key: str, key2: str | None,
              small_n: int = SMALL_N) -> pl.DataFrame:
    """One row per cell of ``metric`` (from `slice_summary` with intervals): ``cell`` (its
    label), the stratum values, ``n``, ``mean``, the 95% interval, ``mean [95% CI]`` and
    ``small n`` (true under ``small_n`` cases: only large differences can show)."""
    rows = cells.filter(pl.col("metric") == metric)
    labels = [cell_label(key, v, key2, v2) for v, v2 in
              rows.select("stratum", "stratum2").iter_rows()]
    text = [interval_text(m, lo, hi, k) for m, lo, hi, k in
            rows.select("mean", "ci_low", "ci_high", "kind").iter_rows()]
    return rows.select(
        pl.Series("cell", labels, dtype=pl.String),
        pl.col("stratum").fill_null(MISSING).alias(key),
        (pl.col("stratum2").fill_null(MISSING) if key2 else pl.lit(None, pl.String))
        .alias(key2 or "stratum2"),
        "kind", "n", "mean", "ci_low", "ci_high",
        pl.Series("mean [95% CI]", text, dtype=pl.String),
        (pl.col("n") < small_n).alias("small n"),
    ).drop([] if key2 else ["stratum2"])


def cell_values(grid: pl.DataFrame, key: str, key2: str | None
                ) -> dict[str, dict[str, str | None]]:
    """Cell label → its stratum values (None = the case lacks the key), for the pickers."""
    out = {}
    for row in grid.iter_rows(named=True):
        values = {key: None if row[key] == MISSING else row[key]}
        if key2:
            values[key2] = None if row[key2] == MISSING else row[key2]
        out[row["cell"]] = values
    return out


def in_cell(case_scores: pl.DataFrame, where: dict[str, str | None]) -> pl.DataFrame:
    """The rows of ``case_scores`` in one cell; a None value means "lacks the key"."""
    for key, value in where.items():
        got = pl.col("strata").map.get(key)
        case_scores = case_scores.filter(got.is_null() if value is None else got == value)
    return case_scores


def run_cases(cases: pl.DataFrame) -> pl.DataFrame:
    """`pages._tables.case_table` of one run alone: without the empty baseline columns."""
    return cases.select(
        "case_id", pl.col("candidate").alias("value"), "input",
        pl.col("candidate output").alias("output"), "expected",
        pl.col("candidate rationale").alias("rationale"), "strata", "error",
    ).sort("value", "case_id", nulls_last=True)


def metric_slice_rows(slices: pl.DataFrame, metric: str) -> pl.DataFrame:
    """`pages._tables.slice_table` rows of one metric (worst first, as there)."""
    return slices.filter(pl.col("metric") == metric)


# --- coverage ---------------------------------------------------------------------------


def mix_table(mixes: pl.DataFrame, key: str, key2: str | None) -> pl.DataFrame:
    """`evallib.analysis.coverage.strata_mixes` for display: stratum values, both shares and counts,
    and ``golden − traffic`` in points; strata the golden set lacks marked."""
    cols = [pl.col("stratum").alias(key)] + ([pl.col("stratum2").alias(key2)] if key2 else [])
    return mixes.select(
        *cols, (pl.col("golden_share") * 100).alias("golden set"),
        (pl.col("traffic_share") * 100).alias("production"),
        ((pl.col("golden_share") - pl.col("traffic_share")) * 100).alias("golden − prod (pts)"),
        pl.col("golden_n").alias("golden cases"), pl.col("traffic_n").alias("traces"),
        pl.when(pl.col("golden_n") == 0).then(pl.lit("not in the golden set"))
        .otherwise(pl.lit("")).alias("note"))


def coverage_table(weighted: pl.DataFrame) -> pl.DataFrame:
    """`evallib.analysis.coverage.production_weighted` for display: the plain and
    production-weighted mean with intervals, the difference, ``differs`` where it exceeds
    its uncertainty."""
    def text(mean: str, low: str, high: str) -> list[str]:
        return [interval_text(m, lo, hi, k) for m, lo, hi, k in
                weighted.select(mean, low, high, "kind").iter_rows()]

    return weighted.select(
        pl.col("differs").fill_null(False),
        "metric", "kind", "n",
        pl.Series("golden set mean [95% CI]", text("plain", "plain_low", "plain_high")),
        pl.Series("production-weighted [95% CI]",
                  text("weighted", "weighted_low", "weighted_high")),
        "difference", pl.col("difference_se").alias("± SE"),
        (pl.col("covered") * 100).alias("traffic covered"),
    ).sort(pl.col("differs"), pl.col("difference").abs(), descending=[True, True])
