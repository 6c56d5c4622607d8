"""Production traffic: the Online page's health, quality, feedback, canary and drift, and
the recorded alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl

from ..vocabulary import TRACE_DAYS_BACK
from ._sql import _MOMENTS, _POOLED, _STRATUM, Connection, _frame

__all__ = [
    "alerts",
    "online_daily",
    "online_date_range",
    "online_drift_counts",
    "online_feedback",
    "online_health",
    "online_metrics",
    "online_quality",
    "online_releases",
    "online_strata_keys",
    "online_variant_days",
    "variant_feedback",
    "variant_health",
    "variant_latency_bins",
    "variant_scores",
]


def online_metrics(con: Connection) -> pl.DataFrame:
    """Metrics scored on production traces, with their kind."""
    return _frame(con, """
        SELECT metric, any_value(kind) AS kind, count(*) AS n_scores
        FROM online_scores GROUP BY metric ORDER BY metric""")


def online_strata_keys(con: Connection) -> pl.DataFrame:
    """Stratum keys of production traces and how many values each has."""
    return _frame(con, """
        SELECT e.key AS key, count(DISTINCT e.value) AS n_values
        FROM (SELECT unnest(map_entries(strata)) AS e FROM online_traces)
        GROUP BY e.key ORDER BY e.key""")


def online_daily(con: Connection, metric: str, start: date, end: date,
                 stratum_key: str | None = None) -> pl.DataFrame:
    """Per UTC day in [start, end] (× value of ``stratum_key``, column ``stratum``):
    kind, n, mean, sd of ``metric`` on sampled production traces."""
    if stratum_key is None:
        return _frame(con, f"""
            SELECT g.date AS day, {_POOLED} FROM online_daily_moments g
            WHERE g.metric = $metric AND g.date BETWEEN $start AND $end
            GROUP BY day ORDER BY day""", metric=metric, start=start, end=end)
    return _frame(con, f"""
        WITH g AS (SELECT date, strata_json, kind, n, sx, sxx FROM online_score_moments
                   WHERE metric = $metric AND date BETWEEN $start AND $end)
        SELECT g.date AS day, {_STRATUM} AS stratum, {_POOLED}
        FROM g GROUP BY ALL ORDER BY day, stratum NULLS LAST""",
                  metric=metric, start=start, end=end, key=stratum_key)


def online_date_range(con: Connection) -> pl.DataFrame:
    """First and last day with production traces (one row; nulls when there are none)."""
    return _frame(con, "SELECT min(date) AS first_day, max(date) AS last_day FROM online_traces")


def online_releases(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Releases serving traffic in [start, end], with the day each was first seen."""
    return _frame(con, """
        SELECT release, min(date) AS first_day, max(date) AS last_day,
               sum(n)::BIGINT AS n_traces
        FROM online_trace_moments
        WHERE release IS NOT NULL AND date BETWEEN $start AND $end
        GROUP BY release ORDER BY first_day, release""", start=start, end=end)


# --- online monitoring: health, canary, drift, correlation (issue 7) ---------------------
# Everything below aggregates in DuckDB (per day or hour × group, per bin, per contingency
# cell), so a window of a 50M-row warehouse returns at most a few thousand rows.


def _bucket(a: str) -> str:
    """The day or, when $hourly, the hour of the rows of alias ``a``."""
    return (f"CASE WHEN $hourly THEN date_trunc('hour', {a}.timestamp) "
            f"ELSE CAST({a}.date AS TIMESTAMPTZ) END")


# The split of a health view: one group (null), or a trace column, or a stratum's value.
_SPLIT = ("CASE $by WHEN 'release' THEN t.release WHEN 'variant' THEN t.variant "
          "WHEN 'stratum' THEN t.strata[$key] END")
_HEALTH = """count(*) AS n, count(t.error)::BIGINT AS n_error,
           count_if(t.refusal)::BIGINT AS n_refusal,
           count_if(t.tool_error)::BIGINT AS n_tool_error,
           quantile_cont(t.latency_ms, [0.5, 0.95, 0.99]) AS latency_q,
           count(t.latency_ms) FILTER (WHERE t.latency_ms > 0) AS n_latency,
           avg(ln(t.latency_ms)) FILTER (WHERE t.latency_ms > 0) AS mean_log_latency,
           stddev_samp(ln(t.latency_ms)) FILTER (WHERE t.latency_ms > 0) AS sd_log_latency,
           count(t.cost_usd) AS n_cost, sum(t.cost_usd) AS cost_usd,
           avg(t.cost_usd) AS mean_cost, stddev_samp(t.cost_usd) AS sd_cost,
           avg(t.tokens_in) AS mean_tokens_in, avg(t.tokens_out) AS mean_tokens_out"""
_HEALTH_COLUMNS = """bucket, grp, n, n_error, n_refusal, n_tool_error,
           latency_q[1] AS latency_p50, latency_q[2] AS latency_p95,
           latency_q[3] AS latency_p99, n_latency, mean_log_latency, sd_log_latency,
           n_cost, cost_usd, mean_cost, sd_cost, mean_tokens_in, mean_tokens_out"""
_HEALTH_ORDER = ["bucket", "grp", "n", "n_error", "n_refusal", "n_tool_error", "latency_p50",
                 "latency_p95", "latency_p99", "n_latency", "mean_log_latency",
                 "sd_log_latency", "n_cost", "cost_usd", "mean_cost", "sd_cost",
                 "mean_tokens_in", "mean_tokens_out"]
_QUALITY = """any_value(s.kind) AS kind, count(s.value) AS n, avg(s.value) AS mean,
           stddev_samp(s.value) AS sd, count_if(s.passed)::BIGINT AS n_passed,
           count(s.passed) AS n_pass_known"""
_FEEDBACK = """count_if(f.kind = 'thumbs' AND f.value IS NOT NULL)::BIGINT AS n_thumbs,
           count_if(f.kind = 'thumbs' AND f.value = 1)::BIGINT AS n_thumbs_up,
           count_if(f.kind = 'rating' AND f.value IS NOT NULL)::BIGINT AS n_rating,
           avg(f.value) FILTER (WHERE f.kind = 'rating') AS mean_rating,
           stddev_samp(f.value) FILTER (WHERE f.kind = 'rating') AS sd_rating,
           count_if(f.kind = 'edit')::BIGINT AS n_edit,
           count_if(f.kind = 'comment')::BIGINT AS n_comment"""
# Traces a score or a feedback event may belong to: scored or answered up to a week later.
_TRACES_OF = f"""(SELECT trace_id, release, variant, strata FROM online_traces
                 WHERE date BETWEEN CAST($start AS DATE) - {TRACE_DAYS_BACK} AND $end)"""
# The listed days (both compared variants served on them): the range prunes partitions,
# the list keeps exactly those days.
_DAYS = "date BETWEEN $first AND $last AND list_contains($days, date)"


def _days_params(days: Sequence[date]) -> dict[str, Any]:
    days = sorted(set(days))
    return {"days": days, "first": days[0] if days else None,
            "last": days[-1] if days else None}


def _split_params(by: str | None, key: str | None) -> dict[str, Any]:
    if by not in (None, "release", "variant", "stratum"):
        raise ValueError(f"split by release, variant or stratum, not {by!r}")
    return {"by": by or "none", "key": key or ""}


# Daily views read the traffic rollups (`evallib.warehouse.online_rollups`) through their views: per
# day × release × variant × strata, pooled here into the chosen split. Unsplit or by release
# or variant: one aggregation. By a stratum: the key's value is read once per distinct strata
# JSON (see _STRATUM) and joined on before aggregating (grouping by strata first costs 2×).
def _plain(view: str, pooled: str) -> str:
    return f"""m AS (SELECT CAST(date AS TIMESTAMPTZ) AS bucket,
                          CASE $by WHEN 'release' THEN release WHEN 'variant' THEN variant
                          END AS grp, {pooled}
                   FROM {view} WHERE date BETWEEN $start AND $end GROUP BY ALL)"""


def _by_stratum(view: str, pooled: str) -> str:
    return f"""k AS (SELECT g.strata_json AS strata_key, {_STRATUM} AS v
                   FROM (SELECT DISTINCT coalesce(strata_json, '{{}}') AS strata_json
                         FROM {view} WHERE date BETWEEN $start AND $end) g),
             m AS (SELECT CAST(r.date AS TIMESTAMPTZ) AS bucket, k.v AS grp, {pooled}
                   FROM {view} r JOIN k ON k.strata_key = coalesce(r.strata_json, '{{}}')
                   WHERE r.date BETWEEN $start AND $end GROUP BY ALL)"""


def _sd(n: str, s: str, ss: str) -> str:
    """The sample sd from a count, a sum and a sum of squares (null below two values)."""
    return (f"CASE WHEN sum({n}) > 1 THEN sqrt(greatest(sum({ss}) - sum({s}) * sum({s}) "
            f"/ sum({n}), 0) / (sum({n}) - 1)) END")


def _daily(view: str, pooled: str, order: str) -> dict[bool, str]:
    """The daily SQL of a traffic view, unsplit or split by release or variant (False) and
    by a stratum (True)."""
    return {by_stratum: f"WITH {cte(view, pooled)}\n        SELECT * FROM m ORDER BY {order}"
            for by_stratum, cte in ((False, _plain), (True, _by_stratum))}


_DAILY_HEALTH = _daily("online_trace_moments", f"""
                          sum(n)::BIGINT AS n, sum(n_error)::BIGINT AS n_error,
                          sum(n_refusal)::BIGINT AS n_refusal,
                          sum(n_tool_error)::BIGINT AS n_tool_error,
                          sum(n_latency)::BIGINT AS n_latency,
                          sum(s_log_latency) / sum(n_latency) AS mean_log_latency,
                          {_sd("n_latency", "s_log_latency", "ss_log_latency")}
                              AS sd_log_latency,
                          sum(n_cost)::BIGINT AS n_cost, sum(s_cost) AS cost_usd,
                          sum(s_cost) / sum(n_cost) AS mean_cost,
                          {_sd("n_cost", "s_cost", "ss_cost")} AS sd_cost,
                          sum(s_tokens_in) / sum(n_tokens_in) AS mean_tokens_in,
                          sum(s_tokens_out) / sum(n_tokens_out) AS mean_tokens_out""",
                       "bucket, grp NULLS LAST")
# Each day's latency quantiles of the split (they do not pool: the rollup keeps each split).
_DAILY_LATENCY = """
        SELECT CAST(date AS TIMESTAMPTZ) AS bucket, grp, latency_p50, latency_p95, latency_p99
        FROM online_latency_quantiles
        WHERE date BETWEEN $start AND $end
          AND dim = CASE $by WHEN 'none' THEN 'all' WHEN 'stratum' THEN 'strata.' || $key
                             ELSE $by END"""
_DAILY_QUALITY = _daily("online_quality_moments", f"""metric, any_value(kind) AS kind,
                          sum(n)::BIGINT AS n, sum(sx) / sum(n) AS mean,
                          {_sd("n", "sx", "sxx")} AS sd,
                          CASE WHEN sum(n_pass_known) > 0 THEN sum(n_passed)::BIGINT END
                              AS n_passed, sum(n_pass_known)::BIGINT AS n_pass_known""",
                        "bucket, grp NULLS LAST, metric")
_DAILY_FEEDBACK = _daily("online_feedback_moments", f"""
                          sum(n_thumbs)::BIGINT AS n_thumbs,
                          sum(n_thumbs_up)::BIGINT AS n_thumbs_up,
                          sum(n_rating)::BIGINT AS n_rating,
                          sum(s_rating) / sum(n_rating) AS mean_rating,
                          {_sd("n_rating", "s_rating", "ss_rating")} AS sd_rating,
                          sum(n_edit)::BIGINT AS n_edit,
                          sum(n_comment)::BIGINT AS n_comment""", "bucket, grp NULLS LAST")


def _daily_frame(con: Connection, sql: dict[bool, str], start: date, end: date,
                 by: str | None, key: str | None) -> pl.DataFrame:
    split = _split_params(by, key)
    if by == "stratum":
        return _frame(con, sql[True], start=start, end=end, key=split["key"])
    return _frame(con, sql[False], start=start, end=end, by=split["by"])


def online_health(con: Connection, start: date, end: date, hourly: bool = False,
                  by: str | None = None, key: str | None = None) -> pl.DataFrame:
    """Per day (or hour) × group (``grp``: release, variant or the value of stratum ``key``;
    null when not split) of production traces: n, error / refusal / tool-error counts,
    latency p50/p95/p99, moments of ln(latency) and of cost (the monitor's tests need
    mergeable moments), total cost and mean tokens."""
    if not hourly:
        params = {"start": start, "end": end, **_split_params(by, key)}
        health = _daily_frame(con, _DAILY_HEALTH, start, end, by, key)
        quantiles = _frame(con, _DAILY_LATENCY, **params)
        return health.join(quantiles, on=["bucket", "grp"], how="left", nulls_equal=True) \
            .select(_HEALTH_ORDER).sort("bucket", "grp", nulls_last=True)
    return _frame(con, f"""
        SELECT {_HEALTH_COLUMNS} FROM (
            SELECT {_bucket("t")} AS bucket, {_SPLIT} AS grp, {_HEALTH}
            FROM online_traces t WHERE t.date BETWEEN $start AND $end GROUP BY ALL)
        ORDER BY bucket, grp NULLS LAST""",
                  start=start, end=end, hourly=hourly, **_split_params(by, key))


def online_quality(con: Connection, start: date, end: date, hourly: bool = False,
                   by: str | None = None, key: str | None = None) -> pl.DataFrame:
    """Per day (or hour, of the score) × group × metric of online scores: kind, n, mean,
    sd, n_passed and n_pass_known (rows with a pass flag). Split by a trace column through
    a join with the traces of the window; unsplit reads the scores alone. Daily: from the
    quality rollup (a score whose trace is missing counts in the null group)."""
    if not hourly:
        return _daily_frame(con, _DAILY_QUALITY, start, end, by, key)
    if by is None:
        return _frame(con, f"""
            SELECT {_bucket("s")} AS bucket, CAST(NULL AS VARCHAR) AS grp,
                   s.metric, {_QUALITY}
            FROM online_scores s WHERE s.date BETWEEN $start AND $end
            GROUP BY ALL ORDER BY bucket, s.metric""", start=start, end=end, hourly=hourly)
    if by == "stratum":  # scores carry their trace's strata: no join (see _MOMENTS)
        return _frame(con, f"""
            WITH g AS (SELECT {_bucket("s")} AS bucket, s.strata_json, s.metric,
                              {_MOMENTS}, count_if(s.passed) AS np, count(s.passed) AS npk
                       FROM online_scores s WHERE s.date BETWEEN $start AND $end
                       GROUP BY ALL)
            SELECT g.bucket, {_STRATUM} AS grp, g.metric, {_POOLED},
                   sum(g.np)::BIGINT AS n_passed, sum(g.npk)::BIGINT AS n_pass_known
            FROM g GROUP BY ALL ORDER BY g.bucket, grp NULLS LAST, g.metric""",
                      start=start, end=end, hourly=hourly, key=key or "")
    return _frame(con, f"""
        SELECT {_bucket("s")} AS bucket, {_SPLIT} AS grp, s.metric, {_QUALITY}
        FROM online_scores s JOIN {_TRACES_OF} t USING (trace_id)
        WHERE s.date BETWEEN $start AND $end
        GROUP BY ALL ORDER BY bucket, grp NULLS LAST, s.metric""",
                  start=start, end=end, hourly=hourly, **_split_params(by, key))


def online_feedback(con: Connection, start: date, end: date, hourly: bool = False,
                    by: str | None = None, key: str | None = None) -> pl.DataFrame:
    """Per day (or hour, of the feedback event) × group: thumbs given and up, ratings (n,
    mean, sd), edits and comments."""
    if not hourly:
        return _daily_frame(con, _DAILY_FEEDBACK, start, end, by, key)
    if by is None:
        return _frame(con, f"""
            SELECT {_bucket("f")} AS bucket, CAST(NULL AS VARCHAR) AS grp, {_FEEDBACK}
            FROM feedback f WHERE f.date BETWEEN $start AND $end
            GROUP BY ALL ORDER BY bucket""", start=start, end=end, hourly=hourly)
    return _frame(con, f"""
        SELECT {_bucket("f")} AS bucket, {_SPLIT} AS grp, {_FEEDBACK}
        FROM feedback f JOIN {_TRACES_OF} t USING (trace_id)
        WHERE f.date BETWEEN $start AND $end
        GROUP BY ALL ORDER BY bucket, grp NULLS LAST""",
                  start=start, end=end, hourly=hourly, **_split_params(by, key))


def online_variant_days(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Traces per day × variant in [start, end] (variant null: not recorded): which days a
    canary and its control served side by side."""
    return _frame(con, """
        SELECT date AS day, variant, sum(n)::BIGINT AS n FROM online_trace_moments
        WHERE date BETWEEN $start AND $end GROUP BY ALL ORDER BY day, n DESC""",
                  start=start, end=end)


def variant_health(con: Connection, days: Sequence[date], a: str, b: str) -> pl.DataFrame:
    """Variants ``a`` and ``b`` over ``days`` (those both served): the columns of
    `online_health` (``grp`` = variant, ``bucket`` = first day) plus ``n_days``."""
    return _frame(con, f"""
        SELECT {_HEALTH_COLUMNS}, n_days FROM (
            SELECT min(t.date) AS bucket, t.variant AS grp, count(DISTINCT t.date) AS n_days,
                   {_HEALTH}
            FROM online_traces t WHERE {_DAYS} AND t.variant IN ($a, $b)
            GROUP BY t.variant)
        ORDER BY grp""", a=a, b=b, **_days_params(days))


def variant_latency_bins(con: Connection, days: Sequence[date], a: str, b: str
                         ) -> pl.DataFrame:
    """Latency histogram of variants ``a`` and ``b`` over ``days``: ``bin`` =
    round(100·ln(latency_ms)) (1% wide), n. Rank tests and bootstraps run on these counts."""
    return _frame(con, f"""
        SELECT variant, CAST(round(100 * ln(latency_ms)) AS INTEGER) AS bin, count(*) AS n
        FROM online_traces
        WHERE {_DAYS} AND variant IN ($a, $b) AND latency_ms > 0
        GROUP BY ALL ORDER BY variant, bin""", a=a, b=b, **_days_params(days))


def variant_scores(con: Connection, days: Sequence[date], a: str, b: str) -> pl.DataFrame:
    """Online scores of the traces of variants ``a`` and ``b`` over ``days``, per variant
    × metric × value (continuous values rounded to 0.01): kind, n, and the sum and sum of
    squares of the exact values (so means and sds are exact)."""
    return _frame(con, f"""
        SELECT t.variant, s.metric, any_value(s.kind) AS kind,
               CASE WHEN s.kind = 'continuous' THEN round(s.value, 2) ELSE s.value END AS value,
               count(*) AS n, sum(s.value) AS sx, sum(s.value * s.value) AS sxx
        FROM online_scores s
        JOIN (SELECT trace_id, variant FROM online_traces
              WHERE {_DAYS} AND variant IN ($a, $b)) t USING (trace_id)
        WHERE s.date BETWEEN $first AND CAST($last AS DATE) + {TRACE_DAYS_BACK}
          AND s.value IS NOT NULL
        GROUP BY t.variant, s.metric, 4 ORDER BY ALL""", a=a, b=b, **_days_params(days))


def variant_feedback(con: Connection, days: Sequence[date], a: str, b: str) -> pl.DataFrame:
    """Thumbs and ratings on the traces of variants ``a`` and ``b`` over ``days``: variant,
    kind, value, n."""
    return _frame(con, f"""
        SELECT t.variant, f.kind, f.value, count(*) AS n
        FROM feedback f
        JOIN (SELECT trace_id, variant FROM online_traces
              WHERE {_DAYS} AND variant IN ($a, $b)) t USING (trace_id)
        WHERE f.date BETWEEN $first AND CAST($last AS DATE) + {TRACE_DAYS_BACK}
          AND f.kind IN ('thumbs', 'rating') AND f.value IS NOT NULL
        GROUP BY ALL ORDER BY ALL""", a=a, b=b, **_days_params(days))



def online_drift_counts(con: Connection, ref_start: date, ref_end: date, start: date,
                        end: date) -> pl.DataFrame:
    """Distributions of the reference days [ref_start, ref_end] and the window [start, end]:
    one row per feature × value × ``period`` (reference | window) with its count ``n``.
    Features: input length (characters) and output length (tokens) in 2%-wide log bins
    (``x`` = the bin's lower edge, in characters or tokens), each stratum key's values,
    each online metric's
    values (categorical for binary/ordinal, ``x`` rounded to 0.01 for continuous). From the
    drift rollups: sums of days."""
    return _frame(con, """
        SELECT feature, kind, value, x,
               CASE WHEN date >= $start THEN 'window' ELSE 'reference' END AS period,
               sum(n)::BIGINT AS n
        FROM (SELECT * FROM online_trace_drift UNION ALL SELECT * FROM online_score_drift)
        WHERE date BETWEEN $ref_start AND $ref_end OR date BETWEEN $start AND $end
        GROUP BY ALL
        ORDER BY feature, period, value, x""",
                  ref_start=ref_start, ref_end=ref_end, start=start, end=end)


def alerts(con: Connection, since: date | None = None) -> pl.DataFrame:
    """Recorded alerts, each in its latest state (the table is append-only: a row per
    change), whose episode reaches ``since`` or later; open ones first, then newest."""
    return _frame(con, """
        SELECT * FROM alerts
        WHERE $since IS NULL OR last_day >= $since
        QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY detected_at DESC) = 1
        ORDER BY status = 'open' DESC, last_day DESC, signal""", since=since)
