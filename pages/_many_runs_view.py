"""The Runs × slices page's tables and heatmap, shaped from `evallib.analysis.many_runs.ManyRuns`.
Pure polars and plotly: no streamlit, no SQL. Labels from the data are HTML-escaped
(plotly renders a subset of HTML); traces carry ``meta={"role": ...}`` as in `pages._charts`.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

import plotly.graph_objects as go
import polars as pl

from evallib.analysis.many_runs import ManyRuns
from evallib.vocabulary import slice_label, strata_text

WORSE, BETTER, SAME, REFERENCE = "worse", "better", "no significant change", "reference"
Z_LIMIT = 4.0


def verdict(result: ManyRuns, run_id: str, significant: bool, delta: float) -> str:
    """A word, never a glyph alone: worse / better / no significant change / reference."""
    if run_id == result.reference:
        return REFERENCE
    if not significant or math.isnan(delta) or delta == 0:
        return SAME
    return WORSE if delta < 0 else BETTER


def _digits(kind: str) -> int:
    return 2 if kind == "ordinal" else 3


def _ci(low: float, high: float, d: int) -> str:
    return "—" if math.isnan(low) or math.isnan(high) else f"[{low:.{d}f}, {high:.{d}f}]"


def cell_table(result: ManyRuns) -> pl.DataFrame:
    """One row per run × slice with human column names, what is read first first:
    significantly worse cells (smallest p of the verdict first: adjusted for slices),
    then the grid's order (all cases, then slices; runs oldest first). "Change" is the run
    minus the reference over the cases both scored."""
    labels = {r.run_id: r.label for r in result.runs}
    d = _digits(result.kind)
    rows, order = [], []
    for i, c in enumerate(result.cells):
        word = verdict(result, c.run_id, c.significant, c.delta)
        rows.append({
            "Verdict": word, "Run": labels[c.run_id], "Slice": slice_label(c.slice),
            "Mean": c.mean, "95% CI": _ci(c.ci_low, c.ci_high, d), "Cases": c.n,
            "Change": c.delta, "p": c.p_value, "p adjusted": c.p_adjusted,
            "Pairs": c.n_pairs if c.run_id != result.reference else None,
            "Reference (pairs)": c.reference_mean, "Run (pairs)": c.run_mean})
        # worst first: the verdict's own p (adjusted for slices), then the grid's order
        order.append((0, c.p_adjusted if c.slice else c.p_value) if word == WORSE else (1, i))
    schema = {"Verdict": pl.String, "Run": pl.String, "Slice": pl.String, "Mean": pl.Float64,
              "95% CI": pl.String, "Cases": pl.Int64, "Change": pl.Float64, "p": pl.Float64,
              "p adjusted": pl.Float64, "Pairs": pl.Int64, "Reference (pairs)": pl.Float64,
              "Run (pairs)": pl.Float64}
    ranked = [r for _, r in sorted(zip(order, rows, strict=True), key=lambda x: x[0])]
    return pl.DataFrame(ranked, schema=schema, strict=False).fill_nan(None)


def flaky_table(result: ManyRuns) -> pl.DataFrame:
    """The flaky cases with human column names, each run's outcome under its label (oldest
    first; "—" where the run has no outcome for the case), the strata last: what is read
    first comes first."""
    labels = {r.run_id: r.label for r in result.runs}
    f = result.flaky
    strata = [strata_text(json.loads(s) if s else None) for s in f["strata"].to_list()]
    return f.select(
        pl.col("case_id").alias("Case"),
        pl.format("{} of {}", "passed", "n_runs").alias("Passes"),
        (pl.col("pass_share") * 100).alias("Pass share (%)"),
        pl.col("flips").alias("Flips"),
        *[pl.col(r.run_id).fill_null("—").alias(labels[r.run_id]) for r in result.runs],
        pl.Series("Strata", strata, dtype=pl.String),
    )




def _signed_z(p: float, delta: float) -> float | None:
    """The evidence of a cell as a signed z (Compare's heatmap scale), clipped at ±4."""
    from scipy.special import ndtri

    if math.isnan(p) or math.isnan(delta):
        return None
    z = float(ndtri(1 - min(max(p, 1e-12), 1.0) / 2)) * (1 if delta > 0 else -1)
    return max(-Z_LIMIT, min(Z_LIMIT, z))


def heatmap(result: ManyRuns) -> go.Figure:
    """Slices (rows, all cases first) × runs (columns, oldest first): each cell's text is the
    run's mean, with "worse" / "better" where it differs significantly from the reference,
    above its 95% interval and n;
    colour is the signed z of the p the verdict is read from (slices: after
    Benjamini–Hochberg, so a colour never shouts louder than the correction allows; all
    cases: its own p), red worse, blue better, blank on the reference's own column."""
    runs = result.runs
    d = _digits(result.kind)
    xs = [escape(r.label) + ("<br>(reference)" if r.reference else "") for r in runs]
    order = list(dict.fromkeys(slice_label(c.slice) for c in result.cells))
    index = {(slice_label(c.slice), c.run_id): c for c in result.cells}
    z, text, hover = [], [], []
    for label in order:
        zr: list[float | None] = []
        tr: list[str] = []
        hr: list[str] = []
        for r in runs:
            c = index.get((label, r.run_id))
            if c is None or math.isnan(c.mean):
                zr.append(None)
                tr.append("")
                hr.append(f"{escape(label)}<br>{r.label}: —")
                continue
            word = verdict(result, r.run_id, c.significant, c.delta)
            p = c.p_adjusted if c.slice else c.p_value  # the p the verdict is read from
            zr.append(None if r.reference else _signed_z(p, c.delta))
            mark = "" if word == SAME else f" {word if word != REFERENCE else 'ref'}"
            tr.append(f"<b>{c.mean:.{d}f}{mark}</b><br>{_ci(c.ci_low, c.ci_high, 2)} "
                      f"n={c.n}")
            hr.append(_hover(result, label, r.label, c, word, d))
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=[escape(s) for s in order], text=text, texttemplate="%{text}",
        textfont={"size": 11},
        customdata=hover, hovertemplate="%{customdata}<extra></extra>", zmid=0,
        zmin=-Z_LIMIT, zmax=Z_LIMIT, colorscale="RdBu", xgap=1, ygap=1,
        colorbar={"title": {"text": "signed z<br>vs reference"}}, meta={"role": "series"}))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(side="top", showgrid=False)
    fig.update_layout(height=max(300, 40 * len(order) + 140),
                      margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def _hover(result: ManyRuns, slice_: str, run: str, c: Any, word: str, d: int) -> str:
    head = (f"<b>{escape(run)}</b> · {escape(slice_)}<br>{escape(result.metric)} "
            f"{c.mean:.{d}f} {_ci(c.ci_low, c.ci_high, d)}, n = {c.n}")
    if word == REFERENCE:
        return head + "<br>the reference"
    if c.n_pairs == 0 or math.isnan(c.p_value):
        return head + "<br>no case scored in both runs: not tested"
    adjusted = "" if math.isnan(c.p_adjusted) else f", adjusted {c.p_adjusted:.2g}"
    return (head + f"<br>vs reference on {c.n_pairs} shared cases: {c.reference_mean:.{d}f}"
            f" → {c.run_mean:.{d}f} ({c.delta:+.{d}f})<br>p = {c.p_value:.2g}{adjusted}: "
            f"{word}")
