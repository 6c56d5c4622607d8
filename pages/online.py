"""Online: is production still healthy? Quality, latency, errors, cost and feedback day by
day (or hour by hour), alerts, canary against control, and drift."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis.drift import P_MAX, drift_report
from evallib.analysis.monitor import Settings, compare_variants, detect
from pages import _online_charts as charts
from pages import _online_tables as tables
from pages import _ui as ui
from pages._common import (
    Days,
    analysis,
    filters,
    get_started,
    leave_pages_directory_mode,
    query,
    warehouse,
)
from pages._verdicts import online_verdict

PLOT = {"displaylogo": False}
NUM = st.column_config.NumberColumn
TEXT = st.column_config.TextColumn
GRAINS = ["Daily", "Hourly (last 48 h)"]
AXES = ["clipped", "log", "full"]
PCT = "%.2f%%"
DRIFT_WINDOWS = {"last day": 1, "last 7 days": 7, "last 28 days": 28}


def health_tab(days: Days, metrics: list[str], kinds: list[str], keys: list[str],
               alerts: list) -> None:
    c1, c2, c3 = st.columns([1, 1, 1])
    grain = c1.segmented_control("View", GRAINS, default=GRAINS[0], key="grain",
                                 bind="query-params", required=True)
    split = c2.selectbox("Split by", tables.split_options(keys), key="split",
                         bind="query-params",
                         help="A line per release, variant (canary vs control) or stratum.")
    metric = c3.selectbox("Quality metric", metrics, key="metric", bind="query-params",
                          index=kinds.index("binary") if "binary" in kinds else 0) \
        if metrics else None
    hourly = grain == GRAINS[1]
    start = days.end - timedelta(days=1) if hourly else days.start
    by, key = tables.split_args(split)
    health = query(Q.online_health, start, days.end, hourly, by, key)
    quality = query(Q.online_quality, start, days.end, hourly, by, key)
    feedback = query(Q.online_feedback, start, days.end, hourly, by, key)
    success = next((m for m, k in zip(metrics, kinds, strict=True) if k == "binary"), None)
    table = tables.health_table(health, quality, feedback, success)
    when = (f"{start:%Y-%m-%d} → {days.end:%Y-%m-%d}, " + ("by UTC hour" if hourly
                                                          else "by UTC day"))
    st.caption(f"{when}: {health['n'].sum():,} sampled traces. Shaded days: an alert on "
               "that signal (see Alerts).")
    st.plotly_chart(charts.volume_quality(table, quality, metric, alerts, hourly),
                    key="quality_chart", config=PLOT)  # without a metric: the volume
    left, right = st.columns(2)
    axis = left.segmented_control("Latency axis", AXES, default="clipped", key="latency_axis",
                                  bind="query-params", required=True,
                                  help="Clipped: up to 1.3 × the highest p95, so timeouts "
                                       "(30 s) do not flatten the rest; log: every value.")
    left.plotly_chart(charts.latency(table, alerts, hourly, axis), key="latency_chart",
                      config=PLOT)
    right.plotly_chart(charts.cost(table, alerts, hourly), key="cost_chart", config=PLOT)
    left.plotly_chart(charts.rates(table, alerts, hourly), key="rates_chart", config=PLOT)
    right.plotly_chart(charts.feedback(table, hourly), key="feedback_chart", config=PLOT)
    st.caption(
        f"Cost per successful task = cost ÷ (traces × (1 − error rate) × the pass rate of "
        f"**{success or 'a binary score'}** on the scored traces): what a task that went "
        "right costs. Feedback rates are counted on the day the user gave them.")
    with st.expander("The numbers"):
        st.dataframe(tables.health_display(table, hourly), hide_index=True,
                     key="health_table", column_config=HEALTH_COLUMNS)


def canary_tab(window: Days) -> None:
    served = query(Q.online_variant_days, window.start, window.end)
    variants = (served.group_by("variant").agg(pl.col("n").sum()).drop_nulls("variant")
                .sort("n", descending=True)["variant"].to_list())
    if len(variants) < 2:
        st.info(f"Only {variants[0] if variants else 'one variant'} served traffic in this "
                "window: nothing to compare. A canary shows up here while it runs next to "
                "the control.", icon=":material/science:")
        return
    control, treatment = tables.variant_defaults(variants)
    c1, c2 = st.columns(2)
    control = c1.selectbox("Control", variants, key="control", bind="query-params",
                           index=variants.index(control))
    treatment = c2.selectbox("Compared variant", variants, key="treatment",
                             bind="query-params",
                             index=variants.index(treatment))
    if control == treatment:
        st.info("Pick two different variants.")
        return
    result = analysis(compare_variants, window.start, window.end, control, treatment)
    if not result.days:
        st.info(f"{control} and {treatment} never served on the same day in this window.")
        return
    first, last = result.days[0], result.days[-1]
    worse = [s.signal for s in result.regressions]
    better = [s.signal for s in result.signals if s.verdict == "better"]
    if worse:
        st.error(f"**{treatment} is worse than {control}** on "
                 f"{', '.join(w.replace('_', ' ') for w in worse)} (Benjamini–Hochberg over "
                 f"{len(result.signals)} signals, α = {result.alpha:g}).",
                 icon=":material/error:")
    else:
        st.success(f"No signal is significantly worse on {treatment} than on {control}"
                   + (f"; better on {', '.join(better)}." if better else "."),
                   icon=":material/check_circle:")
    st.caption(f"{len(result.days)} days both served ({first:%Y-%m-%d} → {last:%Y-%m-%d}). "
               "Unpaired tests, each trace in one variant: two proportions (score test, "
               "Newcombe interval) for rates, Mann–Whitney for 1–5 scales and latency (with "
               "bootstrap intervals of the mean or of the p50/p95 ratio), Welch t for cost "
               "and continuous scores.")
    st.dataframe(tables.canary_table(result), hide_index=True, key="canary_table",
                 column_config={"verdict": TEXT("verdict", pinned=True),
                                "signal": TEXT("signal", pinned=True),
                                control: NUM(control, format="%.4g"),
                                treatment: NUM(treatment, format="%.4g"),
                                "p": NUM("p", format="%.2g"),
                                "p adjusted": NUM("p adjusted", format="%.2g")})
    daily = tables.health_table(query(Q.online_health, first, last, False, "variant", None)
                                .filter(pl.col("grp").is_in([control, treatment])))
    left, right = st.columns(2)
    left.plotly_chart(charts.latency(daily, axis="log"), key="canary_latency", config=PLOT)
    right.plotly_chart(charts.rates(daily), key="canary_rates", config=PLOT)


def drift_tab(days: Days, first_day: date) -> None:
    choice = st.segmented_control("Window", list(DRIFT_WINDOWS), default="last 7 days",
                                  key="drift_window", bind="query-params", required=True)
    window = tables.drift_window(days.end, max(first_day, days.start), DRIFT_WINDOWS[choice])
    if window is None:
        st.info("The window starts on the first day with traffic: there is no earlier "
                "traffic to compare it with. Widen the days in the sidebar.",
                icon=":material/explore:")
        return
    ref_start, ref_end, start, end = window
    results = drift_report(query(Q.online_drift_counts, ref_start, ref_end, start, end))
    moved = [d for d in results if d.flagged]
    st.caption(f"{start:%Y-%m-%d} → {end:%Y-%m-%d} against {ref_start:%Y-%m-%d} → "
               f"{ref_end:%Y-%m-%d}. A feature moved when three agree: its test "
               f"(chi-square for categories, Kolmogorov–Smirnov for lengths and scores, "
               f"p < {P_MAX}), its population stability index (< 0.1 stable, 0.1–0.25 "
               "moderate, ≥ 0.25 major) and, for lengths and scores, the typical change in "
               "their own units (the band is capped by it). With this many traces the tests "
               "find tiny shifts; the band says whether one matters.")
    if moved:
        st.warning("**Moved:** " + "; ".join(f"{d.feature} ({d.band}, PSI {d.psi:.2f}: "
                                              f"{d.moved})" for d in moved),
                   icon=":material/warning:")
    else:
        st.success("Nothing moved beyond the stable band.", icon=":material/check_circle:")
    st.dataframe(tables.drift_table(results), hide_index=True, key="drift_table",
                 column_config={"band": TEXT("band", pinned=True),
                                "feature": TEXT("feature", pinned=True),
                                "PSI": NUM("PSI", format="%.3f"),
                                "moved most": TEXT("moved most"),
                                "statistic": NUM("statistic", format="%.3g"),
                                "p": NUM("p", format="%.2g"),
                                "n reference": NUM("traces (reference)", format="localized"),
                                "n window": NUM("traces (window)", format="localized")})
    left, right = st.columns(2)
    left.plotly_chart(charts.drift_figure(results), key="drift_chart", config=PLOT)
    names = [d.feature for d in results if d.bins]
    if names:
        pick = right.selectbox("Distribution of", names, key="drift_feature",
                               bind="query-params")
        right.plotly_chart(charts.drift_distribution(next(d for d in results
                                                          if d.feature == pick)),
                           key="drift_distribution", config=PLOT)


def alerts_tab(alerts: list, tests, recorded) -> None:  # frames
    s = Settings()  # what analysis(detect, …) detects with
    st.caption(f"Each day against the {s.baseline_days} days before it, one-sided in the bad "
               "direction: Fisher's exact test for rates (allowing for day-to-day "
               "overdispersion), a random-effects z for means (ln latency, cost, scores). A "
               f"day is flagged at p < {s.alpha:g} and a practical minimum change; "
               "consecutive flagged days are one "
               "alert. Simulated on stationary traffic, fewer than 1 day in 100 raises any "
               "alert. `evallib alerts` records them and exits 1 while one is open.")
    if alerts:
        st.dataframe(tables.alerts_table(alerts, recorded), hide_index=True,
                     key="alerts_table",
                     column_config={"status": TEXT("status", pinned=True),
                                    "first day": st.column_config.DateColumn(
                                        "first day", format="YYYY-MM-DD"),
                                    "last day": st.column_config.DateColumn(
                                        "last day", format="YYYY-MM-DD"),
                                    "p": NUM("p (one-sided)", format="%.2g"),
                                    "what": TEXT("what", width="large"),
                                    "recorded": st.column_config.CheckboxColumn(
                                        "recorded", help="by `evallib alerts`")})
    else:
        st.success("No alert in this window.", icon=":material/notifications:")
    if tests.height:
        last = tests["day"].max()
        st.markdown(f"**Checks on {last:%Y-%m-%d}** (too little data = too little traffic or "
                    "baseline to test)")
        st.dataframe(tables.checks_table(tests, last), hide_index=True, key="checks_table",
                     column_config={"result": TEXT("result", pinned=True),
                                    "observed": NUM("observed", format="%.4g"),
                                    "baseline": NUM("baseline", format="%.4g"),
                                    "change": NUM("change", format="%+.3g"),
                                    "n": NUM("traces", format="localized"),
                                    "p (one-sided)": NUM("p (one-sided)", format="%.2g")})
    if recorded.height:
        st.markdown("**Recorded by `evallib alerts`**")
        st.dataframe(recorded.select("status", "signal", "first_day", "last_day",
                                     "detected_at", "message"), hide_index=True,
                     key="recorded_table", column_config={
                         "first_day": st.column_config.DateColumn("first day",
                                                                  format="YYYY-MM-DD"),
                         "last_day": st.column_config.DateColumn("last day",
                                                                 format="YYYY-MM-DD"),
                         "detected_at": st.column_config.DatetimeColumn(
                             "detected", format="YYYY-MM-DD HH:mm")})


HEALTH_COLUMNS = {
    "bucket": TEXT("day (UTC)", pinned=True), "grp": TEXT("group", pinned=True),
    "n": NUM("traces", format="localized"),
    "error_rate": NUM("errors", format=PCT), "refusal_rate": NUM("refusals", format=PCT),
    "tool_error_rate": NUM("tool errors", format=PCT),
    "latency_p50": NUM("p50 latency", format="%.0f ms"),
    "latency_p95": NUM("p95 latency", format="%.0f ms"),
    "latency_p99": NUM("p99 latency", format="%.0f ms"),
    "cost_usd": NUM("cost", format="$%.2f"),
    "cost_per_request": NUM("cost per request", format="$%.5f"),
    "pass_rate": NUM("pass rate", format=PCT),
    "cost_per_success": NUM("cost per success", format="$%.5f"),
    "thumbs_up_share": NUM("thumbs up", format="%.1f%%"),
    "n_thumbs": NUM("thumbs", format="localized"), "n_rating": NUM("ratings",
                                                                  format="localized"),
    "mean_rating": NUM("mean rating", format="%.2f"),
    "feedback_per_100": NUM("feedback per 100 traces", format="%.1f"),
}

leave_pages_directory_mode()
st.title("Online")
wh, f = warehouse(), filters()
if not wh.has_online or f.days is None:
    get_started(wh.root, "online traffic")
    st.stop()
days = f.days

first_day = query(Q.online_date_range)["first_day"][0]
m = query(Q.online_metrics)
metric_names, metric_kinds = m["metric"].to_list(), m["kind"].to_list()
if not metric_names:
    st.info("Traces are recorded but none is scored yet (`evallib score-online`).")
alerts, tests = analysis(detect, days.start, days.end)
recorded = query(Q.alerts, days.start)
ui.verdict(online_verdict(alerts, days.start, days.end))
health_view, canary_view, drift_view, alerts_view = st.tabs(
    ["Health", "Canary", "Drift", "Alerts"], key="view", bind="query-params")
with health_view:
    health_tab(days, metric_names, metric_kinds, query(Q.online_strata_keys)["key"].to_list(),
               alerts)
with canary_view:
    canary_tab(days)
with drift_view:
    drift_tab(days, first_day)
with alerts_view:
    alerts_tab(alerts, tests, recorded)
