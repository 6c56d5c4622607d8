"""The `build_demo` entry point: clear the warehouse, plan the timeline, write offline runs,
then online traffic day by day, and summarise."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time

import numpy as np
import pyarrow as pa

from ..errors import EvallibError
from ..warehouse import Warehouse
from ..warehouse import schema as S
from ..warehouse.rollup import rollup
from .offline import _write_offline
from .online import _online_day, _OnlineAcc, _Story
from .params import _US_PER_DAY, REGRESSION_SLICE
from .summary import DemoSummary, _correlation_story, _judge_feedback_spearman
from .timeline import _drift_month, _incident_day, _plan


def _clear(wh: Warehouse, force: bool) -> None:
    store = wh.store
    if not any(store.has_files(t) for t in S.TABLES.values()):
        return
    if not force:
        raise EvallibError(f"the warehouse at {store.root} already has data; "
                           "pass --force to rebuild it (this deletes its tables)")
    for table in (*S.TABLES.values(), *S.ROLLUPS.values()):  # the tables' directories only
        path = store.table_dir(table)
        if store.is_local:
            if os.path.isdir(path):
                shutil.rmtree(path)
        elif store.fs.exists(path):
            store.fs.rm(path, recursive=True)


def build_demo(root: str | os.PathLike[str] | None = None, *, days: int = 180,
               online_per_day: int = 1000, cases: int = 400, seed: int = 7,
               force: bool = False, today: dt.date | None = None) -> DemoSummary:
    """Write the demo warehouse: `days` days ending on `today` (default: the UTC date),
    `cases` golden cases, ~`online_per_day` sampled production traces a day."""
    if days < 14:
        raise EvallibError("the demo needs at least 14 days (--days 14)")
    if cases < 50:
        raise EvallibError("the demo needs at least 50 golden cases (--cases 50)")
    if online_per_day < 0:
        raise EvallibError("--online-per-day must not be negative")
    started = time.perf_counter()
    today = today or dt.datetime.now(dt.UTC).date()
    day0 = today - dt.timedelta(days=days)
    day0_us = int(dt.datetime(day0.year, day0.month, day0.day, tzinfo=dt.UTC).timestamp()) \
        * 1_000_000
    wh = Warehouse(root)
    _clear(wh, force)

    releases, plans, n_added = _plan(np.random.default_rng([seed, 3]), days, day0, day0_us,
                                        cases)
    offline = _write_offline(wh, seed, plans, releases, cases, n_added)

    drift = _drift_month(day0, today)
    story = _Story(seed, days, day0, day0_us, online_per_day, releases, drift,
                   _incident_day(days, day0, drift, releases[-1].day),
                   day0_us + days * _US_PER_DAY)
    acc = _OnlineAcc()
    for day in range(days if online_per_day else 0):  # one day in memory at a time
        _online_day(wh, story, day, acc)
    if acc.labels:
        acc.rows["human_labels"] = wh.record_human_labels(pa.concat_tables(acc.labels))
    spearman = _judge_feedback_spearman(acc.pairs)
    rollup(wh.store, grace=0)  # what `evallib rollup` keeps: the dashboard's aggregates

    assert offline.baseline is not None and offline.candidate is not None
    rows = {name: offline.rows.get(name, 0) + acc.rows.get(name, 0) for name in S.TABLES}
    drift_month = f"{drift[0]:04d}-{drift[1]:02d}"
    flagged, feedback_r = _correlation_story(wh.root, drift_month) \
        if online_per_day else ((), {})
    last = releases[-1]
    canary = (last.name, day0 + dt.timedelta(days=last.day),
              day0 + dt.timedelta(days=min(last.day + 6, days - 1))) \
        if online_per_day and last.index > 0 else None
    return DemoSummary(
        root=wh.root, first_day=day0, today=today, rows=rows, runs=len(plans),
        releases=tuple(r.name for r in releases),
        approved_baseline_run_id=offline.baseline.run_id,
        regressed_run_id=offline.candidate.run_id,
        regression_slice=dict(REGRESSION_SLICE), correctness=offline.correctness,
        failure_attribution=offline.attribution,
        judge_drift_month=drift_month,
        judge_feedback_spearman=spearman,
        incident_day=None if story.incident_day is None
        else day0 + dt.timedelta(days=story.incident_day),
        elapsed_s=round(time.perf_counter() - started, 2),
        flagged=flagged, feedback_r=feedback_r, canary=canary,
    )
