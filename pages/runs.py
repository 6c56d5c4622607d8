"""Runs: every run of the dataset with its key metrics, and two runs side by side."""

from __future__ import annotations

import streamlit as st

from pages import _tables as tables
from pages._common import (
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    run_pair,
    warehouse,
)

CARDS_PER_ROW = 5

leave_pages_directory_mode()
st.title("🏁 Runs")
wh, f = warehouse(), filters()
if not wh.has_offline:
    get_started(wh.root, "offline runs" if wh.has_online else "runs and no online data")
    st.stop()

runs = query("runs_overview", f.dataset)
summary = query("run_metric_summary", tuple(runs["run_id"].to_list()))
gates = query("latest_gate_verdicts", tuple(runs["run_id"].to_list()))
all_metrics = tables.metric_order(summary)
with st.expander(f"Metric columns ({len(all_metrics)})"):
    shown = st.multiselect("Metrics", all_metrics, default=all_metrics, key="metrics",
                           bind="query-params", label_visibility="collapsed")
st.caption(f"{runs.height} runs of **{f.dataset}**, newest first. Each metric is the run's "
           "mean with its 95% interval (Wilson for pass rates, t for means). ✅ = approved "
           "release baseline; gate = the verdict of the run's latest `evallib gate`.")
st.dataframe(
    tables.runs_table(runs, summary, shown, gates), hide_index=True,
    key="runs_table",
    column_config={
        "approved": st.column_config.TextColumn("✅", width="small", pinned=True,
                                                help="approved release baseline"),
        "name": st.column_config.TextColumn(pinned=True),
        "gate": st.column_config.TextColumn(
            "gate", help="verdict of the run's latest `evallib gate` (rows = rules × slices)"),
        "run_id": st.column_config.TextColumn("run"),
        "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
        "dataset_version": st.column_config.TextColumn("version"),
        "judge_version": st.column_config.TextColumn("judge"),
        "n_cases": st.column_config.NumberColumn("cases"),
    },
)

st.subheader("Two runs side by side")
candidate, baseline = run_pair(runs)

if candidate == baseline:
    st.info("Pick two different runs to see them side by side.")
    st.stop()
pair = tables.pair_table(summary, candidate, baseline, shown)
if note := tables.version_note(runs, candidate, baseline):
    st.warning(note, icon="🧾")
cards = st.columns(min(max(pair.height, 1), CARDS_PER_ROW))
for i, row in enumerate(pair.iter_rows(named=True)):
    card = cards[i % len(cards)]
    card.metric(row["metric"], tables.interval_text(row["candidate"], None, None, row["kind"]),
                delta=None if row["delta"] is None else f"{row['delta']:+.3f}",
                help=f"baseline {row['baseline [95% CI]']}", border=True,
                delta_color="off")  # grey: an untested delta is not good or bad news yet
st.dataframe(pair, hide_index=True, column_config={
    "baseline": st.column_config.NumberColumn(format="%.3f"),
    "candidate": st.column_config.NumberColumn(format="%.3f"),
    "delta": st.column_config.NumberColumn("delta (cand − base)", format="%+.3f"),
})
st.warning(
    "These intervals are each run's own; overlapping or not, they do not say whether the "
    "delta is real. That needs a paired test over the same cases, per slice, corrected for "
    "multiple comparisons: the **Compare** page runs it for this pair. No p-values are shown "
    "here.", icon="⚖️")
st.page_link("pages/compare.py", label="Compare these two runs", icon="⚖️",
             query_params={"candidate": candidate, "baseline": baseline})
