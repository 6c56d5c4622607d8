"""Compare: did the candidate get worse than its baseline, where, and is it real or noise?

Paired tests per metric over the cases both runs scored; per slice, corrected for testing
every slice × metric (Benjamini–Hochberg); then the cases behind any slice, and CSV.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from evallib.compare import CASE_FIELDS, min_detectable, power_line
from evallib.export import to_csv
from pages import _charts as charts
from pages import _tables as tables
from pages._common import (
    comparison,
    failures_csv,
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    run_pair,
    warehouse,
)

ALL_CASES = "All cases"
ALPHA = 0.05


def _show_slice() -> None:
    """A row picked in the slice table becomes the case list's slice and metric."""
    rows = st.session_state["slice_table"].selection.rows
    if rows:
        picked = st.session_state["_slice_rows"][rows[0]]
        st.session_state["case_slice"], st.session_state["case_metric"] = picked


leave_pages_directory_mode()
st.title("⚖️ Compare")
wh, f = warehouse(), filters()
if not wh.has_offline:
    get_started(wh.root, "offline runs" if wh.has_online else "runs and no online data")
    st.stop()

runs = query("runs_overview", f.dataset)
if runs.height < 2:
    st.info(f"**{f.dataset}** has {runs.height} run; a comparison needs two.", icon="⚖️")
    st.stop()

# --- which two runs, sliced how (all in the URL, so a link reproduces the view) ----------
candidate, baseline = run_pair(runs)
keys = query("strata_keys", f.dataset)["key"].to_list()
by = st.multiselect("Slice by", keys, default=keys[:2], key="by", bind="query-params",
                    help="Stratum keys, crossed: two keys slice by every pair of values.")
NOT_CLUSTERED = "no clustering"
cluster = st.selectbox(
    "Cluster by", [NOT_CLUSTERED, *keys, *CASE_FIELDS], key="cluster", bind="query-params",
    help="Cases that share this key (a conversation, a document, the same input) are not "
         "independent: every test becomes the clustered t (CR2, Bell–McCaffrey df).")
if candidate == baseline:
    st.info("Pick two different runs.")
    st.stop()

result = comparison(candidate, baseline, (tuple(by),) if by else (), ALPHA,
                    None if cluster == NOT_CLUSTERED else cluster)
if result.cluster:
    st.caption(f"Clustered by **{result.cluster}** ({result.n_clusters} clusters): each "
               "test below is the clustered t on the mean difference (CR2 standard error, "
               "Bell–McCaffrey degrees of freedom), not the per-case test.")
if not result.comparable:
    st.error("**Not comparable.** " + " ".join(
        w + "." for w in result.warnings if w.startswith("different")), icon="🚫")
for w in result.warnings:
    if not w.startswith("different"):
        st.warning(w, icon="🧮")

gate = query("gate_results", candidate)
if gate.height:
    problems = tables.gate_failures(gate)
    n_failed = problems.filter(problems["status"] == "fail").height
    against = gate["baseline_id"][0]
    when = f"{gate['created_at'][0]:%Y-%m-%d %H:%M}"
    if n_failed:
        st.error(f"**Release gate failed** ({when}, against `{against}`): {n_failed} "
                 "rule row(s) failed.", icon="🚦")
    else:
        st.success(f"**Release gate passed** ({when}, against `{against}`).", icon="🚦")
    if problems.height:
        st.dataframe(problems, hide_index=True, key="gate_failures")

# --- headline: per metric over every common case -----------------------------------------
headline = tables.metric_headline(result)
metric_names = headline["metric"].to_list()
if not metric_names:
    st.info("The two runs have no metric scored on the same cases.")
    st.stop()
st.subheader("Overall")
st.caption(f"{result.cases.get('common', 0)} cases in common. Each metric: a paired test over "
           "the cases both runs scored (McNemar mid-p for pass rates, Wilcoxon signed-rank "
           "for 1–5 scales, skew-corrected paired t otherwise), the delta's 95% interval "
           "(Tango's for pass rates), and how many cases went down, stayed or went up. "
           f"Significant at α = {ALPHA:g} after Benjamini–Hochberg over the metrics.")
cards = st.columns(min(max(headline.height, 1), 5))
for i, row in enumerate(headline.iter_rows(named=True)):
    digits = 2 if row["kind"] == "ordinal" else 3
    cards[i % len(cards)].metric(
        f"{row['verdict'].split()[0]} {row['metric']}", f"{row['candidate']:.{digits}f}",
        delta=f"{row['delta']:+.{digits}f}", border=True,
        delta_color="normal" if row["verdict"] != tables.SAME else "off",
        help=f"baseline {row['baseline']:.{digits}f}; {row['verdict']} (p = {row['p']:.2g}); "
             f"{row['regressed']} cases down, {row['improved']} up")
st.dataframe(headline, hide_index=True, key="headline", column_config={
    "baseline": st.column_config.NumberColumn(format="%.3f"),
    "candidate": st.column_config.NumberColumn(format="%.3f"),
    "delta": st.column_config.NumberColumn("delta (cand − base)", format="%+.3f"),
    "p": st.column_config.NumberColumn(format="%.3g"),
    "detectable drop": st.column_config.NumberColumn(
        format="%.3f", help="The smallest drop of the mean this n detects with 80% power: "
        "a smaller real drop can hide behind 'no significant change'."),
})

# --- where: slices ---------------------------------------------------------------------------
st.subheader("Slices")
slices = tables.slice_table(result)
if not by:
    st.info("Choose stratum keys under **Slice by** to test every slice.")
elif slices.height == 0:
    st.info(f"No compared case has the stratum key(s) {', '.join(by)}.")
else:
    n_worse = slices.filter(slices["verdict"] == tables.WORSE).height
    untestable = sum(not s.testable for s in result.slices)
    st.caption(f"{slices.height} tests (slices × metrics), Benjamini–Hochberg adjusted over "
               f"the {slices.height - untestable} testable: **{n_worse}** significantly "
               f"worse; {untestable} untestable (one case, no case changed, or too few "
               f"changed to reach α) are not counted. ⚠️ = fewer than {tables.SMALL_N} cases "
               "(only large drops can show). Worst first.")
    heat, table = st.tabs(["Heatmap", "Table"])
    st.session_state["_slice_rows"] = list(slices.select("slice", "metric").iter_rows())
    heat.plotly_chart(charts.slice_heatmap(slices, metric_names), key="slice_heatmap",
                      config={"displaylogo": False})
    heat.caption("Colour: the signed z of each slice's paired test (red worse, blue better; "
                 "comparable across a pass rate and a 1–5 scale). ● = significant after "
                 "Benjamini–Hochberg; ⚠️ = small slice. Pick a slice below (or select a row "
                 "of the table) to read its cases.")
    table.dataframe(slices.drop("significant"), hide_index=True, key="slice_table",
                    on_select=_show_slice, selection_mode="single-row",
                    column_config={
                        "baseline": st.column_config.NumberColumn(format="%.3f"),
                        "candidate": st.column_config.NumberColumn(format="%.3f"),
                        "delta": st.column_config.NumberColumn(format="%+.3f"),
                        "p": st.column_config.NumberColumn(format="%.3g"),
                        "p adjusted": st.column_config.NumberColumn(format="%.3g"),
                    })

# --- the cases behind a number -----------------------------------------------------------
st.subheader("Cases")
options = tables.slice_options(result)
worst = slices.row(0, named=True) if slices.height else None
default_metric = worst["metric"] if worst and worst["significant"] else metric_names[0]
default_slice = worst["slice"] if worst and worst["significant"] else ALL_CASES
c1, c2, c3 = st.columns([1, 2, 2])
metric = c1.selectbox("Metric", metric_names, key="case_metric", bind="query-params",
                      index=metric_names.index(default_metric))
slice_names = [ALL_CASES, *options]
chosen = c2.selectbox("Slice", slice_names, key="case_slice", bind="query-params",
                      index=slice_names.index(default_slice))
status = c3.segmented_control("Cases that", ["regressed", "improved", "unchanged", "all"],
                              default="regressed", key="case_status", bind="query-params",
                              required=True)
where = options.get(chosen)
everything = tables.case_table(query("case_scores", candidate, baseline, metric), metric, where,
                               None)
cases = everything if status == "all" else everything.filter(everything["status"] == status)
kind = dict(headline.select("metric", "kind").iter_rows()).get(metric, "continuous")
paired = everything.drop_nulls(["baseline", "candidate"])
base = np.asarray(paired["baseline"].to_list(), dtype=float)
cand = np.asarray(paired["candidate"].to_list(), dtype=float)
st.caption(f"**{metric}**, {chosen.lower() if chosen == ALL_CASES else chosen}: "
           f"{power_line(kind, base.size, min_detectable(kind, base, cand, ALPHA))}.")
st.dataframe(cases, hide_index=True, key="cases", column_config={
    "baseline": st.column_config.NumberColumn(format="%.3g"),
    "candidate": st.column_config.NumberColumn(format="%.3g"),
    "delta": st.column_config.NumberColumn(format="%+.3g"),
})
d1, d2 = st.columns(2)
d1.download_button(
    f"⬇️ These {cases.height} cases (CSV)", to_csv(cases), key="download_cases",
    file_name=f"{metric}-{status}-cases.csv", mime="text/csv")
d2.download_button(
    "⬇️ Every regressed case, all metrics (CSV)", failures_csv(candidate, baseline),
    key="download_regressed", file_name=f"regressed-{candidate}.csv", mime="text/csv",
    help=f"The file `evallib export-failures {candidate} --baseline {baseline}` writes: every "
         "case that passed a metric in the baseline and fails it now, with all strata, scores "
         "and rationales.")
