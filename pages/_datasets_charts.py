"""Figures and tables of the Datasets page. No streamlit, no SQL."""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go
import polars as pl

PROMOTED, HAND = "#d62728", "#1f77b4"  # promoted from production, written by hand


def versions_figure(history: pl.DataFrame) -> go.Figure:
    """Case count of each version at its first run, a step per version; hover: hash, what
    it added, removed and changed."""
    ran = history.filter(pl.col("date").is_not_null())
    hover = [escape(f"{v} · {n} cases · +{a} ({p} promoted) −{r} ~{c} · {k} runs")
             for v, n, a, p, r, c, k in ran.select(
                 "dataset_version", "n_cases", "added", "added_promoted", "removed",
                 "changed", "n_runs").iter_rows()]
    fig = go.Figure(go.Scatter(
        x=ran["date"].to_list(), y=ran["n_cases"].to_list(), mode="lines+markers+text",
        line={"shape": "hv", "color": HAND}, marker={"size": 9}, name="cases",
        text=[v[:7] for v in ran["dataset_version"].to_list()], textposition="top left",
        customdata=hover, hovertemplate="%{x|%Y-%m-%d}<br>%{customdata}<extra></extra>",
        meta={"role": "series"}))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      showlegend=False)
    fig.update_yaxes(title_text="cases", rangemode="tozero")
    fig.update_xaxes(title_text="first run of the version")
    return fig


def growth_figure(growth: pl.DataFrame) -> go.Figure:
    """Cases added per month, stacked: promoted from production failures, written by hand."""
    fig = go.Figure()
    for col, name, color in (("promoted", "promoted from production", PROMOTED),
                             ("hand_written", "written by hand", HAND)):
        fig.add_trace(go.Bar(x=growth["month"].to_list(), y=growth[col].to_list(), name=name,
                             marker_color=color, meta={"role": "series"},
                             hovertemplate=f"%{{x}}: %{{y}} {name}<extra></extra>"))
    fig.update_layout(barmode="stack", height=300,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": 1.12, "x": 0})
    fig.update_xaxes(type="category", title_text="month")
    fig.update_yaxes(title_text="new cases")
    return fig


def history_table(history: pl.DataFrame) -> pl.DataFrame:
    """Versions newest first, as the page lists them."""
    return history.sort("date", descending=True, nulls_last=False).select(
        pl.col("dataset_version").alias("version"),
        pl.col("date").dt.strftime("%Y-%m-%d %H:%M").fill_null("not run yet")
        .alias("first run"),
        pl.col("n_cases").alias("cases"), pl.col("added").alias("+ added"),
        pl.col("added_promoted").alias("of them promoted"),
        pl.col("removed").alias("− removed"), pl.col("changed").alias("~ changed"),
        pl.col("n_runs").alias("runs"),
        pl.when(pl.col("stored")).then(pl.lit("stored"))
        .otherwise(pl.lit("from its first run")).alias("cases from"))


def diff_table(diff: pl.DataFrame) -> pl.DataFrame:
    """`queries.version_diff` for display: the change in words, the changed fields."""
    return diff.select(
        "change", "case_id", pl.col("fields").list.join(", ").alias("changed fields"),
        "input", "expected", pl.col("old_expected").alias("expected before"))
