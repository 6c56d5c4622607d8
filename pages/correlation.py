"""Correlation: do offline scores predict what users say, month by month, and does the
judge still agree with people? The monthly review (also `evallib report --month`)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis.report import monthly_review, review_trends
from evallib.stats.correlation import STATUS, THRESHOLD
from pages import _online_charts as charts
from pages import _online_tables as tables
from pages import _ui as ui
from pages._common import (
    analysis,
    get_started,
    leave_pages_directory_mode,
    query,
    warehouse,
)
from pages._tables import human
from pages._verdicts import correlation_verdict

NUM = st.column_config.NumberColumn
TEXT = st.column_config.TextColumn
CI = {"r": NUM("r", format="%.2f"),
      "ci_low": NUM("95% CI low", format="%.2f"),
      "ci_high": NUM("95% CI high", format="%.2f"),
      "previous month": NUM("previous month", format="%.2f"),
      "n": NUM("pairs", format="localized"),
      "status": TEXT("status", pinned=True, width="medium"),
      "metric": TEXT("metric", pinned=True)}
STATUS_ICON = {"below": ":material/flag:", "unclear": ":material/help:",
               "too few": ":material/hourglass_empty:", "ok": ""}

leave_pages_directory_mode()
st.title("Correlation")
wh = warehouse()
if not wh.has_online:
    get_started(wh.root, "online traffic to correlate with")
    st.stop()
first, last = query(Q.online_date_range).row(0)
if first is None:
    get_started(wh.root, "online traffic to correlate with")
    st.stop()

months = tables.months_between(first, last)
default = tables.last_complete_month(months, last)
month = st.selectbox("Month", months, key="month", bind="query-params",
                     index=months.index(default),
                     help="The month under review (default: the last complete one); the "
                          "trend shows every month.")
# every month's correlations once (their bootstraps are the cost); the month's review on top
review = analysis(monthly_review, month, regressions=False, checks=False,
                  trends=analysis(review_trends))

# --- the answer first: this month's flags, new or chronic --------------------------------
ui.verdict(correlation_verdict(month, review.correlations, review.agreement, THRESHOLD))
fell = {m: v for m, v in tables.newly_flagged(review.trend).items() if m != month}
if fell:
    with st.container(key="flag_history"):
        st.warning(f"**Earlier months that fell below {THRESHOLD}**: " + "; ".join(
            f"**{m}**: {', '.join(v)}" for m, v in fell.items()), icon=":material/history:")
st.caption(f"A correlation is flagged when its 95% interval lies below {THRESHOLD}: the "
           "score no longer predicts what users say and the evaluation needs work. 'Cannot "
           f"tell' = the interval spans {THRESHOLD} (more data would tell); 'not enough "
           "data' = too few pairs, not a flag.")

# --- trace level --------------------------------------------------------------------------
st.subheader(f"Scores vs feedback in {month}")
corr = review.correlations
if corr.height == 0:
    st.info(f"No trace in {month} has both an online score and a thumbs or rating.")
else:
    thumbs = corr.filter(pl.col("feedback") == "thumbs")
    cards = st.columns(max(1, min(thumbs.height, 4)))
    for i, r in enumerate(thumbs.iter_rows(named=True)):
        flag = "" if r["status"] == "ok" else f" · {STATUS_ICON[r['status']]} {STATUS[r['status']]}"
        cards[i % len(cards)].metric(
            f"{human(r['metric'])} vs thumbs{flag}",
            "–" if r["r"] != r["r"] else f"{r['r']:.2f}", border=True, delta_color="off",
            delta=None if r["prev_r"] is None or r["prev_r"] != r["prev_r"]
            else f"{r['r'] - r['prev_r']:+.2f} vs previous month",
            help=f"{STATUS[r['status']]}: {r['method']}, n = {r['n']:,}, 95% CI "
                 f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
    st.dataframe(tables.correlation_rows(corr), hide_index=True, key="correlation_table",
                 column_config=CI)
    st.caption("Each trace's automated score against the user's thumbs (1 up, 0 down) or "
               "rating (1–5) on the same trace. Point-biserial for a pass/fail or 0–1 score "
               "against thumbs, Spearman otherwise; 95% intervals by bootstrap over traces.")

st.subheader("Month by month")
st.plotly_chart(charts.correlation_trend_figure(review.trend, month), key="trend_chart",
                config=ui.PLOT)

st.subheader("Binned scatter")
feedback = st.segmented_control("Feedback", ["thumbs", "rating"], default="thumbs",
                                key="feedback", bind="query-params", required=True)
st.plotly_chart(charts.binned_figure(review.score_cells, feedback), key="binned_chart",
                config=ui.PLOT)
st.caption(f"{month}: traces binned by score, one chart per score on its own scale; each "
           f"point is the mean {feedback} of its bin with a 95% interval, its size the "
           "number of traces.")

# --- release level ------------------------------------------------------------------------
st.subheader("Release level")
st.caption("Each release's offline score (the approved run that qualified it) against the "
           "online satisfaction of its traffic up to the month's end: Spearman over "
           "releases with a Fisher-z interval; fewer than 5 releases say nothing.")
if review.release_level.height == 0:
    st.info("No release has both an approved offline run and online feedback yet.")
else:
    st.dataframe(review.release_level.with_columns(
        pl.col("status").replace_strict(STATUS), pl.col("metric").str.replace_all("_", " ")),
        hide_index=True, key="release_table",
        column_order=("status", "metric", "feedback", "r", "ci_low", "ci_high", "n", "method"),
        column_config={**CI, "n": NUM("releases", width="small")})
    offline = sorted(review.release_points["metric"].unique().to_list())
    online = set(review.trend["metric"].unique().to_list())
    pick_default = next((x for x in offline if x in online), offline[0])
    pick = st.selectbox("Offline metric", offline, key="release_metric", bind="query-params",
                        index=offline.index(pick_default))
    st.plotly_chart(charts.release_figure(review.release_points, pick, feedback),
                    key="release_chart", config=ui.PLOT)

# --- judge vs humans --------------------------------------------------------------------
st.subheader("Judge vs human labels")
if review.agreement_trend.height == 0:
    st.info("No human label of a production trace yet (`evallib review sample`, then "
            "`evallib review import`).", icon=":material/label:")
else:
    st.dataframe(tables.agreement_rows(review.agreement_trend.sort("month",
                                                                   descending=True)),
                 hide_index=True, key="agreement_table", column_config={
                     "status": TEXT("status", pinned=True), "month": TEXT("month", pinned=True),
                     "n": NUM("labels", width="small"),
                     "same verdict": NUM("same verdict", format="%.0f%%")})
    st.plotly_chart(charts.agreement_figure(review.agreement_trend), key="agreement_chart",
                    config=ui.PLOT)
    st.caption("Judge's score against the human label of the same trace: Krippendorff's "
               "alpha (bootstrap 95% CI; flagged when its interval is below 0.667) and "
               "Cohen's kappa (linear weights on 1–5 scales, asymptotic 95% CI).")
