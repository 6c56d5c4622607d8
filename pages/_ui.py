"""Streamlit pieces every page shares: the verdict box, widget defaults a click may also set,
the panel that shows one case in full, and heatmaps whose cells can be clicked.

Icons are Streamlit's Material Symbols (their font ships with Streamlit: nothing is fetched,
and no emoji font is needed); a word next to each says what it means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from pages._verdicts import Verdict

ICONS = {"bad": ":material/error:", "warn": ":material/warning:",
         "good": ":material/check_circle:", "info": ":material/info:"}
DOWNLOAD = ":material/download:"
PLOT = {"displaylogo": False}


def verdict(v: Verdict, key: str = "verdict") -> Any:
    """The page's answer, first under its pickers; returns its container so a page can add a
    link under it. Tests find it by ``key`` (class ``st-key-verdict``)."""
    box = st.container(key=key)
    show = {"bad": box.error, "warn": box.warning, "good": box.success}.get(v.tone, box.info)
    show(v.text, icon=ICONS.get(v.tone, ICONS["info"]))
    return box


def seed(key: str, options: Sequence[Any], default: Any) -> None:
    """Start the widget ``key`` on ``default`` (a URL parameter still wins on first load),
    and back on it when its value is no longer an option. Widgets seeded so are created
    without ``index=``/``default=``: Streamlit warns when a widget gets a default and a
    value from a callback too."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def columns(**labels: str | tuple[str, str]) -> dict[str, Any]:
    """Plain column labels: ``columns(n="cases", p=("p", "one-sided"))``; a tuple adds the
    header's help text."""
    out = {}
    for name, label in labels.items():
        text, help_ = label if isinstance(label, tuple) else (label, None)
        out[name] = st.column_config.Column(text, help=help_)
    return out


def _text(value: Any) -> str:
    if value is None or value != value:
        return "—"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.3g}"
    return str(value)


def case_panel(row: dict[str, Any], metric: str, *, title: str,
               sides: Sequence[tuple[str, str, str, str]], extra: Sequence[str] = ()) -> None:
    """One case in full: what was asked and expected, then each side's answer, score and
    judge's reason next to each other. ``sides``: (heading, score column, output column,
    reason column) per run; ``extra``: more columns to show under them."""
    with st.container(border=True, key="case_detail"):
        st.markdown(title)
        ask, want = st.columns(2)
        ask.caption("Input")
        ask.text(_text(row.get("input")))
        if "expected" in row:
            want.caption("Expected")
            want.text(_text(row.get("expected")))
        for col, (heading, score, output, reason) in zip(st.columns(len(sides)), sides,
                                                         strict=True):
            col.markdown(f"**{heading}** · {metric} **{_text(row.get(score))}**")
            col.caption("Output")
            col.text(_text(row.get(output)))
            if row.get(reason):
                col.caption("Judge's reason")
                col.text(_text(row.get(reason)))
        for name in extra:
            if row.get(name) not in (None, ""):
                st.caption(name)
                st.text(_text(row[name]))


def selected_row(frame: pl.DataFrame, event: Any) -> dict[str, Any] | None:
    """The row picked in a single-row dataframe (its ``event``), else the first."""
    if frame.height == 0:
        return None
    rows = getattr(getattr(event, "selection", None), "rows", None) or [0]
    return frame.row(min(rows[0], frame.height - 1), named=True)


def clickable(fig: go.Figure, cells: Sequence[tuple[Any, Any, Any, str]]) -> go.Figure:
    """Make heatmap cells clickable: a transparent marker on each cell (x, y, what a click
    picks, hover text) that a click selects (plotly selects points, not heatmap cells). The
    heatmap's own hover is switched off so the markers' shows."""
    fig.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "heatmap"})
    fig.add_trace(go.Scatter(
        x=[c[0] for c in cells], y=[c[1] for c in cells], mode="markers",
        customdata=[c[2] for c in cells], text=[c[3] for c in cells],
        hovertemplate="%{text}<extra>click to read its cases</extra>", showlegend=False,
        marker={"symbol": "square-open", "size": 22, "color": "rgba(0,0,0,0)",
                "line": {"width": 2}},
        selected={"marker": {"color": "#111", "opacity": 1}},
        unselected={"marker": {"opacity": 0}}, meta={"role": "cells"}))
    fig.update_layout(hoverdistance=-1, clickmode="event+select", dragmode=False)
    return fig


def on_cell_click(chart_key: str, apply: Callable[[Any], None]) -> Callable[[], None]:
    """A plotly on_select callback: the clicked marker's customdata goes to ``apply``."""
    def callback() -> None:
        points = st.session_state[chart_key].selection.get("points") or []
        if points and points[0].get("customdata") is not None:
            apply(points[0]["customdata"])
    return callback
