"""Plotly figures of the Slices page (and the Datasets page's mix): the cell and delta heatmaps,
the golden set's strata mix against production's. No streamlit, no SQL.

Labels from the data are HTML-escaped (plotly renders a subset of HTML). Every trace carries
``meta={"role": ...}`` (series, band, key) as in `pages._charts`.
"""

from __future__ import annotations

from html import escape

import plotly.graph_objects as go
import polars as pl

from evallib.vocabulary import MISSING

GOLDEN_COLOR, TRAFFIC_COLOR = "#1f77b4", "#2ca02c"


def _order(values: list[str | None]) -> list[str]:
    """Sorted stratum values, the missing value last."""
    present = {MISSING if v is None else v for v in values}
    return sorted(present - {MISSING}) + ([MISSING] if MISSING in present else [])


def _digits(kind: str) -> int:
    return 2 if kind == "ordinal" else 3


def cell_heatmap(grid: pl.DataFrame, metric: str, key: str, key2: str | None) -> go.Figure:
    """Values of ``key`` (rows) × values of ``key2`` (columns; one column without it), each
    cell coloured by its mean and labelled with the mean, its 95% interval and n ("small"
    under 30). From `pages._slices_tables.cell_grid`. A click selects a cell: its
    customdata is the cell's label."""
    from pages._ui import clickable

    rows = _order(grid[key].to_list())
    cols = _order(grid[key2].to_list()) if key2 else ["all"]
    index = {(r[key], r[key2] if key2 else "all"): r for r in grid.iter_rows(named=True)}
    z, text, cells = [], [], []
    for rv in rows:
        zr: list[float | None] = []
        tr: list[str] = []
        for cv in cols:
            cell = index.get((rv, cv))
            if cell is None or cell["mean"] is None:
                zr.append(None)
                tr.append("")
                continue
            d = _digits(cell["kind"])
            ci = ("" if cell["ci_low"] is None else
                  f"[{cell['ci_low']:.{d}f}, {cell['ci_high']:.{d}f}]")
            zr.append(cell["mean"])
            small = ", small" if cell["small n"] else ""
            tr.append(f"<b>{cell['mean']:.{d}f}</b><br>{ci}<br>n={cell['n']}{small}")
            cells.append((escape(cv), escape(rv), cell["cell"],
                          f"{escape(cell['cell'])}<br>{metric} {cell['mean']:.{d}f} {ci}"
                          f"<br>n = {cell['n']}"))
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(
        z=z, x=[escape(c) for c in cols], y=[escape(r) for r in rows], text=text,
        texttemplate="%{text}", colorscale="RdYlGn",
        colorbar={"title": {"text": escape(metric)}}, xgap=2, ygap=2,
        meta={"role": "series"}))
    fig.update_yaxes(autorange="reversed", title_text=escape(key))
    fig.update_xaxes(title_text=escape(key2) if key2 else "", side="top")
    fig.update_layout(height=max(260, 70 * len(rows) + 110),
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return clickable(fig, cells)


def delta_heatmap(rows: pl.DataFrame, values: dict[str, dict[str, str]], key: str,
                  key2: str | None) -> go.Figure:
    """The same grid against a baseline: each cell coloured by the signed z of its paired
    test (red worse, blue better), labelled with the delta, ● if significant after
    Benjamini–Hochberg, and n ("small" under 30). ``rows``: `pages._tables.slice_table` of
    one metric; ``values``: `pages._tables.slice_options` (label → stratum values). A click
    selects a cell: its customdata is the slice label."""
    from scipy.special import ndtri

    from pages._ui import clickable

    grid = {}
    for r in rows.iter_rows(named=True):
        v = values.get(r["slice"], {})
        grid[(v.get(key, MISSING), v.get(key2, "all") if key2 else "all")] = r
    ys = _order([k[0] for k in grid])
    xs = _order([k[1] for k in grid]) if key2 else ["all"]
    z, text, cells = [], [], []
    for yv in ys:
        zr: list[float | None] = []
        tr: list[str] = []
        for xv in xs:
            c = grid.get((yv, xv))
            if c is None or c["delta"] is None or c["delta"] != c["delta"]:
                zr.append(None)
                tr.append("")
                continue
            if c["p"] is None or c["p"] != c["p"]:  # untestable: no colour
                zr.append(None)
                tr.append("untestable")
                cells.append((escape(xv), escape(yv), c["slice"],
                              f"{escape(c['slice'])}<br>{escape(c['verdict'])}"))
                continue
            p = min(max(c["p"], 1e-12), 1.0)
            zr.append(max(-4.0, min(4.0, float(ndtri(1 - p / 2)) * (1 if c["delta"] > 0
                                                                        else -1))))
            d = _digits(c["kind"])
            mark = " ●" if c["significant"] else ""
            tr.append(f"<b>{c['delta']:+.{d}f}</b>{mark}<br>n={c['n']}"
                      + (", small" if c["small n"] else ""))
            cells.append((escape(xv), escape(yv), c["slice"],
                          f"{escape(c['slice'])}<br>{c['baseline']:.{d}f} → "
                          f"{c['candidate']:.{d}f}<br>p = {c['p']:.2g}, adjusted "
                          f"{c['p adjusted']:.2g}"))
        z.append(zr)
        text.append(tr)
    fig = go.Figure(go.Heatmap(
        z=z, x=[escape(x) for x in xs], y=[escape(y) for y in ys], text=text,
        texttemplate="%{text}", zmid=0, zmin=-4, zmax=4, colorscale="RdBu",
        colorbar={"title": {"text": "signed z"}, "tickvals": [-4, -2, 0, 2, 4],
                  "ticktext": ["-4 worse", "-2", "0", "2", "4 better"]},
        xgap=2, ygap=2, meta={"role": "series"}))
    fig.update_yaxes(autorange="reversed", title_text=escape(key))
    fig.update_xaxes(title_text=escape(key2) if key2 else "", side="top")
    fig.update_layout(height=max(260, 70 * len(ys) + 110),
                      margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return clickable(fig, cells)


def mix_bars(mixes: pl.DataFrame, key: str, key2: str | None) -> go.Figure:
    """Each stratum's share of the golden set beside its share of production traffic
    (`evallib.analysis.coverage.strata_mixes`), largest traffic share on top."""
    labels = [escape(f"{a} · {b}" if key2 else str(a)) for a, b in
              mixes.select("stratum", "stratum2").fill_null(MISSING).iter_rows()]
    fig = go.Figure()
    for col, name, color in (("golden_share", "golden set", GOLDEN_COLOR),
                             ("traffic_share", "production", TRAFFIC_COLOR)):
        n_col = "golden_n" if col == "golden_share" else "traffic_n"
        fig.add_trace(go.Bar(
            y=labels, x=mixes[col].to_list(), name=name, orientation="h",
            marker_color=color, meta={"role": "series"},
            customdata=mixes[n_col].to_list(),
            hovertemplate=f"%{{y}}<br>{name}: %{{x:.1%}} (%{{customdata:,}})<extra></extra>"))
    fig.update_layout(barmode="group", height=max(260, 34 * len(labels) + 120),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": 1.04, "x": 0})
    fig.update_xaxes(tickformat=".0%", title_text="share")
    fig.update_yaxes(autorange="reversed",
                     title_text=escape(f"{key} · {key2}" if key2 else key))
    return fig
