"""Tables the Slices and RAG pages show, shaped from query results and `evallib.analysis.rag` /
`evallib.analysis.coverage` frames. Pure polars: no streamlit, no SQL."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from evallib.analysis.rag import CLASSES, id_column, with_stratum
from evallib.vocabulary import MISSING
from pages._tables import SMALL_N, _strata_text, interval_text, slice_label

NONE = "(none)"  # "no second key" / "no baseline" in the pickers
ALL = "All cases"
EVIDENCE = ("relevant in top k", "no relevant in top k", "no gold document")


def cell_label(key: str, value: str | None, key2: str | None = None,
               value2: str | None = None) -> str:
    """``query_type=billing · difficulty=hard`` (a missing value reads ``(missing)``)."""
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


# --- RAG ------------------------------------------------------------------------------


def retrieval_at(metrics: pl.DataFrame, k: int) -> dict[str, dict[str, Any]]:
    """metric → its row at cut ``k`` (citation_hit_rate has none: its own row)."""
    rows = metrics.filter((pl.col("k") == k) | pl.col("k").is_null())
    return {r["metric"]: r for r in rows.iter_rows(named=True)}


def generation_table(gen: pl.DataFrame, first: list[str]) -> pl.DataFrame:
    """Per metric (``first`` ones first), "mean [95% CI] · n" by the evidence the generator
    had, and over all cases with retrievals."""
    def cell(row: dict[str, Any]) -> str:
        return f"{interval_text(row['mean'], row['ci_low'], row['ci_high'], row['kind'])} " \
               f"· n={row['n']}"

    shaped = gen.with_columns(
        pl.col("evidence").fill_null("all"),
        pl.Series("text", [cell(r) for r in gen.iter_rows(named=True)], dtype=pl.String))
    wide = shaped.pivot("evidence", index=["metric", "kind"], values="text")
    order = {m: i for i, m in enumerate(first)}
    cols = [c for c in (*EVIDENCE, "all") if c in wide.columns]
    return (wide.with_columns(pl.col("metric").replace_strict(order, default=len(order),
                                                              return_dtype=pl.Int64)
                              .alias("_o"))
            .sort("_o", "metric").select("metric", "kind", *cols))


def attribution_display(table: pl.DataFrame) -> pl.DataFrame:
    """`evallib.analysis.rag.attribution_table` for display: share as "35% [26%, 45%]"."""
    share = [("—" if s is None else f"{s:.0%} [{lo:.0%}, {hi:.0%}]")
             for s, lo, hi in table.select("share", "ci_low", "ci_high").iter_rows()]
    return table.select(
        "stratum", "class",
        "n", pl.Series("share [95% CI]", share, dtype=pl.String),
        pl.col("failing").alias("failing (attributed)"), "not_attributed")


def shift_display(shift: pl.DataFrame) -> pl.DataFrame:
    """`evallib.analysis.rag.attribution_shift` for display, biggest moves first."""
    return shift.select(
        pl.when(pl.col("significant") & (pl.col("delta_n") > 0)).then(pl.lit("more"))
        .when(pl.col("significant") & (pl.col("delta_n") < 0)).then(pl.lit("fewer"))
        .otherwise(pl.lit("no significant change")).alias("verdict"),
        "stratum", "class", pl.col("baseline_n").alias("baseline"),
        pl.col("candidate_n").alias("run"), pl.col("delta_n").alias("change"),
        (pl.col("baseline_share") * 100).alias("baseline share"),
        (pl.col("candidate_share") * 100).alias("run share"), pl.col("p_value").alias("p"),
        pl.col("p_adjusted").alias("p adjusted"), pl.col("n_cases").alias("cases"),
    ).sort(pl.col("p adjusted"), pl.col("change").abs(), descending=[False, True])


def class_cases(classified: pl.DataFrame, cls: str | None, key: str | None = None,
                stratum: str | None = None) -> pl.DataFrame:
    """The failing cases (or traces, newest first) of one class (None: every attributed
    class), in one stratum of ``key`` if given: their verdicts and evidence, before
    `with_details` adds what they said."""
    ident = id_column(classified)
    rows = classified.filter(pl.col("outcome").is_in([cls] if cls else list(CLASSES)))
    if key is not None and stratum is not None:
        rows = with_stratum(rows, key).filter(pl.col("stratum") == stratum).drop("stratum")
    rows = rows.sort(ident) if ident == "case_id" else rows.sort(
        "date", ident, descending=True, nulls_last=True)
    extra = ["refusal", "date"] if ident == "trace_id" else []
    return rows.select(
        ident, pl.col("outcome").alias("class"), pl.col("answer").alias("answer score"),
        "faithfulness", "first_relevant", "cited_relevant", *extra,
        pl.col("strata_json").map_elements(_json_strata_text, return_dtype=pl.String)
        .alias("strata"))


def with_details(cases: pl.DataFrame, details: pl.DataFrame) -> pl.DataFrame:
    """`class_cases` with the top k documents, input, output, expected answer and the
    judge's reason (`queries.attribution_details`), in the same order."""
    ident = cases.columns[0]
    keep = [c for c in ("top_k", "input", "output", "expected", "rationale")
            if c in details.columns and not (c == "expected" and ident == "trace_id")]
    joined = cases.join(details.select(ident, *keep), on=ident, how="left",
                        maintain_order="left").rename({"rationale": "judge rationale"},
                                                      strict=False)
    front = [ident, "class", "answer score", "faithfulness", "first_relevant",
             "cited_relevant", *[c if c != "rationale" else "judge rationale" for c in keep]]
    return joined.select(*front, *[c for c in joined.columns if c not in front])


def _json_strata_text(text: str | None) -> str:
    return _strata_text(json.loads(text) if text else {})
