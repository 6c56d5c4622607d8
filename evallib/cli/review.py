"""Golden sets and human review: `review sample|import`, `judge-check`, `datasets`,
`promote`."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EvallibError
from ._common import day, json_default


def review_sample(args: argparse.Namespace) -> int:
    from ..authoring.review import sample_for_review, write_sheet
    from ..warehouse.db import connect

    by = [k.strip() for k in (args.by or "").split(",") if k.strip()]
    with connect(args.warehouse) as con:
        sheet = sample_for_review(con, args.n, since=day(args.since, "--since"),
                                  metric=args.metric, stratified=args.stratified, by=by,
                                  seed=args.seed)
    write_sheet(sheet, args.out, force=args.force)
    print(f"{sheet['trace_id'].n_unique()} traces, {sheet.height} rows to label written to "
          f"{args.out}; fill 'value' (and 'rater'), then: evallib review import {args.out}",
          file=sys.stderr)
    return 0


def review_import(args: argparse.Namespace) -> int:
    from ..authoring.review import import_labels

    r = import_labels(args.path, args.warehouse, rater=args.rater)
    print(f"imported {r.imported} new labels, replaced {r.replaced} changed ones "
          f"({r.without_value} rows without a value, {r.already_stored} already stored)")
    return 0


def judge_check(args: argparse.Namespace) -> int:
    from ..analysis.calibration import describe, judge_check, to_json
    from ..warehouse.db import connect

    if not 0 < args.threshold <= 1:
        raise EvallibError(f"--threshold must be in (0, 1], not {args.threshold:g}")
    labels = None
    if args.labels != "warehouse":
        import polars as pl

        from ..authoring.review import read_sheet

        rows, _, _ = read_sheet(args.labels, rater="(sheet)")
        labels = pl.DataFrame([r for r in rows if r["metric"] == args.metric], schema={
            "trace_id": pl.String, "run_id": pl.String, "case_id": pl.String,
            "labeler": pl.String, "value": pl.Float64}, strict=False)
    with connect(args.warehouse) as con:
        table, cells = judge_check(con, args.metric, labels, threshold=args.threshold)
    if args.json:
        print(json.dumps({"metric": args.metric, "labels": args.labels,
                          "threshold": args.threshold, "versions": to_json(table, cells)},
                         indent=2))
    elif table.height:
        print(describe(table, cells, args.threshold))
    if not table.height:
        print(f"evallib judge-check: no human label of {args.metric!r} is on an item a judge "
              "scored: nothing is calibrated (label some on the Review page, or "
              "`evallib review sample` then `evallib review import`)", file=sys.stderr)
        return 1
    return 0 if (table["status"] == "calibrated").all() else 1


def datasets(args: argparse.Namespace) -> int:
    from ..analysis.golden_sets import datasets_report, render_datasets
    from ..warehouse.db import connect

    with connect(args.warehouse) as con:
        report = datasets_report(con, args.dataset, diff=args.diff)
    if args.json:
        print(json.dumps(report, default=json_default, indent=2))
    else:
        print(render_datasets(report))
    return 0


def promote(args: argparse.Namespace) -> int:
    from ..authoring.promote import promote_failing

    result = promote_failing(args.warehouse, args.dataset, since=day(args.since, "--since"),
                             until=day(args.until, "--until"),
                             metric=args.metric, limit=args.limit, dry_run=args.dry_run)
    print(("dry run: " if args.dry_run else "") + result.describe())
    return 0
