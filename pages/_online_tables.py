"""Frames the Online and Correlation pages show, shaped from query results and evallib's
analyses. No streamlit, no SQL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import polars as pl

from evallib.analysis.drift import DriftResult
from evallib.analysis.monitor import Alert, VariantComparison
from evallib.stats.correlation import STATUS
from evallib.vocabulary import MISSING  # traces without a value for the split

NONE = "(none)"
RATE_SIGNALS = ("error_rate", "refusal_rate", "tool_error_rate")


def split_options(stratum_keys: Sequence[str]) -> list[str]:
    """What a health view can be split by: nothing, release, variant or a stratum key."""
    return [NONE, "release", "variant", *(f"stratum: {k}" for k in stratum_keys)]


def split_args(choice: str | None) -> tuple[str | None, str | None]:
    """A split option → (by, key) for `queries.online_health` & co."""
    if not choice or choice == NONE:
        return None, None
    if choice.startswith("stratum: "):
        return "stratum", choice.removeprefix("stratum: ")
    return choice, None


def health_table(health: pl.DataFrame, quality: pl.DataFrame | None = None,
                 feedback: pl.DataFrame | None = None, success_metric: str | None = None
                 ) -> pl.DataFrame:
    """One row per bucket × group: traces, the three rates, latency percentiles, cost per
    request and per successful task, thumbs-up share, feedback per 100 traces, mean rating.

    A successful task is a trace without an error whose ``success_metric`` (a binary online
    score) passed: its share is estimated as (1 - error rate) × the pass rate of the
    scored traces (errors are unscored), and cost per success = cost / (n × that share)."""
    keys = ["bucket", "grp"]
    h = health.select(
        *keys, "n", *(pl.col(f"n_{s.removesuffix('_rate')}") / pl.col("n") for s in
                      RATE_SIGNALS),
        "latency_p50", "latency_p95", "latency_p99", "cost_usd",
        (pl.col("cost_usd") / pl.col("n_cost")).alias("cost_per_request"),
    ).rename({f"n_{s.removesuffix('_rate')}": s for s in RATE_SIGNALS})
    if success_metric is not None and quality is not None and quality.height:
        ok = quality.filter(pl.col("metric") == success_metric).select(
            *keys, pl.col("mean").alias("pass_rate"))
        h = h.join(ok, on=keys, how="left", nulls_equal=True)
    else:
        h = h.with_columns(pl.lit(None, pl.Float64).alias("pass_rate"))
    h = h.with_columns(
        (pl.col("cost_usd") / (pl.col("n") * (1 - pl.col("error_rate")) * pl.col("pass_rate")))
        .alias("cost_per_success"))
    if feedback is None:
        return h.sort(keys, nulls_last=True)
    fb = feedback.select(
        *keys, (pl.col("n_thumbs_up") / pl.col("n_thumbs")).alias("thumbs_up_share"),
        pl.col("n_thumbs"), pl.col("n_rating"), pl.col("mean_rating"))
    h = h.join(fb, on=keys, how="left", nulls_equal=True)
    return h.with_columns(
        (100 * (pl.col("n_thumbs").fill_null(0) + pl.col("n_rating").fill_null(0))
         / pl.col("n")).alias("feedback_per_100")).sort(keys, nulls_last=True)


def health_display(table: pl.DataFrame, hourly: bool = False) -> pl.DataFrame:
    """`health_table` as read: the bucket as a date (or date and hour), rates and shares in
    percent (the charts' unit), the group's missing value named."""
    pct = [*RATE_SIGNALS, "pass_rate", "thumbs_up_share"]
    return table.with_columns(
        pl.col("bucket").dt.strftime("%Y-%m-%d %H:00" if hourly else "%Y-%m-%d"),
        pl.col("grp").cast(pl.String).fill_null(MISSING if table["grp"].null_count()
                                                < table.height else "all traffic"),
        *[(pl.col(c) * 100) for c in pct if c in table.columns])


def alerts_table(alerts: Sequence[Alert], recorded: pl.DataFrame) -> pl.DataFrame:
    """The detector's alerts, open first, and whether `evallib alerts` recorded them."""
    stored = {r["alert_id"]: r["status"] for r in recorded.iter_rows(named=True)} \
        if recorded.height else {}
    rows = [{"status": a.status, "signal": a.signal.replace("_", " "),
             "first day": a.first_day, "last day": a.last_day, "what": a.message,
             "release": a.release or "", "p": a.p_value, "recorded": a.alert_id in stored}
            for a in sorted(alerts, key=lambda a: (a.status != "open", a.first_day),
                            reverse=False)]
    schema = {"status": pl.String, "signal": pl.String, "first day": pl.Date,
              "last day": pl.Date, "what": pl.String, "release": pl.String, "p": pl.Float64,
              "recorded": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def checks_table(tests: pl.DataFrame, day: date) -> pl.DataFrame:
    """The detector's tests of one day: what it looked at and how far each signal is from
    alerting."""
    return (tests.filter(pl.col("day") == day)
            .select(pl.when(pl.col("flagged")).then(pl.lit("alert"))
                    .when(pl.col("p_value").is_null()).then(pl.lit("too little data"))
                    .otherwise(pl.lit("ok")).alias("result"),
                    pl.col("signal").str.replace_all("_", " "), "direction", "n", "observed",
                    "baseline", "change", pl.col("p_value").alias("p (one-sided)")))


def variant_defaults(variants: list[str]) -> tuple[str, str]:
    """Control and treatment to compare first: 'control' and 'canary' when present, else
    the two variants with the most traffic (``variants`` is ordered by traffic)."""
    control = "control" if "control" in variants else variants[0]
    rest = [v for v in variants if v != control]
    return control, "canary" if "canary" in rest else rest[0]


def _effect(signal: str, r: Any) -> str:
    if r.relative:
        return f"×{r.delta:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
    scale, unit = (100, " pts") if signal.endswith("_rate") or r.test.startswith("two") \
        else (1, "")
    digits = 6 if signal == "cost" else 3 if scale == 1 else 2
    return (f"{r.delta * scale:+.{digits}f}{unit} [{r.ci_low * scale:+.{digits}f}, "
            f"{r.ci_high * scale:+.{digits}f}]")


def canary_table(c: VariantComparison) -> pl.DataFrame:
    """One row per signal: verdict, both groups' statistic and n, the effect with its 95%
    interval, test, p and BH-adjusted p. Regressions first."""
    rows = [{"verdict": s.verdict, "signal": s.signal.replace("_", " "),
             "bad when": s.direction,
             c.control: s.result.control, c.treatment: s.result.treatment,
             "effect (95% CI)": _effect(s.signal, s.result),
             f"n {c.control}": s.result.n_control, f"n {c.treatment}": s.result.n_treatment,
             "test": s.result.test, "p": s.result.p_value, "p adjusted": s.p_adjusted}
            for s in sorted(c.signals, key=lambda s: (not s.worse, s.verdict != "better",
                                                      s.p_adjusted))]
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def drift_window(end: date, first: date, days: int, reference_days: int = 28
                 ) -> tuple[date, date, date, date] | None:
    """(reference start, reference end, window start, window end): the last ``days``
    days up to ``end`` against the ``reference_days`` before them (as many as there are);
    None when no day precedes the window."""
    start = end - timedelta(days=days - 1)
    ref_end = start - timedelta(days=1)
    if ref_end < first:
        return None
    return max(first, ref_end - timedelta(days=reference_days - 1)), ref_end, start, end


def drift_table(results: Sequence[DriftResult]) -> pl.DataFrame:
    return pl.DataFrame([{
        "band": d.band, "feature": d.feature, "PSI": d.psi,
        "moved most": d.moved, "test": d.test, "statistic": d.statistic, "p": d.p_value,
        "n reference": d.n_reference, "n window": d.n_window} for d in results],
        schema={"band": pl.String, "feature": pl.String, "PSI": pl.Float64,
                "moved most": pl.String, "test": pl.String, "statistic": pl.Float64,
                "p": pl.Float64, "n reference": pl.Int64, "n window": pl.Int64})


def months_between(first: date, last: date) -> list[str]:
    """YYYY-MM of every month from ``first`` to ``last``, newest first."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out[::-1]


def last_complete_month(months: list[str], last: date) -> str:
    """The newest month of ``months`` (newest first) whose last day has traffic: a month
    still under way has a few days of pairs, whose small n only make noise."""
    current = f"{last:%Y-%m}"
    whole = (last + timedelta(days=1)).month != last.month
    if whole or len(months) < 2 or months[0] != current:
        return months[0]
    return months[1]


def _fmt(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.2f}"


def correlation_rows(correlations: pl.DataFrame) -> pl.DataFrame:
    """The month's trace-level correlations for a table: flagged first, then the pairs
    that cannot tell, too few traces, and those at or above the bar."""
    order = {"below": 0, "unclear": 1, "too few": 2, "ok": 3}
    return (correlations.with_columns(
        pl.col("status").replace_strict(order, default=4).alias("_o"))
        .sort("_o", "metric", "feedback")
        .select(pl.col("status").replace_strict(STATUS).alias("status"),
                pl.col("metric").str.replace_all("_", " "), "feedback", "r", "ci_low",
                "ci_high", pl.col("prev_r").alias("previous month"), "n", "method"))


def newly_flagged(trend: pl.DataFrame) -> dict[str, list[str]]:
    """month → the correlations that fell below 0.7 that month (ok or unclear the month
    before): what changed, as opposed to what has always been weak."""
    out: dict[str, list[str]] = {}
    for (metric, feedback), rows in trend.sort("month").group_by(["metric", "feedback"],
                                                                 maintain_order=True):
        prev = None
        for r in rows.iter_rows(named=True):
            if r["status"] == "below" and prev in ("ok", "unclear"):
                out.setdefault(r["month"], []).append(
                    f"{metric} vs {feedback} {_fmt(r['r'])}")
            prev = r["status"]
    return dict(sorted(out.items()))


AGREEMENT = {"below": "below 0.667", "ok": "at least 0.667",
             "unclear": "cannot tell (interval spans 0.667)", "too few": "not enough data"}


def agreement_rows(agreement: pl.DataFrame) -> pl.DataFrame:
    """Judge vs human labels for a table: the review's status in words, each statistic with
    its interval as text, the weighting and the scale in plain words."""
    def ci(v: str, lo: str, hi: str) -> pl.Series:
        return pl.Series([f"{_fmt(x)} [{_fmt(a)}, {_fmt(b)}]" for x, a, b in
                          agreement.select(v, lo, hi).iter_rows()], dtype=pl.String)

    return agreement.select(
        pl.col("status").replace_strict(AGREEMENT, default=None).alias("status"),
        *[c for c in ("month",) if c in agreement.columns],
        pl.col("metric").str.replace_all("_", " "), "n",
        (pl.col("raw") * 100).alias("same verdict"),
        ci("alpha", "alpha_low", "alpha_high").alias("Krippendorff's alpha [95% CI]"),
        ci("kappa", "kappa_low", "kappa_high").alias("Cohen's kappa [95% CI]"),
        pl.col("kappa_weights").replace({"none": "unweighted"}).alias("kappa weights"),
        pl.col("alpha_level").alias("scale"))
