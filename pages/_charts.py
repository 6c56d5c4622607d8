"""Plotly figures the pages draw, from query results with 95% intervals. No streamlit, no SQL.

Labels that come from the data (stratum values, release and run names) are HTML-escaped:
plotly renders a subset of HTML in names and annotations.

Every trace carries ``meta={"role": ...}`` (series, band, count, key) so tests and readers
can tell data series from decoration.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.colors import hex_to_rgb
from plotly.subplots import make_subplots

from evallib.vocabulary import MISSING, PALETTE
from pages._tables import SMALL_N, human

RELEASE_COLOR = "rgba(120, 120, 120, 0.7)"
NEWEST_COLOR = "#d62728"
APPROVED_SYMBOL, RUN_SYMBOL = "diamond", "circle"


def series_color(i: int, alpha: float | None = None) -> str:
    """The i-th series' colour (the shared palette, cycled), optionally translucent."""
    c = PALETTE[i % len(PALETTE)]
    if alpha is None:
        return c
    r, g, b = hex_to_rgb(c)
    return f"rgba({r}, {g}, {b}, {alpha})"


def _series(df: pl.DataFrame, stratum_key: str | None) -> list[tuple[str, pl.DataFrame]]:
    """(label, rows) per line: one line overall, or one per stratum value (missing last)."""
    if stratum_key is None or "stratum" not in df.columns:
        return [("overall", df)] if df.height else []
    values = sorted(v for v in df["stratum"].unique().to_list() if v is not None)
    out = [(escape(v), df.filter(pl.col("stratum") == v)) for v in values]
    missing = df.filter(pl.col("stratum").is_null())
    return out + ([(MISSING, missing)] if missing.height else [])


def _dodge(x: pl.Series, i: int, k: int) -> list[Any]:
    """Shift series i of k sideways by a sliver of the typical gap between runs, so the
    error bars of several strata at one run stay readable (hover still names the run)."""
    if k < 2 or x.len() < 2:
        return x.to_list()
    gap: Any = x.unique().sort().diff().median()  # numbers, or a timedelta between dates
    return (x + gap * (0.1 * (i - (k - 1) / 2))).to_list() if gap is not None else x.to_list()


def _release_markers(fig: go.Figure, marks: list[tuple[Any, str]]) -> None:
    """A dotted vertical line with a label at each release (shapes, not traces)."""
    for x, label in marks:
        fig.add_shape(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                      line={"color": RELEASE_COLOR, "width": 1, "dash": "dot"})
        fig.add_annotation(x=x, xref="x", y=1, yref="paper", text=f"release {escape(label)}",
                           showarrow=False, yanchor="bottom", font={"size": 11})


def _newest_marker(fig: go.Figure, trend: pl.DataFrame) -> None:
    """Name the newest run when it is not approved: usually the candidate under review."""
    if trend.height == 0:
        return
    newest = trend.sort("started_at").row(-1, named=True)
    if newest["approved"]:
        return
    x = newest["started_at"]
    fig.add_shape(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                  line={"color": NEWEST_COLOR, "width": 1, "dash": "dash"})
    fig.add_annotation(x=x, xref="x", y=0.02, yref="paper",
                       text=f"newest: {escape(newest['name'])}", showarrow=False,
                       xanchor="right", yanchor="bottom",
                       font={"size": 11, "color": NEWEST_COLOR})


def _layout(fig: go.Figure, *, legend_title: str, height: int) -> go.Figure:
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 60, "b": 10}, hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0,
                "title": {"text": legend_title}},
    )
    return fig


def offline_trend(trend: pl.DataFrame, metric: str, stratum_key: str | None = None
                  ) -> go.Figure:
    """One point per run (mean, 95% interval as error bars), a line per stratum value;
    approved runs as diamonds, releases as dotted lines, an unapproved newest run named."""
    fig = go.Figure()
    series = _series(trend, stratum_key)
    solo = len(series) == 1  # several lines: lighter error bars keep the lines readable
    for i, (label, rows) in enumerate(series):
        mean = rows["mean"]
        approved = rows["approved"].fill_null(False).to_list()
        fig.add_trace(go.Scatter(
            x=_dodge(rows["started_at"], i, len(series)), y=mean.to_list(), name=label,
            mode="lines+markers", meta={"role": "series"},
            line={"color": series_color(i), "width": 2},
            marker={"color": series_color(i), "size": [12 if a else 7 for a in approved],
                    "symbol": [APPROVED_SYMBOL if a else RUN_SYMBOL for a in approved],
                    "line": {"width": 1, "color": "white"}},
            error_y={"type": "data", "visible": True, "thickness": 1.2 if solo else 1,
                     "width": 3 if solo else 0, "color": series_color(i, 0.6 if solo else 0.3),
                     "array": (rows["ci_high"] - mean).fill_null(0).to_list(),
                     "arrayminus": (mean - rows["ci_low"]).fill_null(0).to_list()},
            customdata=[(escape(r[0]), *r[1:]) for r in
                        rows.select("name", "run_id", "n", "ci_low", "ci_high").rows()],
            hovertemplate=(f"<b>%{{customdata[0]}}</b> ({label})<br>%{{customdata[1]}}<br>"
                           f"{metric} %{{y:.3f}} [%{{customdata[3]:.3f}}, "
                           "%{customdata[4]:.3f}]<br>n = %{customdata[2]}<extra></extra>"),
        ))
    if trend.height:
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name="approved run", meta={"role": "key"},
            marker={"symbol": APPROVED_SYMBOL, "size": 12, "color": "grey"}))
    releases = (trend.filter(pl.col("release").is_not_null())
                .unique("run_id", keep="first").sort("started_at"))
    _release_markers(fig, list(zip(releases["started_at"].to_list(),
                                   releases["release"].to_list(), strict=True)))
    _newest_marker(fig, trend)
    fig.update_yaxes(title_text=f"{metric} (mean, 95% CI)")
    fig.update_xaxes(title_text="run started")
    return _layout(fig, legend_title=stratum_key or "", height=480)


def online_daily(daily: pl.DataFrame, releases: pl.DataFrame, metric: str,
                 stratum_key: str | None = None) -> go.Figure:
    """Daily mean with its 95% interval as a band (a line per stratum value) above the
    daily number of scored traces; dotted lines where a release starts serving."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.74, 0.26],
                        vertical_spacing=0.04)
    for i, (label, rows) in enumerate(_series(daily, stratum_key)):
        days = rows["day"].to_list()
        band = rows.select(pl.col("ci_high").fill_null(pl.col("mean")),
                           pl.col("ci_low").fill_null(pl.col("mean")))
        fig.add_trace(go.Scatter(
            x=days + days[::-1], y=band["ci_high"].to_list() + band["ci_low"].to_list()[::-1],
            fill="toself", fillcolor=series_color(i, 0.18), line={"width": 0}, hoverinfo="skip",
            showlegend=False, legendgroup=label, name=f"{label} 95% CI", meta={"role": "band"},
        ), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=days, y=rows["mean"].to_list(), name=label, legendgroup=label,
            mode="lines", line={"color": series_color(i), "width": 2}, meta={"role": "series"},
            customdata=rows.select("n", "ci_low", "ci_high").rows(),
            hovertemplate=(f"%{{x|%a %Y-%m-%d}} ({label})<br>{metric} %{{y:.3f}} "
                           "[%{customdata[1]:.3f}, %{customdata[2]:.3f}]<br>"
                           "n = %{customdata[0]}<extra></extra>"),
        ), row=1, col=1)
        fig.add_trace(go.Bar(
            x=days, y=rows["n"].to_list(), name=f"{label} n", legendgroup=label,
            marker_color=series_color(i, 0.55), showlegend=False, meta={"role": "count"},
            hovertemplate=f"%{{x|%Y-%m-%d}} ({label})<br>n = %{{y}}<extra></extra>",
        ), row=2, col=1)
    start = daily["day"].min() if daily.height else None
    marks = [(_midnight(d), r) for r, d in releases.select("release", "first_day").iter_rows()
             if start is None or d > start]
    _release_markers(fig, marks)
    fig.update_layout(barmode="stack", bargap=0.1)
    fig.update_yaxes(title_text=f"{metric} (daily mean, 95% CI)", row=1, col=1)
    fig.update_yaxes(title_text="traces scored", row=2, col=1)
    return _layout(fig, legend_title=stratum_key or "", height=560)


def _midnight(d: Any) -> datetime:
    return datetime(d.year, d.month, d.day)


def slice_heatmap(slices: pl.DataFrame, metrics: list[str]) -> go.Figure:
    """Slices (rows, worst first, each with its n) × metrics (columns), coloured by the
    signed z of each paired test (red: worse, blue: better; the z scale makes a pass rate
    and a 1–5 scale comparable), the delta written in each cell, ● on those significant
    after BH. From `pages._tables.slice_table`. Clicking a cell selects it: its customdata
    is (slice label, metric)."""
    from scipy.special import ndtri

    from pages._ui import clickable

    rows = list(dict.fromkeys(slices["slice"].to_list()))
    n = dict(slices.group_by("slice").agg(pl.col("n").max()).iter_rows())
    names = {r: f"{escape(r)} (n={n[r]}{', small' if n[r] < SMALL_N else ''})" for r in rows}
    index = {(r["slice"], r["metric"]): r for r in slices.iter_rows(named=True)}
    z, text, cells = [], [], []
    for label in rows:
        zr: list[float | None] = []
        tr: list[str] = []
        for metric in metrics:
            cell = index.get((label, metric))
            if cell is None or cell["delta"] is None or cell["delta"] != cell["delta"]:
                zr.append(None)
                tr.append("")
                continue
            if cell["p"] is None or cell["p"] != cell["p"]:  # untestable: no colour
                zr.append(None)
                tr.append("untestable")
                cells.append((human(metric), names[label], [label, metric],
                              f"{escape(label)}<br>{metric}: {escape(cell['verdict'])}"))
                continue
            p = min(max(cell["p"], 1e-12), 1.0)
            signed = float(ndtri(1 - p / 2)) * (1 if cell["delta"] > 0 else -1)
            zr.append(max(-4.0, min(4.0, signed)))
            digits = 2 if cell["kind"] == "ordinal" else 3
            tr.append(f"{cell['delta']:+.{digits}f}" + (" ●" if cell["significant"] else ""))
            cells.append((human(metric), names[label], [label, metric],
                          f"{escape(label)}<br>{metric}: {cell['baseline']:.{digits}f} → "
                          f"{cell['candidate']:.{digits}f} (n = {cell['n']})<br>"
                          f"p = {cell['p']:.2g}, adjusted {cell['p adjusted']:.2g}"))
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(
        z=z, x=[human(m) for m in metrics], y=[names[r] for r in rows], text=text,
        texttemplate="%{text}",
        zmid=0, zmin=-4, zmax=4, colorscale="RdBu",
        colorbar={"title": {"text": "signed z"}, "tickvals": [-4, -2, 0, 2, 4],
                  "ticktext": ["-4 worse", "-2", "0", "2", "4 better"]},
        meta={"role": "series"}, xgap=1, ygap=1))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(side="top", tickangle=-30, automargin=True)
    fig.update_layout(height=max(260, 28 * len(rows) + 160),
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return clickable(fig, cells)
