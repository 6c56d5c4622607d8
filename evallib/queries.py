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

__all__ = [
    "case_scores",
    "case_sets",
    "datasets",
    "gate_results",
    "latest_approved",
    "latest_gate_verdicts",
    "metrics",
    "offline_trend",
    "online_daily",
    "online_date_range",
    "online_metrics",
    "online_releases",
    "online_strata_keys",
    "paired_scores",
    "run_case_values",
    "run_metric_summary",
    "run_lookup",
    "run_versions",
    "run_scores",
    "runs_by_id",
    "runs_overview",
    "scorer_versions",
    "strata_keys",
]

Connection = duckdb.DuckDBPyConnection


# Splitting by a stratum without a join: each score row carries its case's (or trace's)
# strata as canonical JSON text, which Parquet dictionary-encodes (a golden set has a few
# hundred distinct strata). Aggregate per distinct strata first, then pool those few groups
# per value of the chosen key: the key is read from a few hundred strings, not millions.
_MOMENTS = """any_value(s.kind) AS kind, count(s.value) AS n, sum(s.value) AS sx,
           sum(s.value * s.value) AS sxx"""
_STRATUM = "CAST(g.strata_json::JSON AS MAP(VARCHAR, VARCHAR))[$key]"
_POOLED = """any_value(g.kind) AS kind, sum(g.n)::BIGINT AS n,
           sum(g.sx) / sum(g.n) AS mean,
           CASE WHEN sum(g.n) > 1 THEN sqrt(greatest(sum(g.sxx) - sum(g.sx) * sum(g.sx)
                / sum(g.n), 0) / (sum(g.n) - 1)) END AS sd"""


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
    n_passed (rows passed; null when the metric carries no pass flag at all)."""
    return _frame(con, """
        SELECT run_id, metric, any_value(kind) AS kind, count(value) AS n,
               count(*) - count(value) AS n_unscored, avg(value) AS mean,
               stddev_samp(value) AS sd, count_if(passed)::BIGINT AS n_passed
        FROM scores
        WHERE $ids IS NULL OR list_contains($ids, run_id)
        GROUP BY run_id, metric ORDER BY run_id, metric""",
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
        return _frame(con, """
            SELECT r.started_at, r.run_id, r.name, r.release, r.approved,
                   any_value(s.kind) AS kind, count(s.value) AS n, avg(s.value) AS mean,
                   stddev_samp(s.value) AS sd
            FROM scores s JOIN runs r USING (run_id)
            WHERE r.dataset = $dataset AND s.metric = $metric
            GROUP BY ALL ORDER BY r.started_at, r.run_id""", dataset=dataset, metric=metric)
    return _frame(con, f"""
        WITH g AS (SELECT s.run_id, s.strata_json, {_MOMENTS} FROM scores s
                   WHERE s.metric = $metric
                     AND s.run_id IN (SELECT run_id FROM runs WHERE dataset = $dataset)
                   GROUP BY s.run_id, s.strata_json)
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
        return _frame(con, """
            SELECT date AS day, any_value(kind) AS kind, count(value) AS n,
                   avg(value) AS mean, stddev_samp(value) AS sd
            FROM online_scores
            WHERE metric = $metric AND date BETWEEN $start AND $end
            GROUP BY day ORDER BY day""", metric=metric, start=start, end=end)
    return _frame(con, f"""
        WITH g AS (SELECT s.date, s.strata_json, {_MOMENTS} FROM online_scores s
                   WHERE s.metric = $metric AND s.date BETWEEN $start AND $end
                   GROUP BY s.date, s.strata_json)
        SELECT g.date AS day, {_STRATUM} AS stratum, {_POOLED}
        FROM g GROUP BY ALL ORDER BY day, stratum NULLS LAST""",
                  metric=metric, start=start, end=end, key=stratum_key)


def online_date_range(con: Connection) -> pl.DataFrame:
    """First and last day with production traces (one row; nulls when there are none)."""
    return _frame(con, "SELECT min(date) AS first_day, max(date) AS last_day FROM online_traces")


def online_releases(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Releases serving traffic in [start, end], with the day each was first seen."""
    return _frame(con, """
        SELECT release, min(date) AS first_day, max(date) AS last_day, count(*) AS n_traces
        FROM online_traces
        WHERE release IS NOT NULL AND date BETWEEN $start AND $end
        GROUP BY release ORDER BY first_day, release""", start=start, end=end)


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


def case_scores(con: Connection, run_id: str, baseline: str | None = None) -> pl.DataFrame:
    """Every case of ``run_id`` with each of its scores, one row per (case, metric): the
    case's fields, ``metric, kind, value, passed, rationale``, and with a ``baseline`` run the
    same case's ``baseline_value, baseline_passed, baseline_rationale, baseline_output``
    (null when the baseline lacks the case or metric). A case without scores has one row
    with a null metric. Ordered by case_id, metric."""
    return _frame(con, """
        WITH c AS (SELECT * FROM cases WHERE run_id = $run),
             s AS (SELECT case_id, metric, kind, value, passed, rationale FROM scores
                   WHERE run_id = $run),
             b AS (SELECT case_id, metric, value, passed, rationale FROM scores
                   WHERE run_id = $baseline),
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
        ORDER BY c.case_id, s.metric""", run=run_id, baseline=baseline)


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
