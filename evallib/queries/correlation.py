"""The Correlation page and the monthly review: automated scores against user feedback
and human labels, per month, and per release against its approved run."""

from __future__ import annotations

from datetime import date

import polars as pl

from ._sql import Connection, _frame

__all__ = [
    "judge_human_counts",
    "release_scores",
    "score_feedback_counts",
]


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
