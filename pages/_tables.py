"""Tables the pages show, shaped from query results. Pure polars: no streamlit, no SQL."""

from __future__ import annotations

from typing import Any

import polars as pl

from evallib.vocabulary import slice_label, strata_text

SCALE = {"ordinal": 4.0}  # a 1–5 scale spans 4 points; pass rates and 0–1 scores span 1


def human(name: str) -> str:
    """``answer_relevance`` → ``answer relevance``: names as a reader says them."""
    return name.replace("_", " ")


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


GATE_PASS, GATE_FAIL = "pass", "fail"


def gate_cells(gates: pl.DataFrame | None) -> pl.DataFrame:
    """run_id → "fail (2 failed)" / "pass (1 waived)", from `latest_gate_verdicts`."""
    if gates is None or not gates.height:
        return pl.DataFrame(schema={"run_id": pl.String, "gate": pl.String})
    return gates.select("run_id", pl.when(pl.col("verdict") == "fail")
                        .then(pl.format(GATE_FAIL + " ({} failed)", "n_failed"))
                        .when(pl.col("n_waived") > 0)
                        .then(pl.format(GATE_PASS + " ({} waived)", "n_waived"))
                        .otherwise(pl.lit(GATE_PASS)).alias("gate"))


def runs_table(runs: pl.DataFrame, summary: pl.DataFrame,
               metrics: list[str] | None = None,
               gates: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per run (in ``runs`` order): who it is, its latest release-gate verdict (from
    ``gates``; empty when never gated), each metric's mean (all, or those listed; a number,
    so a column sorts), then where it came from. Metrics come before provenance: they are
    what the table is read for; their intervals are in `pair_table`."""
    if metrics is not None:
        summary = summary.filter(pl.col("metric").is_in(metrics))
    metric_names = metric_order(summary)
    cells = (summary.pivot("metric", index="run_id", values="mean")
             if summary.height else pl.DataFrame(schema={"run_id": pl.String}))
    table = runs.with_columns(
        pl.col("approved").fill_null(False), pl.col("release").fill_null(""),
    ).join(cells, on="run_id", how="left", maintain_order="left") \
        .join(gate_cells(gates), on="run_id", how="left", maintain_order="left") \
        .with_columns(pl.col("gate").fill_null(""))
    gate = ["gate"] if table["gate"].str.len_chars().sum() else []  # never gated: no column
    return table.select("approved", "name", *gate, "started_at", *metric_names, "release",
                        "n_cases", "model", "dataset", "dataset_version", "judge_version",
                        "run_id")


def default_pair(runs: pl.DataFrame) -> tuple[str, str]:
    """Candidate = the newest run; baseline = the newest approved run before it, else the
    run before it. ``runs`` is newest first and not empty."""
    ids = runs["run_id"].to_list()
    candidate = ids[0]
    older = runs.slice(1)
    approved = older.filter(pl.col("approved"))["run_id"].to_list()
    baseline = approved[0] if approved else (ids[1] if len(ids) > 1 else candidate)
    return candidate, baseline


def run_labels(runs: pl.DataFrame) -> dict[str, str]:
    """run_id → "name (release) · approved · 2026-06-01 14:05" for selectboxes; the run_id
    is added where that would not tell two runs apart."""
    out = {}
    for run_id, name, started, approved, release in runs.select(
            "run_id", "name", "started_at", "approved", "release").iter_rows():
        badge = " · approved" if approved else ""
        rel = f" ({release})" if release else ""
        out[run_id] = f"{name}{rel}{badge} · {started:%Y-%m-%d %H:%M}"
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


# --- Compare page ------------------------------------------------------------------------

SMALL_N = 30  # a slice this small is marked: its test can only see large drops
WORSE, BETTER, SAME = "worse", "better", "no significant change"
STATUSES = ("regressed", "improved", "unchanged")


def verdict(delta: float | None, significant: bool) -> str:
    """The badge of one test: a significant drop, a significant gain, or neither."""
    if not significant or delta is None or delta != delta or delta == 0:
        return SAME
    return WORSE if delta < 0 else BETTER


def metric_headline(comparison: Any) -> pl.DataFrame:
    """Per metric: both means, the delta with its 95% interval, p, the badge, how many cases
    went down / stayed / went up, and the smallest drop this n could detect."""
    rows = [{
        "verdict": verdict(m.delta, m.significant) if m.testable
        else f"untestable: {m.reason}", "metric": m.metric, "kind": m.kind,
        "n": m.n, "baseline": m.baseline, "candidate": m.candidate, "delta": m.delta,
        "95% CI of delta": _ci_text(m.ci_low, m.ci_high, m.kind), "p": m.p_value,
        "regressed": m.regressed, "unchanged": m.unchanged, "improved": m.improved,
        "detectable drop": m.min_detectable, "test": m.test,
    } for m in comparison.metrics]
    schema = {"verdict": pl.String, "metric": pl.String, "kind": pl.String, "n": pl.Int64,
              "baseline": pl.Float64, "candidate": pl.Float64, "delta": pl.Float64,
              "95% CI of delta": pl.String, "p": pl.Float64, "regressed": pl.Int64,
              "unchanged": pl.Int64, "improved": pl.Int64, "detectable drop": pl.Float64,
              "test": pl.String}
    frame = pl.DataFrame(rows, schema=schema, strict=False)
    order = {m: i for i, m in enumerate(metric_order(frame.select("metric", "kind")))}
    return frame.sort(pl.col("metric").replace_strict(order, default=len(order)))


def _ci_text(low: float, high: float, kind: str) -> str:
    if low != low or high != high:
        return "—"
    d = 2 if kind == "ordinal" else 3
    return f"[{low:+.{d}f}, {high:+.{d}f}]"


def worst_first(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of tests (``significant``, ``delta``, ``kind``) worst first: significant drops,
    largest first, then the rest from the largest drop to the largest gain, significant
    gains last. A delta is measured on its scale (a 1–5 scale spans 4 points), so a pass
    rate's drop and a rating's compare."""
    size = pl.col("delta") / pl.col("kind").replace_strict(SCALE, default=1.0,
                                                           return_dtype=pl.Float64)
    group = (pl.when(pl.col("significant") & (pl.col("delta") < 0)).then(0)
             .when(pl.col("significant") & (pl.col("delta") > 0)).then(2).otherwise(1))
    return (frame.with_columns(group.alias("_group"), size.alias("_size"))
            .sort("_group", "_size", "slice", "metric", nulls_last=True)
            .drop("_group", "_size"))


def slice_table(comparison: Any, small_n: int = SMALL_N) -> pl.DataFrame:
    """Every slice × metric tested, worst first (`worst_first`). ``small n`` marks slices
    under ``small_n`` cases."""
    kinds = {m.metric: m.kind for m in comparison.metrics}
    rows = [{
        "verdict": verdict(s.delta, s.significant) if s.testable
        else f"untestable: {s.reason}", "slice": slice_label(s.slice),
        "metric": s.metric, "kind": kinds.get(s.metric, ""), "n": s.n,
        "small n": s.n < small_n, "baseline": s.baseline,
        "candidate": s.candidate, "delta": s.delta, "p": s.p_value,
        "p adjusted": s.p_adjusted, "significant": s.significant,
    } for s in comparison.slices]
    schema = {"verdict": pl.String, "slice": pl.String, "metric": pl.String,
              "kind": pl.String, "n": pl.Int64, "small n": pl.Boolean,
              "baseline": pl.Float64, "candidate": pl.Float64, "delta": pl.Float64,
              "p": pl.Float64, "p adjusted": pl.Float64, "significant": pl.Boolean}
    return worst_first(pl.DataFrame(rows, schema=schema, strict=False))


def slice_options(comparison: Any) -> dict[str, dict[str, str]]:
    """Slice label → its stratum values, the slice holding the worst test first."""
    values = {slice_label(s.slice): dict(s.slice) for s in comparison.slices}
    ordered = dict.fromkeys(slice_table(comparison)["slice"].to_list())
    return {label: values[label] for label in ordered}


def case_table(case_scores: pl.DataFrame, metric: str, where: dict[str, str] | None,
               status: str | None) -> pl.DataFrame:
    """The cases behind one metric (in one slice, of one status): both scores, what each run
    answered, the judge's reasons and the strata, regressions by size first."""
    from evallib.analysis.export import case_status

    rows = case_scores.filter(pl.col("metric") == metric)
    for key, value in (where or {}).items():
        rows = rows.filter(pl.col("strata").map.get(key) == value)
    rows = rows.with_columns(
        case_status(pl.col("value"), pl.col("baseline_value")).alias("status"),
        (pl.col("value") - pl.col("baseline_value")).alias("delta"),
    )
    if status is not None:
        rows = rows.filter(pl.col("status") == status)
    strata = pl.col("strata").map_elements(_strata_text, return_dtype=pl.String)
    return rows.sort("delta", "case_id", nulls_last=True).select(
        "case_id", "status", pl.col("baseline_value").alias("baseline"),
        pl.col("value").alias("candidate"), "delta", "input",
        pl.col("baseline_output").alias("baseline output"),
        pl.col("output").alias("candidate output"), "expected",
        pl.col("baseline_rationale").alias("baseline rationale"),
        pl.col("rationale").alias("candidate rationale"),
        strata.alias("strata"), "error")


def _strata_text(strata: Any) -> str:
    """A case's strata: a dict, or a MAP's list of ``{"key", "value"}``."""
    return strata_text(strata if isinstance(strata, dict) else {
        kv["key"]: kv["value"] for kv in strata or []})


def gate_failures(gate: pl.DataFrame) -> pl.DataFrame:
    """The failed, inconclusive and waived rows of a run's latest gate (from
    `gate_results`), in that order, with the slice spelled out."""
    import json

    order = ["fail", "inconclusive", "waived"]
    rows = gate.filter(pl.col("status").is_in(order))
    slices = [slice_label(json.loads(s) if s else None) for s in rows["slice"].to_list()]
    return rows.with_columns(pl.Series("slice", slices, dtype=pl.String)).sort(
        pl.col("status").replace_strict(order, range(3)), maintain_order=True).select(
        "status", "rule", "slice", "observed", "threshold", "n", "p_adjusted", "message",
        "owner")
