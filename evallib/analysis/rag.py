"""Where a RAG failure came from: retrieval, generation, both, or neither.

A *failing* case (or trace) is one whose answer metric (``correctness`` by default) did not
pass and that did not error. It is attributed from what the generator had, its top ``k``
retrieved documents (``k`` = the context it was given; 5 in the demo), and from whether its
answer stayed faithful to them (the ``faithfulness`` metric's pass flag):

============  ===========================================  ==================================
class         rule                                         what to fix
============  ===========================================  ==================================
retrieval     no relevant document in the top k, and the   the retriever: the generator never
              answer is faithful to the documents it got   had the evidence and did not make
              (or faithfulness was not scored)             anything up
both          no relevant document in the top k, and the   the retriever, and the generator,
              answer is unfaithful                         which invented claims instead of
                                                           staying with its context or saying
                                                           it could not find them
generation    a relevant document in the top k, and the    the generator (prompt, model): the
              answer still wrong (faithful or not)         evidence was in its context
other         no retrieved document has a relevance        nothing to attribute: no gold
              label (no gold document exists: an           document exists (out of scope); the
              out-of-scope question)                       answer metric judges the refusal
============  ===========================================  ==================================

A failing case without any retrieval rows is *not attributed* (counted apart: production
logs retrievals for a sample of traces only). Shares are of the attributed failures.

Why faithfulness splits only the misses: with the evidence in its context, a wrong answer is
the generator's whatever it cites. Without it, a wrong answer that stays with the documents
it got (faithful to them, still wrong) is the retriever's alone, while one that goes beyond
them (unfaithful: made up instead of declining) shows a second failure on the generator's
side. The demo used to make faithfulness track correctness, so 48 of the 49 misses of its
baseline also scored unfaithful and a plain "relevant retrieved?" × "faithful?" grid called
nearly all of them "both"; it now plants the four classes explicitly (a failed miss answers
faithfully from the wrong documents unless it hallucinates, about a third of them). On the
default demo the approved baseline rc-v3.1 fails 89 cases: 31 retrieval, 18 both, 31
generation, 9 other (35/20/35/10%), the planted `DemoSummary.failure_attribution`, and
`classify` finds exactly those cases (tests/analysis/test_rag.py).

Rows come from `evallib.queries.attribution_items` (offline: the per-item facts, computed
in DuckDB; here is polars over a run's cases) or, online, `online_attribution_counts` (a
window's failing traces counted per strata × class from a daily rollup) and
`online_failures` (the newest of them, one by one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date

import numpy as np
import polars as pl

from ..stats import benjamini_hochberg, paired_test, wilson_interval
from ..vocabulary import MISSING  # stratum value of items without the key

__all__ = [
    "CLASSES",
    "NOT_ATTRIBUTED",
    "OUTCOMES",
    "attribution_shift",
    "attribution_table",
    "classify",
    "id_column",
    "newest_days",
    "transitions",
    "with_stratum",
]

CLASSES = ("retrieval", "both", "generation", "other")
NOT_ATTRIBUTED = "not attributed"  # failing, but no retrieval rows to attribute it with
OUTCOMES = ("pass", *CLASSES, NOT_ATTRIBUTED, "error", "unscored")


def id_column(items: pl.DataFrame) -> str:
    """``case_id`` for offline rows, ``trace_id`` for online ones."""
    return "case_id" if "case_id" in items.columns else "trace_id"


def newest_days(days: pl.DataFrame, limit: int) -> date | None:
    """Of per-day counts, newest first (``date``, ``n``: `queries.online_failure_days`), the
    first day of the fewest newest days that hold ``limit`` items (all days when they hold
    fewer; None without any): the days `queries.online_failures` needs to read."""
    enough = days.filter(pl.col("n").cum_sum() - pl.col("n") < limit)
    return enough["date"].min() if enough.height else None


def classify(items: pl.DataFrame) -> pl.DataFrame:
    """``items`` with ``outcome``: pass, one of `CLASSES`, not attributed, error (the call
    failed) or unscored (the answer metric has no value)."""
    cause = (pl.when(pl.col("n_docs") == 0).then(pl.lit(NOT_ATTRIBUTED))
             .when(pl.col("n_judged") == 0).then(pl.lit("other"))
             .when(pl.col("relevant_in_k")).then(pl.lit("generation"))
             .when(pl.col("faithful") == False).then(pl.lit("both"))  # noqa: E712 null ≠ False
             .otherwise(pl.lit("retrieval")))
    outcome = (pl.when(pl.col("errored")).then(pl.lit("error"))
               .when(pl.col("failed").is_null()).then(pl.lit("unscored"))
               .when(~pl.col("failed")).then(pl.lit("pass"))
               .otherwise(cause))
    return items.with_columns(outcome.alias("outcome"))


def with_stratum(items: pl.DataFrame, key: str | None) -> pl.DataFrame:
    """``items`` with ``stratum``: the value of ``key`` in each item's ``strata_json``
    (`MISSING` when it lacks the key; "all" without a key). Each distinct strata is parsed
    once: a golden set or a traffic window has a few hundred."""
    if key is None:
        return items.with_columns(pl.lit("all").alias("stratum"))
    distinct = items["strata_json"].drop_nulls().unique().to_list()
    values = [(json.loads(text) or {}).get(key) for text in distinct]
    lookup = pl.DataFrame({"strata_json": distinct, "stratum": values},
                          schema={"strata_json": pl.String, "stratum": pl.String})
    return items.join(lookup, on="strata_json", how="left", maintain_order="left") \
        .with_columns(pl.col("stratum").fill_null(MISSING))


def attribution_table(classified: pl.DataFrame, key: str | None = None) -> pl.DataFrame:
    """Per stratum (value of ``key``; one row set "all" without it) × class: ``n``, ``share``
    of the stratum's attributed failures with its 95% Wilson interval (``ci_low``,
    ``ci_high``), and the stratum's ``failing`` (attributed), ``not_attributed`` and
    ``scored`` counts. Every class appears, with 0 when it has no case. A ``w`` column
    counts each row that many times (`queries.online_attribution_counts`)."""
    stratified = with_stratum(classified, key)
    if "w" not in stratified.columns:
        stratified = stratified.with_columns(pl.lit(1, dtype=pl.Int64).alias("w"))
    w = pl.col("w")
    per = stratified.group_by("stratum").agg(
        (w * pl.col("outcome").is_in(CLASSES)).sum().alias("failing"),
        (w * (pl.col("outcome") == NOT_ATTRIBUTED)).sum().alias("not_attributed"),
        (w * pl.col("outcome").is_in(["pass", *CLASSES, NOT_ATTRIBUTED])).sum()
        .alias("scored"))
    grid = per.join(pl.DataFrame({"class": list(CLASSES)}), how="cross")
    counts = (stratified.filter(pl.col("outcome").is_in(CLASSES))
              .group_by("stratum", pl.col("outcome").alias("class")).agg(w.sum().alias("n")))
    out = grid.join(counts, on=["stratum", "class"], how="left").with_columns(
        pl.col("n").fill_null(0).cast(pl.Int64),
        pl.col("failing", "not_attributed", "scored").cast(pl.Int64))
    low, high = wilson_interval(out["n"].to_numpy(), out["failing"].to_numpy())
    order = {c: i for i, c in enumerate(CLASSES)}
    return (out.with_columns(
        (pl.col("n") / pl.col("failing")).fill_nan(None).alias("share"),
        pl.Series("ci_low", low, dtype=pl.Float64).fill_nan(None),
        pl.Series("ci_high", high, dtype=pl.Float64).fill_nan(None))
        .sort(pl.col("stratum") == MISSING, "stratum",
              pl.col("class").replace_strict(order, return_dtype=pl.Int64))
        .select("stratum", "class", "n", "share", "ci_low", "ci_high", "failing",
                "not_attributed", "scored"))


def _common(base: pl.DataFrame, cand: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """The items scored in both runs (neither unscored nor errored), with both outcomes."""
    key = id_column(cand)
    judged = ~pl.col("outcome").is_in(["unscored", "error"])
    both = cand.filter(judged).select(key, "strata_json", "outcome").join(
        base.filter(judged).select(key, pl.col("outcome").alias("baseline_outcome")),
        on=key, how="inner")
    return both, key


def transitions(base: pl.DataFrame, cand: pl.DataFrame) -> pl.DataFrame:
    """How the cases both runs scored moved: one row per (baseline outcome, candidate
    outcome) with ``n``, largest first; ``pass → pass`` included."""
    both, _ = _common(base, cand)
    return (both.group_by(pl.col("baseline_outcome").alias("baseline"),
                          pl.col("outcome").alias("candidate")).len("n")
            .with_columns(pl.col("n").cast(pl.Int64))
            .sort("n", "baseline", "candidate", descending=[True, False, False]))


def attribution_shift(base: pl.DataFrame, cand: pl.DataFrame, key: str | None = None,
                      alpha: float = 0.05) -> pl.DataFrame:
    """Per stratum × class, over the cases both runs scored: each run's count and share of
    its attributed failures, the change in count, and a paired McNemar test of "fails with
    this class" (mid-p, as `evallib compare` tests pass rates), Benjamini–Hochberg adjusted
    over every *testable* stratum × class row; ``significant`` at ``alpha``. A row where no
    case changed (p null) or too few did to ever reach alpha is left out of the family
    (p_adjusted null), so it does not dilute the rows that moved."""
    both, _ = _common(base, cand)
    both = with_stratum(both, key)
    rows = []
    for stratum in sorted(both["stratum"].unique().to_list(), key=lambda s: (s == MISSING, s)):
        part = both.filter(pl.col("stratum") == stratum)
        b_fail = int(part["baseline_outcome"].is_in(CLASSES).sum())
        c_fail = int(part["outcome"].is_in(CLASSES).sum())
        for cls in CLASSES:
            b = (part["baseline_outcome"] == cls).to_numpy().astype(float)
            c = (part["outcome"] == cls).to_numpy().astype(float)
            test = paired_test(b, c, "binary", alpha)
            rows.append({"stratum": stratum, "class": cls, "n_cases": part.height,
                         "baseline_n": int(b.sum()), "candidate_n": int(c.sum()),
                         "baseline_share": b.sum() / b_fail if b_fail else None,
                         "candidate_share": c.sum() / c_fail if c_fail else None,
                         "delta_n": int(c.sum() - b.sum()), "p_value": test.p_value,
                         "testable": test.testable})
    schema = {"stratum": pl.String, "class": pl.String, "n_cases": pl.Int64,
              "baseline_n": pl.Int64, "candidate_n": pl.Int64, "baseline_share": pl.Float64,
              "candidate_share": pl.Float64, "delta_n": pl.Int64, "p_value": pl.Float64,
              "testable": pl.Boolean}
    out = pl.DataFrame(rows, schema=schema, strict=False)
    family = np.where(out["testable"].to_numpy(), out["p_value"].fill_nan(None)
                      .fill_null(np.nan).to_numpy(), np.nan) if out.height else np.array([])
    adjusted = benjamini_hochberg(family) if out.height else np.array([])
    with np.errstate(invalid="ignore"):
        significant = adjusted < alpha
    return out.drop("testable").with_columns(
        pl.Series("p_value", out["p_value"], dtype=pl.Float64).fill_nan(None),
        pl.Series("p_adjusted", adjusted, dtype=pl.Float64).fill_nan(None),
        pl.Series("significant", significant, dtype=pl.Boolean))


def failing_of(classified: pl.DataFrame, classes: Sequence[str] = CLASSES) -> pl.DataFrame:
    """The classified rows whose outcome is one of ``classes``."""
    return classified.filter(pl.col("outcome").is_in(list(classes)))
