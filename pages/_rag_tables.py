"""Tables the RAG page shows, shaped from query results and `evallib.analysis.rag` frames.
Pure polars: no streamlit, no SQL."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from evallib.analysis.rag import CLASSES, id_column, with_stratum
from evallib.vocabulary import strata_text
from pages._tables import interval_text

EVIDENCE = ("relevant in top k", "no relevant in top k", "no gold document")


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
    return strata_text(json.loads(text) if text else None)
