"""Trends: offline metrics run after run (with releases), and online quality day by day."""

from __future__ import annotations

import streamlit as st

from evallib import queries as Q
from pages import _charts as charts
from pages import _ui as ui
from pages._common import (
    Filters,
    WarehouseView,
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    warehouse,
)
from pages._tables import human
from pages._verdicts import offline_trend_verdict, online_trend_verdict

OVERALL = "(overall)"


def _default_metric(kinds: list[str]) -> int:
    """Pass rates are the headline: start on the first binary metric."""
    return kinds.index("binary") if "binary" in kinds else 0


def _pickers(metrics: list[str], kinds: list[str], keys: list[str], prefix: str
             ) -> tuple[str, str | None]:
    """Metric and stratum selectboxes, bound to the URL as ``{prefix}metric`` / ``stratum``."""
    left, right = st.columns(2)
    metric = left.selectbox("Metric", metrics, index=_default_metric(kinds),
                            key=f"{prefix}metric", bind="query-params")
    key = right.selectbox("Split by stratum", [OVERALL, *keys], key=f"{prefix}stratum",
                          bind="query-params",
                          help="One line per value of this stratum key.")
    return metric, None if key == OVERALL else key


def offline(wh: WarehouseView, f: Filters) -> None:
    if not wh.has_offline or f.dataset is None:
        get_started(wh.root, "offline runs")
        return
    m = query(Q.metrics, f.dataset)
    keys = query(Q.strata_keys, f.dataset)["key"].to_list()
    metric, key = _pickers(m["metric"].to_list(), m["kind"].to_list(), keys, "")
    trend = query(Q.offline_trend, f.dataset, metric, key)
    ui.verdict(offline_trend_verdict(trend, metric, key))
    st.plotly_chart(charts.offline_trend(trend, metric, key), key="offline_chart",
                    config=ui.PLOT)
    st.caption(f"**{f.dataset}** — one point per run: the mean of **{human(metric)}** over "
               "its cases with a 95% interval (Wilson for pass rates, t for means). Diamonds "
               "= approved release baselines; dotted lines = runs that qualified a release; "
               "a red dashed line = the newest run when it is not approved yet. An interval "
               "is one run's uncertainty, not a test between runs.")


def online(wh: WarehouseView, f: Filters) -> None:
    days = f.days
    if not wh.has_online or days is None:
        get_started(wh.root, "online traffic")
        return
    m = query(Q.online_metrics)
    keys = query(Q.online_strata_keys)["key"].to_list()
    metric, key = _pickers(m["metric"].to_list(), m["kind"].to_list(), keys, "online_")
    daily = query(Q.online_daily, metric, days.start, days.end, key)
    releases = query(Q.online_releases, days.start, days.end)
    ui.verdict(online_trend_verdict(daily, metric, key), key="verdict_online")
    st.plotly_chart(charts.online_daily(daily, releases, metric, key), key="online_chart",
                    config=ui.PLOT)
    st.caption(f"{days.start:%Y-%m-%d} → {days.end:%Y-%m-%d} (UTC days; change in the sidebar): "
               f"daily mean of **{human(metric)}** on sampled production traces with a 95% "
               "band, and below it the number of traces scored that day "
               f"({daily['n'].sum():,} in all). Dotted lines = a release starts serving.")


leave_pages_directory_mode()
st.title("Trends")
wh, f = warehouse(), filters()
if wh.is_empty:
    get_started(wh.root, "runs and no online data")
    st.stop()
offline_tab, online_tab = st.tabs(["Offline runs", "Online traffic"],
                                  key="view", bind="query-params")
with offline_tab:
    offline(wh, f)
with online_tab:
    online(wh, f)
