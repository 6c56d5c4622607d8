"""Review: label judged production traces (or a run's cases) on the metric's own scale,
blind to the judge, one at a time; then see how people agree with each other and with each
judge version, and which judge versions are calibrated."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis.calibration import THRESHOLD, review_agreement
from pages import _review_parts as R
from pages._common import (
    OFFLINE,
    ONLINE,
    Days,
    Filters,
    WarehouseView,
    analysis,
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    url_choice,
    warehouse,
)

PLOT = {"displaylogo": False}


def pick_queue(wh: WarehouseView, f: Filters, columns: Sequence[Any]) -> R.Choice:
    """Source, run, metric, and the queue's size, strata, batch and days (all in the URL)."""
    available = [s for s, ok in ((ONLINE, wh.has_online), (OFFLINE, wh.has_offline)) if ok]
    source_column, metric_column = columns
    with source_column:
        source = st.segmented_control(
            "Source", available, key="source", bind="query-params", default=available[0],
            required=True, help="Judged production traces of the sidebar's days, or the "
                                "cases of a run of the sidebar's dataset.")
    run, days = None, f.days
    if source == ONLINE:
        if days is None:
            get_started(wh.root, "online traffic")
            st.stop()
        metrics = query(Q.online_review_metrics, days.start, days.end)
    else:
        if f.dataset is None:
            get_started(wh.root, "offline runs")
            st.stop()
        runs = query(Q.runs_overview, f.dataset)
        ids = runs["run_id"].to_list()
        run_names = dict(zip(ids, runs["name"].to_list(), strict=True))
        run = st.selectbox("Run", ids, key="run", bind="query-params",
                           format_func=lambda r: f"{run_names[r]} · {r}",
                           index=0,
                           help="Label this run's cases (of the sidebar's dataset).")
        metrics = query(Q.run_metric_summary, [run])
        days = None
    names = metrics["metric"].to_list()
    if not names:
        st.info("Nothing scored here yet: no metric to label.", icon=":material/info:")
        st.stop()
    default = "correctness" if "correctness" in names else names[0]
    metric = metric_column.selectbox("Metric", names, key="metric", bind="query-params",
                                     index=names.index(url_choice(names, "metric", default)),
                                     help="Give your own value on this metric's scale.")
    kind = dict(zip(names, metrics["kind"].to_list(), strict=True))[metric]
    keys = (query(Q.online_review_keys, days.start, days.end) if days is not None else
            query(Q.run_review_keys, run or ""))["key"].to_list()
    n = st.session_state.get("n") or st.query_params.get("n", 20)  # before its widget
    by = st.session_state.get("by") or st.query_params.get_all("by")
    with st.expander(f":material/tune: Queue: {n} items, stratified by "
                     f"{', '.join(by) if by else 'whole strata'}"):
        left, mid, right = st.columns([1, 2, 1])
        n = int(left.number_input("Queue size", 1, 500, 20, key="n", bind="query-params"))
        by = mid.multiselect("Stratify by", keys, key="by", bind="query-params",
                             help="Draw evenly across these strata keys (none: across "
                                  "whole strata), as `evallib review sample --stratified`.")
        seed = int(right.number_input("Batch", 0, 10_000, 0, key="batch",
                                      bind="query-params",
                                      help="Another batch: another draw of the same pool."))
        if days is not None:
            recent = f"the last {R.RECENT_DAYS} days"
            window = st.segmented_control(
                "Traces of", [recent, "the sidebar's days"], key="window",
                bind="query-params", default=recent, required=True,
                help="Recent traffic (the sidebar's last day and the days before it), or "
                     "every day the sidebar picks.")
            if window == recent:
                days = Days(max(days.start, days.end - timedelta(days=R.RECENT_DAYS - 1)),
                            days.end)
    return R.Choice(source, run, metric, kind, n, tuple(by), seed, days)


def pool_readers(c: R.Choice, rater: str
                 ) -> tuple[Callable[[], pl.DataFrame], Callable[[], dict[str, Any]]]:
    """The queue's pool and the metric's scale, read when a queue is first drawn."""
    days, run = c.days, c.run or ""
    if days is not None:  # production traces of these days
        return (lambda: query(Q.online_review_pool, c.metric, days.start, days.end, rater,
                              c.by, c.n, c.seed),
                lambda: query(Q.online_metric_scale, c.metric, days.start, days.end)
                .row(0, named=True))
    return (lambda: query(Q.run_review_pool, run, c.metric, rater, c.by, c.n, c.seed),
            lambda: query(Q.run_metric_scale, run, c.metric).row(0, named=True))


def labelling(root: str, rater: str, c: R.Choice) -> None:
    draw, scale_of = pool_readers(c, rater)
    items = R.queue((c, rater), draw, c.n, c.seed)
    scale = {"lo": 0.0, "hi": 1.0} if c.kind == "binary" else R.once(
        (c.source, c.run, c.metric, c.days), scale_of)
    if not items:
        what = "trace of these days" if c.source == ONLINE else "case of this run"
        st.info(f"No {what} scored on {c.metric} is left for you to label: widen the days "
                "(the queue's settings, and the sidebar), or pick another metric.",
                icon=":material/task_alt:")
        return
    metric, kind = c.metric, c.kind
    done = R.labelled(rater, metric)
    n_done = R.progress(items, done)
    if error := st.session_state.pop("review_error", None):
        st.error(error, icon=":material/error:")
    R.reveal(kind)
    item = R.current(items, done)
    if item is None:
        st.success(f"Queue done: {n_done} labelled. Raise **Batch** for another draw, or "
                   "widen the days in the sidebar.", icon=":material/task_alt:")
        undo_button(root)
        return
    if item.trace_id and item.day:
        rows = query(Q.review_trace, item.trace_id, item.day, metric)
    elif item.run_id and item.case_id:
        rows = query(Q.review_case, item.run_id, item.case_id, metric)
    else:
        raise ValueError(f"a review item names neither a trace nor a case: {item}")
    if not rows.height:
        st.warning(f"`{item.key}` is no longer in the warehouse; skip it.",
                   icon=":material/warning:")
        st.button("Skip", icon=":material/skip_next:", on_click=R.skip, args=(item,))
        return
    details = rows.row(0, named=True)
    show_item(item, details)
    answer(root, item, metric, rater, kind, scale, details)


def show_item(item: R.Item, d: dict) -> None:
    where = (f"trace `{item.trace_id}` · {d['timestamp']:%Y-%m-%d %H:%M} UTC · release "
             f"{d['release'] or '–'}" if item.trace_id else
             f"run `{item.run_id}` · case `{item.case_id}`")
    strata = json.loads(d["strata"] or "{}")
    st.caption(where + " · " + " · ".join(f"{R.markdown_text(k)} **{R.markdown_text(v)}**"
                                           for k, v in strata.items()))
    left, right = st.columns(2)
    with left.container(border=True):
        st.markdown("**:material/input: Input**")
        st.markdown(R.markdown_text(d["input"]))
    with right.container(border=True):
        st.markdown("**:material/output: Output**")
        st.markdown(R.markdown_text(d["output"]))
    if d.get("expected") is not None:
        with st.container(border=True):
            st.markdown("**:material/fact_check: Expected**")
            st.markdown(R.markdown_text(d["expected"]))
    docs = d.get("retrieved") or []
    with st.expander(f":material/menu_book: Retrieved context ({len(docs)} documents)",
                     expanded=bool(docs)):
        if docs:
            st.dataframe(docs, hide_index=True, key="retrieved", column_config={
                "relevant": st.column_config.CheckboxColumn(),
                "cited": st.column_config.CheckboxColumn()})
        else:
            st.caption("No retrieval was logged for this item.")
    if st.toggle("Show the judge's score", key="show_judge",
                 help="Hidden by default so your label is not anchored on the judge's; "
                      "revealed after you answer."):
        st.info(f"Judge ({d['judge_version']}): **{d['judge']:g}**. "
                f"{R.markdown_text(d['rationale'])}", icon=":material/gavel:")


def answer(root: str, item: R.Item, metric: str, rater: str, kind: str, scale: dict,
           details: dict) -> None:
    st.text_input("Note (optional)", key=f"note_{item.key}",
                  placeholder="why, if it was a close call")
    values = R.scale(kind, scale["lo"], scale["hi"])
    judge = {"judge": details["judge"], "rationale": details["rationale"],
             "judge_version": details["judge_version"]}
    st.caption(f"Your **{metric}** ({kind}): "
               + ("one click saves it and opens the next item. Keys: "
                  + ("0 / 1" if kind == "binary" else "the value's digit") if values else
                  "Submit saves it and opens the next item. Keys: Enter")
               + ", S skip, U undo.")
    with st.container(horizontal=True):
        if values is not None:
            for v in values:
                st.button(R.value_label(kind, v), key=f"value_{v:g}", icon=R.value_icon(kind, v),
                          on_click=R.submit, args=(root, item, metric, rater, v, judge),
                          shortcut=f"{int(v)}" if v == int(v) and 0 <= v <= 9 else None)
        else:
            lo, hi = scale["lo"] or 0.0, scale["hi"] or 1.0
            lo, hi = min(lo, 0.0), max(hi, 1.0)
            v = st.slider("Value", float(lo), float(hi), float((lo + hi) / 2),
                          step=(hi - lo) / 100, key=f"slider_{item.key}")
            st.button("Submit", key="submit", type="primary", icon=":material/send:",
                      on_click=R.submit, args=(root, item, metric, rater, v, judge),
                      shortcut="Enter")
        st.button("Skip", key="skip", icon=":material/skip_next:", on_click=R.skip,
                  args=(item,), shortcut="S")
        undo_button(root)


def undo_button(root: str) -> None:
    st.button("Undo last label", key="undo", icon=":material/undo:", on_click=R.undo,
              args=(root,), disabled=not R.written(), shortcut="U",
              help="Takes back the last label you gave in this session; its item comes "
                   "back.")


def agreement(metric: str) -> None:
    st.subheader(f"Agreement on {metric}")
    a = analysis(review_agreement, metric)
    if not a.calibration.height and not a.humans["items"].sum():
        st.info(f"No human label of {metric} on an item a judge scored yet.",
                icon=":material/info:")
        return
    humans = a.humans.row(0, named=True)
    left, right = st.columns(2)
    left.metric(f"People with each other · {R.PLAIN.get(humans['status'], '')}",
                "–" if humans["alpha"] != humans["alpha"] else f"{humans['alpha']:.2f}",
                border=True,
                help=f"Krippendorff's alpha over {humans['items']:,} items two or more of "
                     f"{humans['raters']} raters labelled; 95% CI [{humans['alpha_low']:.2f}, "
                     f"{humans['alpha_high']:.2f}] (bootstrap over items).")
    left.caption(f"alpha 95% CI "
                 f"{R.ci(humans['alpha'], humans['alpha_low'], humans['alpha_high'])} · "
                 f"{humans['items']:,} items labelled twice or more")
    if a.judge.height:
        j = a.judge.row(0, named=True)
        right.metric(f"Judge with people, every version · {R.PLAIN.get(j['status'], '')}",
                     f"{j['alpha']:.2f}", border=True,
                     help="Krippendorff's alpha of the judge's score against each human "
                          f"label, every judge version pooled; n = {j['n']:,}.")
        right.caption(f"alpha 95% CI {R.ci(j['alpha'], j['alpha_low'], j['alpha_high'])} · "
                      f"{j['n']:,} labels")
    st.subheader("Judge calibration")
    st.caption(f"Per judge version: a version is **calibrated** when its alpha's 95% interval "
               f"lies above {THRESHOLD} (Krippendorff's bar for reliable data); an interval "
               f"below it, or spanning it, is flagged. `evallib judge-check --metric {metric}` "
               "prints the same; the gate's `judge_calibrated` rule fails a run scored by a "
               "version that is not calibrated.")
    table = a.calibration
    if not table.height:
        st.info("No judge score on a labelled item yet.", icon=":material/info:")
        return
    st.dataframe(R.calibration_rows(table), hide_index=True, key="calibration_table",
                 column_config={c: st.column_config.Column(width=w)
                                for c, w in R.COLUMNS.items()})
    st.caption("Each with its 95% interval: alpha = Krippendorff's alpha (bootstrap), kappa = "
               "Cohen's kappa (linear weights on an ordinal scale), exact = share of "
               "identical answers (Wilson).")
    st.plotly_chart(R.calibration_figure(table), key="calibration_chart", config=PLOT)
    versions = table["judge_version"].to_list()
    version = st.selectbox("Confusion table of", versions, key="confusion_version")
    st.dataframe(R.confusion_table(a.confusion, version), hide_index=True,
                 key="confusion_table")
    st.caption("Bias = mean judge score − mean human label (paired t interval): above 0 the "
               "judge is more lenient than people. Verbosity ρ = Spearman of (judge − human) "
               "against the output's length: above 0 (interval) the judge rates longer "
               "outputs higher than people do.")


leave_pages_directory_mode()
st.title(":material/rate_review: Review")
wh, f = warehouse(), filters()
if wh.is_empty:
    get_started(wh.root, "runs and no online data")
    st.stop()
st.caption("Label what the judge scored, blind to its answer, to measure whether it can be "
           "trusted. Labels go to the warehouse's human_labels, as `evallib review import` "
           "writes them.")
name_column, source_column, metric_column = st.columns([2, 1, 2])
with name_column:
    rater = R.rater_name()
choice = pick_queue(wh, f, (source_column, metric_column))
# only the open tab is computed: the agreement bootstraps need not run while labelling
label_tab, agree_tab = st.tabs(["Label", "Agreement and calibration"], key="tab",
                               bind="query-params")
if label_tab.open:
    with label_tab:
        if rater:
            labelling(wh.root, rater, choice)
        else:
            st.info("Type your name above to start labelling (it is kept in the URL).",
                    icon=":material/person:")
if agree_tab.open:
    with agree_tab:
        agreement(choice.metric)
