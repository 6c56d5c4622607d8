"""The argument parser of `evallib`: every command, its options and its handler."""

from __future__ import annotations

import argparse
from typing import Any

from . import dashboard, gate, importing, online, review, runs, upkeep
from ._common import Handler, no_format

DESCRIPTION = ("`evallib …`: exit 0 ok, 1 a gate or check failed, 2 bad usage or bad data (no "
               "traceback).")


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
    parser = argparse.ArgumentParser(prog="evallib", description=DESCRIPTION)
    _warehouse_option(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _warehouse_option(p, argparse.SUPPRESS)  # also accepted after the command
        p.set_defaults(handler=handler)
        return p

    p = command("demo", dashboard.demo, "write a realistic demo warehouse")
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--online-per-day", type=int, default=1000)
    p.add_argument("--cases", type=int, default=400, help="golden-set size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--force", action="store_true", help="replace a warehouse that has data")

    p = command("dashboard", dashboard.dashboard, "serve the dashboard on 127.0.0.1")
    p.add_argument("--port", type=int, default=8501)

    p = command("runs", runs.list_runs, "list the runs")
    p.add_argument("--json", action="store_true")

    p = command("compare", runs.compare, "paired run-vs-baseline comparison, overall and per slice")
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

    p = command("compare-many", runs.compare_many, "up to 10 runs of one dataset side by side "
                "on one metric, overall and per slice, each against a reference run")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run ids or names")
    p.add_argument("--reference", required=True, metavar="RUN",
                   help="the run every other is tested against (added when not listed)")
    p.add_argument("--metric", required=True, metavar="M")
    p.add_argument("--by", metavar="KEY[,KEY]", help="slice by these stratum keys, crossed")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level, after Benjamini-Hochberg for slices (default 0.05)")
    p.add_argument("--json", action="store_true")

    p = command("score-online", online.score_online, "score sampled production traces that have "
                "no score yet for each scorer's metric")
    p.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD, or 7d")
    p.add_argument("--until", metavar="DATE", help="YYYY-MM-DD, or 7d")
    p.add_argument("--scorers", required=True, metavar="NAME[,NAME]",
                   help="evallib.scorers factories, retrieval metrics (recall@5, mrr) or "
                        "module:attribute")
    p.add_argument("--judge-model", metavar="M", help="model for LLM-judge factories "
                   "(server: $OPENAI_BASE_URL)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N traces per scorer")
    p.add_argument("--concurrency", type=int, default=8)

    review_cmd = command("review", no_format, "human review: labelling sheets in and out")
    steps = review_cmd.add_subparsers(dest="step", metavar="STEP", required=True)
    p = steps.add_parser("sample", help="write a labelling CSV of judged production traces",
                         description="write a labelling CSV of judged production traces")
    _warehouse_option(p, argparse.SUPPRESS)
    p.set_defaults(handler=review.review_sample)
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
    p.set_defaults(handler=review.review_import)
    p.add_argument("path", metavar="FILE.csv")
    p.add_argument("--rater", metavar="NAME", help="for rows whose rater cell is empty")

    p = command("judge-check", review.judge_check, "is the judge calibrated? Its agreement with "
                "human labels per judge version (exit 1 when a version is not calibrated)")
    p.add_argument("--metric", required=True, metavar="M")
    p.add_argument("--labels", default="warehouse", metavar="FILE|warehouse",
                   help="the warehouse's human labels (default), or a labelling sheet (CSV, "
                        "as `review import` reads it) without importing it")
    p.add_argument("--threshold", type=float, default=0.8, metavar="ALPHA",
                   help="the Krippendorff alpha a judge's 95%% interval must clear "
                        "(default 0.8)")
    p.add_argument("--json", action="store_true")

    p = command("datasets", review.datasets, "golden sets: versions over time, growth per month "
                "(promoted vs hand-written), which runs used which version")
    p.add_argument("--dataset", metavar="NAME", help="only this golden set")
    p.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"),
                   help="cases added, removed and changed from version OLD to NEW")
    p.add_argument("--json", action="store_true")

    p = command("promote", review.promote, "append failing production traces to a golden set as "
                "new cases (a new dataset version)")
    p.add_argument("--failing", action="store_true", required=True,
                   help="traces with a failing score")
    p.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD, or 7d")
    p.add_argument("--until", metavar="DATE", help="YYYY-MM-DD, or 7d")
    p.add_argument("--dataset", required=True, metavar="FILE",
                   help="the golden set (.jsonl, .csv or .parquet)")
    p.add_argument("--metric", metavar="M", help="failing on this metric (default: any)")
    p.add_argument("--limit", type=int, metavar="N", help="add at most N cases")
    p.add_argument("--dry-run", action="store_true", help="print what would be added")

    p = command("export-failures", runs.export_failures,
                "failing cases of a run (or, with --baseline, regressed cases) as CSV")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--baseline", metavar="RUN",
                   help="export the cases that passed in RUN's baseline and fail now")
    p.add_argument("--metric", action="append", default=[], metavar="M",
                   help="only these metrics make a case fail (repeatable; default all)")
    p.add_argument("--out", metavar="FILE.csv", help="default: standard output")

    p = command("gate", gate.gate, "release gate: the candidate run against a policy and a "
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

    p = command("approve", gate.approve, "approve a run as a release baseline (append-only)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--by", metavar="NAME", help="who approves (default: the login name)")
    p.add_argument("--note", metavar="TEXT")

    p = command("alerts", online.alerts, "detect alerts on production traffic (quality drops, "
                "latency, cost and error rises), record them; exit 1 while one is open")
    p.add_argument("--since", metavar="DATE", help="YYYY-MM-DD, or 30d (default: 30 days "
                   "before the newest day with traffic)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-record", action="store_true",
                   help="do not record the alerts in the warehouse")
    _notify_option(p, "new alerts, and the end of those told,")

    p = command("report", runs.report, "the monthly review: offline/online correlations, judge "
                "vs human agreement, drift, alerts, gate failures and regressions")
    p.add_argument("--month", required=True, metavar="YYYY-MM")
    p.add_argument("--out", metavar="FILE", help="FILE.md, or FILE.html (self-contained, "
                   "with figures); default: Markdown on standard output")

    p = command("check", upkeep.check, "validate the warehouse: remove dead temp files, "
                "quarantine unreadable ones")
    p.add_argument("--tmp-age", type=float, default=3600.0, metavar="SECONDS",
                   help="remove temp and uncommitted files older than this (default 3600)")
    p.add_argument("--json", action="store_true")

    p = command("compact", upkeep.compact, "merge each day's small online part files into one "
                "(atomic: readers never see a row twice or miss one)")
    days = p.add_mutually_exclusive_group()
    days.add_argument("--date", metavar="DATE", help="only this day's partitions "
                      "(YYYY-MM-DD, or 7d)")
    days.add_argument("--before", metavar="DATE", help="only days before this one "
                      "(YYYY-MM-DD, or 7d)")
    p.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                   help="keep the merged originals until the new file is this old (default "
                        "0: deleted at once, so plain Parquet readers never count a row "
                        "twice; evallib readers take a new snapshot)")
    p.add_argument("--dry-run", action="store_true", help="say what would be merged")
    p.add_argument("--json", action="store_true")

    p = command("cache", upkeep.cache, "the local cache of an object-storage warehouse's part "
                "files ($EVALLIB_CACHE_DIR, at most $EVALLIB_CACHE_SIZE): show or empty it")
    p.add_argument("action", choices=("status", "clear"))
    p.add_argument("--json", action="store_true")

    p = command("rollup", upkeep.rollup, "roll up scores per day and per run, and production "
                "traffic (health, latency, quality, feedback) per day: what is not rolled up "
                "is read raw, the same answers, slower")
    p.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb",
                   help="duckdb (default, in process) or spark (pyspark: the `spark` extra "
                        "and Java 17; local mode unless EVALLIB_SPARK_MASTER is set)")
    p.add_argument("--since", metavar="DATE",
                   help="only days from this one, and runs started from it (YYYY-MM-DD, "
                        "or 7d)")
    p.add_argument("--grace", type=float, default=600.0, metavar="SECONDS",
                   help="delete superseded rollups once the new one is this old (default 600)")
    p.add_argument("--json", action="store_true")

    imp = command("import", no_format, "bring results from other tools into the warehouse")
    formats = imp.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("jsonl", help="one JSON object per line",
                           description="import a JSONL file; prints the run id")
    _warehouse_option(p, argparse.SUPPRESS)
    p.set_defaults(handler=importing.jsonl)
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

    p = fmt("inspect", importing.inspect_logs, "Inspect AI eval logs (.eval or .json), one run "
            "each; prints the run ids (needs the inspect extra)")
    p.add_argument("paths", nargs="+", metavar="LOG")
    p.add_argument("--run-name", help="default: the task name")
    p.add_argument("--replace", action="store_true", help="re-import a log already imported")
    p = fmt("promptfoo", importing.promptfoo, "promptfoo --output JSON, one run per provider x "
            "prompt; prints the run ids")
    p.add_argument("paths", nargs="+", metavar="RESULTS.json")
    p.add_argument("--strata", metavar="VAR[,VAR]",
                   help="test vars that become strata (default: every plain var)")
    p.add_argument("--replace", action="store_true", help="re-import runs already imported")
    p = fmt("otel", importing.otel, "OTLP/JSON trace exports (one per line, or one document) "
            "as online traces; traces already imported are skipped")
    p.add_argument("paths", nargs="+", metavar="FILE")
