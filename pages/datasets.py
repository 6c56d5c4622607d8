"""Datasets: each golden set's versions over time, how it grows month by month (cases
promoted from production failures vs written by hand), what changed between two versions,
its strata mix beside production traffic, and which runs used which version."""

from __future__ import annotations

from typing import cast

import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis import coverage
from evallib.analysis.golden_sets import datasets_overview
from pages import _datasets_charts as charts
from pages import _slices_charts as scharts
from pages import _slices_tables as stables
from pages import _ui as ui
from pages._common import (
    Filters,
    analysis,
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    warehouse,
)
from pages._verdicts import dataset_verdict

PLOT = {"displaylogo": False}


def versions_section(history: pl.DataFrame, growth: pl.DataFrame) -> None:
    st.subheader("Versions over time")
    newest = history.row(-1, named=True)
    cards = st.columns(4)
    cards[0].metric("Versions", history.height, border=True)
    cards[1].metric("Cases now", newest["n_cases"], border=True,
                    delta=f"{newest['n_cases'] - history['n_cases'][0]:+d} since the first",
                    delta_color="off")
    cards[2].metric("Promoted from production", int(newest["n_promoted"]), border=True,
                    help="Cases tagged `promoted` (`evallib promote`) in the newest version.")
    per_month = cast(float | None, (growth["promoted"] + growth["hand_written"]).mean()
                     if growth.height else 0)
    cards[3].metric("Growth per month", f"{per_month or 0:.0f}", border=True,
                    help="Mean new cases per month after the first version.")
    st.plotly_chart(charts.versions_figure(history), key="versions_chart", config=PLOT)
    st.dataframe(charts.history_table(history), hide_index=True, key="versions_table")
    st.caption("Each version is a content hash of its cases; its date is its first run. "
               "Added, removed and changed count against the version before it.")
    st.subheader("Growth per month")
    if growth.height:
        st.plotly_chart(charts.growth_figure(growth), key="growth_chart", config=PLOT)
        st.caption("Cases that joined the set each month: **promoted** (tagged by "
                   "`evallib promote` from failing production traces) or **written by "
                   "hand**. The first version's cases are the start, not growth.")
    else:
        st.info("One version so far: nothing has been added yet.", icon=":material/info:")


def diff_section(history: pl.DataFrame) -> None:
    st.subheader("What changed between two versions")
    ids = history.sort("date", descending=True, nulls_last=False)["dataset_version"].to_list()
    if len(ids) < 2:
        st.info("One version so far: nothing to compare.", icon=":material/info:")
        return
    left, right = st.columns(2)
    new = left.selectbox("Newer", ids, key="new", bind="query-params",
                         index=0)
    rest = [v for v in ids if v != new]
    old = right.selectbox("Older", rest, key="old", bind="query-params",
                          index=0)
    diff = query(Q.version_diff, old, new)
    counts = dict(diff.group_by("change").len().iter_rows())
    st.markdown(f"**{old} → {new}**: {counts.get('added', 0)} added · "
                f"{counts.get('removed', 0)} removed · {counts.get('changed', 0)} changed")
    st.dataframe(charts.diff_table(diff), hide_index=True, key="diff_table")


def mix_section(version: str, f: Filters) -> None:
    st.subheader("Strata mix beside production")
    days = f.days
    if days is None:
        st.info("No production traffic in this warehouse to compare the mix with.",
                icon=":material/info:")
        return
    keys = query(Q.strata_keys, f.dataset)["key"].to_list()
    if not keys:
        st.info("The cases have no strata.", icon=":material/info:")
        return
    key = st.selectbox("Stratum", keys, key="key", bind="query-params",
                       index=0)
    traffic = query(Q.online_strata_mix, days.start, days.end, key, None)
    mixes = coverage.strata_mixes(query(Q.version_strata_mix, version, key, None), traffic)
    st.caption(f"Version `{version}` (the newest) against production traces "
               f"{days.start:%Y-%m-%d} → {days.end:%Y-%m-%d} (sidebar days); the Slices page "
               "weighs each metric by the traffic mix.")
    st.plotly_chart(scharts.mix_bars(mixes, key, None), key="mix_chart", config=PLOT)
    st.dataframe(stables.mix_table(mixes, key, None), hide_index=True, key="mix_table",
                 column_config={c: st.column_config.NumberColumn(format="percent")
                                for c in ("golden set", "production")})


def runs_section(runs: pl.DataFrame) -> None:
    st.subheader("Which runs used which version")
    st.dataframe(runs.select(pl.col("dataset_version").alias("version"), "name", "run_id",
                             "model", "started_at", "approved"),
                 hide_index=True, key="runs_table")


leave_pages_directory_mode()
st.title(":material/dataset: Datasets")
wh, f = warehouse(), filters()
if not wh.has_offline or f.dataset is None:
    get_started(wh.root, "golden sets (runs)")
    st.stop()
history, growth, runs = analysis(datasets_overview, f.dataset)
if not history.height:
    st.info(f"No version of {f.dataset} is known.", icon=":material/info:")
    st.stop()
ui.verdict(dataset_verdict(f.dataset, history, runs))
st.caption(f"Golden set **{f.dataset}** (pick another in the sidebar). "
           "`evallib datasets` prints the same facts.")
versions_section(history, growth)
diff_section(history)
mix_section(history.sort("date", nulls_last=False)["dataset_version"][-1], f)
runs_section(runs)
