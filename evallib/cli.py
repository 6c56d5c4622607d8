"""`evallib …`: exit 0 ok, 1 a gate or check failed, 2 bad usage or bad data (no traceback)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import EvallibError
from .warehouse.db import retrying

Handler = Callable[[argparse.Namespace], int]


def _warehouse_option(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--warehouse", metavar="PATH", default=default,
                   help="warehouse root: a path or fsspec URL (default: $EVALLIB_WAREHOUSE, "
                        "else ./warehouse)")


def _notify_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--notify", action="append", nargs="?", const="", metavar="TARGET",
                   help=f"post {what} to webhooks: alone, every target of evallib.toml and "
                        "$EVALLIB_WEBHOOKS; or a target's name, env:VAR (the URL in $VAR), "
                        "or [slack:|json:]URL. Repeatable. A notice already sent to a target "
                        "in the same state is not sent again; a failed one never changes "
                        "the exit code")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evallib", description=__doc__)
    _warehouse_option(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _warehouse_option(p, argparse.SUPPRESS)  # also accepted after the command
        p.set_defaults(handler=handler)
        return p

    p = command("demo", _demo, "write a realistic demo warehouse")
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--online-per-day", type=int, default=1000)
    p.add_argument("--cases", type=int, default=400, help="golden-set size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--force", action="store_true", help="replace a warehouse that has data")

    p = command("dashboard", _dashboard, "serve the dashboard on 127.0.0.1")
    p.add_argument("--port", type=int, default=8501)

    p = command("runs", _runs, "list the runs")
    p.add_argument("--json", action="store_true")

    p = command("compare", _compare, "paired run-vs-baseline comparison, overall and per slice")
    p.add_argument("candidate", metavar="CANDIDATE")
    p.add_argument("baseline", metavar="BASELINE")
    p.add_argument("--by", action="append", default=[], metavar="KEY[,KEY]",
                   help="slice by these stratum keys, crossed; repeat for more slicings")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level, after Benjamini-Hochberg for slices (default 0.05)")
    p.add_argument("--cluster", metavar="KEY",
                   help="cases sharing this stratum key (or input, expected) are not "
                        "independent: clustered tests (CR2)")
    p.add_argument("--json", action="store_true")

    p = command("compare-many", _compare_many, "up to 10 runs of one dataset side by side "
                "on one metric, overall and per slice, each against a reference run")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids or names")
    p.add_argument("--reference", required=True, metavar="RUN",
                   help="the run every other is tested against (added when not listed)")
    p.add_argument("--metric", required=True, metavar="M")
    p.add_argument("--by", metavar="KEY[,KEY]", help="slice by these stratum keys, crossed")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level, after Benjamini-Hochberg for slices (default 0.05)")
    p.add_argument("--json", action="store_true")

    p = command("score-online", _score_online, "score sampled production traces that have "
                "no score yet for each scorer's metric")
    p.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD, or 7d")
    p.add_argument("--until", metavar="DATE")
    p.add_argument("--scorers", required=True, metavar="NAME[,NAME]",
                   help="evallib.scorers factories, retrieval metrics (recall@5, mrr) or "
                        "module:attribute")
    p.add_argument("--judge-model", metavar="M", help="model for LLM-judge factories "
                   "(server: $OPENAI_BASE_URL)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N traces per scorer")
    p.add_argument("--concurrency", type=int, default=8)

    review = command("review", _no_format, "human review: labelling sheets in and out")
    steps = review.add_subparsers(dest="step", metavar="STEP", required=True)
    p = steps.add_parser("sample", help="write a labelling CSV of judged production traces",
                         description="write a labelling CSV of judged production traces")
    _warehouse_option(p, argparse.SUPPRESS)
    p.set_defaults(handler=_review_sample)
    p.add_argument("--n", type=int, default=50, help="traces (default 50)")
    p.add_argument("--metric", metavar="M", help="default: every judged metric of a trace")
    p.add_argument("--stratified", action="store_true", help="draw evenly across strata")
    p.add_argument("--by", metavar="KEY[,KEY]", help="strata keys for --stratified "
                   "(default: the whole strata)")
    p.add_argument("--since", default="30d", metavar="DATE", help="default 30d")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="labels.csv", metavar="FILE.csv")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p = steps.add_parser("import", help="store the human labels of a filled sheet",
                         description="store the human labels of a filled sheet")
    _warehouse_option(p, argparse.SUPPRESS)
    p.set_defaults(handler=_review_import)
    p.add_argument("path", metavar="FILE.csv")
    p.add_argument("--rater", metavar="NAME", help="for rows whose rater cell is empty")

    p = command("judge-check", _judge_check, "is the judge calibrated? Its agreement with "
                "human labels per judge version (exit 1 when a version is not calibrated)")
    p.add_argument("--metric", required=True, metavar="M")
    p.add_argument("--labels", default="warehouse", metavar="FILE|warehouse",
                   help="the warehouse's human labels (default), or a labelling sheet (CSV, "
                        "as `review import` reads it) without importing it")
    p.add_argument("--threshold", type=float, default=0.8, metavar="ALPHA",
                   help="the Krippendorff alpha a judge's 95%% interval must clear "
                        "(default 0.8)")
    p.add_argument("--json", action="store_true")

    p = command("datasets", _datasets, "golden sets: versions over time, growth per month "
                "(promoted vs hand-written), which runs used which version")
    p.add_argument("--dataset", metavar="NAME", help="only this golden set")
    p.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"),
                   help="cases added, removed and changed from version OLD to NEW")
    p.add_argument("--json", action="store_true")

    p = command("promote", _promote, "append failing production traces to a golden set as "
                "new cases (a new dataset version)")
    p.add_argument("--failing", action="store_true", required=True,
                   help="traces with a failing score")
    p.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD, or 7d")
    p.add_argument("--until", metavar="DATE")
    p.add_argument("--dataset", required=True, metavar="FILE",
                   help="the golden set (.jsonl, .csv or .parquet)")
    p.add_argument("--metric", metavar="M", help="failing on this metric (default: any)")
    p.add_argument("--limit", type=int, metavar="N", help="add at most N cases")
    p.add_argument("--dry-run", action="store_true", help="print what would be added")

    p = command("export-failures", _export_failures,
                "failing cases of a run (or, with --baseline, regressed cases) as CSV")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--baseline", metavar="RUN",
                   help="export the cases that passed in RUN's baseline and fail now")
    p.add_argument("--metric", action="append", default=[], metavar="M",
                   help="only these metrics make a case fail (repeatable; default all)")
    p.add_argument("--out", metavar="FILE.csv", help="default: standard output")

    p = command("gate", _gate, "release gate: the candidate run against a policy and a "
                "baseline (exit 0 pass, or inconclusive with on_inconclusive = \"warn\"; "
                "1 fail; 2 bad usage or data)")
    p.add_argument("candidate", metavar="CANDIDATE")
    p.add_argument("--policy", required=True, metavar="FILE", help="the gate policy (TOML)")
    p.add_argument("--baseline", default="approved", metavar="RUN|approved",
                   help="a run id, or 'approved' (default): the latest approved run of the "
                        "candidate's dataset started before it")
    p.add_argument("--markdown", metavar="OUT", help="write the report as Markdown")
    p.add_argument("--junit", metavar="OUT", help="write JUnit XML (one test per rule/slice)")
    p.add_argument("--cluster", metavar="KEY",
                   help="cluster max_drop tests by this stratum key (or input, expected); "
                        "overrides the policy's 'cluster'")
    p.add_argument("--no-record", action="store_true",
                   help="do not record this gate run in the warehouse")
    _notify_option(p, "a failed verdict, or a pass that holds only by waivers,")

    p = command("approve", _approve, "approve a run as a release baseline (append-only)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--by", metavar="NAME", help="who approves (default: the login name)")
    p.add_argument("--note", metavar="TEXT")

    p = command("alerts", _alerts, "detect alerts on production traffic (quality drops, "
                "latency, cost and error rises), record them; exit 1 while one is open")
    p.add_argument("--since", metavar="DATE", help="YYYY-MM-DD, or 30d (default: 30 days "
                   "before the newest day with traffic)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-record", action="store_true",
                   help="do not record the alerts in the warehouse")
    _notify_option(p, "new alerts, and the end of those told,")

    p = command("report", _report, "the monthly review: offline/online correlations, judge "
                "vs human agreement, drift, alerts, gate failures and regressions")
    p.add_argument("--month", required=True, metavar="YYYY-MM")
    p.add_argument("--out", metavar="FILE", help="FILE.md, or FILE.html (self-contained, "
                   "with figures); default: Markdown on standard output")

    p = command("check", _check, "validate the warehouse: remove dead temp files, "
                "quarantine unreadable ones")
    p.add_argument("--tmp-age", type=float, default=3600.0, metavar="SECONDS",
                   help="remove temp and uncommitted files older than this (default 3600)")
    p.add_argument("--json", action="store_true")

    p = command("compact", _compact, "merge each day's small online part files into one "
                "(atomic: readers never see a row twice or miss one)")
    days = p.add_mutually_exclusive_group()
    days.add_argument("--date", metavar="YYYY-MM-DD", help="only this day's partitions")
    days.add_argument("--before", metavar="YYYY-MM-DD", help="only days before this one")
    p.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                   help="keep the merged originals until the new file is this old (default "
                        "0: deleted at once, so plain Parquet readers never count a row "
                        "twice; evallib readers take a new snapshot)")
    p.add_argument("--dry-run", action="store_true", help="say what would be merged")
    p.add_argument("--json", action="store_true")

    p = command("cache", _cache, "the local cache of an object-storage warehouse's part "
                "files ($EVALLIB_CACHE_DIR, at most $EVALLIB_CACHE_SIZE): show or empty it")
    p.add_argument("action", choices=("status", "clear"))
    p.add_argument("--json", action="store_true")

    p = command("rollup", _rollup, "roll up scores per day and per run, and production "
                "traffic (health, latency, quality, feedback) per day: what is not rolled up "
                "is read raw, the same answers, slower")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb (default, in process) or spark (pyspark: the `spark` extra "
                        "and Java 17; local mode unless EVALLIB_SPARK_MASTER is set)")
    p.add_argument("--since", metavar="YYYY-MM-DD",
                   help="only days from this one, and runs started from it")
    p.add_argument("--grace", type=float, default=600.0, metavar="SECONDS",
                   help="delete superseded rollups once the new one is this old (default 600)")
    p.add_argument("--json", action="store_true")

    imp = command("import", _no_format, "bring results from other tools into the warehouse")
    formats = imp.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("jsonl", help="one JSON object per line",
                           description="import a JSONL file; prints the run id")
    _warehouse_option(p, argparse.SUPPRESS)
    p.set_defaults(handler=_import_jsonl)
    p.add_argument("path", metavar="FILE")
    p.add_argument("--kind", choices=("offline", "online"), default="offline")
    p.add_argument("--run-name", help="run name (required for offline)")
    p.add_argument("--run-id", help="default: generated from the name and time")
    p.add_argument("--model")
    p.add_argument("--dataset", help="default: the file name without extension")
    p.add_argument("--prompt-version")
    p.add_argument("--judge-version")
    p.add_argument("--git-sha")
    p.add_argument("--started-at", help="ISO 8601; default: now")
    p.add_argument("--replace", action="store_true", help="overwrite a run with the same id")
    _import_formats(formats)
    return parser


def _import_formats(formats: Any) -> None:
    """`import inspect|promptfoo|otel`: other tools' files, as they write them."""
    def fmt(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = formats.add_parser(name, help=help, description=help)
        _warehouse_option(p, argparse.SUPPRESS)
        p.set_defaults(handler=handler)
        return p

    p = fmt("inspect", _import_inspect, "Inspect AI eval logs (.eval or .json), one run each; "
            "prints the run ids (needs the inspect extra)")
    p.add_argument("paths", nargs="+", metavar="LOG")
    p.add_argument("--run-name", help="default: the task name")
    p.add_argument("--replace", action="store_true", help="re-import a log already imported")
    p = fmt("promptfoo", _import_promptfoo, "promptfoo --output JSON, one run per provider x "
            "prompt; prints the run ids")
    p.add_argument("paths", nargs="+", metavar="RESULTS.json")
    p.add_argument("--strata", metavar="VAR[,VAR]",
                   help="test vars that become strata (default: every plain var)")
    p.add_argument("--replace", action="store_true", help="re-import runs already imported")
    p = fmt("otel", _import_otel, "OTLP/JSON trace exports (one per line, or one document) "
            "as online traces; traces already imported are skipped")
    p.add_argument("paths", nargs="+", metavar="FILE")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command not in CREATORS:
            _require_warehouse(args.warehouse)
        return retrying(lambda: args.handler(args))
    except EvallibError as e:
        print(f"evallib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


# Commands that may create the warehouse directory; every other one reads an existing one.
CREATORS = frozenset({"demo", "import"})


def _require_warehouse(root: str | None) -> None:
    """A typo in --warehouse is an error, not an empty warehouse ("no runs")."""
    from .warehouse.store import resolve_root

    path = resolve_root(root)
    if "://" in path or os.path.isdir(path):
        return
    what = "is not a directory" if os.path.exists(path) else "does not exist"
    raise EvallibError(f"no warehouse at {path}: the path {what} (evallib demo --warehouse "
                       "PATH writes a demo warehouse; evallib import … records results into "
                       "a new one)")


def _no_format(args: argparse.Namespace) -> int:  # argparse requires FORMAT first
    return 2


def _demo(args: argparse.Namespace) -> int:
    for name in ("days", "online_per_day", "cases"):
        if getattr(args, name) < 1:
            raise EvallibError(f"--{name.replace('_', '-')} must be at least 1")
    from .demo import build_demo

    summary = build_demo(args.warehouse, days=args.days, online_per_day=args.online_per_day,
                         cases=args.cases, seed=args.seed, force=args.force)
    print(summary.describe())
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from .warehouse.store import resolve_root

    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.exists():
        raise EvallibError(f"cannot find the dashboard entry {app} (run from a source checkout)")
    env = {**os.environ, "EVALLIB_WAREHOUSE": resolve_root(args.warehouse)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.address", "127.0.0.1", "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    print(f"Eval Flywheel on http://127.0.0.1:{args.port}  (warehouse {env['EVALLIB_WAREHOUSE']})",
          file=sys.stderr)
    return subprocess.call(cmd, env=env, cwd=app.parent)


def _runs(args: argparse.Namespace) -> int:
    from . import queries
    from .warehouse.db import connect

    cols = ["run_id", "name", "model", "dataset", "dataset_version", "started_at", "n_cases",
            "source", "approved"]
    with connect(args.warehouse) as con:
        df = queries.runs_overview(con).reverse()  # oldest first, like a log
    rows = df.select(cols).to_dicts()
    if args.json:
        print(json.dumps(rows, default=_json_default, indent=2))
        return 0
    if not rows:
        print("no runs (evallib demo, or evallib import jsonl FILE --run-name NAME)",
              file=sys.stderr)
        return 0
    _print_table(rows, cols)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .analysis.compare import compare_runs
    from .warehouse.db import connect

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
    _print_table([{"metric": m.metric, "kind": m.kind, "n": m.n,
                   "baseline": _num(m.baseline), "candidate": _num(m.candidate),
                   "delta": _num(m.delta, sign=True),
                   "95% CI": f"[{_num(m.ci_low, sign=True)}, {_num(m.ci_high, sign=True)}]",
                   "p": _num(m.p_value), "p_adjusted": _num(m.p_adjusted), "test": m.test,
                   "significant": "YES" if m.significant else (
                       "" if m.testable else "untestable"),
                   "cases -/=/+": f"{m.regressed}/{m.unchanged}/{m.improved}",
                   "min drop": _num(m.min_detectable)} for m in result.metrics],
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
                                                     _nan_last(s.p_adjusted), s.delta))
        _print_table([{"slice": ", ".join(f"{k}={v}" for k, v in s.slice.items()),
                       "metric": s.metric, "n": s.n, "baseline": _num(s.baseline),
                       "candidate": _num(s.candidate), "delta": _num(s.delta, sign=True),
                       "p": _num(s.p_value), "p_adjusted": _num(s.p_adjusted),
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


def _compare_many(args: argparse.Namespace) -> int:
    from .analysis.many_runs import compare_many, grid, headline
    from .warehouse.db import connect

    by = [k.strip() for k in (args.by or "").split(",") if k.strip()]
    with connect(args.warehouse) as con:
        result = compare_many(con, args.runs, args.reference, args.metric, by=by,
                              alpha=args.alpha)
    if args.json:
        print(json.dumps(result.to_json(), default=_json_default, indent=2))
        return 0
    ref = next(r.label for r in result.runs if r.reference)
    print(f"{result.metric} ({result.kind}, {result.test}) in {len(result.runs)} runs of "
          f"{result.dataset}, each against {ref} (reference)")
    for w in result.warnings:
        print(f"warning: {w}")
    print(headline(result))
    print()
    table = grid(result)
    _print_table(table.to_dicts(), table.columns)
    print("Each cell: the run's mean (n scored). WORSE / better: significantly different "
          "from the reference over the cases both scored (all cases: p < alpha; slices: "
          f"Benjamini-Hochberg over the {result.n_tests} run x slice tests).")
    print(f"{result.flaky.height} case(s) pass in some of these runs and fail in others "
          "(--json lists them).")
    return 0


def _nan_last(x: float) -> float:
    return float("inf") if x != x else x


def _score_online(args: argparse.Namespace) -> int:
    from .authoring.promote import parse_since
    from .online import resolve_scorers, score_online

    scorers = resolve_scorers(args.scorers, args.judge_model)
    counts = score_online(args.warehouse, scorers, parse_since(args.since),
                          until=args.until and parse_since(args.until), limit=args.limit,
                          concurrency=args.concurrency)
    for metric, c in counts.items():
        print(f"{metric}: {c['scored']} scored, {c['unscored']} unscored")
    if not counts:
        print("nothing to score: every trace in the window has these metrics",
              file=sys.stderr)
    return 0


def _review_sample(args: argparse.Namespace) -> int:
    from .authoring.promote import parse_since
    from .authoring.review import sample_for_review, write_sheet
    from .warehouse.db import connect

    by = [k.strip() for k in (args.by or "").split(",") if k.strip()]
    with connect(args.warehouse) as con:
        sheet = sample_for_review(con, args.n, since=parse_since(args.since),
                                  metric=args.metric, stratified=args.stratified, by=by,
                                  seed=args.seed)
    write_sheet(sheet, args.out, force=args.force)
    print(f"{sheet['trace_id'].n_unique()} traces, {sheet.height} rows to label written to "
          f"{args.out}; fill 'value' (and 'rater'), then: evallib review import {args.out}",
          file=sys.stderr)
    return 0


def _review_import(args: argparse.Namespace) -> int:
    from .authoring.review import import_labels

    r = import_labels(args.path, args.warehouse, rater=args.rater)
    print(f"imported {r.imported} new labels, replaced {r.replaced} changed ones "
          f"({r.without_value} rows without a value, {r.already_stored} already stored)")
    return 0


def _judge_check(args: argparse.Namespace) -> int:
    from .analysis.calibration import describe, judge_check, to_json
    from .warehouse.db import connect

    if not 0 < args.threshold <= 1:
        raise EvallibError(f"--threshold must be in (0, 1], not {args.threshold:g}")
    labels = None
    if args.labels != "warehouse":
        import polars as pl

        from .authoring.review import read_sheet

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


def _datasets(args: argparse.Namespace) -> int:
    from .authoring.datasets import datasets_report, render_datasets
    from .warehouse.db import connect

    with connect(args.warehouse) as con:
        report = datasets_report(con, args.dataset, diff=args.diff)
    if args.json:
        print(json.dumps(report, default=_json_default, indent=2))
    else:
        print(render_datasets(report))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from .authoring.promote import parse_since, promote_failing

    result = promote_failing(args.warehouse, args.dataset, since=parse_since(args.since),
                             until=args.until and parse_since(args.until),
                             metric=args.metric, limit=args.limit, dry_run=args.dry_run)
    print(("dry run: " if args.dry_run else "") + result.describe())
    return 0


def _export_failures(args: argparse.Namespace) -> int:
    from .analysis.export import failing_cases, to_csv, write_csv
    from .warehouse.db import connect

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


def _gate(args: argparse.Namespace) -> int:
    from .analysis.gate import junit, load_policy, markdown, run_gate, terminal
    from .warehouse import Warehouse
    from .warehouse.db import connect

    targets = _notify_targets(args, "gate")
    policy = load_policy(args.policy)
    with connect(args.warehouse) as con:
        result = run_gate(con, args.candidate, policy, baseline=args.baseline,
                          cluster=args.cluster)
    print(terminal(result))
    for path, render in ((args.markdown, markdown), (args.junit, junit)):
        if path:
            try:
                Path(path).write_text(render(result), encoding="utf-8")
            except OSError as e:
                raise EvallibError(f"cannot write {path}: {e.strerror or e}") from None
    if not args.no_record:
        try:
            Warehouse(args.warehouse).record_gate_results(result.rows())
        except Exception as e:  # the verdict stands; say it was not kept
            print(f"evallib gate: error: the verdict ({result.verdict}) was not recorded in "
                  f"the warehouse: {type(e).__name__}: {e}", file=sys.stderr)
    if targets:
        from .notify import notify_gate

        _notify(args, lambda settings: notify_gate(args.warehouse, result, targets, settings))
    return result.exit_code


def _approve(args: argparse.Namespace) -> int:
    import getpass

    from .warehouse import Warehouse

    who = args.by
    if not who:
        try:
            who = getpass.getuser()
        except OSError:
            raise EvallibError("cannot tell who you are: pass --by NAME") from None
    row = Warehouse(args.warehouse).record_approval(args.run, who, args.note)
    print(f"approved {args.run} by {who} at {row['approved_at']:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _num(v: float, sign: bool = False) -> str:
    if v != v:  # NaN
        return "-"
    if 0 < abs(v) < 1e-3:
        return f"{v:+.1e}" if sign else f"{v:.1e}"
    return f"{v:+.3f}" if sign else f"{v:.3f}"


def _alerts(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from .analysis.monitor import record_alerts
    from .authoring.promote import parse_since

    targets = _notify_targets(args, "alerts")
    alerts = record_alerts(args.warehouse, since=args.since and parse_since(args.since),
                   record=not args.no_record)
    n_open = sum(a.status == "open" for a in alerts)
    if args.json:
        print(json.dumps([asdict(a) for a in alerts], default=_json_default, indent=2))
    elif not alerts:
        print("no alerts", file=sys.stderr)
    else:
        _print_table([{"status": a.status.upper() if a.status == "open" else a.status,
                       "signal": a.signal, "days": f"{a.first_day} → {a.last_day}",
                       "message": a.message} for a in alerts],
                     ["status", "signal", "days", "message"])
        print(f"{n_open} open, {len(alerts) - n_open} closed", file=sys.stderr)
    if targets:
        from .notify import notify_alerts

        _notify(args, lambda settings: notify_alerts(args.warehouse, alerts, targets,
                                                     settings))
    return 1 if n_open else 0


def _notify_targets(args: argparse.Namespace, event: str) -> list[Any]:
    """The webhooks ``--notify`` names, resolved before any work (a bad one is exit 2)."""
    if args.notify is None:
        return []
    from .notify import load_settings, resolve_targets

    load_settings()  # a broken evallib.toml is a usage error now, not after the verdict
    return resolve_targets(args.notify, event)


def _notify(args: argparse.Namespace, send: Callable[[Any], list[Any]]) -> None:
    """Send, reporting on stderr through the ``evallib.notify`` logger; whatever happens,
    the command's exit code keeps its meaning."""
    import logging

    from .notify import load_settings

    log = logging.getLogger("evallib.notify")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"evallib {args.command}: notify: %(message)s"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        settings = load_settings()
        outcomes = send(settings)
        skipped = sum(o.status == "skipped" for o in outcomes)
        sent = sum(o.status == "sent" for o in outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
        log.info("%d sent, %d failed, %d already sent (or not due)%s", sent, failed, skipped,
                 "" if settings.dashboard_url else "; set EVALLIB_DASHBOARD_URL to link "
                 "messages to the dashboard")
    except Exception as e:  # a notification never changes the verdict
        log.error("gave up: %s: %s", type(e).__name__, e)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _report(args: argparse.Namespace) -> int:
    from .analysis.report import month_bounds, monthly_review, render, write_report
    from .warehouse.db import connect

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


def _check(args: argparse.Namespace) -> int:
    from .warehouse.maintenance import check

    report = check(args.warehouse, tmp_age=args.tmp_age)
    if args.json:
        print(json.dumps({"healthy": report.healthy, "files": report.files,
                          "removed_temp": report.removed_temp,
                          "removed_orphans": report.removed_orphans,
                          "removed_replaced": report.removed_replaced,
                          "quarantined": [{"path": p, "why": w} for p, w in report.quarantined],
                          "duplicates": [vars(d) for d in report.duplicates]},
                         indent=2))
    else:
        print(f"{report.files} part files checked")
        for p in report.removed_temp:
            print(f"removed dead temp file {p}")
        for p in report.removed_orphans:
            print(f"removed uncommitted part file {p}")
        for p in report.removed_replaced:
            print(f"removed part file merged by compact {p}")
        for p, why in report.quarantined:
            print(f"quarantined {p}: {why}")
        for d in report.duplicates:
            print(f"{d.table}: {d.keys} keys stored more than once on their day ({d.rows} "
                  "older rows, hidden from readers; `evallib compact` removes them)")
            if d.across_days:
                print(f"{d.table}: {d.across_days} keys stored on more than one day (each "
                      "day's row counts: re-send them with their original timestamp)")
        print("healthy" if report.healthy else "problems found: see quarantined files")
    return 0 if report.healthy else 1


def _compact(args: argparse.Namespace) -> int:
    from .warehouse.compact import compact

    report = compact(args.warehouse, day=_day(args.date, "--date"),
                     before=_day(args.before, "--before"), grace=args.grace,
                     dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run,
                          "merged": [vars(m) for m in report.merged],
                          "removed": report.removed, "kept": report.kept}, indent=2))
        return 0
    verb = "would merge" if args.dry_run else "merged"
    for m in report.merged:
        where = m.table + (f" {m.partition}" if m.partition else "")
        print(f"{verb} {m.files} files ({m.rows:,} rows) of {where}"
              + (f" into {m.path}" if m.path else ""))
    if not report.merged:
        print("nothing to merge")
    if report.removed or report.kept:
        print(f"removed {len(report.removed)} merged files; {len(report.kept)} kept until "
              f"their grace ({args.grace:g} s) passes")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from .warehouse.cache import PartCache, held, settings
    from .warehouse.store import Store

    cache = PartCache.get(settings())
    if args.action == "clear":
        gone = cache.clear()
        print(f"removed {gone.files:,} cached part files ({_bytes(gone.bytes)}) from "
              f"{gone.directory}")
        return 0
    status = cache.status()
    store = Store(args.warehouse)
    mine = None if store.is_local else held(store, cache)
    if args.json:
        print(json.dumps({**vars(status), "warehouse": store.root,
                          "warehouse_files": mine}, indent=2))
        return 0
    print(f"cache {status.directory}: {status.files:,} part files, {_bytes(status.bytes)} of "
          f"at most {_bytes(status.max_bytes)}")
    if mine is None:
        print(f"{store.root} is on a local disk: read in place, not cached")
    else:
        print(f"{store.root}: {mine['cached']:,} of {mine['files']:,} current part files "
              f"cached ({_bytes(mine['cached_bytes'])} of {_bytes(mine['bytes'])})")
    return 0


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _rollup(args: argparse.Namespace) -> int:
    from .warehouse.rollup import rollup

    report = rollup(args.warehouse, engine=args.engine, since=_day(args.since, "--since"),
                    grace=args.grace)
    if args.json:
        print(json.dumps(vars(report), indent=2))
    else:
        print(f"rolled up {report.days} days of online scores and {report.runs} runs "
              f"(and {report.traffic_days} days of traffic: {report.rows:,} rollup rows) with "
              f"{report.engine} in {report.seconds:.1f} s; {report.fresh_days} days and "
              f"{report.fresh_runs} runs were fresh already")
    return 0


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise EvallibError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


def _import_jsonl(args: argparse.Namespace) -> int:
    from .importers.jsonl import import_jsonl
    from .warehouse import Warehouse

    run = None
    if args.kind == "offline":
        if not args.run_name:
            raise EvallibError("--run-name is required for an offline import")
        run = {"name": args.run_name, "dataset": args.dataset or Path(args.path).stem,
               "model": args.model, "prompt_version": args.prompt_version,
               "judge_version": args.judge_version, "git_sha": args.git_sha,
               "source": "import:jsonl", "run_id": args.run_id,
               "started_at": args.started_at}
        run = {k: v for k, v in run.items() if v is not None}
    result = import_jsonl(args.path, Warehouse(args.warehouse), kind=args.kind, run=run,
                          replace=args.replace)
    if args.kind == "offline":
        print(result["run_id"])
        print(f"imported {result['cases']} cases", file=sys.stderr)
    else:
        _print_merged(args.path, result)
    return 0


def _print_merged(path: str, counts: dict[str, Any]) -> None:
    """One line per online table an import touched: rows new, replaced, already present."""
    touched = {t: m for t, m in counts.items() if m.new or m.replaced or m.present}
    for table, merged in touched.items():
        print(f"{path}: {table}: {merged}")
    if not touched:
        print(f"{path}: no rows")


def _import_inspect(args: argparse.Namespace) -> int:
    from .importers.inspect import import_inspect
    from .warehouse import Warehouse

    wh = Warehouse(args.warehouse)
    for path in args.paths:
        r = import_inspect(path, wh, replace=args.replace, run_name=args.run_name)
        print(r["run_id"])
        what = "already imported, skipped (--replace re-imports)" if r["skipped"] else \
            f"imported {r['cases']} cases (log status: {r['status']})"
        print(f"{path}: {what}", file=sys.stderr)
    return 0


def _import_promptfoo(args: argparse.Namespace) -> int:
    from .importers.promptfoo import import_promptfoo
    from .warehouse import Warehouse

    wh = Warehouse(args.warehouse)
    keys = {k.strip() for k in args.strata.split(",") if k.strip()} if args.strata else None
    for path in args.paths:
        for r in import_promptfoo(path, wh, replace=args.replace, strata_keys=keys):
            print(r["run_id"])
            what = "already imported, skipped" if r["skipped"] else f"{r['cases']} cases"
            print(f"{path}: {r['provider']} x {r['prompt']}: {what}", file=sys.stderr)
    return 0


def _import_otel(args: argparse.Namespace) -> int:
    from .importers.otel import import_otel
    from .warehouse import Warehouse

    wh = Warehouse(args.warehouse)
    for path in args.paths:
        r = import_otel(path, wh)
        without_root = r.pop("without_root")
        _print_merged(path, r)
        if without_root:
            print(f"{path}: {without_root} traces without their root span in the file "
                  "(skipped)")
    return 0


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%d %H:%M")
        if isinstance(v, bool):
            return "yes" if v else ""
        return "" if v is None else str(v)

    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    raise SystemExit(main())
