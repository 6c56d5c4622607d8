"""Slices: a metric per stratum (one key, or two crossed) for a run or a window of
production traffic, each cell with its interval and n; against a baseline each cell's paired
delta and adjusted p; the cases behind any cell; and whether the golden set's mix of strata
looks like production's."""

from __future__ import annotations

import streamlit as st

from evallib import queries as Q
from evallib.analysis import coverage
from evallib.analysis.export import to_csv
from pages import _charts as charts
from pages import _slices_charts as scharts
from pages import _slices_tables as stables
from pages import _tables as tables
from pages import _ui as ui
from pages._common import (
    ONLINE,
    Filters,
    WarehouseView,
    comparison,
    filters,
    get_started,
    leave_pages_directory_mode,
    pick_source,
    query,
    url_choice,
    warehouse,
)
from pages._verdicts import cell_verdict, delta_cell_verdict

ALPHA = 0.05
TRACE_LIMIT = 500
NUM = st.column_config.NumberColumn
TEXT = st.column_config.TextColumn
CASE_COLUMNS = {
    "case_id": TEXT("case", pinned=True), "status": TEXT("status", pinned=True),
    "value": NUM("score", format="%.3g", width="small"),
    "baseline": NUM("baseline", format="%.3g", width="small"),
    "candidate": NUM("run", format="%.3g", width="small"),
    "delta": NUM("change", format="%+.3g", width="small"),
    "rationale": TEXT("judge's reason"),
    "candidate output": TEXT("run output"),
    "candidate rationale": TEXT("run: judge's reason"),
    "baseline rationale": TEXT("baseline: judge's reason"),
}
SMALL = st.column_config.CheckboxColumn("small", help=f"fewer than {tables.SMALL_N} cases: "
                                        "only large differences can show")


def _pick_cell() -> None:
    """A row picked in the cell table becomes the case list's cell."""
    rows = st.session_state["cell_table"].selection.rows
    if rows:
        _set_cell(st.session_state["_cell_rows"][rows[0]])


def _set_cell(label: str) -> None:
    st.session_state["cell"] = label


def _keys(keys: list[str]) -> tuple[str, str | None]:
    """First and optional second stratum key, bound to the URL."""
    if not keys:
        st.info("These cases carry no strata (`strata` in the results): nothing to slice by.",
                icon=":material/grid_view:")
        st.stop()
    a, b = st.columns(2)
    key = a.selectbox("Stratum", keys, key="key", bind="query-params",
                      help="Rows of the grid: one per value of this key.")
    others = [stables.NONE, *[k for k in keys if k != key]]
    default = others[1] if len(others) > 1 else stables.NONE
    key2 = b.selectbox("Crossed with", others, key="key2", bind="query-params",
                       index=others.index(url_choice(others, "key2", default)),
                       help="Columns of the grid: each value of this key (optional).")
    return key, None if key2 == stables.NONE else key2


def _grid(grid, metric: str, key: str, key2: str | None, what: str) -> dict:
    """Heatmap and table of one metric's cells (`stables.cell_grid`); returns the cells'
    stratum values by label."""
    small = grid.filter(grid["small n"]).height
    st.caption(f"Each cell: the mean of **{tables.human(metric)}** with its 95% interval "
               f"(Wilson for pass rates, t for means) and n; {small} of {grid.height} cells "
               f"have fewer than {tables.SMALL_N} {what}s (small: only large differences "
               "can show there). Intervals are each cell's own, not a test between cells. "
               f"Click a cell (or a table row) to read its {what}s.")
    heat, table = st.tabs(["Heatmap", "Table"])
    heat.plotly_chart(scharts.cell_heatmap(grid, metric, key, key2), key="cell_heatmap",
                      config=ui.PLOT, on_select=ui.on_cell_click("cell_heatmap", _set_cell),
                      selection_mode="points")
    st.session_state["_cell_rows"] = grid["cell"].to_list()
    table.dataframe(grid.drop("kind", "ci_low", "ci_high"), hide_index=True,
                    key="cell_table", on_select=_pick_cell, selection_mode="single-row",
                    column_config={**{k: TEXT(tables.human(k)) for k in (key, key2) if k},
                                   "cell": TEXT("cell", pinned=True),
                                   "mean": NUM("mean", format="%.3f"),
                                   "n": NUM(f"{what}s", width="small"), "small n": SMALL})
    return stables.cell_values(grid, key, key2)


def _cell_picker(options: list[str], default: str = stables.ALL) -> str:
    names = [stables.ALL, *options]
    ui.seed("cell", names, default)
    return st.selectbox("Cell", names, key="cell", bind="query-params",
                        help="Or click a cell of the heatmap, or select a row of the table.")


def offline(f: Filters) -> None:
    runs = query(Q.runs_overview, f.dataset)
    if runs.height == 0:
        get_started(warehouse().root, "offline runs")
        return
    labels = tables.run_labels(runs)
    ids = list(labels)
    left, right = st.columns(2)
    run = left.selectbox("Run", ids, format_func=labels.__getitem__, key="slices_run",
                         index=ids.index(url_choice(ids, "run", ids[0])),
                         help="Default: the newest run.")
    bases = [stables.NONE, *[i for i in ids if i != run]]
    baseline = right.selectbox(
        "Against baseline", bases, key="slices_baseline",
        format_func=lambda r: "(none: this run alone)" if r == stables.NONE else labels[r],
        index=bases.index(url_choice(bases, "vs", stables.NONE)),
        help="Pick a run to see each cell's paired delta and Benjamini–Hochberg adjusted p.")
    st.query_params["run"], st.query_params["vs"] = run, baseline
    m = query(Q.metrics, f.dataset)
    names, kinds = m["metric"].to_list(), m["kind"].to_list()
    metric = st.selectbox("Metric", names, key="metric", bind="query-params",
                          index=kinds.index("binary") if "binary" in kinds else 0)
    key, key2 = _keys(query(Q.strata_keys, f.dataset)["key"].to_list())
    slicing = (key, key2) if key2 else (key,)

    if baseline == stables.NONE:
        grid = stables.cell_grid(query(Q.slice_summary, run, key, key2), metric, key, key2)
        ui.verdict(cell_verdict(grid, metric, key, key2, "case"))
        st.subheader("Per cell")
        if grid.height == 0:
            st.stop()
        values = _grid(grid, metric, key, key2, "case")
        chosen = _cell_picker(list(values))
        where = values.get(chosen)
        cases = tables.case_table(
            stables.in_cell(query(Q.case_scores, run, None, metric), where or {}),
            metric, None, None)
        cases = stables.run_cases(cases)
    else:
        result = comparison(run, baseline, (slicing,), ALPHA)
        slices = tables.slice_table(result)
        rows = stables.metric_slice_rows(slices, metric)
        values = tables.slice_options(result)
        ui.verdict(delta_cell_verdict(rows, metric, values))
        if not result.comparable:
            st.error("**Not comparable.** " + " ".join(
                w + "." for w in result.warnings if w.startswith("different")),
                icon=":material/block:")
        st.subheader("Per cell")
        n_worse = rows.filter(rows["verdict"] == tables.WORSE).height
        st.caption(f"Each cell: **{tables.human(metric)}** in the run minus the baseline over "
                   "the cases both scored, a paired test per cell, Benjamini–Hochberg "
                   f"adjusted over every cell × metric ({slices.height} tests, as on the "
                   f"Compare page): **{n_worse}** cells significantly worse. Colour = signed "
                   f"z; ● = significant; small = fewer than {tables.SMALL_N} cases. Click a "
                   "cell to read its cases.")
        heat, table, every = st.tabs(["Heatmap", "Table", "Every metric"])
        heat.plotly_chart(scharts.delta_heatmap(rows, values, key, key2),
                          key="delta_heatmap", config=ui.PLOT, selection_mode="points",
                          on_select=ui.on_cell_click("delta_heatmap", _set_cell))
        st.session_state["_cell_rows"] = rows["slice"].to_list()
        table.dataframe(rows.drop("significant"), hide_index=True, key="cell_table",
                        on_select=_pick_cell, selection_mode="single-row",
                        column_order=("verdict", "slice", "delta", "p adjusted", "baseline",
                                      "candidate", "n", "small n", "p", "metric", "kind"),
                        column_config={
                            "slice": TEXT("cell", pinned=True),
                            "delta": NUM("change", format="%+.3f"),
                            "baseline": NUM("baseline", format="%.3f"),
                            "candidate": NUM("run", format="%.3f"),
                            "p": NUM("p", format="%.2g"),
                            "p adjusted": NUM("p adjusted", format="%.2g"),
                            "n": NUM("cases", width="small"), "small n": SMALL})
        every.plotly_chart(charts.slice_heatmap(slices, tables.metric_order(
            slices.select("metric", "kind"))), key="every_metric", config=ui.PLOT)
        cells = list(dict.fromkeys(rows["slice"].to_list()))
        worst = rows.row(0, named=True) if rows.height else None
        chosen = _cell_picker(cells, worst["slice"] if worst and
                              worst["verdict"] == tables.WORSE else stables.ALL)
        where = values.get(chosen)
        cases = tables.case_table(query(Q.case_scores, run, baseline, metric), metric, where,
                                  None)

    st.subheader("Cases")
    st.caption(f"**{tables.human(metric)}**, {chosen if where else 'every case'}: "
               f"{cases.height} cases, lowest scores (or largest drops) first; select one to "
               "read it in full.")
    picked = st.dataframe(cases, hide_index=True, key="cases", on_select="rerun",
                          selection_mode="single-row", column_config=CASE_COLUMNS)
    row = ui.selected_row(cases, picked)
    if row is not None and baseline == stables.NONE:
        ui.case_panel(row, tables.human(metric), title=f"**{row['case_id']}** · {row['strata']}",
                      sides=[(labels[run], "value", "output", "rationale")],
                      extra=["error"])
    elif row is not None:
        ui.case_panel(row, tables.human(metric),
                      title=f"**{row['case_id']}** · {row['status']} · {row['strata']}",
                      sides=[("Baseline", "baseline", "baseline output", "baseline rationale"),
                             ("Run", "candidate", "candidate output", "candidate rationale")],
                      extra=["error"])
    st.download_button(f"These {cases.height} cases (CSV)", to_csv(cases), icon=ui.DOWNLOAD,
                       key="download_cases", file_name=f"{metric}-cell-cases.csv",
                       mime="text/csv")
    coverage_section(run, key, key2, f)


def coverage_section(run: str, key: str, key2: str | None, f: Filters) -> None:
    st.subheader("Coverage: golden set vs production")
    days = f.days
    if days is None:
        st.info("No production traffic in this warehouse: coverage compares the golden set "
                "with the strata of online traces.", icon=":material/public:")
        return
    traffic = query(Q.online_strata_mix, days.start, days.end, key, key2)
    if traffic["n"].sum() == 0:
        st.info(f"No production trace between {days.start} and {days.end}.",
                icon=":material/public:")
        return
    mixes = coverage.strata_mixes(query(Q.strata_mix, run, key, key2), traffic)
    weighted = coverage.production_weighted(query(Q.slice_summary, run, key, key2), traffic)
    lacking = mixes.filter(mixes["golden_n"] == 0)
    uncovered = float(lacking["traffic_share"].sum())
    st.caption(f"Share of the run's cases per stratum beside the share of production traces "
               f"{days.start:%Y-%m-%d} → {days.end:%Y-%m-%d} (sidebar). "
               + (f"**{uncovered:.1%} of traffic** is in {lacking.height} strata the golden "
                  "set lacks." if lacking.height else "Every stratum of the traffic is in "
                  "the golden set."))
    chart, table = st.tabs(["Mix", "Table"])
    chart.plotly_chart(scharts.mix_bars(mixes, key, key2), key="mix_chart",
                       config={"displaylogo": False})
    table.dataframe(stables.mix_table(mixes, key, key2), hide_index=True, key="mix_table",
                    column_config={
                        **{k: TEXT(tables.human(k)) for k in (key, key2) if k},
                        "golden set": NUM("golden set", format="%.1f%%"),
                        "production": NUM("production", format="%.1f%%"),
                        "golden − prod (pts)": NUM("golden − production", format="%+.1f pts"),
                        "golden cases": NUM("golden cases", format="%d"),
                        "traces": NUM("traces", format="localized")})
    shown = stables.coverage_table(weighted)
    n_differs = shown.filter(shown["differs"]).height
    st.caption("Each metric's mean over the golden set beside the same cells weighted by "
               "their share of production traffic (post-stratification: what the golden "
               "set predicts for users). 'differs' = the difference is larger than its "
               f"uncertainty (95%): **{n_differs}** metric(s). 'traffic covered' = the share "
               "of traffic in strata the golden set scored; the rest cannot be estimated.")
    st.dataframe(shown, hide_index=True, key="coverage_table", column_config={
        "differs": st.column_config.CheckboxColumn("differs", width="small"),
        "metric": TEXT("metric", pinned=True), "n": NUM("cases", width="small"),
        "difference": NUM("difference", format="%+.3f"),
        "± SE": NUM("± SE", format="%.3f"),
        "traffic covered": NUM("traffic covered", format="%.0f%%")})


def online(wh: WarehouseView, f: Filters) -> None:
    days = f.days
    if not wh.has_online or days is None:
        get_started(wh.root, "online traffic")
        return
    m = query(Q.online_metrics)
    names, kinds = m["metric"].to_list(), m["kind"].to_list()
    metric = st.selectbox("Metric", names, key="online_metric", bind="query-params",
                          index=kinds.index("binary") if "binary" in kinds else 0)
    key, key2 = _keys(query(Q.online_strata_keys)["key"].to_list())
    grid = stables.cell_grid(query(Q.online_slice_summary, days.start, days.end, key, key2), metric,
                             key, key2)
    ui.verdict(cell_verdict(grid, metric, key, key2, "trace"))
    st.subheader("Per cell")
    if grid.height == 0:
        return
    st.caption(f"Production traces scored {days.start:%Y-%m-%d} → {days.end:%Y-%m-%d} (UTC days; "
               "change in the sidebar).")
    values = _grid(grid, metric, key, key2, "trace")
    chosen = _cell_picker(list(values))
    where = values.get(chosen)
    st.subheader("Traces")
    if where is None:
        st.info("Pick a cell (click it, or a row of the table) to read its traces.")
        return
    traces = query(Q.online_slice_traces, metric, days.start, days.end, key, where[key], key2,
                   where.get(key2) if key2 else None, TRACE_LIMIT)
    st.caption(f"**{tables.human(metric)}**, {chosen}: the {traces.height} lowest-scored "
               f"traces{f' (at most {TRACE_LIMIT})' if traces.height == TRACE_LIMIT else ''};"
               " select one to read it in full.")
    picked = st.dataframe(traces, hide_index=True, key="traces", on_select="rerun",
                          selection_mode="single-row", column_config={
                              "trace_id": TEXT("trace", pinned=True),
                              "timestamp": st.column_config.DatetimeColumn(
                                  "time (UTC)", format="YYYY-MM-DD HH:mm"),
                              "value": NUM("score", format="%.3g", width="small"),
                              "rationale": TEXT("judge's reason")})
    row = ui.selected_row(traces, picked)
    if row is not None:
        ui.case_panel(row, tables.human(metric),
                      title=f"**{row['trace_id']}** · {row['timestamp']:%Y-%m-%d %H:%M} UTC · "
                            f"release {row.get('release') or '—'}",
                      sides=[("Production", "value", "output", "rationale")])
    st.download_button(f"These {traces.height} traces (CSV)", to_csv(traces.drop("strata")),
                       key="download_traces", icon=ui.DOWNLOAD,
                       file_name=f"{metric}-cell-traces.csv", mime="text/csv")


leave_pages_directory_mode()
st.title("Slices")
wh, f = warehouse(), filters()
if wh.is_empty:
    get_started(wh.root, "runs and no online data")
    st.stop()
if pick_source(wh) == ONLINE:
    online(wh, f)
else:
    offline(f)
