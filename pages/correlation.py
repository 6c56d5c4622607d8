"""Correlation: do offline scores predict what users say, month by month, and does the
judge still agree with people? The monthly review (also `evallib report --month`)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from evallib.stats.correlation import THRESHOLD
from pages import _online_charts as charts
from pages import _online_tables as tables
from pages._common import (
    analysis,
    get_started,
    leave_pages_directory_mode,
    query,
    url_choice,
    warehouse,
)

PLOT = {"displaylogo": False}
CI = {"ci_low": st.column_config.NumberColumn("95% CI low", format="%.2f"),
      "ci_high": st.column_config.NumberColumn("95% CI high", format="%.2f"),
      "r": st.column_config.NumberColumn(format="%.2f"),
      "previous month": st.column_config.NumberColumn(format="%.2f")}

leave_pages_directory_mode()
st.title("🔗 Correlation")
wh = warehouse()
if not wh.has_online:
    get_started(wh.root, "online traffic to correlate with")
    st.stop()
first, last = query("online_date_range").row(0)
if first is None:
    get_started(wh.root, "online traffic to correlate with")
    st.stop()

months = tables.months_between(first, last)
month = st.selectbox("Month", months, key="month", bind="query-params",
                     index=months.index(url_choice(months, "month", months[0])),
                     help="The month under review; the trend shows every month.")
# every month's correlations once (their bootstraps are the cost); the month's review on top
review = analysis("review", month, regressions=False, checks=False, trends=analysis("trends"))

# --- what changed: months where a correlation fell below the bar ------------------------
fell = tables.newly_flagged(review.trend)
if fell:
    st.error("**Fell below " + f"{THRESHOLD}:** " + "; ".join(
        f"**{m}**: {', '.join(v)}" for m, v in fell.items()), icon="🚩")
st.caption(f"A correlation is flagged 🚩 when its 95% interval lies below {THRESHOLD}: the "
           "score no longer predicts what users say and the evaluation needs work. ❔ = the "
           f"interval spans {THRESHOLD} (more data would tell), ⏳ = too few pairs.")

# --- trace level --------------------------------------------------------------------------
st.subheader(f"Scores vs feedback in {month}")
corr = review.correlations
if corr.height == 0:
    st.info(f"No trace in {month} has both an online score and a thumbs or rating.")
else:
    thumbs = corr.filter(pl.col("feedback") == "thumbs")
    cards = st.columns(max(1, min(thumbs.height, 4)))
    for i, r in enumerate(thumbs.iter_rows(named=True)):
        cards[i % len(cards)].metric(
            f"{tables.FLAG[r['status']]} {r['metric']} vs thumbs",
            "–" if r["r"] != r["r"] else f"{r['r']:.2f}", border=True,
            delta=None if r["prev_r"] is None or r["prev_r"] != r["prev_r"]
            else f"{r['r'] - r['prev_r']:+.2f} vs previous month",
            help=f"{r['method']}, n = {r['n']:,}, 95% CI [{r['ci_low']:.2f}, "
                 f"{r['ci_high']:.2f}]")
    st.dataframe(tables.correlation_rows(corr), hide_index=True, key="correlation_table",
                 column_config=CI)
    st.caption("Each trace's automated score against the user's thumbs (1 up, 0 down) or "
               "rating (1–5) on the same trace. Point-biserial for a pass/fail or 0–1 score "
               "against thumbs, Spearman otherwise; 95% intervals by bootstrap over traces.")

st.subheader("Month by month")
st.plotly_chart(charts.correlation_trend_figure(review.trend, month), key="trend_chart",
                config=PLOT)

st.subheader("Binned scatter")
feedback = st.segmented_control("Feedback", ["thumbs", "rating"], default="thumbs",
                                key="feedback", bind="query-params", required=True)
st.plotly_chart(charts.binned_figure(review.score_cells, feedback), key="binned_chart",
                config=PLOT)
st.caption(f"{month}: traces binned by score; each point is the mean {feedback} of its "
           "bin with a 95% interval, its size the number of traces.")

# --- release level ------------------------------------------------------------------------
st.subheader("Release level")
st.caption("Each release's offline score (the approved run that qualified it) against the "
           "online satisfaction of its traffic up to the month's end: Spearman over "
           "releases with a Fisher-z interval; fewer than 5 releases say nothing.")
if review.release_level.height == 0:
    st.info("No release has both an approved offline run and online feedback yet.")
else:
    st.dataframe(review.release_level.with_columns(
        pl.col("status").replace_strict(tables.FLAG)),
        hide_index=True, key="release_table", column_config=CI)
    offline = sorted(review.release_points["metric"].unique().to_list())
    online = set(review.trend["metric"].unique().to_list())
    default = next((x for x in offline if x in online), offline[0])
    pick = st.selectbox("Offline metric", offline, key="release_metric", bind="query-params",
                        index=offline.index(url_choice(offline, "release_metric", default)))
    st.plotly_chart(charts.release_figure(review.release_points, pick, feedback),
                    key="release_chart", config=PLOT)

# --- judge vs humans --------------------------------------------------------------------
st.subheader("Judge vs human labels")
if review.agreement_trend.height == 0:
    st.info("No human label of a production trace yet (`evallib review sample`, then "
            "`evallib review import`).", icon="🏷️")
else:
    st.dataframe(tables.agreement_rows(review.agreement_trend.sort("month",
                                                                   descending=True)),
                 hide_index=True, key="agreement_table")
    st.plotly_chart(charts.agreement_figure(review.agreement_trend), key="agreement_chart",
                    config=PLOT)
    st.caption("Judge's score against the human label of the same trace: Cohen's kappa "
               "(linear weights on 1–5 scales, asymptotic 95% CI) and Krippendorff's alpha "
               "(bootstrap 95% CI; 🚩 when its interval is below 0.667).")
