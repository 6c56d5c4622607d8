"""The dashboard's questions, one function each, answered by DuckDB as polars frames.

Every function takes a connection from `evallib.connect()` (or a cursor of it) first. SQL
text is constant: user choices (dataset, metric, stratum key, dates, run ids) are always
bound parameters, so a stratum key such as ``x'] OR 1=1 --`` is just a key nobody has.
Strata are a ``MAP(VARCHAR, VARCHAR)``; ``strata[$key]`` is the case's value for that key
(NULL when the case has no such key).

Frames that summarise scores carry ``kind, n, mean, sd`` so `evallib.stats.with_intervals`
can add their 95% intervals; ``n`` counts scored values only (null = could not score).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import duckdb
import polars as pl

from . import schema as S

__all__ = [
    "alerts",
    "case_scores",
    "case_sets",
    "datasets",
    "gate_failures",
    "gate_results",
    "judge_human_counts",
    "latest_approved",
    "latest_gate_verdicts",
    "metrics",
    "offline_trend",
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
    "paired_scores",
    "release_scores",
    "run_case_values",
    "run_metric_summary",
    "run_lookup",
    "run_versions",
    "run_scores",
    "runs_by_id",
    "runs_overview",
    "score_feedback_counts",
    "scorer_versions",
    "strata_keys",
    "unreadable_files",
    "unrolled",
    "variant_feedback",
    "variant_health",
    "variant_latency_bins",
    "variant_scores",
    "attribution_items",
    "attribution_details",
    "generation_by_evidence",
    "online_attribution_details",
    "online_attribution_counts",
    "online_failure_days",
    "online_failures",
    "online_generation_by_evidence",
    "online_retrieval_metrics",
    "online_slice_summary",
    "online_slice_traces",
    "online_strata_mix",
    "retrieval_metrics",
    "slice_summary",
    "strata_mix",
]

Connection = duckdb.DuckDBPyConnection


# Splitting by a stratum without a join: each score row carries its case's (or trace's)
# strata as canonical JSON text, which Parquet dictionary-encodes (a golden set has a few
# hundred distinct strata). Aggregate per distinct strata first, then pool those few groups
# per value of the chosen key: the key is read from a few hundred strings, not millions.
_MOMENTS = """any_value(s.kind) AS kind, count(s.value) AS n, sum(s.value) AS sx,
           sum(s.value * s.value) AS sxx"""
# The value of stratum key $key: a JSON pointer into the canonical JSON (any key works: '~'
# and '/' escaped as RFC 6901 says); ten times faster than casting each row to a MAP.
_STRATUM = ("json_extract_string(g.strata_json, "
            "'/' || replace(replace($key, '~', '~0'), '/', '~1'))")
_POOLED_MEAN_SD = """sum(g.sx) / sum(g.n) AS mean,
           CASE WHEN sum(g.n) > 1 THEN sqrt(greatest(sum(g.sxx) - sum(g.sx) * sum(g.sx)
                / sum(g.n), 0) / (sum(g.n) - 1)) END AS sd"""
_POOLED = f"""any_value(g.kind) AS kind, sum(g.n)::BIGINT AS n,
           {_POOLED_MEAN_SD}"""


def _frame(con: Connection, sql: str, **params: Any) -> pl.DataFrame:
    """The one execute path: constant SQL, named parameters."""
    return con.sql(sql, params=params or None).pl()


def datasets(con: Connection) -> pl.DataFrame:
    """Datasets with runs, the most recently run first."""
    return _frame(con, """
        SELECT dataset, count(*) AS n_runs, max(started_at) AS last_run
        FROM runs GROUP BY dataset ORDER BY last_run DESC, dataset""")


def runs_overview(con: Connection, dataset: str | None = None) -> pl.DataFrame:
    """Every run (of one dataset, if given), newest first, with its number of cases."""
    return _frame(con, """
        SELECT r.run_id, r.name, r.model, r.dataset, r.dataset_version, r.prompt_version,
               r.judge_version, r.git_sha, r.release, r.started_at,
               coalesce(c.n_cases, 0) AS n_cases, r.source, r.approved
        FROM runs r
        LEFT JOIN (SELECT run_id, count(*) AS n_cases FROM cases GROUP BY run_id) c
               USING (run_id)
        WHERE $dataset IS NULL OR r.dataset = $dataset
        ORDER BY r.started_at DESC, r.run_id""", dataset=dataset)


def run_metric_summary(con: Connection, run_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """Per run (all, or those listed) × metric: kind, n scored, n unscored, mean, sd, and
    n_passed (rows passed; null when the metric carries no pass flag at all). From the
    score moments: rollups where fresh, raw scores elsewhere (`evallib.rollup`)."""
    return _frame(con, f"""
        SELECT g.run_id, g.metric, any_value(g.kind) AS kind, sum(g.n)::BIGINT AS n,
               (sum(g.n_rows) - sum(g.n))::BIGINT AS n_unscored, {_POOLED_MEAN_SD},
               sum(g.n_passed)::BIGINT AS n_passed
        FROM run_metric_moments g
        WHERE $ids IS NULL OR list_contains($ids, g.run_id)
        GROUP BY g.run_id, g.metric ORDER BY g.run_id, g.metric""",
                  ids=None if run_ids is None else list(run_ids))


def metrics(con: Connection, dataset: str | None = None) -> pl.DataFrame:
    """Offline metrics (of one dataset, if given) with their kind and how many runs have them."""
    return _frame(con, """
        SELECT s.metric, any_value(s.kind) AS kind, count(DISTINCT s.run_id) AS n_runs
        FROM scores s JOIN runs r USING (run_id)
        WHERE $dataset IS NULL OR r.dataset = $dataset
        GROUP BY s.metric ORDER BY s.metric""", dataset=dataset)


def online_metrics(con: Connection) -> pl.DataFrame:
    """Metrics scored on production traces, with their kind."""
    return _frame(con, """
        SELECT metric, any_value(kind) AS kind, count(*) AS n_scores
        FROM online_scores GROUP BY metric ORDER BY metric""")


def strata_keys(con: Connection, dataset: str | None = None) -> pl.DataFrame:
    """Stratum keys of the golden cases (of one dataset, if given) and how many values each
    has, in the order the cases list them (a golden set names its main strata first)."""
    return _frame(con, """
        SELECT e.key AS key, count(DISTINCT e.value) AS n_values
        FROM (SELECT unnest(map_entries(c.strata)) AS e, c.strata
              FROM cases c JOIN runs r USING (run_id)
              WHERE $dataset IS NULL OR r.dataset = $dataset)
        GROUP BY e.key
        ORDER BY min(list_position(map_keys(strata), e.key)), e.key""", dataset=dataset)


def online_strata_keys(con: Connection) -> pl.DataFrame:
    """Stratum keys of production traces and how many values each has."""
    return _frame(con, """
        SELECT e.key AS key, count(DISTINCT e.value) AS n_values
        FROM (SELECT unnest(map_entries(strata)) AS e FROM online_traces)
        GROUP BY e.key ORDER BY e.key""")


def offline_trend(con: Connection, dataset: str, metric: str,
                  stratum_key: str | None = None) -> pl.DataFrame:
    """One row per run of ``dataset`` (× value of ``stratum_key``, column ``stratum``):
    started_at, run_id, name, release, approved, kind, n, mean, sd of ``metric``."""
    if stratum_key is None:
        return _frame(con, f"""
            SELECT r.started_at, r.run_id, r.name, r.release, r.approved, {_POOLED}
            FROM run_metric_moments g JOIN runs r USING (run_id)
            WHERE r.dataset = $dataset AND g.metric = $metric
            GROUP BY ALL ORDER BY r.started_at, r.run_id""", dataset=dataset, metric=metric)
    return _frame(con, f"""
        WITH g AS (SELECT run_id, strata_json, kind, n, sx, sxx FROM run_score_moments
                   WHERE metric = $metric
                     AND run_id IN (SELECT run_id FROM runs WHERE dataset = $dataset))
        SELECT r.started_at, r.run_id, r.name, r.release, r.approved,
               {_STRATUM} AS stratum, {_POOLED}
        FROM g JOIN runs r USING (run_id)
        GROUP BY ALL ORDER BY r.started_at, r.run_id, stratum NULLS LAST""",
                  dataset=dataset, metric=metric, key=stratum_key)


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


def unrolled(con: Connection) -> pl.DataFrame:
    """What the rollups do not cover yet (`evallib rollup` has not run since it changed), so
    the views aggregate its raw rows: the same answers, slower. ``days``: distinct days of
    production traffic read raw by any rollup's view, but the newest week's (late scores
    and feedback keep changing those until the next rollup); ``runs``: runs read raw."""
    return _frame(con, """
        WITH d AS (SELECT DISTINCT TRY_CAST(key AS DATE) AS day FROM unrolled
                   WHERE rollup <> 'run_metric_rollup')
        SELECT (SELECT count(*) FROM d WHERE day < (SELECT max(day) FROM d) - 7) AS days,
               (SELECT count(*) FROM unrolled WHERE rollup = 'run_metric_rollup') AS runs""")


def unreadable_files(con: Connection) -> pl.DataFrame:
    """Part files this connection left out because they are not readable Parquet of their
    table (truncated, corrupt, wrong columns): table_name, path, reason. `evallib check`
    quarantines them."""
    return _frame(con, "SELECT table_name, path, reason FROM unreadable_files ORDER BY path")


# --- run vs baseline ---------------------------------------------------------------------


def run_lookup(con: Connection, ref: str) -> pl.DataFrame:
    """Runs a user may mean by ``ref``: the run with that id, else runs with that name,
    newest first."""
    return _frame(con, """
        SELECT run_id, name, started_at FROM runs WHERE run_id = $ref OR name = $ref
        ORDER BY run_id = $ref DESC, started_at DESC, run_id""", ref=ref)


def run_versions(con: Connection, run_ids: Sequence[str]) -> pl.DataFrame:
    """The listed runs that exist, with what decides whether two runs are comparable."""
    return _frame(con, """
        SELECT run_id, dataset, dataset_version, judge_version
        FROM runs WHERE list_contains($ids, run_id) ORDER BY run_id""", ids=list(run_ids))


def paired_scores(con: Connection, candidate: str, baseline: str) -> pl.DataFrame:
    """One row per (case_id, metric) scored in both runs: ``kind`` (the candidate's), the
    ``baseline`` and ``candidate`` values (null = unscored) and the case's strata as the
    candidate's scores carry them (``strata_json``: canonical JSON, null = no strata; a few
    hundred distinct values, so slicing parses each once). Ordered by metric, then case_id."""
    return _frame(con, """
        SELECT c.case_id, c.metric, c.kind, b.value AS baseline, c.value AS candidate,
               c.strata_json
        FROM (SELECT case_id, metric, kind, value, strata_json FROM scores
              WHERE run_id = $candidate) c
        JOIN (SELECT case_id, metric, value FROM scores WHERE run_id = $baseline) b
          USING (case_id, metric)
        ORDER BY c.metric, c.case_id""", candidate=candidate, baseline=baseline)


def case_scores(con: Connection, run_id: str, baseline: str | None = None,
                metric: str | None = None) -> pl.DataFrame:
    """Every case of ``run_id`` with each of its scores (only ``metric``'s, if given: a page
    lists one metric, and every metric repeats the case's texts), one row per (case,
    metric): the case's fields, ``metric, kind, value, passed, rationale``, and with a
    ``baseline`` run the same case's ``baseline_value, baseline_passed, baseline_rationale,
    baseline_output`` (null when the baseline lacks the case or metric). A case without
    (those) scores has one row with a null metric. Ordered by case_id, metric."""
    return _frame(con, """
        WITH c AS (SELECT * FROM cases WHERE run_id = $run),
             s AS (SELECT case_id, metric, kind, value, passed, rationale FROM scores
                   WHERE run_id = $run AND ($metric IS NULL OR metric = $metric)),
             b AS (SELECT case_id, metric, value, passed, rationale FROM scores
                   WHERE run_id = $baseline AND ($metric IS NULL OR metric = $metric)),
             bc AS (SELECT case_id, any_value(output) AS output FROM cases
                    WHERE run_id = $baseline GROUP BY case_id)
        SELECT c.case_id, c.strata, c.tags, c.input, c.output, c.expected, c.error,
               c.latency_ms, c.tokens_in, c.tokens_out, c.cost_usd,
               s.metric, s.kind, s.value, s.passed, s.rationale,
               b.value AS baseline_value, b.passed AS baseline_passed,
               b.rationale AS baseline_rationale, bc.output AS baseline_output
        FROM c LEFT JOIN s USING (case_id)
        LEFT JOIN b ON b.case_id = c.case_id AND b.metric = s.metric
        LEFT JOIN bc ON bc.case_id = c.case_id
        ORDER BY c.case_id, s.metric""", run=run_id, baseline=baseline, metric=metric)


def case_sets(con: Connection, candidate: str, baseline: str) -> dict[str, int]:
    """How the two runs' cases line up: ``common``, ``added`` (only in the candidate) and
    ``removed`` (only in the baseline)."""
    row = _frame(con, """
        SELECT count_if(c.case_id IS NOT NULL AND b.case_id IS NOT NULL)::BIGINT AS common,
               count_if(b.case_id IS NULL)::BIGINT AS added,
               count_if(c.case_id IS NULL)::BIGINT AS removed
        FROM (SELECT DISTINCT case_id FROM cases WHERE run_id = $candidate) c
        FULL JOIN (SELECT DISTINCT case_id FROM cases WHERE run_id = $baseline) b
          USING (case_id)""", candidate=candidate, baseline=baseline).row(0, named=True)
    return {k: int(v or 0) for k, v in row.items()}


def scorer_versions(con: Connection, candidate: str, baseline: str) -> pl.DataFrame:
    """Per metric scored in either run: the sorted distinct scorer versions each run used
    (``baseline_versions``, ``candidate_versions``; lists, empty when none recorded)."""
    return _frame(con, """
        SELECT metric,
               list_sort(coalesce(list(DISTINCT scorer_version)
                   FILTER (WHERE run_id = $baseline AND scorer_version IS NOT NULL), []))
                   AS baseline_versions,
               list_sort(coalesce(list(DISTINCT scorer_version)
                   FILTER (WHERE run_id = $candidate AND scorer_version IS NOT NULL), []))
                   AS candidate_versions
        FROM scores WHERE run_id = $candidate OR run_id = $baseline
        GROUP BY metric ORDER BY metric""", candidate=candidate, baseline=baseline)


# --- release gate ------------------------------------------------------------------------


def runs_by_id(con: Connection, run_ids: Sequence[str]) -> pl.DataFrame:
    """The listed runs that exist: run_id, name, dataset, started_at, approved (the run's
    flag or an approval)."""
    return _frame(con, """
        SELECT run_id, name, dataset, started_at, approved
        FROM runs WHERE list_contains($ids, run_id) ORDER BY run_id""", ids=list(run_ids))


def latest_approved(con: Connection, dataset: str, before: datetime | None = None
                    ) -> pl.DataFrame:
    """The newest approved run of ``dataset`` (started before ``before``, if given): zero
    or one row of run_id, name, started_at. The release baseline a gate compares with."""
    return _frame(con, """
        SELECT run_id, name, started_at FROM runs
        WHERE dataset = $dataset AND approved
          AND ($before IS NULL OR started_at < $before)
        ORDER BY started_at DESC, run_id DESC LIMIT 1""", dataset=dataset, before=before)


def run_case_values(con: Connection, run_id: str) -> pl.DataFrame:
    """One row per case of the run: case_id, strata, tags and what it cost (latency_ms,
    tokens_in, tokens_out, cost_usd)."""
    return _frame(con, """
        SELECT case_id, strata, tags, latency_ms, tokens_in, tokens_out, cost_usd
        FROM cases WHERE run_id = $run ORDER BY case_id""", run=run_id)


def run_scores(con: Connection, run_id: str, metrics: Sequence[str]) -> pl.DataFrame:
    """The run's scores of the listed metrics: case_id, metric, kind, value, passed."""
    return _frame(con, """
        SELECT case_id, metric, kind, value, passed FROM scores
        WHERE run_id = $run AND list_contains($metrics, metric)
        ORDER BY metric, case_id""", run=run_id, metrics=list(metrics))


def latest_gate_verdicts(con: Connection, run_ids: Sequence[str] | None = None
                         ) -> pl.DataFrame:
    """Per run (all, or those listed) that went through `evallib gate`, its latest gate:
    gate_id, created_at, baseline_id, verdict (pass | fail), n_rules, n_failed (rows),
    n_waived (rows)."""
    return _frame(con, """
        SELECT run_id, gate_id, max(created_at) AS created_at,
               any_value(baseline_id) AS baseline_id,
               CASE WHEN count_if(status = 'fail') > 0 THEN 'fail' ELSE 'pass' END AS verdict,
               count(DISTINCT rule) AS n_rules,
               count_if(status = 'fail')::BIGINT AS n_failed,
               count_if(status = 'waived')::BIGINT AS n_waived
        FROM gate_results
        WHERE $ids IS NULL OR list_contains($ids, run_id)
        GROUP BY run_id, gate_id
        QUALIFY row_number() OVER (PARTITION BY run_id
                                   ORDER BY max(created_at) DESC, gate_id DESC) = 1
        ORDER BY run_id""", ids=None if run_ids is None else list(run_ids))


def gate_results(con: Connection, run_id: str) -> pl.DataFrame:
    """The rows of the run's latest gate, in report order: gate_id, baseline_id,
    policy_hash, created_at, rule, metric, check_type, slice (canonical JSON; null = all
    the rule's cases), status (pass | fail | waived | skipped), observed, threshold,
    baseline_value, n, p_adjusted, message, owner. Empty when the run was never gated."""
    return _frame(con, """
        WITH latest AS (SELECT gate_id FROM gate_results WHERE run_id = $run
                        ORDER BY created_at DESC, gate_id DESC LIMIT 1)
        SELECT gate_id, baseline_id, policy_hash, created_at, rule, metric, check_type,
               slice, status, observed, threshold, baseline_value, n, p_adjusted, message,
               owner
        FROM gate_results WHERE gate_id IN (SELECT gate_id FROM latest)
        ORDER BY position""", run=run_id)


# --- online monitoring: health, canary, drift, correlation (issue 7) ---------------------
# Everything below aggregates in DuckDB (per day or hour × group, per bin, per contingency
# cell), so a window of a 50M-row warehouse returns at most a few thousand rows.

_BUCKET = ("CASE WHEN $hourly THEN date_trunc('hour', {a}.timestamp) "
           "ELSE CAST({a}.date AS TIMESTAMPTZ) END")
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
_TRACES_OF = """(SELECT trace_id, release, variant, strata FROM online_traces
                 WHERE date BETWEEN CAST($start AS DATE) - 7 AND $end)"""
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


# Daily views read the traffic rollups (`evallib.online_rollups`) through their views: per
# day × release × variant × strata, pooled here into the chosen split. Unsplit or by release
# or variant: one aggregation. By a stratum: the key's value is read once per distinct strata
# JSON (see _STRATUM) and joined on before aggregating (grouping by strata first costs 2×).
_PLAIN = """m AS (SELECT CAST(date AS TIMESTAMPTZ) AS bucket,
                          CASE $by WHEN 'release' THEN release WHEN 'variant' THEN variant
                          END AS grp, {pooled}
                   FROM {view} WHERE date BETWEEN $start AND $end GROUP BY ALL)"""
_BY_STRATUM = """k AS (SELECT g.strata_json AS strata_key, """ + _STRATUM + """ AS v
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
    return {by_stratum: "WITH " + template.format(view=view, pooled=pooled)
            + f"\n        SELECT * FROM m ORDER BY {order}"
            for by_stratum, template in ((False, _PLAIN), (True, _BY_STRATUM))}


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
            SELECT {_BUCKET.format(a="t")} AS bucket, {_SPLIT} AS grp, {_HEALTH}
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
            SELECT {_BUCKET.format(a="s")} AS bucket, CAST(NULL AS VARCHAR) AS grp,
                   s.metric, {_QUALITY}
            FROM online_scores s WHERE s.date BETWEEN $start AND $end
            GROUP BY ALL ORDER BY bucket, s.metric""", start=start, end=end, hourly=hourly)
    if by == "stratum":  # scores carry their trace's strata: no join (see _MOMENTS)
        return _frame(con, f"""
            WITH g AS (SELECT {_BUCKET.format(a="s")} AS bucket, s.strata_json, s.metric,
                              {_MOMENTS}, count_if(s.passed) AS np, count(s.passed) AS npk
                       FROM online_scores s WHERE s.date BETWEEN $start AND $end
                       GROUP BY ALL)
            SELECT g.bucket, {_STRATUM} AS grp, g.metric, {_POOLED},
                   sum(g.np)::BIGINT AS n_passed, sum(g.npk)::BIGINT AS n_pass_known
            FROM g GROUP BY ALL ORDER BY g.bucket, grp NULLS LAST, g.metric""",
                      start=start, end=end, hourly=hourly, key=key or "")
    return _frame(con, f"""
        SELECT {_BUCKET.format(a="s")} AS bucket, {_SPLIT} AS grp, s.metric, {_QUALITY}
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
            SELECT {_BUCKET.format(a="f")} AS bucket, CAST(NULL AS VARCHAR) AS grp, {_FEEDBACK}
            FROM feedback f WHERE f.date BETWEEN $start AND $end
            GROUP BY ALL ORDER BY bucket""", start=start, end=end, hourly=hourly)
    return _frame(con, f"""
        SELECT {_BUCKET.format(a="f")} AS bucket, {_SPLIT} AS grp, {_FEEDBACK}
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
        WHERE s.date BETWEEN $first AND CAST($last AS DATE) + 7 AND s.value IS NOT NULL
        GROUP BY t.variant, s.metric, 4 ORDER BY ALL""", a=a, b=b, **_days_params(days))


def variant_feedback(con: Connection, days: Sequence[date], a: str, b: str) -> pl.DataFrame:
    """Thumbs and ratings on the traces of variants ``a`` and ``b`` over ``days``: variant,
    kind, value, n."""
    return _frame(con, f"""
        SELECT t.variant, f.kind, f.value, count(*) AS n
        FROM feedback f
        JOIN (SELECT trace_id, variant FROM online_traces
              WHERE {_DAYS} AND variant IN ($a, $b)) t USING (trace_id)
        WHERE f.date BETWEEN $first AND CAST($last AS DATE) + 7
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


def score_feedback_counts(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Trace-level pairs of an automated score and explicit feedback, as a contingency table
    per month (of the score): month (YYYY-MM), metric, kind, score (continuous rounded to
    0.01), feedback (thumbs | rating: the trace's latest among the feedback of a week either
    side of the score's day), feedback_value, n. From the daily rollup."""
    return _frame(con, """
        SELECT strftime(date, '%Y-%m') AS month, metric, any_value(kind) AS kind, score,
               feedback, feedback_value, sum(n)::BIGINT AS n
        FROM online_score_feedback WHERE date BETWEEN $start AND $end
        GROUP BY month, metric, score, feedback, feedback_value
        ORDER BY ALL""", start=start, end=end)


def judge_human_counts(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Human labels of production traces next to the judge's score of the same trace and
    metric, as counts: month (of the score), metric, kind, judge, human, n."""
    return _frame(con, """
        SELECT strftime(date, '%Y-%m') AS month, metric, any_value(kind) AS kind, judge,
               human, sum(n)::BIGINT AS n
        FROM online_score_labels WHERE date BETWEEN $start AND $end
        GROUP BY month, metric, judge, human ORDER BY ALL""", start=start, end=end)


def release_scores(con: Connection, end: date) -> pl.DataFrame:
    """Per release that served traffic up to ``end`` and has an approved run that
    qualified it: the run, each offline metric's mean (kind, n) and the release's online
    satisfaction: thumbs-up share and mean rating given to its traces up to ``end`` (n
    each), from the traffic rollups; ``first_day`` = the first day it served."""
    return _frame(con, """
        WITH rel AS (SELECT release, arg_max(run_id, started_at) AS run_id FROM runs
                     WHERE release IS NOT NULL AND approved GROUP BY release),
             off AS (SELECT r.release, r.run_id, s.metric, any_value(s.kind) AS kind,
                            sum(s.n)::BIGINT AS n, sum(s.sx) / sum(s.n) AS offline
                     FROM run_metric_moments s JOIN rel r USING (run_id) GROUP BY ALL),
             served AS (SELECT release, min(date) AS first_day FROM online_trace_moments
                        WHERE date <= $end AND release IS NOT NULL GROUP BY release),
             fb AS (SELECT release, sum(n_thumbs) AS n_thumbs, sum(n_thumbs_up) AS n_up,
                           sum(n_rating) AS n_rating, sum(s_rating) AS s_rating
                    FROM online_feedback_moments
                    WHERE date <= $end AND release IS NOT NULL GROUP BY release),
             onl AS (SELECT fb.release, x.feedback, x.n AS n_feedback, x.online,
                            served.first_day
                     FROM fb JOIN served USING (release),
                          unnest([{'feedback': 'thumbs', 'n': fb.n_thumbs::BIGINT,
                                   'online': fb.n_up / fb.n_thumbs},
                                  {'feedback': 'rating', 'n': fb.n_rating::BIGINT,
                                   'online': fb.s_rating / fb.n_rating}]) AS u(x)
                     WHERE x.n > 0)
        SELECT off.release, off.run_id, off.metric, off.kind, off.n, off.offline,
               onl.feedback, onl.n_feedback, onl.online, onl.first_day
        FROM off JOIN onl USING (release)
        ORDER BY onl.first_day, off.release, off.metric, onl.feedback""", end=end)


def gate_failures(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Failed rows of gates run in [start, end]: created_at, run_id, baseline_id, rule,
    metric, slice, observed, threshold, message. Newest first."""
    return _frame(con, """
        SELECT created_at, run_id, baseline_id, rule, metric, slice, observed, threshold,
               message
        FROM gate_results
        WHERE status = 'fail' AND CAST(created_at AS DATE) BETWEEN $start AND $end
        ORDER BY created_at DESC, position""", start=start, end=end)


def alerts(con: Connection, since: date | None = None) -> pl.DataFrame:
    """Recorded alerts, each in its latest state (the table is append-only: a row per
    change), whose episode reaches ``since`` or later; open ones first, then newest."""
    return _frame(con, """
        SELECT * FROM alerts
        WHERE $since IS NULL OR last_day >= $since
        QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY detected_at DESC) = 1
        ORDER BY status = 'open' DESC, last_day DESC, signal""", since=since)


# --- slices, coverage, RAG ---------------------------------------------------------------
# The RAG queries read one run (offline) or, for retrieval metrics and the listed items'
# details, a window of UTC days (online) with the same SQL: only the fragments that pick the
# rows differ, so each query below is a constant string built once at import from fixed
# fragments (no user input ever reaches the text). Online aggregates read daily rollups.
#
# A retrievals row is one retrieved document (or passage) at its rank, 1 = top, so a
# document id listed at two ranks counts at both (evallib.scorers.retrieval would keep its
# best rank only; collapsing them costs 3× the time on a 90-day window). ``relevant`` null
# means not judged: an item whose rows are all unjudged has no gold document; one judged
# with nothing relevant retrieved is a miss.

_STRATUM2 = _STRATUM.replace("$key", "$key2")  # null when there is no second key
_RAG_SOURCES = {
    "offline": {
        "docs": "SELECT case_id AS item, doc_id, rank, relevant, cited FROM retrievals "
                "WHERE run_id = $run",
        # the golden set's relevant documents, when the run's dataset version is stored:
        # they count in recall even when no retrieval found them
        "gold": "SELECT case_id AS item, len(relevant_docs) AS n_gold FROM dataset_cases "
                "WHERE dataset_version = (SELECT dataset_version FROM runs WHERE run_id = $run)",
        "scores": "SELECT case_id AS item, metric, kind, value, passed, rationale, strata_json, "
                  "NULL::DATE AS date FROM scores WHERE run_id = $run",
        "subjects": "SELECT case_id AS item, error, NULL::BOOLEAN AS refusal FROM cases "
                    "WHERE run_id = $run",
        "id": "case_id",
    },
    "online": {
        "docs": "SELECT trace_id AS item, doc_id, rank, relevant, cited FROM online_retrievals "
                "WHERE date BETWEEN $start AND $end",
        "scores": "SELECT trace_id AS item, metric, kind, value, passed, rationale, "
                  "strata_json, date FROM online_scores WHERE date BETWEEN $start AND $end",
        "id": "trace_id",
    },
}

# Items with the same relevant positions (within max_k), number of relevant documents and
# citations score the same at every k, so the metrics are computed once per such pattern (a
# few hundred) and weighted by how many items share it (``w``). Offline the patterns come
# from the run's documents; online from the daily rollup `online_rag_items` (what each
# trace's retrievals of a day found). Definitions as evallib.scorers.retrieval.
_RETRIEVAL_PATTERNS = {
    "offline": """docs AS ({docs}), gold AS ({gold}),
    items AS (
        SELECT d.item,
               coalesce(list(d.rank ORDER BY d.rank)
                        FILTER (WHERE d.relevant AND d.rank <= $max_k), []) AS found,
               greatest(count_if(d.relevant), coalesce(any_value(g.n_gold), 0), 1) AS n_rel,
               count_if(d.cited) AS n_cited, count_if(d.cited AND d.relevant) AS n_cited_rel
        FROM docs d LEFT JOIN gold g USING (item)
        GROUP BY d.item HAVING count(d.relevant) > 0),
    patterns AS (SELECT found, n_rel, n_cited, n_cited_rel, count(*) AS w FROM items
                 GROUP BY ALL)""",
    "online": """patterns AS (
        SELECT list_filter(found, lambda r: r <= $max_k) AS found, n_rel, n_cited,
               n_cited_rel, sum(n) AS w
        FROM online_rag_items WHERE judged AND date BETWEEN $start AND $end
        GROUP BY ALL)""",
}
_RETRIEVAL_METRICS = """WITH {patterns},
    ks AS (SELECT k FROM range(1, $max_k + 1) t(k)),
    ideal AS (SELECT k AS m, sum(1.0 / log2(k + 1)) OVER (ORDER BY k) AS idcg FROM ks),
    per AS (SELECT p.w, ks.k, p.n_rel, list_filter(p.found, lambda r: r <= ks.k) AS hit
            FROM (SELECT found, n_rel, sum(w) AS w FROM patterns GROUP BY found, n_rel) p
            CROSS JOIN ks),
    vals AS (SELECT per.w, per.k, unnest([
        {{'metric': 'recall', 'v': len(hit) / n_rel}},
        {{'metric': 'precision', 'v': len(hit) / per.k}},
        {{'metric': 'ndcg', 'v': coalesce(list_sum(list_transform(
            hit, lambda r: 1.0 / log2(r + 1))), 0) / i.idcg}},
        {{'metric': 'hit_rate', 'v': (len(hit) > 0)::DOUBLE}},
        {{'metric': 'mrr', 'v': coalesce(1.0 / list_min(hit), 0)}},
        {{'metric': 'context_precision', 'v': coalesce(list_sum(list_transform(
            hit, lambda r, j: j / r)) / len(hit), 0)}}]) AS m
        FROM per JOIN ideal i ON i.m = least(per.k, per.n_rel)),
    cited AS (SELECT NULL::BIGINT AS k, {{'metric': 'citation_hit_rate',
                                          'v': n_cited_rel / n_cited}} AS m, w
              FROM patterns WHERE n_cited > 0)
SELECT k, m.metric AS metric,
       CASE WHEN m.metric = 'hit_rate' THEN 'binary' ELSE 'continuous' END AS kind,
       coalesce(sum(w), 0)::BIGINT AS n, sum(w * m.v) / sum(w) AS mean,
       CASE WHEN sum(w) > 1 THEN sqrt(greatest(sum(w * m.v * m.v)
            - sum(w * m.v) * sum(w * m.v) / sum(w), 0) / (sum(w) - 1)) END AS sd
FROM (SELECT k, m, w FROM vals UNION ALL SELECT k, m, w FROM cited) GROUP BY k, m.metric
UNION ALL
SELECT NULL, 'citation_hit_rate', 'continuous', 0, NULL, NULL
WHERE NOT EXISTS (SELECT 1 FROM patterns WHERE n_cited > 0)
ORDER BY k NULLS LAST, metric"""

# What the generator had, per item: documents retrieved, how many judged (0: no gold
# document), a relevant one in the top k, the first relevant rank, a relevant one cited.
_EVIDENCE = """SELECT item, count(*) AS n_docs, count(relevant) AS n_judged,
               coalesce(bool_or(relevant AND rank <= $k), false) AS relevant_in_k,
               min(rank) FILTER (WHERE relevant) AS first_relevant,
               coalesce(bool_or(relevant AND cited), false) AS cited_relevant
        FROM docs"""

_ATTRIBUTION_ITEMS = """WITH s AS (
        SELECT item, metric, kind, value, passed, strata_json, date FROM ({scores})
        WHERE metric = $answer OR metric = $faithfulness),
    answer AS (SELECT item, date, value, strata_json,
                      coalesce(NOT passed, kind = 'binary' AND value = 0) AS failed
               FROM s WHERE metric = $answer),
    subjects AS (SELECT * FROM ({subjects}) WHERE item IN (SELECT item FROM answer)),
    chosen AS (SELECT a.*, s.error, s.refusal FROM answer a JOIN subjects s USING (item)
               WHERE NOT $failing_only OR (a.failed AND s.error IS NULL)),
    faith AS (SELECT item, CASE WHEN passed IS NOT NULL THEN passed
                                WHEN kind = 'binary' THEN value = 1 END AS faithful,
                     value AS faithfulness
              FROM s WHERE metric = $faithfulness),
    docs AS ({docs}),
    evidence AS (""" + _EVIDENCE + """ WHERE item IN (SELECT item FROM chosen) GROUP BY item)
SELECT c.item AS {id}, c.date, c.strata_json, c.value AS answer, c.failed,
       c.error IS NOT NULL AS errored, f.faithful, f.faithfulness,
       coalesce(e.n_docs, 0) AS n_docs, coalesce(e.n_judged, 0) AS n_judged,
       coalesce(e.relevant_in_k, false) AS relevant_in_k, e.first_relevant,
       coalesce(e.cited_relevant, false) AS cited_relevant, c.refusal, c.error
FROM chosen c LEFT JOIN faith f USING (item) LEFT JOIN evidence e USING (item)
ORDER BY c.item"""

# A run's metrics, each split by the evidence the generator had (a rollup row: evidence
# null), plus ``cites_relevant`` (binary, of the items citing something: a cited document is
# relevant). Online: `_ONLINE_GENERATION`.
_GENERATION = """WITH docs AS ({docs}),
    evidence AS (
        SELECT item, CASE WHEN count(relevant) = 0 THEN 'no gold document'
                          WHEN bool_or(relevant AND rank <= $k) THEN 'relevant in top k'
                          ELSE 'no relevant in top k' END AS evidence
        FROM docs GROUP BY item),
    s AS (SELECT item, metric, kind, value FROM ({scores})
          UNION ALL
          SELECT item, 'cites_relevant', 'binary', bool_or(relevant AND cited)::DOUBLE
          FROM docs GROUP BY item HAVING count(relevant) > 0 AND bool_or(cited))
SELECT e.evidence, s.metric, any_value(s.kind) AS kind, count(s.value) AS n,
       avg(s.value) AS mean, stddev_samp(s.value) AS sd
FROM s JOIN evidence e USING (item)
GROUP BY GROUPING SETS ((e.evidence, s.metric), (s.metric))
ORDER BY s.metric, e.evidence NULLS LAST"""

# Online, from the daily rollups: scores of the window's days by the evidence their trace
# had (its retrievals of the week up to the score), and each trace with retrievals of the
# window's days for refusal and cites_relevant. first_relevant is capped past RAG_MAX_K.
_ONLINE_GENERATION = """WITH m AS (
        SELECT judged, first_relevant, metric, kind, n, sx, sxx FROM online_rag_scores
        WHERE date BETWEEN $start AND $end
        UNION ALL
        SELECT judged, first_relevant, 'refusal', 'binary', sum(n),
               sum(CASE WHEN refusal THEN n ELSE 0 END), sum(CASE WHEN refusal THEN n ELSE 0 END)
        FROM online_rag_items
        WHERE date BETWEEN $start AND $end AND refusal IS NOT NULL
        GROUP BY judged, first_relevant
        UNION ALL
        SELECT judged, first_relevant, 'cites_relevant', 'binary', sum(n),
               sum(CASE WHEN n_cited_rel > 0 THEN n ELSE 0 END),
               sum(CASE WHEN n_cited_rel > 0 THEN n ELSE 0 END)
        FROM online_rag_items
        WHERE date BETWEEN $start AND $end AND judged AND n_cited > 0
        GROUP BY judged, first_relevant),
    e AS (SELECT CASE WHEN NOT judged THEN 'no gold document'
                      WHEN first_relevant <= $k THEN 'relevant in top k'
                      ELSE 'no relevant in top k' END AS evidence, * FROM m)
SELECT evidence, metric, """ + _POOLED + """
FROM e g GROUP BY GROUPING SETS ((evidence, metric), (metric))
ORDER BY metric, evidence NULLS LAST"""

# Online failure attribution: what `evallib.rag.classify` decides, from the columns of the
# rollup `online_rag_failures` (and of `_ONLINE_FAILURES` below, which lists them).
_FAILURE_OUTCOME = """CASE WHEN NOT has_docs THEN 'not attributed'
        WHEN NOT judged THEN 'other' WHEN first_relevant <= $k THEN 'generation'
        WHEN faithful = false THEN 'both' ELSE 'retrieval' END"""
# The rollup's rows of the answer metric × the faithfulness metric ($faith; on a day without
# it, those of '' = none: faithful unknown, as in `_ONLINE_FAILURES`)
_FAILURE_ROWS = """WITH r AS (
        SELECT * FROM online_rag_failures
        WHERE date BETWEEN $start AND $end AND metric = $answer AND faith IN ($faith, '')),
    has AS (SELECT DISTINCT date FROM r WHERE faith = $faith AND $faith <> ''),
    g AS (SELECT * FROM r WHERE faith = $faith
                                OR (faith = '' AND date NOT IN (SELECT date FROM has)))"""
_IN_STRATUM = ("($key IS NULL OR coalesce(" + _STRATUM + ", '(missing)') = $stratum)")
# The same failing answers one by one, as the rollup counts them: the trace, its error and
# retrievals of the week up to the score's day, the faithfulness verdict of that day.
_ONLINE_FAILURES = """WITH a AS (
        SELECT date, trace_id, value, strata_json FROM online_scores
        WHERE date BETWEEN $start AND $end AND metric = $answer
          AND coalesce(NOT passed, kind = 'binary' AND value = 0)),
    ak AS (SELECT DISTINCT date, trace_id FROM a),
    t AS (SELECT ak.date, ak.trace_id, bool_or(t.error IS NOT NULL) AS errored,
                 bool_or(t.refusal) AS refusal
          FROM ak JOIN online_traces t ON t.trace_id = ak.trace_id
               AND t.date BETWEEN ak.date - 7 AND ak.date
          WHERE t.date BETWEEN $start - 7 AND $end
          GROUP BY ak.date, ak.trace_id),
    e AS (SELECT ak.date, ak.trace_id, count(*) AS n_docs, count(d.relevant) AS n_judged,
                 min(d.rank) FILTER (WHERE d.relevant) AS first_relevant,
                 coalesce(bool_or(d.relevant AND d.cited), false) AS cited_relevant
          FROM ak JOIN online_retrievals d ON d.trace_id = ak.trace_id
               AND d.date BETWEEN ak.date - 7 AND ak.date
          WHERE d.date BETWEEN $start - 7 AND $end
          GROUP BY ak.date, ak.trace_id),
    f AS (SELECT date, trace_id,
                 bool_or(CASE WHEN passed IS NOT NULL THEN passed
                              WHEN kind = 'binary' THEN value = 1 END) AS faithful,
                 avg(value) AS faithfulness
          FROM online_scores WHERE date BETWEEN $start AND $end AND metric = $faith
          GROUP BY date, trace_id),
    g AS (SELECT a.trace_id, a.date, a.strata_json, a.value AS answer, f.faithful,
                 f.faithfulness, coalesce(e.n_docs, 0) AS n_docs,
                 coalesce(e.n_judged, 0) AS n_judged, e.first_relevant,
                 coalesce(e.cited_relevant, false) AS cited_relevant, t.refusal,
                 e.trace_id IS NOT NULL AS has_docs, coalesce(e.n_judged, 0) > 0 AS judged
          FROM a JOIN t USING (date, trace_id) LEFT JOIN e USING (date, trace_id)
               LEFT JOIN f USING (date, trace_id)
          WHERE NOT t.errored)
SELECT trace_id, date, strata_json, answer, true AS failed, false AS errored, faithful,
       faithfulness, n_docs, n_judged, coalesce(first_relevant <= $k, false) AS relevant_in_k,
       first_relevant, cited_relevant, refusal, NULL::VARCHAR AS error,
       """ + _FAILURE_OUTCOME + """ AS outcome
FROM g WHERE list_contains($classes, """ + _FAILURE_OUTCOME + """) AND """ + _IN_STRATUM + """
ORDER BY date DESC, trace_id DESC LIMIT $limit"""

# The texts behind listed items, the judge's reason for the answer metric and the top k
# documents each generator read (✓ relevant).
_DETAILS = """WITH ids AS (SELECT unnest($ids) AS item),
    docs AS ({docs}),
    top AS (SELECT item, string_agg(doc_id || CASE WHEN relevant THEN ' ✓' ELSE '' END
                                    || CASE WHEN cited THEN ' (cited)' ELSE '' END, ', '
                                    ORDER BY rank) AS top_k
            FROM docs WHERE rank <= $k AND item IN (SELECT item FROM ids) GROUP BY item),
    why AS (SELECT item, any_value(rationale) AS rationale FROM ({scores})
            WHERE metric = $answer AND item IN (SELECT item FROM ids) GROUP BY item)
SELECT t.item AS {id}, t.input, t.output, t.expected, top.top_k, why.rationale
FROM ({texts}) t LEFT JOIN top USING (item) LEFT JOIN why USING (item)
WHERE t.item IN (SELECT item FROM ids) ORDER BY t.item"""
_TEXTS = {
    "offline": "SELECT case_id AS item, input, output, expected FROM cases WHERE run_id = $run",
    "online": "SELECT trace_id AS item, input, output, NULL::VARCHAR AS expected "
              "FROM online_traces WHERE date BETWEEN $start AND $end",
}


def _source(template: str, src: str) -> str:
    """``template`` filled with the fragments of one source (offline or online)."""
    return template.format(texts=_TEXTS[src], **_RAG_SOURCES[src])


_RETRIEVAL_SQL = {src: _RETRIEVAL_METRICS.format(
    patterns=_source(_RETRIEVAL_PATTERNS[src], src)) for src in _RAG_SOURCES}
_ATTRIBUTION_SQL = _source(_ATTRIBUTION_ITEMS, "offline")  # online: `_ONLINE_FAILURES`
_GENERATION_SQL = _source(_GENERATION, "offline")  # online: `_ONLINE_GENERATION`
_DETAILS_SQL = {src: _source(_DETAILS, src) for src in _RAG_SOURCES}


def slice_summary(con: Connection, run_id: str, key: str, key2: str | None = None
                  ) -> pl.DataFrame:
    """Per metric × value of ``key`` (column ``stratum``) × value of ``key2`` (``stratum2``;
    null without a second key) in one run: kind, n, mean, sd. Null = the case lacks the key."""
    return _frame(con, f"""
        WITH g AS (SELECT metric, strata_json, kind, n, sx, sxx FROM run_score_moments
                   WHERE run_id = $run)
        SELECT g.metric, {_STRATUM} AS stratum, {_STRATUM2} AS stratum2, {_POOLED}
        FROM g GROUP BY ALL ORDER BY metric, stratum NULLS LAST, stratum2 NULLS LAST""",
                  run=run_id, key=key, key2=key2)


def online_slice_summary(con: Connection, start: date, end: date, key: str,
                         key2: str | None = None) -> pl.DataFrame:
    """`slice_summary` over production traces scored on UTC days [start, end]."""
    return _frame(con, f"""
        WITH g AS (SELECT metric, strata_json, kind, n, sx, sxx FROM online_score_moments
                   WHERE date BETWEEN $start AND $end)
        SELECT g.metric, {_STRATUM} AS stratum, {_STRATUM2} AS stratum2, {_POOLED}
        FROM g GROUP BY ALL ORDER BY metric, stratum NULLS LAST, stratum2 NULLS LAST""",
                  start=start, end=end, key=key, key2=key2)


def strata_mix(con: Connection, run_id: str, key: str, key2: str | None = None
               ) -> pl.DataFrame:
    """How many cases of the run (its golden set) fall in each value of ``key`` (``stratum``)
    × ``key2`` (``stratum2``): the mix the run's means are averaged over."""
    return _frame(con, """
        SELECT strata[$key] AS stratum, strata[$key2] AS stratum2, count(*) AS n
        FROM cases WHERE run_id = $run
        GROUP BY ALL ORDER BY stratum NULLS LAST, stratum2 NULLS LAST""",
                  run=run_id, key=key, key2=key2)


def online_strata_mix(con: Connection, start: date, end: date, key: str,
                      key2: str | None = None) -> pl.DataFrame:
    """How many scored production traces of UTC days [start, end] fall in each value of
    ``key`` × ``key2``: the traffic mix. Per day and strata, the traces scored on the
    most-scored metric, from the score moments (rolled up per day): reading every trace's
    strata map takes 5–10× longer, and the scorer picks traces whatever their strata."""
    return _frame(con, f"""
        WITH m AS (SELECT date, metric, strata_json, sum(n_rows) AS n FROM online_score_moments
                   WHERE date BETWEEN $start AND $end GROUP BY ALL),
             g AS (SELECT strata_json, sum(n) AS n
                   FROM (SELECT date, strata_json, max(n) AS n FROM m GROUP BY ALL)
                   GROUP BY strata_json)
        SELECT {_STRATUM} AS stratum, {_STRATUM2} AS stratum2, sum(n)::BIGINT AS n
        FROM g GROUP BY ALL ORDER BY stratum NULLS LAST, stratum2 NULLS LAST""",
                  start=start, end=end, key=key, key2=key2)


def online_slice_traces(con: Connection, metric: str, start: date, end: date, key: str,
                        value: str | None, key2: str | None = None,
                        value2: str | None = None, limit: int = 500) -> pl.DataFrame:
    """Traces of UTC days [start, end] scored on ``metric`` whose ``key`` is ``value`` (and
    ``key2`` is ``value2``; a null value = the trace lacks the key), lowest scores first,
    then newest: trace_id, timestamp, release, value, passed, rationale, input, output,
    strata. Three reads, each small: the cell's distinct strata, the traces they pick, then
    the texts from only those traces' days (one query joining them reads 10× more)."""
    # the cell's strata, as a list: a filter on the parsed strata would be pushed below the
    # DISTINCT by the optimizer and parse every score's strata (15× slower)
    distinct = _frame(con, f"""
        SELECT g.strata_json, {_STRATUM} AS v, {_STRATUM2} AS v2
        FROM (SELECT DISTINCT strata_json FROM online_score_moments
              WHERE metric = $metric AND date BETWEEN $start AND $end) g""",
                      metric=metric, start=start, end=end, key=key, key2=key2)
    same = pl.col("v").is_null() if value is None else pl.col("v") == value
    if key2 is not None:
        same &= pl.col("v2").is_null() if value2 is None else pl.col("v2") == value2
    cell = distinct.filter(same)
    picked = _frame(con, """
        SELECT trace_id, date, timestamp, value FROM online_scores
        WHERE metric = $metric AND date BETWEEN $start AND $end
          AND strata_json IN (SELECT unnest($cell))
        ORDER BY value NULLS LAST, timestamp DESC, trace_id LIMIT $limit""",
                    metric=metric, start=start, end=end, cell=cell["strata_json"].to_list(),
                    limit=limit)
    span = {"first": picked["date"].min(), "last": picked["date"].max(),
            "ids": picked["trace_id"].to_list()}
    texts = _frame(con, """
        SELECT trace_id, release, input, output, strata FROM online_traces
        WHERE date BETWEEN $first AND $last AND trace_id IN (SELECT unnest($ids))""", **span)
    why = _frame(con, """
        SELECT trace_id, passed, rationale FROM online_scores
        WHERE metric = $metric AND date BETWEEN $first AND $last
          AND trace_id IN (SELECT unnest($ids))""", metric=metric, **span)
    picked = picked.join(why, on="trace_id", how="left", maintain_order="left")
    return picked.join(texts, on="trace_id", how="left", maintain_order="left").select(
        "trace_id", "timestamp", "release", "value", "passed", "rationale", "input", "output",
        "strata")


def retrieval_metrics(con: Connection, run_id: str, max_k: int = 10) -> pl.DataFrame:
    """The run's retrieval quality per cut k = 1…max_k (column ``k``) and metric: recall,
    precision, ndcg, hit_rate (binary), mrr, context_precision, plus citation_hit_rate (k
    null); kind, n, mean, sd over the cases with judged documents. A case whose retrieved
    documents were all judged not relevant scores 0; one whose relevance is null (no gold
    document exists) is left out. Definitions as in `evallib.scorers.retrieval`."""
    return _frame(con, _RETRIEVAL_SQL["offline"], run=run_id, max_k=max_k)


def online_retrieval_metrics(con: Connection, start: date, end: date, max_k: int = 10
                             ) -> pl.DataFrame:
    """`retrieval_metrics` over the production traces of UTC days [start, end] that logged
    their retrievals (a trace's retrievals of one day are one item; from the daily rollup
    ``online_rag_items``, so ``max_k`` ≤ RAG_MAX_K)."""
    _check_k(max_k)
    return _frame(con, _RETRIEVAL_SQL["online"], start=start, end=end, max_k=max_k)


def _check_k(k: int) -> None:
    if not 1 <= k <= S.RAG_MAX_K:
        raise ValueError(f"online RAG views cut at k = 1…{S.RAG_MAX_K}, got {k}")


def attribution_items(con: Connection, run_id: str, k: int, answer: str,
                      faithfulness: str, failing_only: bool = False) -> pl.DataFrame:
    """One row per case of the run scored on ``answer`` (or only the failing ones: answer
    failed, no error), with what `evallib.rag.classify` needs: failed, errored, faithful
    (pass flag of ``faithfulness``; null if unscored), n_docs (retrieved), n_judged (with a
    relevance label), relevant_in_k, first_relevant, cited_relevant; and the case's
    strata_json, the answer's value, error. Texts and reasons: `attribution_details`."""
    return _frame(con, _ATTRIBUTION_SQL, run=run_id, k=k, answer=answer,
                  faithfulness=faithfulness, failing_only=failing_only)


def online_attribution_counts(con: Connection, start: date, end: date, k: int, answer: str,
                              faithfulness: str) -> pl.DataFrame:
    """Production's failing answers of UTC days [start, end] (``answer`` did not pass, the
    trace did not error), counted per ``strata_json`` × ``outcome`` (`evallib.rag.CLASSES`
    or not attributed) in column ``w``: what `evallib.rag.attribution_table` takes. From the
    daily rollup: a score's trace, error and retrievals are those of the week up to its day;
    its ``faithfulness`` ('' = none) verdict is the one scored the same day. k ≤ RAG_MAX_K."""
    _check_k(k)
    return _frame(con, f"""{_FAILURE_ROWS}
        SELECT strata_json, {_FAILURE_OUTCOME} AS outcome, sum(n)::BIGINT AS w FROM g
        GROUP BY ALL ORDER BY strata_json, outcome""",
                  start=start, end=end, k=k, answer=answer, faith=faithfulness)


def online_failure_days(con: Connection, start: date, end: date, k: int, answer: str,
                        faithfulness: str, classes: Sequence[str], key: str | None = None,
                        stratum: str | None = None) -> pl.DataFrame:
    """Per UTC day of [start, end], how many failing answers (as `online_attribution_counts`)
    fall in ``classes`` (and, with ``key``, whose stratum value is ``stratum``; "(missing)" =
    without the key): ``date``, ``n``, newest first. Tells `online_failures` which days hold
    the newest of them."""
    _check_k(k)
    return _frame(con, f"""{_FAILURE_ROWS},
        picked AS (SELECT strata_json FROM (SELECT DISTINCT strata_json FROM g) g
                   WHERE {_IN_STRATUM})
        SELECT date, sum(n)::BIGINT AS n FROM g
        WHERE list_contains($classes, {_FAILURE_OUTCOME})
          AND ($key IS NULL OR strata_json IN (SELECT strata_json FROM picked))
        GROUP BY date ORDER BY date DESC""", start=start, end=end, k=k, answer=answer,
                  faith=faithfulness, classes=list(classes), key=key, stratum=stratum)


def online_failures(con: Connection, start: date, end: date, k: int, answer: str,
                    faithfulness: str, classes: Sequence[str], key: str | None = None,
                    stratum: str | None = None, limit: int = 2000) -> pl.DataFrame:
    """The newest ``limit`` failing answers of [start, end] counted by `online_failure_days`
    (pass the days that hold them: every day of [start, end] is read), one row each with what
    `evallib.rag.classify` reads (``outcome`` set) and ``trace_id``, ``date``, ``refusal``;
    newest first."""
    _check_k(k)
    return _frame(con, _ONLINE_FAILURES, start=start, end=end, k=k, answer=answer,
                  faith=faithfulness, classes=list(classes), key=key, stratum=stratum,
                  limit=limit)


def attribution_details(con: Connection, run_id: str, k: int, answer: str,
                        case_ids: Sequence[str]) -> pl.DataFrame:
    """The listed cases of the run: case_id, input, output, expected, ``top_k`` (the top k
    documents in rank order, ✓ = relevant, (cited) = the answer cites it) and the
    ``rationale`` of the ``answer`` metric's score."""
    return _frame(con, _DETAILS_SQL["offline"], run=run_id, k=k, answer=answer,
                  ids=list(case_ids))


def online_attribution_details(con: Connection, first_day: date, last_day: date, k: int,
                               answer: str, trace_ids: Sequence[str]) -> pl.DataFrame:
    """`attribution_details` for traces of UTC days [first_day, last_day] (only those days
    are read: pass the listed traces' first and last day)."""
    return _frame(con, _DETAILS_SQL["online"], start=first_day, end=last_day, k=k,
                  answer=answer, ids=list(trace_ids))


def generation_by_evidence(con: Connection, run_id: str, k: int) -> pl.DataFrame:
    """Per metric of the run × the evidence its generator had (``evidence``: relevant in top
    k / no relevant in top k / no gold document; null = all cases with retrievals): kind, n,
    mean, sd; with ``cites_relevant`` (of the answers citing a document, those citing a
    relevant one). Cases without retrieval rows are left out."""
    return _frame(con, _GENERATION_SQL, run=run_id, k=k)


def online_generation_by_evidence(con: Connection, start: date, end: date, k: int
                                  ) -> pl.DataFrame:
    """`generation_by_evidence` for traces of UTC days [start, end] with logged retrievals,
    plus ``refusal`` (binary: the trace declined to answer). Read from the daily rollups: a
    score counts by its own day and the evidence its trace's retrievals (of the week up to
    it) had; refusal and cites_relevant by the day of the retrievals. ``k`` ≤ RAG_MAX_K."""
    _check_k(k)
    return _frame(con, _ONLINE_GENERATION, start=start, end=end, k=k)
