"""Slices: a metric per stratum (one key, or two crossed) for a run or a window of
production traffic, each cell with its interval and n; against a baseline each cell's paired
delta and adjusted p; the cases behind any cell; and whether the golden set's mix of strata
looks like production's."""

from __future__ import annotations

import streamlit as st

from evallib import coverage
from evallib.export import to_csv
from pages import _charts as charts
from pages import _rag_charts as rcharts
from pages import _slices_tables as stables
from pages import _tables as tables
from pages._common import (
    ONLINE,
    comparison,
    filters,
    get_started,
    leave_pages_directory_mode,
    pick_source,
    query,
    url_choice,
    warehouse,
)

ALPHA = 0.05
TRACE_LIMIT = 500


def _pick_cell() -> None:
    """A row picked in the cell table becomes the case list's cell."""
    rows = st.session_state["cell_table"].selection.rows
    if rows:
        st.session_state["cell"] = st.session_state["_cell_rows"][rows[0]]


def _keys(keys: list[str]) -> tuple[str, str | None]:
    """First and optional second stratum key, bound to the URL."""
    if not keys:
        st.info("These cases carry no strata (`strata` in the results): nothing to slice by.",
                icon="🧩")
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


def _grid(cells, metric: str, key: str, key2: str | None, what: str) -> tuple:
    """Heatmap and table of one metric's cells; returns (grid, chosen cell values or None)."""
    grid = stables.cell_grid(cells, metric, key, key2)
    if grid.height == 0:
        st.info(f"No {what} is scored on **{metric}**.")
        st.stop()
    small = grid.filter(grid["small n"] != "").height
    st.caption(f"Each cell: the mean of **{metric}** with its 95% interval (Wilson for pass "
               f"rates, t for means) and n. ⚠️ = fewer than {tables.SMALL_N} {what}s "
               f"({small} of {grid.height} cells): only large differences can show there. "
               "Intervals are each cell's own, not a test between cells.")
    heat, table = st.tabs(["Heatmap", "Table"])
    heat.plotly_chart(rcharts.cell_heatmap(grid, metric, key, key2), key="cell_heatmap",
                      config={"displaylogo": False})
    st.session_state["_cell_rows"] = grid["cell"].to_list()
    table.dataframe(grid.drop("kind", "ci_low", "ci_high"), hide_index=True,
                    key="cell_table", on_select=_pick_cell, selection_mode="single-row",
                    column_config={"mean": st.column_config.NumberColumn(format="%.3f")})
    return grid, stables.cell_values(grid, key, key2)


def _cell_picker(options: list[str]) -> str:
    names = [stables.ALL, *options]
    chosen = st.selectbox("Cell", names, key="cell", bind="query-params",
                          help="Or select a row of the table above.")
    return chosen


def offline(f) -> None:  # noqa: ANN001 - pages._common.Filters
    runs = query("runs_overview", f.dataset)
    if runs.height == 0:
        get_started(warehouse().root, "offline runs")
        return
    labels = tables.run_labels(runs)
    ids = list(labels)
    left, right = st.columns(2)
    run = left.selectbox("Run", ids, format_func=labels.get, key="slices_run",
                         index=ids.index(url_choice(ids, "run", ids[0])),
                         help="Default: the newest run.")
    bases = [stables.NONE, *[i for i in ids if i != run]]
    baseline = right.selectbox(
        "Against baseline", bases, key="slices_baseline",
        format_func=lambda r: "(none: this run alone)" if r == stables.NONE else labels[r],
        index=bases.index(url_choice(bases, "vs", stables.NONE)),
        help="Pick a run to see each cell's paired delta and Benjamini–Hochberg adjusted p.")
    st.query_params["run"], st.query_params["vs"] = run, baseline
    m = query("metrics", f.dataset)
    names, kinds = m["metric"].to_list(), m["kind"].to_list()
    metric = st.selectbox("Metric", names, key="metric", bind="query-params",
                          index=kinds.index("binary") if "binary" in kinds else 0)
    key, key2 = _keys(query("strata_keys", f.dataset)["key"].to_list())
    slicing = (key, key2) if key2 else (key,)

    st.subheader("Per cell")
    if baseline == stables.NONE:
        grid, values = _grid(query("slice_summary", run, key, key2), metric, key, key2, "case")
        chosen = _cell_picker(list(values))
        where = values.get(chosen)
        cases = tables.case_table(
            stables.in_cell(query("case_scores", run, None, metric), where or {}),
            metric, None, None)
        cases = stables.run_cases(cases)
    else:
        result = comparison(run, baseline, (slicing,), ALPHA)
        if not result.comparable:
            st.error("**Not comparable.** " + " ".join(
                w + "." for w in result.warnings if w.startswith("different")), icon="🚫")
        slices = tables.slice_table(result)
        rows = stables.metric_slice_rows(slices, metric)
        values = tables.slice_options(result)
        n_worse = rows.filter(rows["verdict"] == tables.WORSE).height
        st.caption(f"Each cell: **{metric}** in the run minus the baseline over the cases "
                   "both scored, a paired test per cell, Benjamini–Hochberg adjusted over "
                   f"every cell × metric ({slices.height} tests, as on the Compare page): "
                   f"**{n_worse}** cells significantly worse. Colour = signed z; ● = "
                   f"significant; ⚠️ = fewer than {tables.SMALL_N} cases.")
        heat, table, every = st.tabs(["Heatmap", "Table", "Every metric"])
        heat.plotly_chart(rcharts.delta_heatmap(rows, values, key, key2),
                          key="delta_heatmap", config={"displaylogo": False})
        st.session_state["_cell_rows"] = rows["slice"].to_list()
        table.dataframe(rows.drop("significant"), hide_index=True, key="cell_table",
                        on_select=_pick_cell, selection_mode="single-row",
                        column_config={"p": st.column_config.NumberColumn(format="%.3g"),
                                       "p adjusted": st.column_config.NumberColumn(
                                           format="%.3g")})
        every.plotly_chart(charts.slice_heatmap(slices, tables.metric_order(
            slices.select("metric", "kind"))), key="every_metric",
            config={"displaylogo": False})
        chosen = _cell_picker(list(dict.fromkeys(rows["slice"].to_list())))
        where = values.get(chosen)
        cases = tables.case_table(query("case_scores", run, baseline, metric), metric, where, None)

    st.subheader("Cases")
    st.caption(f"**{metric}**, {chosen if where else 'every case'}: {cases.height} cases, "
               "lowest scores (or largest drops) first.")
    st.dataframe(cases, hide_index=True, key="cases")
    st.download_button(f"⬇️ These {cases.height} cases (CSV)", to_csv(cases),
                       key="download_cases", file_name=f"{metric}-cell-cases.csv",
                       mime="text/csv")
    coverage_section(run, key, key2, f)


def coverage_section(run: str, key: str, key2: str | None, f) -> None:  # noqa: ANN001
    st.subheader("Coverage: golden set vs production")
    if f.start is None:
        st.info("No production traffic in this warehouse: coverage compares the golden set "
                "with the strata of online traces.", icon="🌐")
        return
    traffic = query("online_strata_mix", f.start, f.end, key, key2)
    if traffic["n"].sum() == 0:
        st.info(f"No production trace between {f.start} and {f.end}.", icon="🌐")
        return
    mixes = coverage.strata_mixes(query("strata_mix", run, key, key2), traffic)
    weighted = coverage.production_weighted(query("slice_summary", run, key, key2), traffic)
    lacking = mixes.filter(mixes["golden_n"] == 0)
    uncovered = float(lacking["traffic_share"].sum())
    st.caption(f"Share of the run's cases per stratum beside the share of production traces "
               f"{f.start:%Y-%m-%d} → {f.end:%Y-%m-%d} (sidebar). "
               + (f"**{uncovered:.1%} of traffic** is in {lacking.height} strata the golden "
                  "set lacks." if lacking.height else "Every stratum of the traffic is in "
                  "the golden set."))
    chart, table = st.tabs(["Mix", "Table"])
    chart.plotly_chart(rcharts.mix_bars(mixes, key, key2), key="mix_chart",
                       config={"displaylogo": False})
    table.dataframe(stables.mix_table(mixes, key, key2), hide_index=True, key="mix_table",
                    column_config={c: st.column_config.NumberColumn(format="percent")
                                   for c in ("golden set", "production")})
    shown = stables.coverage_table(weighted)
    n_differs = shown.filter(shown["differs"] != "").height
    st.caption("Each metric's mean over the golden set beside the same cells weighted by "
               "their share of production traffic (post-stratification: what the golden "
               "set predicts for users). ⚠️ = the difference is larger than its uncertainty "
               f"(95%): **{n_differs}** metric(s). 'traffic covered' = the share of traffic "
               "in strata the golden set scored; the rest cannot be estimated.")
    st.dataframe(shown, hide_index=True, key="coverage_table", column_config={
        "difference": st.column_config.NumberColumn(format="%+.3f"),
        "± SE": st.column_config.NumberColumn(format="%.3f"),
        "traffic covered": st.column_config.NumberColumn(format="percent")})


def online(wh, f) -> None:  # noqa: ANN001
    if not wh.has_online or f.start is None:
        get_started(wh.root, "online traffic")
        return
    m = query("online_metrics")
    names, kinds = m["metric"].to_list(), m["kind"].to_list()
    metric = st.selectbox("Metric", names, key="online_metric", bind="query-params",
                          index=kinds.index("binary") if "binary" in kinds else 0)
    key, key2 = _keys(query("online_strata_keys")["key"].to_list())
    st.subheader("Per cell")
    st.caption(f"Production traces scored {f.start:%Y-%m-%d} → {f.end:%Y-%m-%d} (UTC days; "
               "change in the sidebar).")
    grid, values = _grid(query("online_slice_summary", f.start, f.end, key, key2), metric,
                         key, key2, "trace")
    chosen = _cell_picker(list(values))
    where = values.get(chosen)
    st.subheader("Traces")
    if where is None:
        st.info("Pick a cell (or a row of the table) to read its traces.")
        return
    traces = query("online_slice_traces", metric, f.start, f.end, key, where[key], key2,
                   where.get(key2) if key2 else None, TRACE_LIMIT)
    st.caption(f"**{metric}**, {chosen}: the {traces.height} lowest-scored traces"
               f"{f' (at most {TRACE_LIMIT})' if traces.height == TRACE_LIMIT else ''}.")
    st.dataframe(traces, hide_index=True, key="traces")
    st.download_button(f"⬇️ These {traces.height} traces (CSV)",
                       to_csv(traces.drop("strata")), key="download_traces",
                       file_name=f"{metric}-cell-traces.csv", mime="text/csv")


leave_pages_directory_mode()
st.title("🧩 Slices")
wh, f = warehouse(), filters()
if wh.is_empty:
    get_started(wh.root, "runs and no online data")
    st.stop()
if pick_source(wh) == ONLINE:
    online(wh, f)
else:
    offline(f)
