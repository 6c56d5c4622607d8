"""Compare: did the candidate get worse than its baseline, where, and is it real or noise?

Paired tests per metric over the cases both runs scored; per slice, corrected for testing
every slice × metric (Benjamini–Hochberg); then the cases behind any slice, one at a time
in full, and CSV.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from evallib import queries as Q
from evallib.analysis.compare import CASE_FIELDS, min_detectable, power_line
from evallib.analysis.export import to_csv
from evallib.vocabulary import slice_name
from pages import _charts as charts
from pages import _tables as tables
from pages import _ui as ui
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
from pages._verdicts import compare_verdict

ALL_CASES = "All cases"
ALPHA = 0.05
STATUSES = ["regressed", "improved", "unchanged", "all"]
NUM = st.column_config.NumberColumn


def _show_slice() -> None:
    """A row picked in the slice table becomes the case list's slice and metric."""
    rows = st.session_state["slice_table"].selection.rows
    if rows:
        _open_cases(st.session_state["_slice_rows"][rows[0]])


def _open_cases(picked: list[str] | tuple[str, str]) -> None:
    st.session_state["case_slice"], st.session_state["case_metric"] = picked


leave_pages_directory_mode()
st.title("Compare")
wh, f = warehouse(), filters()
if not wh.has_offline:
    get_started(wh.root, "offline runs" if wh.has_online else "runs and no online data")
    st.stop()

runs = query(Q.runs_overview, f.dataset)
if runs.height < 2:
    st.info(f"**{f.dataset}** has {runs.height} run; a comparison needs two.",
            icon=":material/compare_arrows:")
    st.stop()

# --- which two runs, sliced how (all in the URL, so a link reproduces the view) ----------
candidate, baseline = run_pair(runs)
keys = query(Q.strata_keys, f.dataset)["key"].to_list()
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
headline = tables.metric_headline(result)
slices = tables.slice_table(result)
options = tables.slice_options(result)
gate = query(Q.gate_results, candidate)
metric_names = headline["metric"].to_list()
worst = slices.row(0, named=True) if slices.height else None
worst = worst if worst and worst["verdict"] == tables.WORSE else None

# --- the answer first --------------------------------------------------------------------
box = ui.verdict(compare_verdict(result, headline, slices, options, gate))
if worst is not None:
    n_cases = int(worst["n"])
    box.page_link(
        "pages/compare.py", icon=":material/arrow_downward:",
        label=f"Read the {n_cases} cases of {slice_name(options[worst['slice']])} "
              f"({tables.human(worst['metric'])}, worst first)",
        query_params={"candidate": candidate, "baseline": baseline, "by": by,
                      "case_slice": worst["slice"], "case_metric": worst["metric"],
                      "case_status": "regressed"})
if result.cluster:
    st.caption(f"Clustered by **{result.cluster}** ({result.n_clusters} clusters): each "
               "test below is the clustered t on the mean difference (CR2 standard error, "
               "Bell–McCaffrey degrees of freedom), not the per-case test.")
for w in result.warnings:
    if not w.startswith("different"):
        st.warning(w, icon=":material/calculate:")
if gate.height and (problems := tables.gate_failures(gate)).height:
    st.caption(f"Release gate of {gate['created_at'][0]:%Y-%m-%d %H:%M} against "
               f"`{gate['baseline_id'][0]}`: the rows that failed, were inconclusive or "
               "were waived.")
    st.dataframe(problems, hide_index=True, key="gate_failures", column_config={
        "p_adjusted": NUM("p adjusted", format="%.2g"),
        **ui.columns(status="status", rule="rule", slice="slice", observed="observed",
                     threshold="threshold", n="cases", message="message", owner="owner")})
if not metric_names:
    st.info("The two runs have no metric scored on the same cases.")
    st.stop()

# --- overall: per metric over every common case --------------------------------------------
st.subheader("Overall")
st.caption(f"{result.cases.get('common', 0)} cases in common. Each metric: a paired test over "
           "the cases both runs scored (McNemar mid-p for pass rates, Wilcoxon signed-rank "
           "for 1–5 scales, skew-corrected paired t otherwise), the change's 95% interval "
           "(Tango's for pass rates), and how many cases went down, stayed or went up. "
           f"Significant at α = {ALPHA:g} after Benjamini–Hochberg over the metrics.")
cards = st.columns(min(max(headline.height, 1), 5))
for i, card in enumerate(headline.iter_rows(named=True)):
    digits = 2 if card["kind"] == "ordinal" else 3
    changed = "" if card["verdict"] == tables.SAME else f" · {card['verdict']}"
    cards[i % len(cards)].metric(
        tables.human(card["metric"]) + changed, f"{card['candidate']:.{digits}f}",
        delta=f"{card['delta']:+.{digits}f}", border=True,
        delta_color="normal" if card["verdict"] != tables.SAME else "off",
        help=f"baseline {card['baseline']:.{digits}f}; {card['verdict']} (p = {card['p']:.2g}); "
             f"{card['regressed']} cases down, {card['improved']} up")
st.dataframe(headline, hide_index=True, key="headline", column_order=(
    "verdict", "metric", "baseline", "candidate", "delta", "95% CI of delta", "p",
    "regressed", "improved", "detectable drop", "n", "unchanged", "test", "kind"),
    column_config={
        "verdict": st.column_config.TextColumn("verdict", pinned=True),
        "metric": st.column_config.TextColumn("metric", pinned=True),
        "baseline": NUM("baseline", format="%.3f"),
        "candidate": NUM("candidate", format="%.3f"),
        "delta": NUM("change", format="%+.3f", help="candidate − baseline"),
        "95% CI of delta": st.column_config.TextColumn("95% CI of change"),
        "p": NUM("p", format="%.2g"),
        "regressed": NUM("cases down", width="small"),
        "improved": NUM("cases up", width="small"),
        "unchanged": NUM("cases same", width="small"),
        "n": NUM("cases", width="small"),
        "detectable drop": NUM(
            "detectable drop", format="%.3f", help="The smallest drop of the mean this n "
            "detects with 80% power: a smaller real drop can hide behind 'no significant "
            "change'."),
    })

# --- where: slices ---------------------------------------------------------------------------
st.subheader("Slices")
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
               "changed to reach α) are not counted. Worst first: significant drops, largest "
               f"first. Slices under {tables.SMALL_N} cases are marked small (only large "
               "drops can show there).")
    heat, table = st.tabs(["Heatmap", "Table"])
    st.session_state["_slice_rows"] = list(slices.select("slice", "metric").iter_rows())
    heat.plotly_chart(charts.slice_heatmap(slices, metric_names), key="slice_heatmap",
                      config=ui.PLOT, on_select=ui.on_cell_click("slice_heatmap", _open_cases),
                      selection_mode="points")
    heat.caption("Colour: the signed z of each slice's paired test (red worse, blue better; "
                 "comparable across a pass rate and a 1–5 scale); each cell: the change, ● = "
                 "significant after Benjamini–Hochberg. Click a cell (or select a row of the "
                 "table) to read its cases below.")
    table.dataframe(slices.drop("significant"), hide_index=True, key="slice_table",
                    on_select=_show_slice, selection_mode="single-row",
                    column_order=("verdict", "slice", "metric", "delta", "p adjusted",
                                  "baseline", "candidate", "n", "small n", "p", "kind"),
                    column_config={
                        "verdict": st.column_config.TextColumn("verdict", pinned=True),
                        "slice": st.column_config.TextColumn("slice", pinned=True),
                        "baseline": NUM("baseline", format="%.3f"),
                        "candidate": NUM("candidate", format="%.3f"),
                        "delta": NUM("change", format="%+.3f"),
                        "p": NUM("p", format="%.2g"),
                        "p adjusted": NUM("p adjusted", format="%.2g",
                                          help="Benjamini–Hochberg over every slice × metric"),
                        "n": NUM("cases", width="small"),
                        "small n": st.column_config.CheckboxColumn(
                            "small", help=f"fewer than {tables.SMALL_N} cases"),
                    })

# --- the cases behind a number -----------------------------------------------------------
st.subheader("Cases", anchor="cases")
slice_names = [ALL_CASES, *options]
ui.seed("case_metric", metric_names, worst["metric"] if worst else metric_names[0])
ui.seed("case_slice", slice_names, worst["slice"] if worst else ALL_CASES)
c1, c2, c3 = st.columns([1, 2, 2])
metric = c1.selectbox("Metric", metric_names, key="case_metric", bind="query-params")
chosen = c2.selectbox("Slice", slice_names, key="case_slice", bind="query-params")
status = c3.segmented_control("Cases that", STATUSES, default="regressed", key="case_status",
                              bind="query-params", required=True)
where = options.get(chosen)
everything = tables.case_table(query(Q.case_scores, candidate, baseline, metric), metric, where,
                               None)
cases = everything if status == "all" else everything.filter(everything["status"] == status)
kind = dict(headline.select("metric", "kind").iter_rows()).get(metric, "continuous")
paired = everything.drop_nulls(["baseline", "candidate"])
base = np.asarray(paired["baseline"].to_list(), dtype=float)
cand = np.asarray(paired["candidate"].to_list(), dtype=float)
st.caption(f"**{tables.human(metric)}**, {chosen.lower() if chosen == ALL_CASES else chosen}: "
           f"{power_line(kind, base.size, min_detectable(kind, base, cand, ALPHA))}. "
           f"{cases.height} cases {status if status != 'all' else 'in all'}, largest drop first; "
           "select one to read it in full below.")
picked = st.dataframe(
    cases, hide_index=True, key="cases", on_select="rerun", selection_mode="single-row",
    column_order=("case_id", "status", "baseline", "candidate", "delta", "input",
                  "candidate output", "expected", "candidate rationale", "baseline output",
                  "baseline rationale", "strata", "error"),
    column_config={
        "case_id": st.column_config.TextColumn("case", pinned=True),
        "status": st.column_config.TextColumn("status", pinned=True),
        "baseline": NUM("baseline", format="%.3g", width="small"),
        "candidate": NUM("candidate", format="%.3g", width="small"),
        "delta": NUM("change", format="%+.3g", width="small"),
        "candidate rationale": st.column_config.TextColumn("candidate: judge's reason"),
        "baseline rationale": st.column_config.TextColumn("baseline: judge's reason"),
    })
row = ui.selected_row(cases, picked)
if row is not None:
    ui.case_panel(
        row, tables.human(metric),
        title=f"**{row['case_id']}** · {row['status']} · {row['strata']}",
        sides=[(f"Baseline · {runs.filter(runs['run_id'] == baseline)['name'][0]}",
                "baseline", "baseline output", "baseline rationale"),
               (f"Candidate · {runs.filter(runs['run_id'] == candidate)['name'][0]}",
                "candidate", "candidate output", "candidate rationale")],
        extra=["error"])
d1, d2 = st.columns(2)
d1.download_button(
    f"These {cases.height} cases (CSV)", to_csv(cases), key="download_cases", icon=ui.DOWNLOAD,
    file_name=f"{metric}-{status}-cases.csv", mime="text/csv")
d2.download_button(
    "Every regressed case, all metrics (CSV)", failures_csv(candidate, baseline),
    key="download_regressed", icon=ui.DOWNLOAD, file_name=f"regressed-{candidate}.csv",
    mime="text/csv",
    help=f"The file `evallib export-failures {candidate} --baseline {baseline}` writes: every "
         "case that passed a metric in the baseline and fails it now, with all strata, scores "
         "and rationales.")
