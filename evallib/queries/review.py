"""The Review page and judge calibration: the items a rater may label (judged production
traces of a window, or the cases of a run), one item's details, the labels a rater gave,
and human labels next to the judge's score of the same item and metric.

A label's subject is a production trace (``trace_id``) or a case of a run (``run_id``,
``case_id``). The judge version of a score is its ``scorer_version`` (the judge's name,
version and model), else, offline, the run's ``judge_version``; ``(unversioned)`` when
neither says.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from ..vocabulary import TRACE_DAYS_BACK
from ._sql import Connection, _frame, _stratum_value

__all__ = [
    "label_pairs",
    "label_values",
    "online_metric_scale",
    "online_review_keys",
    "online_review_metrics",
    "online_review_pool",
    "rater_labels",
    "review_case",
    "review_trace",
    "run_judge_versions",
    "run_metric_scale",
    "run_review_keys",
    "run_review_pool",
    "sheet_label_pairs",
]

# The group key a queue is stratified by: the whole strata (as JSON), or the values of the
# keys in $by (JSON pointers, as in _sql._STRATUM) as a JSON list.
_GROUP = f"""CASE WHEN len($by::VARCHAR[]) = 0 THEN coalesce(strata_json, '') ELSE
    to_json(list_transform($by::VARCHAR[],
        lambda k: {_stratum_value("k", "strata_json")}))::VARCHAR END"""


def _pool(items: str, fields: str, columns: str) -> str:
    """Per stratum, the $per of ``items`` (a SELECT of item, strata_json and ``fields``)
    first in a seeded hash order (a uniform sample of each stratum; min_by keeps a small
    heap per stratum instead of sorting every score), in that order stratum by stratum; an
    item scored twice is kept once. Each row: ``columns`` (of the struct p), stratum."""
    return f"""
        WITH j AS ({items}),
    g AS (SELECT {_GROUP} AS stratum, min_by({{{fields}}}, hash(item, $seed), $per) AS picked
          FROM j GROUP BY stratum)
    SELECT {columns}, stratum FROM g, unnest(picked) AS t(p)
    QUALIFY row_number() OVER (PARTITION BY p.item ORDER BY stratum) = 1
    ORDER BY stratum, hash(p.item, $seed)"""


# Production traces scored on $metric (a value, not "could not score") in the window that
# $rater has not labelled for it; the cases of $run likewise.
_ONLINE_ITEMS = """
            SELECT trace_id AS item, date, strata_json FROM online_scores
            WHERE metric = $metric AND date BETWEEN $start AND $end AND value IS NOT NULL
              AND trace_id NOT IN (SELECT trace_id FROM human_labels
                                   WHERE metric = $metric AND labeler = $rater
                                     AND trace_id IS NOT NULL)"""
_RUN_ITEMS = """
            SELECT case_id AS item, strata_json FROM scores
            WHERE run_id = $run AND metric = $metric AND value IS NOT NULL
              AND case_id NOT IN (SELECT case_id FROM human_labels
                                  WHERE metric = $metric AND labeler = $rater
                                    AND run_id = $run AND case_id IS NOT NULL)"""
_ONLINE_POOL = _pool(_ONLINE_ITEMS, "'item': item, 'date': date", "p.item, p.date")
_RUN_POOL = _pool(_RUN_ITEMS, "'item': item", "p.item")
_UNVERSIONED = "'(unversioned)'"


def online_review_metrics(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Metrics scored on production traces of UTC days [start, end]: metric, kind, n (from
    the score moments)."""
    return _frame(con, """
        SELECT metric, any_value(kind) AS kind, sum(n)::BIGINT AS n FROM online_daily_moments
        WHERE date BETWEEN $start AND $end GROUP BY metric HAVING sum(n) > 0
        ORDER BY metric""", start=start, end=end)


def online_review_keys(con: Connection, start: date, end: date) -> pl.DataFrame:
    """Stratum keys of production traces of UTC days [start, end] (key), from the traffic
    rollup's strata (a few thousand strings, not every trace's map)."""
    return _frame(con, """
        SELECT DISTINCT unnest(json_keys(strata_json)) AS key FROM online_trace_moments
        WHERE date BETWEEN $start AND $end AND strata_json IS NOT NULL ORDER BY key""",
                  start=start, end=end)


def run_review_keys(con: Connection, run_id: str) -> pl.DataFrame:
    """Stratum keys of one run's cases (key)."""
    return _frame(con, """
        SELECT DISTINCT unnest(map_keys(strata)) AS key FROM cases WHERE run_id = $run
        ORDER BY key""", run=run_id)


def online_metric_scale(con: Connection, metric: str, start: date, end: date) -> pl.DataFrame:
    """The lowest and highest score of ``metric`` in the window: kind, lo, hi (one row)."""
    return _frame(con, """
        SELECT any_value(kind) AS kind, min(value) AS lo, max(value) AS hi FROM online_scores
        WHERE metric = $metric AND date BETWEEN $start AND $end""",
                  metric=metric, start=start, end=end)


def run_metric_scale(con: Connection, run_id: str, metric: str) -> pl.DataFrame:
    """`online_metric_scale` of one run's scores."""
    return _frame(con, """
        SELECT any_value(kind) AS kind, min(value) AS lo, max(value) AS hi FROM scores
        WHERE run_id = $run AND metric = $metric""", run=run_id, metric=metric)


def online_review_pool(con: Connection, metric: str, start: date, end: date, rater: str,
                       by: Sequence[str] = (), per: int = 50, seed: int = 0) -> pl.DataFrame:
    """Production traces scored on ``metric`` (a value, not "could not score") on UTC days
    [start, end] that ``rater`` has not labelled for it: up to ``per`` of each stratum
    (whole strata, or the values of the keys ``by``), drawn with ``seed``: item (the
    trace_id), date (of its score), stratum. A year of a large warehouse's scores is read
    once per queue: the page draws a queue once per session."""
    return _frame(con, _ONLINE_POOL, metric=metric, start=start, end=end, rater=rater,
                  by=list(by), per=per, seed=seed)


def run_review_pool(con: Connection, run_id: str, metric: str, rater: str,
                    by: Sequence[str] = (), per: int = 50, seed: int = 0) -> pl.DataFrame:
    """`online_review_pool` over the cases of one run: item (the case_id), stratum."""
    return _frame(con, _RUN_POOL, run=run_id, metric=metric, rater=rater, by=list(by),
                  per=per, seed=seed)


# One item as the rater sees it: its text, strata, what retrieval gave the generator, and
# the judge's score of the metric (shown after the rater answers).
_RETRIEVED = """list({'rank': rank, 'doc_id': doc_id, 'relevant': relevant, 'cited': cited}
                     ORDER BY rank)"""


def review_trace(con: Connection, trace_id: str, day: date, metric: str) -> pl.DataFrame:
    """One production trace whose ``metric`` was scored on ``day``: trace_id, timestamp,
    release, variant, strata (JSON), input, output, expected (null), retrieved (rank,
    doc_id, relevant, cited), kind, judge (the score), rationale, judge_version. A trace
    precedes its scores by at most a week (as the writer assumes), so only those days
    are read."""
    return _frame(con, f"""
        WITH t AS (SELECT * FROM online_traces WHERE trace_id = $id
                     AND date BETWEEN $day::DATE - {TRACE_DAYS_BACK} AND $day),
             s AS (SELECT kind, value, rationale, scorer_version FROM online_scores
                   WHERE trace_id = $id AND metric = $metric AND date = $day LIMIT 1),
             r AS (SELECT {_RETRIEVED} AS retrieved FROM online_retrievals
                   WHERE trace_id = $id AND date BETWEEN $day::DATE - {TRACE_DAYS_BACK} AND $day)
        SELECT t.trace_id, t.timestamp, t.release, t.variant, to_json(t.strata)::VARCHAR
               AS strata, t.input, t.output, NULL::VARCHAR AS expected, r.retrieved,
               s.kind, s.value AS judge, s.rationale,
               coalesce(s.scorer_version, {_UNVERSIONED}) AS judge_version
        FROM t, s, r""", id=trace_id, day=day, metric=metric)


def review_case(con: Connection, run_id: str, case_id: str, metric: str) -> pl.DataFrame:
    """`review_trace` for a case of a run: run_id, case_id, strata, input, output,
    expected, retrieved, kind, judge, rationale, judge_version."""
    return _frame(con, f"""
        WITH c AS (SELECT * FROM cases WHERE run_id = $run AND case_id = $id),
             s AS (SELECT kind, value, rationale, scorer_version FROM scores
                   WHERE run_id = $run AND case_id = $id AND metric = $metric LIMIT 1),
             r AS (SELECT {_RETRIEVED} AS retrieved FROM retrievals
                   WHERE run_id = $run AND case_id = $id)
        SELECT c.run_id, c.case_id, to_json(c.strata)::VARCHAR AS strata, c.input, c.output,
               c.expected, r.retrieved, s.kind, s.value AS judge, s.rationale,
               coalesce(s.scorer_version, (SELECT judge_version FROM runs WHERE run_id = $run),
                        {_UNVERSIONED}) AS judge_version
        FROM c, s, r""", run=run_id, id=case_id, metric=metric)


def rater_labels(con: Connection, rater: str, metric: str) -> pl.DataFrame:
    """The labels ``rater`` gave ``metric``: trace_id, run_id, case_id, value, labeled_at."""
    return _frame(con, """
        SELECT trace_id, run_id, case_id, value, labeled_at FROM human_labels
        WHERE labeler = $rater AND metric = $metric ORDER BY labeled_at""",
                  rater=rater, metric=metric)


def run_judge_versions(con: Connection, run_id: str, metric: str) -> pl.DataFrame:
    """The judge versions that scored ``metric`` in a run: judge_version, n (scores)."""
    return _frame(con, f"""
        SELECT coalesce(s.scorer_version, r.judge_version, {_UNVERSIONED}) AS judge_version,
               count(*) AS n
        FROM scores s JOIN runs r USING (run_id)
        WHERE s.run_id = $run AND s.metric = $metric AND s.value IS NOT NULL
        GROUP BY ALL ORDER BY n DESC, judge_version""", run=run_id, metric=metric)


# Human labels (the warehouse's, or those of a sheet passed as lists) of one metric, each
# next to the judge's score of the same trace or case, its judge version and the output's
# length in characters (for the verbosity check).
_PAIRS = f"""
    WITH h AS (
        SELECT trace_id, run_id, case_id, labeler, value FROM human_labels
        WHERE metric = $metric AND $stored
        UNION ALL
        SELECT * FROM (SELECT nullif(unnest($traces::VARCHAR[]), '') AS trace_id,
                              nullif(unnest($runs::VARCHAR[]), '') AS run_id,
                              nullif(unnest($cases::VARCHAR[]), '') AS case_id,
                              unnest($labelers::VARCHAR[]) AS labeler,
                              unnest($values::DOUBLE[]) AS value)
        WHERE NOT $stored AND value IS NOT NULL),
    online AS (
        SELECT h.trace_id AS item, h.labeler, h.value AS human, s.value AS judge, s.kind,
               coalesce(s.scorer_version, {_UNVERSIONED}) AS judge_version,
               length(t.output) AS output_length
        FROM h JOIN online_scores s ON s.trace_id = h.trace_id AND s.metric = $metric
        LEFT JOIN online_traces t ON t.trace_id = h.trace_id
        WHERE h.trace_id IS NOT NULL AND s.value IS NOT NULL),
    offline AS (
        SELECT h.run_id || '/' || h.case_id AS item, h.labeler, h.value AS human,
               s.value AS judge, s.kind,
               coalesce(s.scorer_version, r.judge_version, {_UNVERSIONED}) AS judge_version,
               length(c.output) AS output_length
        FROM h JOIN scores s ON s.run_id = h.run_id AND s.case_id = h.case_id
                            AND s.metric = $metric
        JOIN runs r ON r.run_id = h.run_id
        LEFT JOIN cases c ON c.run_id = h.run_id AND c.case_id = h.case_id
        WHERE h.trace_id IS NULL AND s.value IS NOT NULL)
    SELECT $metric AS metric, * FROM online UNION ALL SELECT $metric, * FROM offline
    ORDER BY judge_version, item, labeler"""


def label_pairs(con: Connection, metric: str) -> pl.DataFrame:
    """Each human label of ``metric`` with the judge's score of the same item: metric,
    item, labeler, human, judge, kind, judge_version, output_length."""
    return _frame(con, _PAIRS, metric=metric, stored=True, traces=[], runs=[], cases=[],
                  labelers=[], values=[])


def sheet_label_pairs(con: Connection, metric: str, trace_ids: Sequence[str],
                      run_ids: Sequence[str], case_ids: Sequence[str],
                      labelers: Sequence[str], values: Sequence[float]) -> pl.DataFrame:
    """`label_pairs` of labels given as parallel lists (a sheet not imported; "" where a
    label has no trace, or no run and case)."""
    return _frame(con, _PAIRS, metric=metric, stored=False, traces=list(trace_ids),
                  runs=list(run_ids), cases=list(case_ids), labelers=list(labelers),
                  values=list(values))


def label_values(con: Connection, metric: str) -> pl.DataFrame:
    """Every human label of ``metric`` for agreement among raters: item (trace_id, or
    run_id/case_id), labeler, value (a rater's newest label of the item), kind (the
    metric's, from its scores; null when nothing scored it)."""
    return _frame(con, """
        WITH k AS (SELECT any_value(kind) AS kind FROM (
                       SELECT kind FROM online_daily_moments WHERE metric = $metric
                       UNION ALL SELECT kind FROM run_metric_moments WHERE metric = $metric))
        SELECT coalesce(trace_id, run_id || '/' || case_id) AS item, labeler,
               arg_max(value, labeled_at) AS value, any_value(k.kind) AS kind
        FROM human_labels, k WHERE metric = $metric
        GROUP BY ALL ORDER BY item, labeler""", metric=metric)
