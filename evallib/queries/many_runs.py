"""Many runs side by side: the Runs × slices page and `evallib compare-many`."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ._sql import Connection, _frame

__all__ = ["many_run_scores"]


def many_run_scores(con: Connection, run_ids: Sequence[str], metric: str) -> pl.DataFrame:
    """One row per (run, case) scored on ``metric`` in the listed runs: run_id, case_id,
    kind, value (null = could not score), passed, and the case's strata as that run's
    scores carry them (``strata_json``: canonical JSON, null = none). Ordered by run_id,
    case_id."""
    return _frame(con, """
        SELECT run_id, case_id, kind, value, passed, strata_json FROM scores
        WHERE list_contains($ids, run_id) AND metric = $metric
        ORDER BY run_id, case_id""", ids=list(run_ids), metric=metric)
