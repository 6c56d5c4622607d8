"""Runs and their comparison: the Runs, Trends and Compare pages, `evallib compare`,
`export-failures` and the release gate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

from ..vocabulary import TRACE_DAYS_BACK
from ._sql import _POOLED, _POOLED_MEAN_SD, _STRATUM, Connection, _frame

__all__ = [
    "case_scores",
    "case_sets",
    "datasets",
    "gate_failures",
    "gate_results",
    "latest_approved",
    "latest_gate_verdicts",
    "metrics",
    "offline_trend",
    "paired_scores",
    "run_case_values",
    "run_lookup",
    "run_metric_summary",
    "run_scores",
    "run_versions",
    "runs_by_id",
    "runs_overview",
    "scorer_versions",
    "strata_keys",
    "unreadable_files",
    "unrolled",
]


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
    score moments: rollups where fresh, raw scores elsewhere (`evallib.warehouse.rollup`)."""
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


def unrolled(con: Connection) -> pl.DataFrame:
    """What the rollups do not cover yet (`evallib rollup` has not run since it changed), so
    the views aggregate its raw rows: the same answers, slower. ``days``: distinct days of
    production traffic read raw by any rollup's view, but the newest week's (late scores
    and feedback keep changing those until the next rollup); ``runs``: runs read raw."""
    return _frame(con, f"""
        WITH d AS (SELECT DISTINCT TRY_CAST(key AS DATE) AS day FROM unrolled
                   WHERE rollup <> 'run_metric_rollup')
        SELECT (SELECT count(*) FROM d
                WHERE day < (SELECT max(day) FROM d) - {TRACE_DAYS_BACK}) AS days,
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


def gate_failures(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Failed rows of gates run in [start, end]: created_at, run_id, baseline_id, rule,
    metric, slice, observed, threshold, message. Newest first."""
    return _frame(con, """
        SELECT created_at, run_id, baseline_id, rule, metric, slice, observed, threshold,
               message
        FROM gate_results
        WHERE status = 'fail' AND CAST(created_at AS DATE) BETWEEN $start AND $end
        ORDER BY created_at DESC, position""", start=start, end=end)
