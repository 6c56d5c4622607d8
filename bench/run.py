"""Benchmarks against DESIGN.md's budgets, on the large demo warehouse.

    make bench                       # builds bench/warehouse once (a few minutes), then measures
    .venv/bin/python bench/run.py --days 30 --online-per-day 2000 --cases 400   # a quick look

Writes bench/RESULTS.md. Figures are wall-clock on whatever machine runs this; they are
reported, never asserted in unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import baselines  # noqa: E402  (bench/baselines.py)
import compare as compare_bench  # noqa: E402  (bench/compare.py)
import many_runs as many_runs_bench  # noqa: E402  (bench/many_runs.py)

from evallib import Warehouse, connect, queries  # noqa: E402
from evallib.analysis import rag  # noqa: E402
from evallib.analysis.calibration import review_agreement  # noqa: E402
from evallib.analysis.golden_sets import datasets_overview  # noqa: E402
from evallib.analysis.monitor import compare_variants, detect  # noqa: E402
from evallib.analysis.report import monthly_review, review_trends  # noqa: E402
from evallib.warehouse.db import tables_present  # noqa: E402
from evallib.warehouse.schema import ONLINE_SCORES, SCORES  # noqa: E402
from evallib.warehouse.store import Store  # noqa: E402

PAGES = ("pages/runs.py", "pages/compare.py", "pages/many_runs.py", "pages/slices.py",
         "pages/slices.py?source=Online",
         "pages/rag.py", "pages/rag.py?source=Online", "pages/trends.py", "pages/online.py",
         "pages/correlation.py", "pages/review.py?rater=bench&source=Online",
         "pages/review.py?rater=bench&source=Offline", "pages/datasets.py")
BUDGET = {"query_p95_ms": 150, "page_warm_s": 1.0, "write_rows_s": 2_000_000,
          "memory_gb": 1.5}


def timed(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    samples = []
    for _ in range(repeat if cold < 1 else min(repeat, 3)):  # far over budget: 3 are enough
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]
    return {"cold_ms": cold * 1e3, "p50_ms": statistics.median(samples) * 1e3,
            "p95_ms": p95 * 1e3}


def build(root: Path, args: argparse.Namespace) -> dict[str, object]:
    stamp = root / "_bench_build_seconds.txt"  # so a reused warehouse still reports its build
    if tables_present(str(root)) and not args.rebuild:
        return {"built": False, "seconds": float(stamp.read_text()) if stamp.exists() else None}
    t0 = time.perf_counter()  # in a child process, so its memory is not counted below
    subprocess.run([sys.executable, "-m", "evallib.cli", "demo", "--warehouse", str(root),
                    "--days", str(args.days), "--online-per-day", str(args.online_per_day),
                    "--cases", str(args.cases), "--force"], check=True)
    seconds = time.perf_counter() - t0
    stamp.write_text(f"{seconds:.1f}")
    return {"built": True, "seconds": seconds}


def row_counts(root: Path) -> dict[str, int]:
    con = connect(str(root))
    names = ["runs", "cases", "scores", "retrievals", "online_traces", "online_scores",
             "online_retrievals", "feedback", "human_labels"]
    return {n: con.sql(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in names}


def write_throughput(tmp: Path, n_cases: int = 50_000, n_metrics: int = 40) -> dict[str, float]:
    """One record_run of n_cases × n_metrics score rows, validated and written."""
    rng = np.random.default_rng(1)
    ids = pa.array([f"case-{i:07d}" for i in range(n_cases)])
    cases = pa.table({"case_id": ids,
                      "latency_ms": rng.lognormal(6.5, 0.4, n_cases)})
    metric_names = np.array([f"metric_{j}" for j in range(n_metrics)])
    scores = pa.table({
        "case_id": pa.chunked_array([ids] * n_metrics),
        "metric": pa.array(np.repeat(metric_names, n_cases)),
        "value": rng.random(n_cases * n_metrics),
        "kind": pa.repeat(pa.scalar("continuous"), n_cases * n_metrics),
    })
    rates = []
    for i in range(3):
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        Warehouse(str(tmp)).record_run({"name": f"bench-{i}", "dataset": "bench"}, cases, scores)
        rates.append(scores.num_rows / (time.perf_counter() - t0))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"rows": scores.num_rows, "rows_per_s_median": statistics.median(rates)}


def query_timings(root: Path, repeat: int) -> list[tuple[str, dict[str, float]]]:
    """Each query of `query_cases`, timed."""
    con = connect(str(root), read_only=True)
    return [(name, timed(fn, repeat)) for name, fn in query_cases(con)]


def query_cases(con: duckdb.DuckDBPyConnection) -> list[tuple[str, Callable[[], object]]]:
    """The queries each page runs on its default view (the sidebar's default window is every
    day with traffic: here a year), and the ones a click runs (a split, a shorter window)."""
    runs = queries.runs_overview(con)
    dataset = runs["dataset"][0]
    pair = runs["run_id"].head(2).to_list()
    rng = queries.online_date_range(con).row(0, named=True)
    first, last = rng["first_day"], rng["last_day"]
    key = queries.strata_keys(con, dataset)["key"][0]
    key2 = queries.strata_keys(con, dataset)["key"][1]
    c = con.cursor
    cases: list[tuple[str, Callable[[], object]]] = [
        ("Runs: runs_overview", lambda: queries.runs_overview(c())),
        ("Runs: run_metric_summary, every run", lambda: queries.run_metric_summary(c())),
        ("Compare: run_metric_summary, a pair of runs",
         lambda: queries.run_metric_summary(c(), pair)),
        ("Compare: case_scores of a pair, one metric",
         lambda: queries.case_scores(c(), *pair, "correctness")),
        ("Trends: offline_trend", lambda: queries.offline_trend(c(), dataset, "correctness")),
        (f"Trends: offline_trend by {key}",
         lambda: queries.offline_trend(c(), dataset, "correctness", key)),
        ("Slices: slice_summary, two keys",
         lambda: queries.slice_summary(c(), pair[0], key, key2)),
        ("RAG: retrieval_metrics of a run", lambda: queries.retrieval_metrics(c(), pair[0], 10)),
        ("RAG: attribution_items of a run", lambda: queries.attribution_items(
            c(), pair[0], 5, "correctness", "faithfulness", False)),
    ]
    if last:
        for label, start in ((f"every day ({(last - first).days + 1})", first),
                             ("90 days", last - timedelta(days=89)),
                             ("28 days", last - timedelta(days=27)),
                             ("7 days", last - timedelta(days=6)), ("1 day", last)):
            cases += [
                (f"Trends: online_daily, {label}",
                 lambda s=start: queries.online_daily(c(), "correctness", s, last)),
                (f"Trends: online_daily by {key}, {label}",
                 lambda s=start: queries.online_daily(c(), "correctness", s, last, key)),
                (f"Online: online_health, {label}",
                 lambda s=start: queries.online_health(c(), s, last)),
                (f"Online: online_health by release, {label}",
                 lambda s=start: queries.online_health(c(), s, last, False, "release")),
                (f"Online: online_health by {key}, {label}",
                 lambda s=start: queries.online_health(c(), s, last, False, "stratum", key)),
                (f"Online: online_quality, {label}",
                 lambda s=start: queries.online_quality(c(), s, last)),
                (f"Online: online_quality by variant, {label}",
                 lambda s=start: queries.online_quality(c(), s, last, False, "variant")),
                (f"Online: online_quality by {key}, {label}",
                 lambda s=start: queries.online_quality(c(), s, last, False, "stratum", key)),
                (f"Online: online_feedback, {label}",
                 lambda s=start: queries.online_feedback(c(), s, last)),
                (f"Online: online_feedback by release, {label}",
                 lambda s=start: queries.online_feedback(c(), s, last, False, "release")),
                (f"Online: online_variant_days, {label}",
                 lambda s=start: queries.online_variant_days(c(), s, last)),
                (f"Slices: online_slice_summary, {label}",
                 lambda s=start: queries.online_slice_summary(c(), s, last, key, key2)),
                (f"Slices: online_strata_mix, {label}",
                 lambda s=start: queries.online_strata_mix(c(), s, last, key, key2)),
                (f"RAG: online_retrieval_metrics, {label}",
                 lambda s=start: queries.online_retrieval_metrics(c(), s, last, 10)),
                (f"RAG: online_generation_by_evidence, {label}",
                 lambda s=start: queries.online_generation_by_evidence(c(), s, last, 5)),
                (f"RAG: online_attribution_counts, {label}",
                 lambda s=start: queries.online_attribution_counts(
                     c(), s, last, 5, "correctness", "faithfulness")),
                (f"RAG: online_failure_days, one class in one {key}, {label}",
                 lambda s=start: queries.online_failure_days(
                     c(), s, last, 5, "correctness", "faithfulness", ("retrieval",), key,
                     "billing")),
            ]
        every = queries.online_failure_days(c(), first, last, 5, "correctness", "faithfulness",
                                            rag.CLASSES)
        newest = rag.newest_days(every, 2000)
        cases += [
            ("RAG: online_failures, the newest 2,000 (the page's list)",
             lambda: queries.online_failures(c(), newest, last, 5, "correctness",
                                             "faithfulness", rag.CLASSES, None, None, 2000)),
            ("Online: online_health hourly, last 48 h",
             lambda: queries.online_health(c(), last - timedelta(days=1), last, True)),
            ("Online: online_drift_counts, 7 days vs 28 before",
             lambda: queries.online_drift_counts(c(), last - timedelta(days=34),
                                                 last - timedelta(days=7),
                                                 last - timedelta(days=6), last)),
            ("Correlation: release_scores", lambda: queries.release_scores(c(), last)),
            ("Correlation: score_feedback_counts, every month (the page's trend)",
             lambda: queries.score_feedback_counts(c(), first, last)),
            ("Correlation: judge_human_counts, every month",
             lambda: queries.judge_human_counts(c(), first, last)),
            *review_queries(c, first, last),

        ]
    cases += dataset_queries(c, dataset, key)
    return cases


def review_queries(c: Callable[[], object], first: date, last: date
                   ) -> list[tuple[str, Callable[[], object]]]:
    """The Review page's default view (the last 30 days' queue) and one item; a queue of
    every day; judge calibration's pairs."""
    recent = max(first, last - timedelta(days=29))
    pool = queries.online_review_pool(c(), "correctness", recent, last, "bench", (), 20, 0)
    item, day = pool.row(0)[:2]
    return [
        ("Review: online_review_pool, 30 days (the page's default)",
         lambda: queries.online_review_pool(c(), "correctness", recent, last, "bench", (),
                                            20, 0)),
        ("Review: online_review_pool, every day", lambda: queries.online_review_pool(
            c(), "correctness", first, last, "bench", (), 20, 0)),
        ("Review: online_metric_scale, 30 days",
         lambda: queries.online_metric_scale(c(), "correctness", recent, last)),
        ("Review: online_review_metrics, every day",
         lambda: queries.online_review_metrics(c(), first, last)),
        ("Review: online_review_keys, every day",
         lambda: queries.online_review_keys(c(), first, last)),
        ("Review: online_metric_scale, every day",
         lambda: queries.online_metric_scale(c(), "correctness", first, last)),
        ("Review: review_trace (the item on screen)",
         lambda: queries.review_trace(c(), item, day, "correctness")),
        ("Review: rater_labels", lambda: queries.rater_labels(c(), "bench", "correctness")),
        ("Review: label_pairs (judge calibration)",
         lambda: queries.label_pairs(c(), "correctness")),
        ("Review: label_values (agreement among people)",
         lambda: queries.label_values(c(), "correctness")),
    ]


def dataset_queries(c: Callable[[], object], dataset: str, key: str
                    ) -> list[tuple[str, Callable[[], object]]]:
    """The Datasets page: versions, their cases, a diff and a version's strata mix."""
    versions = queries.dataset_versions(c(), dataset)["dataset_version"].to_list()
    return [
        ("Datasets: dataset_versions", lambda: queries.dataset_versions(c(), dataset)),
        ("Datasets: dataset_membership", lambda: queries.dataset_membership(c(), dataset)),
        ("Datasets: version_diff, the newest two",
         lambda: queries.version_diff(c(), versions[-2], versions[-1])),
        (f"Datasets: version_strata_mix by {key}",
         lambda: queries.version_strata_mix(c(), versions[-1], key)),
        ("Datasets: version_runs", lambda: queries.version_runs(c(), dataset)),
    ]


def analysis_timings(root: Path, repeat: int) -> list[tuple[str, dict[str, float]]]:
    """What the Online and Correlation pages compute beyond queries (cached per window or
    snapshot; a new window computes again): the alert detector and the canary tests over
    the sidebar's default window (every day), every month's correlations and agreement
    (once per warehouse snapshot), then a month's review."""
    con = connect(str(root), read_only=True)
    first, last = queries.online_date_range(con).row(0)
    days = queries.online_variant_days(con, first, last)
    treatment = next(v for v in days["variant"].unique().sort() if v != "control")
    trends = review_trends(con.cursor())
    return [
        ("Online: the alert detector, every day", timed(lambda: detect(con.cursor(), first,
                                                                       last), repeat)),
        (f"Online: canary tests, {treatment} vs control",
         timed(lambda: compare_variants(con.cursor(), first, last, "control", treatment),
               repeat)),
        ("Correlation: every month's correlations and agreement (bootstrap of 1,000 each; "
         "once per snapshot)", timed(lambda: review_trends(con.cursor()), min(repeat, 5))),
        ("Correlation: switching month (the month's review on those)",
         timed(lambda: monthly_review(con.cursor(), f"{last:%Y-%m}", regressions=False,
                                      checks=False, trends=trends), repeat)),
        ("Review: agreement and judge calibration of correctness (bootstraps of 1,000; "
         "once per snapshot)", timed(lambda: review_agreement(con.cursor(), "correctness"),
                                     min(repeat, 5))),
        ("Datasets: versions, growth and runs of the golden set",
         timed(lambda: datasets_overview(con.cursor()), repeat)),
    ]


def _flatten(files: list[str], column: str, out: Path) -> str:
    """The same part files with the partition value moved into the file: no directories."""
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        value = f.split(f"{column}=")[1].split("/")[0]
        t = pq.read_table(f)
        if column == "date":
            col = pa.array([date.fromisoformat(value)] * t.num_rows, pa.date32())
        else:
            col = pa.array([value] * t.num_rows)
        pq.write_table(t.append_column(column, col), out / f"part-{i:05d}.parquet",
                       compression="zstd")
    return str(out / "part-*.parquet")


def partitioning(root: Path, scratch: Path, repeat: int) -> list[tuple[str, dict[str, float]]]:
    """The dashboard's three kinds of question (one run, a pair, a date window) against the
    chosen layout, against the same part files unpartitioned (one flat directory), and
    against one fully compacted file."""
    con = connect(str(root))
    store = Store(str(root))
    scratch.mkdir(parents=True, exist_ok=True)
    flat = {"scores": scratch / "scores", "online_scores": scratch / "online_scores"}
    one = {k: scratch / f"{k}.parquet" for k in flat}
    if not one["scores"].exists():
        _flatten(store.all_parts(SCORES), "run_id", flat["scores"])
        _flatten(store.all_parts(ONLINE_SCORES), "date", flat["online_scores"])
        for k in flat:
            con.execute(f"COPY (SELECT * FROM {k}) TO '{one[k]}' (FORMAT parquet)")
    runs = queries.runs_overview(con)["run_id"].to_list()
    last = queries.online_date_range(con)["last_day"][0]
    one_run = "SELECT metric, avg(value) FROM {} WHERE run_id = $r GROUP BY metric"
    pair = ("SELECT run_id, metric, avg(value) FROM {} WHERE run_id = $a OR run_id = $b "
            "GROUP BY ALL")
    window = ("SELECT date, avg(value) FROM {} WHERE metric = 'correctness' "
              "AND date BETWEEN $a AND $b GROUP BY date")
    days = {"a": last - timedelta(days=6), "b": last}
    layouts = {
        "scores": [("run_id partitions (chosen)", "scores"),
                   ("same files, no partitions", f"read_parquet('{flat['scores']}/*.parquet')"),
                   ("one compacted file", f"read_parquet('{one['scores']}')")],
        "online_scores": [("date partitions (chosen)", "online_scores"),
                          ("same files, no partitions",
                           f"read_parquet('{flat['online_scores']}/*.parquet')"),
                          ("one compacted file", f"read_parquet('{one['online_scores']}')")],
    }
    out = []
    for question, table, sql, params in [
        ("one run", "scores", one_run, {"r": runs[0]}),
        ("a pair of runs", "scores", pair, {"a": runs[0], "b": runs[-1]}),
        ("7-day window", "online_scores", window, days),
    ]:
        for label, source in layouts[table]:
            q = sql.format(source)
            out.append((f"{question}: {label}",
                        timed(lambda q=q, p=params: con.cursor().sql(q, params=p).fetchall(),
                              repeat)))
    return out


def page_renders(root: Path) -> list[tuple[str, float, float]]:
    """AppTest runs each page twice in this process: cold, then warm (Streamlit caches hot)."""
    from streamlit.testing.v1 import AppTest

    os.environ["EVALLIB_WAREHOUSE"] = str(root)
    os.chdir(HERE.parent)
    out = []
    for page in PAGES:
        path, _, params = page.partition("?")
        at = AppTest.from_file(str(HERE.parent / "app.py"), default_timeout=600)
        if path != "pages/runs.py":
            at.switch_page(path)
        for key, value in parse_qsl(params):
            at.query_params[key] = value
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        assert not at.exception, at.exception
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        out.append((page, cold, warm))
    return out


def dashboard(root: Path) -> tuple[list[tuple[str, float, float]], float]:
    """The pages rendered in a process of their own, as the dashboard would run: its render
    times and its peak memory (the bench's own queries do not count)."""
    out = subprocess.run([sys.executable, __file__, "--pages-only", "--root", str(root)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return [tuple(r) for r in result["pages"]], result["peak_gb"]


def object_storage(root: Path) -> list[str]:
    """bench/s3.py on the default demo and on this warehouse: local disk, S3-cold and
    S3-warm side by side (moto behind a 30 ms proxy)."""
    lines = ["## Object storage (S3 at 30 ms a request)", "",
             "`bench/s3.py` (its docstring says what each figure is).", ""]
    for extra in ([], ["--root", str(root), "--label", "The bench warehouse (this one)"]):
        out = subprocess.run([sys.executable, str(HERE / "s3.py"), *extra], check=True,
                             capture_output=True, text=True).stdout
        lines += out.splitlines()
    return lines


def _peak_gb() -> float:
    """This process's peak resident memory (VmHWM: ru_maxrss would include the parent's peak
    carried over the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default=str(HERE / "warehouse"))
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--online-per-day", type=int, default=40_000)
    p.add_argument("--cases", type=int, default=5_000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    p.add_argument("--no-s3", action="store_true",
                   help="skip bench/s3.py (object storage: the default demo and this warehouse)")
    p.add_argument("--pages-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.pages_only:  # the child process of `dashboard`
        print(json.dumps({"pages": page_renders(Path(args.root)), "peak_gb": _peak_gb()}))
        return
    root = Path(args.root)

    load = os.getloadavg()[0]
    built = build(root, args)
    counts = row_counts(root)
    q = query_timings(root, args.repeat)
    computed = analysis_timings(root, args.repeat)
    pages, rss_gb = dashboard(root)
    parts = partitioning(root, HERE / "tmp-flat", args.repeat)
    write = write_throughput(HERE / "tmp-write")
    compare = compare_bench.run(args.repeat)
    many = many_runs_bench.run(args.repeat)
    by_hand = baselines.run(root, min(args.repeat, 5))
    on_s3 = [] if args.no_s3 else object_storage(root)
    shutil.rmtree(HERE / "tmp-flat", ignore_errors=True)

    ok = lambda good: "✅" if good else "❌"  # noqa: E731
    online_rows = sum(counts[t] for t in ("online_traces", "online_scores",
                                          "online_retrievals", "feedback"))
    lines = [
        "# Benchmark results", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.machine()}. Command: `make bench` "
        f"(`bench/run.py --days {args.days} --online-per-day {args.online_per_day} "
        f"--cases {args.cases}`), {args.repeat} timed repeats after one cold run (3 when the "
        f"cold run takes over a second). Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"; load average at the start {load:.1f}.", "",
        "## Warehouse", "",
        f"Offline score rows: **{counts['scores']:,}**; online rows (traces + scores + "
        f"retrievals + feedback): **{online_rows:,}**.", "",
        "| table | rows |", "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in counts.items()], "",
        (f"Demo build (`evallib demo` at this size): **{built['seconds']:.0f} s**"
         + ("" if built["built"] else " (when it was built; reused for this run)") + "."
         if built.get("seconds") else "Demo build: not timed (run with `--rebuild`)."), "",
        "## Writes", "",
        f"`Warehouse.record_run` of {write['rows']:,} score rows (validation + Parquet): "
        f"**{write['rows_per_s_median'] / 1e6:.2f} M rows/s** "
        f"(budget ≥ {BUDGET['write_rows_s'] / 1e6:.0f} M/s) "
        f"{ok(write['rows_per_s_median'] >= BUDGET['write_rows_s'])}", "",
        "## Interactive queries (budget p95 ≤ 150 ms)", "",
        "| query | cold ms | p50 ms | p95 ms | |", "|---|---:|---:|---:|---|",
        *[f"| {n} | {t['cold_ms']:.0f} | {t['p50_ms']:.0f} | {t['p95_ms']:.0f} | "
          f"{ok(t['p95_ms'] <= BUDGET['query_p95_ms'])} |" for n, t in q], "",
        "## Analyses the pages cache (budget: the page ≤ 1 s)", "",
        "| analysis | cold ms | p50 ms | p95 ms | |", "|---|---:|---:|---:|---|",
        *[f"| {n} | {t['cold_ms']:.0f} | {t['p50_ms']:.0f} | {t['p95_ms']:.0f} | "
          f"{ok(t['p95_ms'] <= BUDGET['page_warm_s'] * 1e3)} |" for n, t in computed], "",
        *compare_bench.markdown(compare),
        *many_runs_bench.markdown(many),
        *baselines.markdown(by_hand),
        "## Partitioning: the same questions on three layouts", "",
        "| question, layout | cold ms | p50 ms | p95 ms |", "|---|---:|---:|---:|",
        *[f"| {n} | {t['cold_ms']:.0f} | {t['p50_ms']:.0f} | {t['p95_ms']:.0f} |"
          for n, t in parts], "",
        "## Pages (AppTest, in process; budget warm ≤ 1 s)", "",
        "| page | cold s | warm s | |", "|---|---:|---:|---|",
        *[f"| {n} | {c:.2f} | {w:.2f} | {ok(w <= BUDGET['page_warm_s'])} |"
          for n, c, w in pages], "",
        f"Peak memory of the dashboard process (every page above, cold then warm: its "
        f"connection, caches and Streamlit): **{rss_gb:.2f} GB** "
        f"(budget ≤ {BUDGET['memory_gb']} GB) {ok(rss_gb <= BUDGET['memory_gb'])}", "",
        *on_s3,
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
