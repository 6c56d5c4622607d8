"""RAG: was a failure retrieval's or generation's? Retrieval quality at every cut k, the
generator's quality given the evidence it had, and every failing case attributed (overall,
per slice, against a baseline), down to the cases and a CSV. Definitions: `evallib.analysis.rag`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import cast

import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis import rag
from evallib.analysis.export import to_csv
from evallib.vocabulary import TRACE_DAYS_BACK
from pages import _rag_charts as rcharts
from pages import _rag_tables as rtables
from pages import _tables as tables
from pages import _ui as ui
from pages._common import (
    ONLINE,
    Filters,
    WarehouseView,
    filters,
    get_started,
    leave_pages_directory_mode,
    pick_source,
    query,
    url_choice,
    warehouse,
)
from pages._slices_tables import ALL, NONE  # the pickers' words
from pages._verdicts import rag_verdict

MAX_K = 10
# Online: how many of the sidebar's newest days to read (None: all of them)
WINDOWS = {"last day": 1, "last 7 days": 7, "last 28 days": 28, "the sidebar's days": None}
LIST_LIMIT = 2000  # failing items listed (and in the CSV) at most; a run's are all there
Details = Callable[[pl.DataFrame], pl.DataFrame]
# (class or None = every class, stratum key, its value) → the newest listed items, how many
Listing = Callable[[str | None, str | None, str | None], tuple[pl.DataFrame, int]]
ALPHA = 0.05
CARDS = (("recall", "recall@k"), ("precision", "precision@k"), ("mrr", "MRR@k"),
         ("ndcg", "nDCG@k"), ("context_precision", "context precision@k"),
         ("citation_hit_rate", "citation hit rate"))
CLASS_ICONS = {"retrieval": ":material/search_off:", "both": ":material/report:",
               "generation": ":material/edit_note:", "other": ":material/help:"}
NUM = st.column_config.NumberColumn
TEXT = st.column_config.TextColumn


def _pick_row() -> None:
    """A row picked in the per-slice table becomes the case list's class and slice."""
    rows = st.session_state["attribution_table"].selection.rows
    if rows:
        stratum, cls = st.session_state["_attribution_rows"][rows[0]]
        st.session_state["rag_class"] = cls
        st.session_state["rag_slice"] = stratum


def _pickers(names: list[str], kinds: list[str], keys: list[str]
             ) -> tuple[str, str | None, int, str | None]:
    """Answer and faithfulness metrics, k, and the stratum key the attribution is split by
    (None when the cases carry no strata)."""
    a, b, c, d = st.columns([2, 2, 3, 2])
    rates = [m for m, k in zip(names, kinds, strict=True) if k == "binary"] or names
    answer = a.selectbox("Answer metric", rates, key="answer", bind="query-params",
                         index=rates.index("correctness") if "correctness" in rates else 0,
                         help="A case fails when this metric does not pass.")
    faiths = [NONE, *names]
    faith = b.selectbox("Faithfulness metric", faiths, key="faith", bind="query-params",
                        index=faiths.index("faithfulness") if "faithfulness" in faiths else 0,
                        help="Splits retrieval misses: an unfaithful answer makes it 'both'.")
    k = c.slider("k: documents the generator read", 1, MAX_K, 5, key="k",
                 bind="query-params", help="Metrics are cut at k; 'relevant retrieved' means "
                                          "a relevant document in the top k.")
    key = d.selectbox("Per slice of", keys, key="rag_key", bind="query-params",
                      help="The stratum key the failure attribution is split by.") \
        if keys else None  # cases without strata: overall only
    return answer, None if faith == NONE else faith, k, key


def retrieval(metrics: pl.DataFrame, k: int, what: str) -> None:
    st.subheader("Retrieval")
    metrics = metrics.filter(pl.col("n") > 0)
    if metrics.height == 0:
        st.info(f"No {what} has retrieved documents with relevance labels.",
                icon=":material/search:")
        return
    at = rtables.retrieval_at(metrics, k)
    cards = st.columns(len(CARDS))
    for card, (name, label) in zip(cards, CARDS, strict=True):
        row = at.get(name)
        if row is None:
            card.metric(label.replace("@k", f"@{k}"), "—", border=True)
            continue
        ci = tables.interval_text(row["mean"], row["ci_low"], row["ci_high"], row["kind"])
        card.metric(label.replace("@k", f"@{k}"), f"{row['mean']:.3f}", border=True,
                    help=f"95% CI {ci}; n = {row['n']} {what}s")
    st.plotly_chart(rcharts.retrieval_curve(metrics, k), key="retrieval_curve",
                    config=ui.PLOT)
    n = at["recall"]["n"] if "recall" in at else 0
    st.caption(f"Over the {n} {what}s whose retrieved documents carry relevance labels (a "
               f"{what} with no gold document is left out; one whose documents were all "
               "judged irrelevant counts 0). Recall counts the relevant documents the "
               "retrievals or the golden set know; citation hit rate = share of cited "
               "documents that are relevant. Definitions as `evallib.scorers.retrieval`.")


def generation(gen: pl.DataFrame, answer: str, faith: str | None, what: str) -> None:
    st.subheader("Generation, given the evidence")
    if gen.height == 0:
        st.info(f"No {what} with retrievals is scored.")
        return
    first = [answer, *([faith] if faith else []), "cites_relevant", "refusal"]
    st.dataframe(rtables.generation_table(gen, first), hide_index=True, key="generation",
                 column_config={"metric": TEXT("metric", pinned=True),
                                "kind": TEXT("kind", width="small"),
                                "all": TEXT(f"every {what} with retrievals")})
    refusal = ("**refusal** = the trace declined to answer: right when the evidence is "
               "missing, wrong when a relevant document was there. " if what == "trace" else
               f"With no gold document (out of scope) the right answer is to decline, so "
               f"**{answer}** there is refusal correctness. ")
    st.caption(f"Each metric's mean [95% CI] · n by what the generator had in its top k: a "
               f"relevant document, none, or no gold document exists. **cites_relevant** = "
               f"of the answers citing a document, the share citing a relevant one (citation "
               f"faithfulness). {refusal}"
               f"A low {answer} *with* the evidence is the generator's.")


def attribution(items: pl.DataFrame, base_items: pl.DataFrame | None, key: str | None,
                what: str, name: str, details: Details, listing: Listing) -> None:
    st.subheader("Failure attribution")
    overall = rag.attribution_table(items)
    failing = int(overall["failing"][0]) if overall.height else 0
    unattributed = int(overall["not_attributed"][0]) if overall.height else 0
    if failing == 0:
        st.info(f"No failing {what} to attribute"
                + (f" ({unattributed} failing without retrieval data)." if unattributed
                   else "."))
        return
    st.caption(f"{failing} failing {what}s (answer metric failed, no error)"
               + (f"; {unattributed} more have no retrieval data and are not attributed"
                  if unattributed else "")
               + ". **retrieval** = no relevant document in the top k and a faithful answer; "
               "**both** = no relevant document and an unfaithful answer; **generation** = a "
               "relevant document in the top k, answer still wrong; **other** = no gold "
               "document exists. Shares with 95% Wilson intervals.")
    cards = st.columns(len(rag.CLASSES))
    for card, row in zip(cards, overall.iter_rows(named=True), strict=True):
        card.metric(f"{CLASS_ICONS[row['class']]} {row['class']}", f"{row['n']:,}",
                    border=True, help=f"{row['share']:.0%} of attributed failures "
                                      f"[{row['ci_low']:.0%}, {row['ci_high']:.0%}]")
    per = rag.attribution_table(items, key)
    chart, table = st.tabs(["Chart", "Table"])
    shown = pl.concat([overall, per]) if key else overall
    base_shown = None
    if base_items is not None:
        base_overall = rag.attribution_table(base_items)
        base_shown = pl.concat([base_overall, rag.attribution_table(base_items, key)]) \
            if key else base_overall
    chart.plotly_chart(rcharts.attribution_bars(shown, base_shown), key="attribution_chart",
                       config=ui.PLOT)
    if base_shown is not None:
        chart.caption("Each slice: the baseline's failing cases (upper bar) above the run's.")
    st.session_state["_attribution_rows"] = list(per.select("stratum", "class").iter_rows())
    table.dataframe(rtables.attribution_display(per), hide_index=True,
                    key="attribution_table", on_select=_pick_row, selection_mode="single-row",
                    column_config={"stratum": TEXT(key or "stratum", pinned=True),
                                   "n": NUM(f"failing {what}s"),
                                   "failing (attributed)": NUM(f"{what}s attributed"),
                                   "not_attributed": NUM("not attributed")})
    if base_items is not None:
        shift(base_items, items, key, name)
    cases(items, key, what, details, listing)


def shift(base_items: pl.DataFrame, items: pl.DataFrame, key: str | None, name: str
          ) -> None:
    st.markdown(f"**Against the baseline** ({name})")
    moved = rag.attribution_shift(base_items, items, None, ALPHA)
    both = pl.concat([moved, rag.attribution_shift(base_items, items, key, ALPHA)]) \
        if key else moved
    st.caption("Per class, the failing cases both runs scored, each run's count and share; "
               "a paired McNemar test of 'fails with this class', Benjamini–Hochberg "
               f"adjusted (overall and per {key} separately). Biggest moves first.")
    st.dataframe(rtables.shift_display(both), hide_index=True, key="shift_table",
                 column_config={
                     "stratum": TEXT(key or "stratum", pinned=True),
                     "class": TEXT("class", pinned=True),
                     "baseline": NUM("baseline", format="%d"), "run": NUM("run", format="%d"),
                     "change": NUM("change", format="%+d"),
                     "baseline share": NUM("baseline share", format="%.0f%%"),
                     "run share": NUM("run share", format="%.0f%%"),
                     "p": NUM("p", format="%.2g"), "p adjusted": NUM("p adjusted",
                                                                    format="%.2g"),
                     "cases": NUM("cases compared")})
    with st.expander("How cases moved between outcomes (baseline → run)"):
        st.dataframe(rag.transitions(base_items, items), hide_index=True, key="transitions")


def cases(items: pl.DataFrame, key: str | None, what: str, details: Details,
          listing: Listing) -> None:
    st.markdown(f"**The failing {what}s**")
    a, b = st.columns([3, 2])
    cls = a.segmented_control("Class", ["all", *rag.CLASSES], key="rag_class",
                              bind="query-params", default="all", required=True)
    stratum = ALL
    if key is not None:
        slices = [ALL, *sorted(set(rag.with_stratum(items, key)["stratum"]))]
        stratum = b.selectbox(key, slices, key="rag_slice", bind="query-params")
    picked, total = listing(None if cls == "all" else cls, key,
                            None if stratum == ALL else stratum)
    if total > picked.height:
        st.caption(f"The newest {picked.height:,} of {total:,} {what}s.")
    picked = rtables.with_details(picked, details(picked))
    st.caption(f"{picked.height:,} {what}s; select one to read it in full.")
    event = st.dataframe(picked, hide_index=True, key="class_cases", on_select="rerun",
                         selection_mode="single-row", column_config={
                             picked.columns[0]: TEXT(what, pinned=True),
                             "class": TEXT("class", pinned=True),
                             "answer score": NUM("answer", format="%.3g", width="small"),
                             "faithfulness": NUM("faithfulness", format="%.3g",
                                                 width="small"),
                             "first_relevant": NUM("first relevant rank", width="small"),
                             "cited_relevant": st.column_config.CheckboxColumn(
                                 "cited a relevant doc"),
                             "top_k": TEXT("top k documents"),
                             "date": st.column_config.DateColumn("day", format="YYYY-MM-DD")})
    row = ui.selected_row(picked, event)
    if row is not None:
        ident = picked.columns[0]
        ui.case_panel(row, "answer", title=f"**{row[ident]}** · {row['class']} · "
                                           f"{row.get('strata') or ''}",
                      sides=[("Answer", "answer score", "output", "judge rationale")],
                      extra=["top_k"])
    st.download_button(f"These {picked.height} {what}s (CSV)", to_csv(picked),
                       key="download_class", mime="text/csv", icon=ui.DOWNLOAD,
                       file_name=f"failures-{cls}-{stratum}.csv".replace(" ", "_"))


def offline(f: Filters) -> None:
    runs = query(Q.runs_overview, f.dataset)
    if runs.height == 0:
        get_started(warehouse().root, "offline runs")
        return
    labels = tables.run_labels(runs)
    ids = list(labels)
    newest, approved = tables.default_pair(runs)
    left, right = st.columns(2)
    run = left.selectbox("Run", ids, format_func=labels.__getitem__, key="rag_run",
                         index=ids.index(url_choice(ids, "run", newest)))
    bases = [NONE, *[i for i in ids if i != run]]
    default = approved if approved in bases else NONE
    baseline = right.selectbox(
        "Against baseline", bases, key="rag_baseline",
        format_func=lambda r: "(none)" if r == NONE else labels[r],
        index=bases.index(url_choice(bases, "vs", default)),
        help="Default: the newest approved run before the newest run.")
    st.query_params["run"], st.query_params["vs"] = run, baseline
    m = query(Q.metrics, f.dataset)
    answer, faith, k, key = _pickers(m["metric"].to_list(), m["kind"].to_list(),
                                     query(Q.strata_keys, f.dataset)["key"].to_list())
    items = rag.classify(query(Q.attribution_items, run, k, answer, faith or "", False))
    base_items = None if baseline == NONE else rag.classify(
        query(Q.attribution_items, baseline, k, answer, faith or "", False))
    moved = None if base_items is None else pl.concat(
        [rag.attribution_shift(base_items, items, None, ALPHA)]
        + ([rag.attribution_shift(base_items, items, key, ALPHA)] if key else []))
    base_name = runs.filter(pl.col("run_id") == baseline)["name"].to_list()
    ui.verdict(rag_verdict(rag.attribution_table(items), moved, "case",
                           base_name[0] if base_name else ""))
    retrieval(query(Q.retrieval_metrics, run, MAX_K), k, "case")
    generation(query(Q.generation_by_evidence, run, k), answer, faith, "case")

    def details(listed: pl.DataFrame) -> pl.DataFrame:
        return query(Q.attribution_details, run, k, answer, tuple(listed["case_id"]))

    def listing(cls: str | None, key: str | None, stratum: str | None
                ) -> tuple[pl.DataFrame, int]:
        picked = rtables.class_cases(items, cls, key, stratum)
        return picked.head(LIST_LIMIT), picked.height

    attribution(items, base_items, key, "case", labels.get(baseline, ""), details, listing)


def online(wh: WarehouseView, f: Filters) -> None:
    sidebar_days = f.days
    if not wh.has_online or sidebar_days is None:
        get_started(wh.root, "online traffic")
        return
    window = st.segmented_control(
        "Window", list(WINDOWS), default="the sidebar's days", key="rag_window",
        bind="query-params", required=True, help="The sidebar's days, or its newest ones.")
    newest = WINDOWS[window]
    end = sidebar_days.end
    start = sidebar_days.start if newest is None else max(
        sidebar_days.start, end - timedelta(days=newest - 1))
    m = query(Q.online_metrics)
    answer, faith, k, key = _pickers(m["metric"].to_list(), m["kind"].to_list(),
                                     query(Q.online_strata_keys)["key"].to_list())
    pair = (k, answer, faith or "")
    counts = query(Q.online_attribution_counts, start, end, *pair)
    ui.verdict(rag_verdict(rag.attribution_table(counts), None, "trace"))
    st.caption(f"Production traces {start:%Y-%m-%d} → {end:%Y-%m-%d} (UTC days) that "
               "logged their retrievals, and the scores of those days (each with its trace's "
               "retrievals of the week before). From the daily rollups: the failing traces "
               "listed are read from the newest days that hold them.")
    retrieval(query(Q.online_retrieval_metrics, start, end, MAX_K), k, "trace")
    generation(query(Q.online_generation_by_evidence, start, end, k), answer, faith,
               "trace")

    def details(listed: pl.DataFrame) -> pl.DataFrame:
        if listed.height == 0:
            return pl.DataFrame(schema={"trace_id": pl.String})
        # texts of the traces (of the week before their score) and the answer's reason
        low, high = cast(date, listed["date"].min()), cast(date, listed["date"].max())
        return query(Q.online_attribution_details, low - timedelta(days=TRACE_DAYS_BACK), high,
                     k, answer, tuple(listed["trace_id"]))

    def listing(cls: str | None, key: str | None, stratum: str | None
                ) -> tuple[pl.DataFrame, int]:
        classes = tuple(rag.CLASSES) if cls is None else (cls,)
        key = key if stratum is not None else None  # "All cases": every stratum
        days = query(Q.online_failure_days, start, end, *pair, classes, key, stratum)
        first = rag.newest_days(days, LIST_LIMIT) or end  # only the days that hold them
        rows = query(Q.online_failures, first, end, *pair, classes, key, stratum,
                     LIST_LIMIT)
        return rtables.class_cases(rows, cls, key, stratum), int(days["n"].sum())

    attribution(counts, None, key, "trace", "", details, listing)


leave_pages_directory_mode()
st.title("RAG")
wh, f = warehouse(), filters()
if wh.is_empty:
    get_started(wh.root, "runs and no online data")
    st.stop()
if pick_source(wh) == ONLINE:
    online(wh, f)
else:
    offline(f)
