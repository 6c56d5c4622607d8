"""Runs: every run of the dataset with its key metrics, and two runs side by side."""

from __future__ import annotations

import streamlit as st

from evallib import queries as Q
from pages import _tables as tables
from pages import _ui as ui
from pages._common import (
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    run_pair,
    warehouse,
)
from pages._verdicts import runs_verdict

CARDS_PER_ROW = 5
NUM = st.column_config.NumberColumn
TEXT = st.column_config.TextColumn

leave_pages_directory_mode()
st.title("Runs")
wh, f = warehouse(), filters()
if not wh.has_offline:
    get_started(wh.root, "offline runs" if wh.has_online else "runs and no online data")
    st.stop()

runs = query(Q.runs_overview, f.dataset)
summary = query(Q.run_metric_summary, tuple(runs["run_id"].to_list()))
gates = query(Q.latest_gate_verdicts, tuple(runs["run_id"].to_list()))
all_metrics = tables.metric_order(summary)
with st.expander(f"Metric columns ({len(all_metrics)})"):
    shown = st.multiselect("Metrics", all_metrics, default=all_metrics, key="metrics",
                           bind="query-params", label_visibility="collapsed")
ui.verdict(runs_verdict(runs, gates))
kinds = dict(summary.select("metric", "kind").unique().iter_rows())
st.caption(f"{runs.height} runs of **{f.dataset}**, newest first. Each metric: the run's mean "
           "(pass rates 0–1, 1–5 scales, 0–1 scores); the pair below shows each with its 95% "
           "interval. Gate: the verdict of the run's latest `evallib gate`.")
st.dataframe(
    tables.runs_table(runs, summary, shown, gates), hide_index=True,
    key="runs_table",
    column_config={
        "approved": st.column_config.CheckboxColumn("approved", width="small", pinned=True,
                                                    help="approved release baseline"),
        "name": TEXT("run", pinned=True),
        "gate": TEXT("gate", help="verdict of the run's latest `evallib gate` "
                                  "(rows = rules × slices)"),
        "run_id": TEXT("run id"),
        "started_at": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm"),
        "release": TEXT("release", width="small"),
        "dataset_version": TEXT("dataset version"),
        "judge_version": TEXT("judge"),
        "n_cases": NUM("cases", width="small"),
        **{m: NUM(tables.human(m), format="%.2f" if kinds.get(m) == "ordinal" else "%.3f",
                  width="small", help=f"{m}: mean over the run's cases ({kinds.get(m)})")
           for m in shown},
    },
)

st.subheader("Two runs side by side")
candidate, baseline = run_pair(runs)

if candidate == baseline:
    st.info("Pick two different runs to see them side by side.")
    st.stop()
pair = tables.pair_table(summary, candidate, baseline, shown)
if note := tables.version_note(runs, candidate, baseline):
    st.warning(note, icon=":material/difference:")
cards = st.columns(min(max(pair.height, 1), CARDS_PER_ROW))
for i, row in enumerate(pair.iter_rows(named=True)):
    card = cards[i % len(cards)]
    card.metric(tables.human(row["metric"]),
                tables.interval_text(row["candidate"], None, None, row["kind"]),
                delta=None if row["delta"] is None else f"{row['delta']:+.3f}",
                help=f"baseline {row['baseline [95% CI]']}", border=True,
                delta_color="off")  # grey: an untested delta is not good or bad news yet
st.dataframe(pair, hide_index=True, key="pair_table", column_config={
    "metric": TEXT("metric", pinned=True),
    "baseline": NUM("baseline", format="%.3f"),
    "candidate": NUM("candidate", format="%.3f"),
    "delta": NUM("change", format="%+.3f", help="candidate − baseline, not tested here"),
    "n baseline": NUM("cases (baseline)", width="small"),
    "n candidate": NUM("cases (candidate)", width="small"),
})
st.warning(
    "These intervals are each run's own; overlapping or not, they do not say whether the "
    "change is real. That needs a paired test over the same cases, per slice, corrected for "
    "multiple comparisons: the **Compare** page runs it for this pair. No p-values are shown "
    "here.", icon=":material/compare_arrows:")
st.page_link("pages/compare.py", label="Compare these two runs",
             icon=":material/compare_arrows:",
             query_params={"candidate": candidate, "baseline": baseline})
