"""A full comparison at DESIGN.md's size: two 5,000-case runs × 10 metrics × 50 slices.

    .venv/bin/python bench/compare.py [--repeat 20]

Writes two runs into a scratch warehouse (strata: 10 query types × 5 difficulties = 50
slices; 4 binary, 3 ordinal, 3 continuous metrics; the candidate regresses one slice), then
times `compare_runs` by query_type × difficulty on a fresh connection (cold) and again
(warm), split into the SQL read and the statistics. Budget: ≤ 0.5 s. Also used by run.py.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evallib import Warehouse, connect, queries
from evallib.analysis.compare import compare_runs

BUDGET_S = 0.5
METRICS = [(f"pass_{i}", "binary") for i in range(4)] + [
    (f"grade_{i}", "ordinal") for i in range(3)] + [(f"score_{i}", "continuous") for i in range(3)]


def write_runs(root: str, n_cases: int = 5_000, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    qt = rng.integers(0, 10, n_cases)
    diff = rng.integers(0, 5, n_cases)
    cases = [{"case_id": f"c{i:05d}", "strata": {"query_type": f"q{qt[i]}",
                                                  "difficulty": f"d{diff[i]}"}}
             for i in range(n_cases)]
    ids = np.array([c["case_id"] for c in cases])
    hit = (qt == 3) & (diff == 4)  # the planted regression
    for run, shift, day in (("base", 0.0, 1), ("cand", 1.0, 2)):
        rows = []
        for metric, kind in METRICS:
            if kind == "binary":
                p = np.where(hit, 0.8 - 0.3 * shift, 0.8)
                values = (rng.random(n_cases) < p).astype(float)
            elif kind == "ordinal":
                values = np.clip(np.round(rng.normal(4 - shift * hit, 1)), 1, 5)
            else:
                values = np.clip(rng.normal(0.7 - 0.1 * shift * hit, 0.15), 0, 1)
            rows.extend({"case_id": c, "metric": metric, "value": float(v), "kind": kind}
                        for c, v in zip(ids, values, strict=True))
        Warehouse(root).record_run(
            {"run_id": run, "name": run, "dataset": "bench",
             "started_at": datetime(2026, 1, day, tzinfo=UTC)}, cases, rows)


def measure(root: str, repeat: int) -> dict[str, float]:
    """Seconds: cold (a new connection), warm p50/p95, and the warm split SQL / statistics."""
    by = [["query_type", "difficulty"]]
    t0 = time.perf_counter()
    with connect(root) as con:
        result = compare_runs(con, "cand", "base", by=by)
        cold = time.perf_counter() - t0
        warm, sql = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            compare_runs(con, "cand", "base", by=by)
            warm.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            queries.paired_scores(con, "cand", "base")
            sql.append(time.perf_counter() - t0)
    warm.sort()
    p95 = warm[min(len(warm) - 1, round(0.95 * (len(warm) - 1)))]
    flagged = [s for s in result.slices if s.significant]
    return {"cold_s": cold, "p50_s": statistics.median(warm), "p95_s": p95,
            "sql_p50_s": statistics.median(sql), "slices": len({str(s.slice)
                                                                 for s in result.slices}),
            "tests": len(result.slices), "metrics": len(result.metrics),
            "flagged": len(flagged),
            "flagged_in_planted": sum(s.slice == {"query_type": "q3", "difficulty": "d4"}
                                      for s in flagged)}


def run(repeat: int = 20) -> dict[str, float]:
    scratch = tempfile.mkdtemp(prefix="bench-compare-")
    try:
        root = str(Path(scratch) / "warehouse")
        t0 = time.perf_counter()
        write_runs(root)
        out = measure(root, repeat)
        out["write_s"] = time.perf_counter() - t0 - out["cold_s"]
        return out
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def markdown(r: dict[str, float]) -> list[str]:
    ok = "✅" if r["p95_s"] <= BUDGET_S else "❌"
    return [
        "## Compare (budget ≤ 0.5 s)", "",
        f"`compare_runs` of two 5,000-case runs × {r['metrics']:.0f} metrics, sliced by "
        f"query_type × difficulty ({r['slices']:.0f} slices, {r['tests']:.0f} tests with "
        f"Benjamini–Hochberg): cold **{r['cold_s']:.2f} s** (new connection), warm p50 "
        f"**{r['p50_s']:.2f} s**, p95 **{r['p95_s']:.2f} s** {ok}; of which the SQL read of "
        f"the pairs is {r['sql_p50_s'] * 1e3:.0f} ms. {r['flagged']:.0f} tests flagged, "
        f"{r['flagged_in_planted']:.0f} of them in the planted slice "
        "(`bench/compare.py`).", ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=20)
    print("\n".join(markdown(run(p.parse_args().repeat))))


if __name__ == "__main__":
    main()
