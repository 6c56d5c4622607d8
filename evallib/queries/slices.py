"""Slices of one run or of a window of production traffic: per stratum value (× a
second key), the traffic mix, and the traces of one cell."""

from __future__ import annotations

from datetime import date

import polars as pl

from ._sql import _POOLED, _STRATUM, _STRATUM2, Connection, _frame

__all__ = [
    "online_slice_summary",
    "online_slice_traces",
    "online_strata_mix",
    "slice_summary",
    "strata_mix",
]


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
