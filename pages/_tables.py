"""Tables the pages show, shaped from query results. Pure polars: no streamlit, no SQL."""

from __future__ import annotations

import polars as pl

APPROVED = "✅"
MISSING = "(missing)"  # label of cases that have no value for the chosen stratum key


def interval_text(mean: float | None, low: float | None, high: float | None,
                  kind: str | None) -> str:
    """``0.815 [0.757, 0.862]``: a mean with its 95% interval (2 decimals on a 1–5 scale)."""
    if mean is None:
        return "—"
    d = 2 if kind == "ordinal" else 3
    if low is None or high is None:
        return f"{mean:.{d}f}"
    return f"{mean:.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def _with_cell(summary: pl.DataFrame) -> pl.DataFrame:
    cells = [interval_text(*row) for row in
             summary.select("mean", "ci_low", "ci_high", "kind").iter_rows()]
    return summary.with_columns(pl.Series("cell", cells, dtype=pl.String))


def metric_order(summary: pl.DataFrame) -> list[str]:
    """Pass rates first (the headline of an eval), then graded scales, then the rest."""
    rank = {"binary": 0, "ordinal": 1, "continuous": 2}
    kinds = summary.select("metric", "kind").unique()
    return sorted(kinds["metric"].to_list(),
                  key=lambda m: (rank.get(kinds.filter(pl.col("metric") == m)["kind"][0], 3), m))


def runs_table(runs: pl.DataFrame, summary: pl.DataFrame,
               metrics: list[str] | None = None) -> pl.DataFrame:
    """One row per run (in ``runs`` order): who it is, each metric (all, or those listed) as
    "mean [95% interval]", then where it came from. Metrics come before provenance: they
    are what the table is read for."""
    if metrics is not None:
        summary = summary.filter(pl.col("metric").is_in(metrics))
    metric_names = metric_order(summary)
    cells = (_with_cell(summary).pivot("metric", index="run_id", values="cell")
             if summary.height else pl.DataFrame(schema={"run_id": pl.String}))
    table = runs.with_columns(
        pl.when(pl.col("approved")).then(pl.lit(APPROVED)).otherwise(pl.lit(""))
        .alias("approved"),
        pl.col("release").fill_null(""),
    ).join(cells, on="run_id", how="left", maintain_order="left")
    return table.select("approved", "name", "started_at", "release", *metric_names, "n_cases",
                        "model", "dataset", "dataset_version", "judge_version", "run_id")


def default_pair(runs: pl.DataFrame) -> tuple[str | None, str | None]:
    """Candidate = the newest run; baseline = the newest approved run before it, else the
    run before it. ``runs`` is newest first."""
    if runs.height == 0:
        return None, None
    ids = runs["run_id"].to_list()
    candidate = ids[0]
    older = runs.slice(1)
    approved = older.filter(pl.col("approved"))["run_id"].to_list()
    baseline = approved[0] if approved else (ids[1] if len(ids) > 1 else candidate)
    return candidate, baseline


def run_labels(runs: pl.DataFrame) -> dict[str, str]:
    """run_id → "✅ name (release) · 2026-06-01 14:05" for selectboxes; the run_id is added
    where that would not tell two runs apart."""
    out = {}
    for run_id, name, started, approved, release in runs.select(
            "run_id", "name", "started_at", "approved", "release").iter_rows():
        badge = f"{APPROVED} " if approved else ""
        rel = f" ({release})" if release else ""
        out[run_id] = f"{badge}{name}{rel} · {started:%Y-%m-%d %H:%M}"
    seen: dict[str, int] = {}
    for label in out.values():
        seen[label] = seen.get(label, 0) + 1
    return {r: f"{label} · {r}" if seen[label] > 1 else label for r, label in out.items()}


def pair_table(summary: pl.DataFrame, candidate: str, baseline: str,
               metrics: list[str] | None = None) -> pl.DataFrame:
    """Per metric (all, or those listed), the two runs side by side: each mean with its own
    95% interval, and the candidate − baseline delta. A metric only one run has keeps nulls
    on the other side."""
    if metrics is not None:
        summary = summary.filter(pl.col("metric").is_in(metrics))
    s = _with_cell(summary)
    cols = ["metric", "kind", "n", "mean", "cell"]
    base = s.filter(pl.col("run_id") == baseline).select(cols)
    cand = s.filter(pl.col("run_id") == candidate).select(cols)
    both = cand.join(base, on="metric", how="full", coalesce=True, suffix="_baseline")
    return both.select(
        "metric",
        pl.coalesce("kind", "kind_baseline").alias("kind"),
        pl.col("mean_baseline").alias("baseline"),
        pl.col("mean").alias("candidate"),
        (pl.col("mean") - pl.col("mean_baseline")).alias("delta"),
        pl.col("cell_baseline").alias("baseline [95% CI]"),
        pl.col("cell").alias("candidate [95% CI]"),
        pl.col("n_baseline").alias("n baseline"),
        pl.col("n").alias("n candidate"),
    ).sort("metric")


def version_note(runs: pl.DataFrame, candidate: str, baseline: str) -> str | None:
    """A warning when the two runs scored different versions of the golden set."""
    v = dict(runs.select("run_id", "dataset_version").iter_rows())
    if v.get(candidate) == v.get(baseline):
        return None
    return (f"The two runs used different versions of the golden set ({v.get(candidate)} vs "
            f"{v.get(baseline)}): their means cover different cases.")
