"""Reading runs: `runs`, `compare`, `compare-many`, `export-failures`, `report`."""

from __future__ import annotations

import argparse
import json
import sys

from ..vocabulary import slice_label
from ._common import json_default, nan_last, num, print_table


def list_runs(args: argparse.Namespace) -> int:
    from .. import queries
    from ..warehouse.db import connect

    cols = ["run_id", "name", "model", "dataset", "dataset_version", "started_at", "n_cases",
            "source", "approved"]
    with connect(args.warehouse) as con:
        df = queries.runs_overview(con).reverse()  # oldest first, like a log
    rows = df.select(cols).to_dicts()
    if args.json:
        print(json.dumps(rows, default=json_default, indent=2))
        return 0
    if not rows:
        print("no runs (evallib demo, or evallib import jsonl FILE --run-name NAME)",
              file=sys.stderr)
        return 0
    print_table(rows, cols)
    return 0


def compare(args: argparse.Namespace) -> int:
    from ..analysis.compare import compare_runs
    from ..warehouse.db import connect

    by = [[k.strip() for k in spec.split(",")] for spec in args.by]
    with connect(args.warehouse) as con:
        result = compare_runs(con, args.candidate, args.baseline, by=by, alpha=args.alpha,
                              cluster=args.cluster)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    if result.warnings:
        if not result.comparable:
            print("NOT COMPARABLE:")
        for w in result.warnings:
            print(f"warning: {w}")
        print()
    print(f"{result.candidate} (candidate) vs {result.baseline} (baseline), "
          f"{result.cases.get('common', 0)} cases in common, alpha {result.alpha:g}")
    if result.cluster:
        print(f"clustered by {result.cluster} ({result.n_clusters} clusters): every test is "
              "the clustered t (CR2, Bell-McCaffrey df)")
    print()
    print_table([{"metric": m.metric, "kind": m.kind, "n": m.n,
                   "baseline": num(m.baseline), "candidate": num(m.candidate),
                   "delta": num(m.delta, sign=True),
                   "95% CI": f"[{num(m.ci_low, sign=True)}, {num(m.ci_high, sign=True)}]",
                   "p": num(m.p_value), "p_adjusted": num(m.p_adjusted), "test": m.test,
                   "significant": "YES" if m.significant else (
                       "" if m.testable else "untestable"),
                   "cases -/=/+": f"{m.regressed}/{m.unchanged}/{m.improved}",
                   "min drop": num(m.min_detectable)} for m in result.metrics],
                 ["metric", "kind", "n", "baseline", "candidate", "delta", "95% CI", "p",
                  "p_adjusted", "test", "significant", "cases -/=/+", "min drop"])
    print("cases -/=/+: cases whose score went down / stayed / went up. min drop: the "
          "smallest drop of the mean this n detects with 80% power. p_adjusted: "
          "Benjamini-Hochberg over the metrics.")
    for m in result.metrics:
        if m.reason:
            print(f"  {m.metric}: {m.reason}")
    if result.slices:
        print()
        order = sorted(result.slices, key=lambda s: (not s.significant, not s.testable,
                                                     nan_last(s.p_adjusted), s.delta))
        print_table([{"slice": slice_label(s.slice),
                       "metric": s.metric, "n": s.n, "baseline": num(s.baseline),
                       "candidate": num(s.candidate), "delta": num(s.delta, sign=True),
                       "p": num(s.p_value), "p_adjusted": num(s.p_adjusted),
                       "significant": "YES" if s.significant else (
                           "" if s.testable else f"untestable: {s.reason}")}
                      for s in order],
                     ["slice", "metric", "n", "baseline", "candidate", "delta", "p",
                      "p_adjusted", "significant"])
        untestable = sum(not s.testable for s in result.slices)
        if untestable:
            print(f"{untestable} untestable slice x metric result(s) are not counted in "
                  "the Benjamini-Hochberg family.")
    return 0


def compare_many(args: argparse.Namespace) -> int:
    from ..analysis.many_runs import compare_many, grid, headline
    from ..warehouse.db import connect

    by = [k.strip() for k in (args.by or "").split(",") if k.strip()]
    with connect(args.warehouse) as con:
        result = compare_many(con, args.runs, args.reference, args.metric, by=by,
                              alpha=args.alpha)
    if args.json:
        print(json.dumps(result.to_json(), default=json_default, indent=2))
        return 0
    ref = next(r.label for r in result.runs if r.reference)
    print(f"{result.metric} ({result.kind}, {result.test}) in {len(result.runs)} runs of "
          f"{result.dataset}, each against {ref} (reference)")
    for w in result.warnings:
        print(f"warning: {w}")
    print(headline(result))
    print()
    table = grid(result)
    print_table(table.to_dicts(), table.columns)
    print("Each cell: the run's mean (n scored). WORSE / better: significantly different "
          "from the reference over the cases both scored (all cases: p < alpha; slices: "
          f"Benjamini-Hochberg over the {result.n_tests} run x slice tests).")
    print(f"{result.flaky.height} case(s) pass in some of these runs and fail in others "
          "(--json lists them).")
    return 0


def export_failures(args: argparse.Namespace) -> int:
    from ..analysis.export import failing_cases, to_csv, write_csv
    from ..warehouse.db import connect

    with connect(args.warehouse) as con:
        df = failing_cases(con, args.run, args.baseline, args.metric or None)
    what = "regressed" if args.baseline else "failing"
    if args.out:
        write_csv(df, args.out)
        print(f"{df.height} {what} case(s) written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(to_csv(df))
        sys.stdout.flush()
        print(f"{df.height} {what} case(s)", file=sys.stderr)
    return 0


def report(args: argparse.Namespace) -> int:
    from ..analysis.report import month_bounds, monthly_review, render, write_report
    from ..warehouse.db import connect

    month_bounds(args.month)  # a bad month is a usage error before any work
    with connect(args.warehouse) as con:
        review = monthly_review(con, args.month)
    if args.out:
        write_report(review, args.out)
        print(f"monthly review {args.month} written to {args.out} "
              f"({len(review.flags())} findings)", file=sys.stderr)
    else:
        sys.stdout.write(render(review, None))
    return 0
