"""Plotly figures of the RAG page: retrieval at every cut k, and failure attribution. No
streamlit, no SQL.

Labels from the data are HTML-escaped (plotly renders a subset of HTML). Every trace carries
``meta={"role": ...}`` as in `pages._charts`.
"""

from __future__ import annotations

from html import escape
from typing import Any

import plotly.graph_objects as go
import polars as pl

from evallib.analysis.rag import CLASSES

CLASS_COLORS = {"retrieval": "#ff7f0e", "both": "#d62728", "generation": "#9467bd",
                "other": "#7f7f7f"}
CURVES = {"recall": ("recall@k", "#1f77b4"), "hit_rate": ("hit rate@k", "#17becf"),
          "ndcg": ("nDCG@k", "#2ca02c"), "mrr": ("MRR@k", "#ff7f0e"),
          "precision": ("precision@k", "#9467bd")}


def retrieval_curve(metrics: pl.DataFrame, k: int) -> go.Figure:
    """recall, hit rate, nDCG, MRR and precision at every cut k (`queries.retrieval_metrics`
    with intervals), each with its 95% interval as error bars; the chosen k marked."""
    fig = go.Figure()
    for name, (label, color) in CURVES.items():
        rows = metrics.filter(pl.col("metric") == name).sort("k")
        if rows.height == 0:
            continue
        mean = rows["mean"]
        fig.add_trace(go.Scatter(
            x=rows["k"].to_list(), y=mean.to_list(), name=label, mode="lines+markers",
            line={"color": color, "width": 2}, meta={"role": "series"},
            error_y={"type": "data", "visible": True, "thickness": 1, "width": 3,
                     "array": (rows["ci_high"] - mean).fill_null(0).to_list(),
                     "arrayminus": (mean - rows["ci_low"]).fill_null(0).to_list()},
            customdata=rows.select("n", "ci_low", "ci_high").rows(),
            hovertemplate=(f"{label} at k=%{{x}}: %{{y:.3f}} [%{{customdata[1]:.3f}}, "
                           "%{customdata[2]:.3f}]<br>n = %{customdata[0]}<extra></extra>")))
    fig.add_vline(x=k, line={"color": "grey", "dash": "dot"},
                  annotation_text=f"k = {k} (context)", annotation_position="bottom right")
    fig.update_xaxes(title_text="k (top k retrieved documents)", dtick=1)
    fig.update_yaxes(title_text="mean over cases (95% CI)", range=[0, 1.05])
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      legend={"orientation": "h", "y": 1.1, "x": 0})
    return fig


def attribution_bars(table: pl.DataFrame, base: pl.DataFrame | None = None,
                     labels: tuple[str, str] = ("baseline", "run")) -> go.Figure:
    """Failing cases per stratum (a bar each, overall = "all") split by class, each part
    labelled with its count and share. From `evallib.analysis.rag.attribution_table`; with ``base``
    (the baseline's table) each stratum gets two bars, the baseline's above the run's."""
    strata = list(dict.fromkeys(table["stratum"].to_list()))
    sides = [(labels[1], table)] if base is None else [(labels[0], base), (labels[1], table)]
    ys = [[s for s in strata for _ in sides], [name for _ in strata for name, _ in sides]] \
        if base is not None else [escape(s) for s in strata]
    fig = go.Figure()
    for cls in CLASSES:
        n, share = [], []
        for s in strata:
            for _, frame in sides:
                row = frame.filter((pl.col("stratum") == s) & (pl.col("class") == cls))
                n.append(int(row["n"][0]) if row.height else 0)
                share.append(row["share"][0] if row.height else None)
        fig.add_trace(go.Bar(
            y=ys if base is None else [[escape(v) for v in ys[0]], ys[1]], x=n, name=cls,
            orientation="h", marker_color=CLASS_COLORS[cls],
            meta={"role": "series", "class": cls},
            text=[f"{v} ({s:.0%})" if v and s is not None else "" for v, s in
                  zip(n, share, strict=True)],
            textposition="inside", insidetextanchor="middle",
            customdata=[_pct(s) for s in share],
            hovertemplate=f"%{{y}}<br>{cls}: %{{x}} failing (%{{customdata}})<extra></extra>"))
    rows = len(strata) * len(sides)
    fig.update_layout(barmode="stack", height=max(180, 34 * rows + 110),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": 1.08, "x": 0, "traceorder": "normal"})
    fig.update_xaxes(title_text="failing cases")
    fig.update_yaxes(autorange="reversed")
    return fig


def _pct(share: Any) -> str:
    return "—" if share is None else f"{share:.0%} of attributed failures"
