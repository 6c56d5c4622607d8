"""Runs × slices: up to ten runs of the dataset side by side on one metric, per slice, each
against a reference run (Compare's paired test, one Benjamini–Hochberg family per view),
and the cases whose outcome flips from run to run. Everything chosen is in the URL."""

from __future__ import annotations

import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis.export import to_csv
from evallib.analysis.many_runs import (
    MAX_RUNS,
    compare_many,
    default_reference,
    default_runs,
    headline,
)
from pages import _many_runs_view as view
from pages import _ui as ui
from pages._common import (
    analysis,
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    url_choice,
    warehouse,
)
from pages._tables import run_labels
from pages._verdicts import Verdict

PLOT = {"displaylogo": False}


def pick_runs(runs: pl.DataFrame) -> tuple[list[str], str]:
    """The runs (URL ``runs``, repeated; default: the newest and the last five releases)
    and the reference (URL ``reference``; default: the newest release before the newest
    run), written back to the URL so a link always reproduces the view."""
    labels = run_labels(runs)
    ids = list(labels)
    wanted = [r for r in st.query_params.get_all("runs") if r in labels][:MAX_RUNS]
    chosen = st.multiselect(
        "Runs", ids, default=wanted or default_runs(runs), format_func=labels.__getitem__,
        max_selections=MAX_RUNS, key="pick_runs",
        help=f"Up to {MAX_RUNS} runs of the dataset. Default: the newest run and the last "
             "five approved releases.")
    chosen = [r for r in reversed(ids) if r in set(chosen)]  # oldest first
    if not chosen:
        st.query_params["runs"] = []
        st.info("Pick runs to compare.", icon=":material/view_column:")
        st.stop()
    reference = st.selectbox(
        "Reference", chosen, format_func=labels.__getitem__, key="pick_reference",
        index=chosen.index(url_choice(chosen, "reference", default_reference(runs, chosen))),
        help="Every other run is tested against this one. Default: the newest approved "
             "release before the newest run.")
    st.query_params["runs"], st.query_params["reference"] = chosen, reference
    return chosen, reference


leave_pages_directory_mode()
st.title(":material/view_column: Runs × slices")
wh, f = warehouse(), filters()
if not wh.has_offline:
    get_started(wh.root, "offline runs" if wh.has_online else "runs and no online data")
    st.stop()
runs = query(Q.runs_overview, f.dataset)
if runs.height < 2:
    st.info(f"**{f.dataset}** has {runs.height} run; a comparison needs two.",
            icon=":material/view_column:")
    st.stop()

chosen, reference = pick_runs(runs)
m = query(Q.metrics, f.dataset)
names, kinds = m["metric"].to_list(), m["kind"].to_list()
left, right = st.columns(2)
metric = left.selectbox("Metric", names, key="metric", bind="query-params",
                        index=kinds.index("binary") if "binary" in kinds else 0)
keys = query(Q.strata_keys, f.dataset)["key"].to_list()
by = right.multiselect("Slice by", keys, default=keys[:2], key="by", bind="query-params",
                       max_selections=2,
                       help="Stratum keys, crossed: two keys slice by every pair of values.")

result = analysis(compare_many, tuple(chosen), reference, metric, tuple(by))
worse = [c for c in result.cells if c.significant and c.delta < 0]
ui.verdict(Verdict("bad" if worse else "good", headline(result)))
st.caption(
    f"Each run against **{next(r.label for r in result.runs if r.reference)}** "
    f"(reference) on the cases both scored, with Compare's paired test ({result.test}). "
    f"**One Benjamini–Hochberg family for this view: the {result.n_tests} run × slice tests "
    f"shown**; all cases are each run's own test, at α = {result.alpha:g}. Cell text: the "
    "run's own mean over the cases it scored; 'worse' / 'better' = significantly different "
    "from the reference. Colour: the signed z of the p a verdict is read from (slices: "
    "adjusted), red worse, blue better. Every column shares the reference's own noise: when "
    "several runs differ from it in the same slice, suspect the reference.")
for w in result.warnings:
    st.warning(w, icon=":material/warning:")

heat, table = st.tabs(["Heatmap", "Table"])
heat.plotly_chart(view.heatmap(result), key="runs_heatmap", config=PLOT)
cells = view.cell_table(result)
table.dataframe(cells, hide_index=True, key="cells_table", column_config={
    "Verdict": st.column_config.TextColumn(pinned=True),
    "Run": st.column_config.TextColumn(pinned=True),
    "Mean": st.column_config.NumberColumn(format="%.3f"),
    "Reference (pairs)": st.column_config.NumberColumn(format="%.3f"),
    "Run (pairs)": st.column_config.NumberColumn(format="%.3f"),
    "Change": st.column_config.NumberColumn("Change vs reference", format="%+.3f",
                                            help="The run minus the reference, over the "
                                                 "cases both scored."),
    "p": st.column_config.NumberColumn(format="%.2g"),
    "p adjusted": st.column_config.NumberColumn(format="%.2g")})
table.download_button("Every cell (CSV)", to_csv(cells), key="download_cells",
                      icon=":material/download:", mime="text/csv",
                      file_name=f"runs-x-slices-{metric}.csv")

st.subheader("Flaky across runs")
flaky = view.flaky_table(result)
if flaky.height == 0 and kinds[names.index(metric)] != "binary":
    st.info(f"**{metric}** has no pass flags: no case passes or fails.",
            icon=":material/info:")
else:
    st.caption(f"Cases that pass in some of these {len(result.runs)} runs and fail in "
               f"others: **{flaky.height}**, least often passing first. A pass is the "
               "score's pass flag (a binary score of 1 without one). Flips: outcome changes "
               "from one run to the next, oldest first.")
    st.dataframe(flaky, hide_index=True, key="flaky_table", column_config={
        "Case": st.column_config.TextColumn(pinned=True),
        "Pass share (%)": st.column_config.NumberColumn(format="%.0f%%")})
    st.download_button(f"These {flaky.height} cases (CSV)", to_csv(flaky),
                       key="download_flaky", icon=":material/download:", mime="text/csv",
                       file_name=f"flaky-{metric}.csv")
