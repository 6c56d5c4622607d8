"""Many runs side by side at the issue's size: 10 runs × 5,000 cases × one metric × 50 slices.

    .venv/bin/python bench/many_runs.py [--repeat 20]

Writes ten 5,000-case runs into a scratch warehouse (strata: 10 query types × 5 difficulties
= 50 slices; a binary, an ordinal and a continuous metric, of which the view reads one; the
newest run regresses one slice), then times `compare_many` of all ten runs against the
fifth, by query_type × difficulty, for each metric: cold (a new connection) and warm (p50,
p95), with the SQL read apart. Then the Runs × slices page (AppTest, in process) on the
same view: its first render and a rerun (Streamlit's cache), and a new metric picked on a
warm connection. Budget: ≤ 1 s warm. Also used by run.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from evallib import Warehouse, connect, queries  # noqa: E402
from evallib.analysis.many_runs import compare_many  # noqa: E402

BUDGET_S = 1.0
N_RUNS = 10
METRICS = (("correct", "binary"), ("grade", "ordinal"), ("score", "continuous"))
PLANTED = {"query_type": "q3", "difficulty": "d4"}


def write_runs(root: str, n_cases: int = 5_000, seed: int = 1) -> list[str]:
    """Ten runs, every fourth approved; the newest loses 0.3 of its pass rate in q3 × d4."""
    rng = np.random.default_rng(seed)
    qt, diff = rng.integers(0, 10, n_cases), rng.integers(0, 5, n_cases)
    cases = [{"case_id": f"c{i:05d}", "strata": {"query_type": f"q{qt[i]}",
                                                  "difficulty": f"d{diff[i]}"}}
             for i in range(n_cases)]
    ids = np.array([c["case_id"] for c in cases])
    hit = (qt == 3) & (diff == 4)
    skill = rng.normal(0, 1, n_cases)  # the case's difficulty, shared by every run
    runs = []
    for r in range(N_RUNS):
        drop = 0.3 if r == N_RUNS - 1 else 0.0
        rows = []
        for metric, kind in METRICS:
            if kind == "binary":
                p = 1 / (1 + np.exp(-(1.4 + skill))) - drop * hit
                values = (rng.random(n_cases) < p).astype(float)
            elif kind == "ordinal":
                values = np.clip(np.round(4 + skill + rng.normal(0, 0.7, n_cases)
                                          - 3 * drop * hit), 1, 5)
            else:
                values = np.clip(0.7 + 0.1 * skill + rng.normal(0, 0.1, n_cases)
                                 - drop * hit, 0, 1)
            rows.extend({"case_id": c, "metric": metric, "value": float(v), "kind": kind,
                         **({"passed": bool(v)} if kind == "binary" else {})}
                        for c, v in zip(ids, values, strict=True))
        run_id = f"run{r:02d}"
        Warehouse(root).record_run(
            {"run_id": run_id, "name": run_id, "dataset": "bench", "approved": r % 4 == 0,
             "started_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=r)},
            cases, rows)
        runs.append(run_id)
    return runs


def _p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def measure(root: str, runs: list[str], repeat: int) -> dict[str, dict[str, float]]:
    """Per metric, seconds: cold (a new connection), warm p50/p95, the SQL read p50; and
    what the view found (tests, flagged, flagged in the planted slice, flaky cases)."""
    by = ["query_type", "difficulty"]
    reference = runs[4]
    out = {}
    for metric, kind in METRICS:
        t0 = time.perf_counter()
        with connect(root) as con:
            result = compare_many(con, runs, reference, metric, by=by)
            cold = time.perf_counter() - t0
            warm, sql = [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                compare_many(con, runs, reference, metric, by=by)
                warm.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                queries.many_run_scores(con, runs, metric)
                sql.append(time.perf_counter() - t0)
        flagged = [c for c in result.cells if c.slice and c.significant]
        out[metric] = {
            "kind": kind, "cold_s": cold, "p50_s": statistics.median(warm),
            "p95_s": _p95(warm), "sql_p50_s": statistics.median(sql),
            "slices": len({str(c.slice) for c in result.cells if c.slice}),
            "tests": result.n_tests, "flagged": len(flagged),
            "flagged_planted": sum(c.slice == PLANTED and c.run_id == runs[-1]
                                   for c in flagged),
            "flaky": result.flaky.height}
    return out


def page(root: str, runs: list[str]) -> dict[str, float]:
    """The Runs × slices page (AppTest, in process) over all ten runs: first render (cold
    process: imports, connection, the comparison), rerun (cached), and a new metric on the
    warm connection (the comparison computed again)."""
    from streamlit.testing.v1 import AppTest

    os.environ["EVALLIB_WAREHOUSE"] = root
    at = AppTest.from_file(str(HERE.parent / "app.py"), default_timeout=600)
    at.switch_page("pages/many_runs.py")
    at.query_params.update({"runs": runs, "reference": runs[4], "metric": "correct",
                            "by": ["query_type", "difficulty"]})
    timings = {}
    for name, step in (("cold_s", None), ("warm_s", None), ("new_metric_s", "grade")):
        if step:
            at.selectbox(key="metric").set_value(step)
        t0 = time.perf_counter()
        at.run()
        timings[name] = time.perf_counter() - t0
        assert not at.exception, at.exception
    return timings


def run(repeat: int = 20) -> dict[str, object]:
    scratch = tempfile.mkdtemp(prefix="bench-many-runs-")
    try:
        root = str(Path(scratch) / "warehouse")
        t0 = time.perf_counter()
        runs = write_runs(root)
        written = time.perf_counter() - t0
        return {"write_s": written, "metrics": measure(root, runs, repeat),
                "page": page(root, runs)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def markdown(r: dict[str, object]) -> list[str]:
    ok = lambda good: "✅" if good else "❌"  # noqa: E731
    metrics, page_s = r["metrics"], r["page"]
    any_m = next(iter(metrics.values()))
    return [
        f"## Many runs (budget ≤ {BUDGET_S:g} s warm)", "",
        f"`compare_many` of {N_RUNS} runs × 5,000 cases × one metric, sliced by query_type × "
        f"difficulty ({any_m['slices']} slices: {any_m['tests']} run × slice tests under one "
        "Benjamini–Hochberg family), each run against the fifth, on a warehouse holding three "
        "metrics (`bench/many_runs.py`). Cold: a new connection (the first metric also loads "
        "scipy and statsmodels). Flagged: slice tests significant after Benjamini–Hochberg; "
        "the planted one is the newest run's q3 × d4.", "",
        "| metric | cold s | warm p50 s | warm p95 s | SQL read p50 ms | flagged | "
        "in the planted slice | flaky cases | |", "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *[f"| {m} ({v['kind']}) | {v['cold_s']:.2f} | {v['p50_s']:.2f} | {v['p95_s']:.2f} | "
          f"{v['sql_p50_s'] * 1e3:.0f} | {v['flagged']} | {v['flagged_planted']} | "
          f"{v['flaky']:,} | {ok(v['p95_s'] <= BUDGET_S)} |" for m, v in metrics.items()],
        "",
        f"The Runs × slices page on that view (AppTest, in process): first render "
        f"{page_s['cold_s']:.2f} s (imports, connection, comparison), rerun "
        f"**{page_s['warm_s']:.2f} s** {ok(page_s['warm_s'] <= BUDGET_S)}, another metric on "
        f"the warm connection **{page_s['new_metric_s']:.2f} s** "
        f"{ok(page_s['new_metric_s'] <= BUDGET_S)}.", ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=20)
    print("\n".join(markdown(run(p.parse_args().repeat))))


if __name__ == "__main__":
    main()
