"""Plotly figures of the Online and Correlation pages. No streamlit, no SQL.

The correlation, agreement and drift figures are the monthly report's own
(`evallib.analysis.report`), so the page and the document show the same pictures. Labels from the
data are HTML-escaped; every data trace carries ``meta={"role": "series"}`` (bands: "band",
counts: "count") as in `pages._charts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from html import escape
from typing import Any, cast

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from evallib.analysis.drift import DriftResult
from evallib.analysis.monitor import Alert
from evallib.analysis.report import (
    agreement_figure,
    binned_figure,
    correlation_trend_figure,
    drift_figure,
    release_figure,
)
from evallib.vocabulary import MISSING
from pages._charts import series_color

__all__ = ["agreement_figure", "binned_figure", "correlation_trend_figure", "cost",
           "drift_distribution", "drift_figure", "feedback", "latency", "rates",
           "release_figure", "volume_quality"]

ALERT_FILL = "rgba(214, 39, 40, 0.10)"


def _groups(df: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """(label, rows) per group of a split frame: 'all traffic' when not split."""
    if df.height == 0:
        return []
    if df["grp"].null_count() == df.height:
        return [("all traffic", df)]
    values = sorted(v for v in df["grp"].unique().to_list() if v is not None)
    out = [(escape(str(v)), df.filter(pl.col("grp") == v)) for v in values]
    missing = df.filter(pl.col("grp").is_null())
    return out + ([(MISSING, missing)] if missing.height else [])


def _figure(rows: int, titles: Sequence[str], height: int) -> go.Figure:
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=list(titles))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      hovermode="x unified",
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "x": 0})
    return fig


def _mark_alerts(fig: go.Figure, alerts: Sequence[Alert], signals: Sequence[str],
                 hourly: bool) -> None:
    """Shade the days of alerts on these signals (not on hourly views: a day is wider)."""
    if hourly:
        return
    for a in alerts:
        if a.signal in signals or any(a.signal.startswith(s) for s in signals):
            fig.add_vrect(x0=datetime.combine(a.first_day, time()),
                          x1=datetime.combine(a.last_day + timedelta(days=1), time()),
                          fillcolor=ALERT_FILL, line_width=0, layer="below")


def _line(fig: go.Figure, x: list[Any], y: list[Any], name: str, i: int, row: int, *,
          dash: str = "solid", show: bool = True, fmt: str = ".3f") -> None:
    fig.add_trace(go.Scatter(
        x=x, y=y, name=name, legendgroup=name, showlegend=show, mode="lines",
        line={"color": series_color(i), "width": 2, "dash": dash}, meta={"role": "series"},
        hovertemplate=f"{name}: %{{y:{fmt}}}<extra></extra>"), row=row, col=1)


def volume_quality(table: pl.DataFrame, quality: pl.DataFrame, metric: str | None,
                   alerts: Sequence[Alert] = (), hourly: bool = False) -> go.Figure:
    """The chosen online score's mean per bucket with its 95% band (a line per group),
    above the number of sampled traces."""
    title = f"{escape(metric)} (mean, 95% CI)" if metric else "no online score yet"
    fig = _figure(2, [title, "sampled traces"], 520)
    fig.update_layout(barmode="stack")
    q = quality.filter(pl.col("metric") == metric)
    for i, (label, rows) in enumerate(_groups(q)):
        x = rows["bucket"].to_list()
        hi = rows["ci_high"].fill_null(rows["mean"]).to_list()
        lo = rows["ci_low"].fill_null(rows["mean"]).to_list()
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself",
                                 fillcolor=series_color(i, 0.18), line={"width": 0},
                                 hoverinfo="skip", showlegend=False, legendgroup=label,
                                 meta={"role": "band"}), row=1, col=1)
        _line(fig, x, rows["mean"].to_list(), label, i, 1)
    for i, (label, rows) in enumerate(_groups(table)):
        fig.add_trace(go.Bar(x=rows["bucket"].to_list(), y=rows["n"].to_list(), name=label,
                             legendgroup=label, showlegend=False, meta={"role": "count"},
                             marker_color=series_color(i, 0.6),
                             hovertemplate=f"{label}: %{{y}} traces<extra></extra>"),
                      row=2, col=1)
    _mark_alerts(fig, alerts, [f"quality:{metric}"], hourly)
    return fig


def latency(table: pl.DataFrame, alerts: Sequence[Alert] = (), hourly: bool = False,
            axis: str = "clipped") -> go.Figure:
    """p50 / p95 / p99 latency (ms); split: p50 dotted and p95 solid per group. ``axis``:
    "clipped" (up to 1.3 × the highest p95, so rare p99 spikes of timeouts do not flatten
    the rest; the spikes' top is named), "log", or "full"."""
    fig = _figure(1, ["latency (ms)"], 360)
    groups = _groups(table)
    for i, (label, rows) in enumerate(groups):
        x = rows["bucket"].to_list()
        wanted = ("50", "95", "99") if len(groups) == 1 else ("50", "95")
        for q in wanted:
            name = f"p{q}" if len(groups) == 1 else f"{label} p{q}"
            dash = {"50": "dot", "95": "solid", "99": "dash"}[q]
            _line(fig, x, rows[f"latency_p{q}"].to_list(), name,
                  i if len(groups) > 1 else wanted.index(q), 1, dash=dash, fmt=",.0f")
    _mark_alerts(fig, alerts, ["latency"], hourly)
    if axis == "log":
        fig.update_yaxes(type="log", title_text="ms (log scale)")
    elif axis == "clipped" and table.height:
        p95 = cast(float | None, table["latency_p95"].max())
        top = max(cast(float, v) for v in (table["latency_p99"].max(),
                                           table["latency_p50"].max(), 0) if v is not None)
        if p95 is not None and top > 1.3 * p95:
            fig.update_yaxes(range=[0, 1.3 * p95], title_text="ms (clipped)")
            fig.add_annotation(xref="paper", yref="paper", x=1, y=1, showarrow=False,
                               xanchor="right", yanchor="bottom", font={"size": 11},
                               text=f"clipped: p99 reaches {top:,.0f} ms")
    return fig


def rates(table: pl.DataFrame, alerts: Sequence[Alert] = (), hourly: bool = False
          ) -> go.Figure:
    """Error, refusal/fallback and tool-error rates (a line per group in each)."""
    signals = (("error_rate", "errors"), ("refusal_rate", "refusals / fallbacks"),
               ("tool_error_rate", "tool errors"))
    fig = _figure(3, [t for _, t in signals], 620)
    for i, (label, rows) in enumerate(_groups(table)):
        for row, (col, _) in enumerate(signals, start=1):
            _line(fig, rows["bucket"].to_list(), rows[col].to_list(), label, i, row,
                  show=row == 1, fmt=".2%")
    for row in (1, 2, 3):
        fig.update_yaxes(tickformat=".1%", row=row, col=1)
    _mark_alerts(fig, alerts, [s for s, _ in signals], hourly)
    return fig


def cost(table: pl.DataFrame, alerts: Sequence[Alert] = (), hourly: bool = False
         ) -> go.Figure:
    """Cost per request and per successful task (USD)."""
    fig = _figure(2, ["cost per request (USD)", "cost per successful task (USD)"], 460)
    for i, (label, rows) in enumerate(_groups(table)):
        x = rows["bucket"].to_list()
        _line(fig, x, rows["cost_per_request"].to_list(), label, i, 1, fmt=".5f")
        _line(fig, x, rows["cost_per_success"].to_list(), label, i, 2, show=False,
              fmt=".5f")
    _mark_alerts(fig, alerts, ["cost"], hourly)
    return fig


def feedback(table: pl.DataFrame, hourly: bool = False) -> go.Figure:
    """Thumbs-up share, mean rating and explicit feedback per 100 traces."""
    fig = _figure(3, ["thumbs-up share", "mean rating (1–5)", "feedback per 100 traces"],
                  560)
    for i, (label, rows) in enumerate(_groups(table)):
        x = rows["bucket"].to_list()
        _line(fig, x, rows["thumbs_up_share"].to_list(), label, i, 1, fmt=".1%")
        _line(fig, x, rows["mean_rating"].to_list(), label, i, 2, show=False, fmt=".2f")
        _line(fig, x, rows["feedback_per_100"].to_list(), label, i, 3, show=False,
              fmt=".1f")
    fig.update_yaxes(tickformat=".0%", row=1, col=1)
    return fig


def drift_distribution(d: DriftResult) -> go.Figure:
    """Reference against window shares of one feature (its categories or PSI bins)."""
    fig = go.Figure()
    labels = [escape(b[0]) for b in d.bins]
    for i, (name, idx) in enumerate((("reference", 1), ("window", 2))):
        fig.add_trace(go.Bar(x=labels, y=[b[idx] for b in d.bins], name=name,
                             marker_color=series_color(i, 0.8), meta={"role": "series"},
                             hovertemplate=f"{name}: %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="group", height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": f"{escape(d.feature)}: {escape(d.moved)}",
                             "font": {"size": 14}})
    fig.update_yaxes(tickformat=".0%", title_text="share")
    return fig
