"""The dashboard's questions answered three ways on the same Parquet files: by evallib, by
hand-written DuckDB SQL and by hand-written pandas, so the benchmark can say what evallib's
views and rollups buy over what an analyst would write without it.

    .venv/bin/python bench/baselines.py --root /tmp/h1wh --repeat 3

- evallib: the `evallib.queries` function on `evallib.connect(root)` (rollups where fresh).
- raw DuckDB: one SQL statement per question over ``read_parquet('<root>/<table>/*/part-*
  .parquet', hive_partitioning = true)`` in a plain ``duckdb.connect()``: no views, no
  rollups. Offline rows are kept only for each run's committed write (the latest ``runs``
  row per run_id, by committed_at), in the SQL itself, as `evallib.warehouse.db` does by file.
- pandas: ``pd.read_parquet`` (pyarrow) of the table directory, only the needed columns,
  partitions and committed writes filtered by ``filters=``, then a groupby; a stratum is
  read from ``strata_json`` by parsing each distinct string once.

Before timing, the three answers must agree: the same groups, equal counts, and means and
latency quantiles equal to a relative 1e-9. The pandas peak memory is the ru_maxrss of a
child process that answers the question once (and its ru_maxrss just before, after imports).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import duckdb
    import polars as pl

# evallib, DuckDB and polars are imported where used, so the child process that measures
# pandas' memory holds only pandas and pyarrow
ROOT = Path(__file__).resolve().parent.parent

METRIC, TREND_KEY, SLICE_KEY = "correctness", "difficulty", "query_type"
REL_TOL = 1e-9
Params = dict[str, Any]


def timed(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    """One cold call, then ``repeat`` timed calls (as bench/run.py's `timed`)."""
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {"cold_ms": cold * 1e3, "p50_ms": statistics.median(samples) * 1e3}


# --- raw DuckDB: constant SQL, the globs and choices bound -------------------------------

_COMMITTED = """committed AS (
        SELECT run_id, write_id, dataset FROM read_parquet($runs)
        QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY committed_at DESC) = 1)"""
_RAW_SQL = {
    "runs": f"""WITH {_COMMITTED}
        SELECT run_id, metric, count(value) AS n, avg(value) AS mean
        FROM read_parquet($scores, hive_partitioning = true)
        WHERE write_id IN (SELECT write_id FROM committed)
        GROUP BY run_id, metric""",
    "pair": f"""WITH {_COMMITTED}
        SELECT run_id, metric, count(value) AS n, avg(value) AS mean
        FROM read_parquet($scores, hive_partitioning = true)
        WHERE (run_id = $a OR run_id = $b) AND write_id IN (SELECT write_id FROM committed)
        GROUP BY run_id, metric""",
    "trend": f"""WITH {_COMMITTED}
        SELECT run_id, json_extract_string(strata_json, '$.' || $key) AS stratum,
               count(value) AS n, avg(value) AS mean
        FROM read_parquet($scores, hive_partitioning = true)
        WHERE metric = $metric
          AND write_id IN (SELECT write_id FROM committed WHERE dataset = $dataset)
        GROUP BY ALL""",
    "daily": """
        SELECT date AS day, count(value) AS n, avg(value) AS mean
        FROM read_parquet($online_scores, hive_partitioning = true)
        WHERE metric = $metric AND date BETWEEN $start AND $end
        GROUP BY date""",
    "health": """
        SELECT date AS day, count(*) AS n, count(error) AS n_error,
               quantile_cont(latency_ms, 0.5) AS latency_p50,
               quantile_cont(latency_ms, 0.95) AS latency_p95
        FROM read_parquet($online_traces, hive_partitioning = true)
        WHERE date BETWEEN $start AND $end
        GROUP BY date""",
    "slice": f"""WITH {_COMMITTED}
        SELECT metric, json_extract_string(strata_json, '$.' || $key) AS stratum,
               count(value) AS n, avg(value) AS mean
        FROM read_parquet($scores, hive_partitioning = true)
        WHERE run_id = $run AND write_id IN (SELECT write_id FROM committed)
        GROUP BY ALL""",
}
_RAW_PARAMS = {"runs": (), "pair": ("a", "b"), "trend": ("dataset", "metric", "trend_key"),
               "daily": ("metric", "start", "end"), "health": ("start", "end"),
               "slice": ("run", "slice_key")}


def raw(con: duckdb.DuckDBPyConnection, root: Path, q: str, p: Params) -> pl.DataFrame:
    globs = {t: str(root / t / "*" / "part-*.parquet")
             for t in ("scores", "online_scores", "online_traces")}
    globs["runs"] = str(root / "runs" / "part-*.parquet")
    sql = _RAW_SQL[q]
    names = {"trend_key": "key", "slice_key": "key"}
    bound = {names.get(k, k): _param(p[k]) for k in _RAW_PARAMS[q]}
    bound.update({t: g for t, g in globs.items() if f"${t}" in sql})
    return con.sql(sql, params=bound).pl()


def _param(v: Any) -> Any:
    return date.fromisoformat(v) if isinstance(v, str) and len(v) == 10 and v[4] == "-" else v


# --- pandas, as a competent analyst would write it ---------------------------------------


def _committed(root: Path) -> pd.DataFrame:
    runs = pd.read_parquet(root / "runs", columns=["run_id", "write_id", "committed_at",
                                                   "dataset"])
    return runs.sort_values("committed_at").drop_duplicates("run_id", keep="last")


def _stratum(strata_json: pd.Series, key: str) -> pd.Series:
    """The key's value per row, parsing each distinct JSON string once."""
    values = {s: json.loads(s).get(key) for s in strata_json.dropna().unique()}
    return strata_json.map(values)


def _mean(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = df.groupby(by, observed=True, dropna=False)["value"]
    return g.agg(n="count", mean="mean").reset_index()


def pandas_answer(root: Path, q: str, p: Params) -> pd.DataFrame:
    if q in ("runs", "pair", "trend", "slice"):
        runs = _committed(root)
        if q == "trend":
            runs = runs[runs["dataset"] == p["dataset"]]
        filters: list[tuple[str, str, Any]] = [("write_id", "in", runs["write_id"].tolist())]
        columns = ["run_id", "metric", "value"]
        if q == "pair":
            filters.append(("run_id", "in", [p["a"], p["b"]]))
        elif q == "trend":
            filters.append(("metric", "==", p["metric"]))
            columns = ["run_id", "value", "strata_json"]
        elif q == "slice":
            filters.append(("run_id", "==", p["run"]))
            columns = ["metric", "value", "strata_json"]
        df = pd.read_parquet(root / "scores", columns=columns, filters=filters)
        if q in ("runs", "pair"):
            return _mean(df, ["run_id", "metric"])
        df["stratum"] = _stratum(df.pop("strata_json"),
                                 p["trend_key" if q == "trend" else "slice_key"])
        return _mean(df, ["run_id" if q == "trend" else "metric", "stratum"])
    window = [("date", ">=", p["start"]), ("date", "<=", p["end"])]
    if q == "daily":
        df = pd.read_parquet(root / "online_scores", columns=["date", "value"],
                             filters=[("metric", "==", p["metric"]), *window])
        return _mean(df.rename(columns={"date": "day"}), ["day"])
    df = pd.read_parquet(root / "online_traces", columns=["date", "latency_ms", "error"],
                         filters=window)
    g = df.groupby("date", observed=True)
    return pd.DataFrame({"n": g.size(), "n_error": g["error"].count(),
                         "latency_p50": g["latency_ms"].quantile(0.5),
                         "latency_p95": g["latency_ms"].quantile(0.95)}
                        ).rename_axis("day").reset_index()


# --- evallib -------------------------------------------------------------------------------


def evallib_answer(con: duckdb.DuckDBPyConnection, q: str, p: Params) -> pl.DataFrame:
    from evallib import queries

    start, end = _param(p["start"]), _param(p["end"])
    if q == "runs":
        return queries.run_metric_summary(con)
    if q == "pair":
        return queries.run_metric_summary(con, [p["a"], p["b"]])
    if q == "trend":
        return queries.offline_trend(con, p["dataset"], p["metric"], p["trend_key"])
    if q == "daily":
        return queries.online_daily(con, p["metric"], start, end)
    if q == "health":
        return queries.online_health(con, start, end).rename({"bucket": "day"})
    return queries.slice_summary(con, p["run"], p["slice_key"])


# question key, label, the columns naming a group, the columns compared
QUESTIONS: list[tuple[str, str, list[str], list[str]]] = [
    ("runs", "Runs page: mean of every metric of every run", ["run_id", "metric"],
     ["n", "mean"]),
    ("pair", "a pair of runs: per-metric means", ["run_id", "metric"], ["n", "mean"]),
    ("trend", f"offline trend of {METRIC} by {TREND_KEY}, every run", ["run_id", "stratum"],
     ["n", "mean"]),
    ("daily", f"online: daily mean of {METRIC}, 90 days", ["day"], ["n", "mean"]),
    ("health", "online: daily traces, errors, latency p50/p95, 90 days", ["day"],
     ["n", "n_error", "latency_p50", "latency_p95"]),
    ("slice", f"one run: metric × {SLICE_KEY} means", ["metric", "stratum"], ["n", "mean"]),
]


def _scalar(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return v if isinstance(v, int | float) else str(v)


def _groups(df: pl.DataFrame | pd.DataFrame, keys: list[str], values: list[str]
            ) -> dict[tuple, tuple]:
    rows = df.to_dict("records") if isinstance(df, pd.DataFrame) else df.to_dicts()
    return {tuple(_scalar(r[k]) for k in keys): tuple(_scalar(r[v]) for v in values)
            for r in rows}


def check_agree(label: str, answers: dict[str, pl.DataFrame | pd.DataFrame],
                keys: list[str], values: list[str]) -> int:
    """The groups and their numbers must match across the three ways; returns the groups."""
    ref = _groups(answers["evallib"], keys, values)
    for way, df in answers.items():
        got = _groups(df, keys, values)
        if got.keys() != ref.keys():
            diff = sorted(map(str, got.keys() ^ ref.keys()))[:5]
            raise AssertionError(f"{label}: {way} has other groups than evallib: {diff}")
        for k, want in ref.items():
            for col, a, b in zip(values, got[k], want, strict=True):
                same = a == b if a is None or b is None else math.isclose(
                    a, b, rel_tol=REL_TOL, abs_tol=1e-12)
                if not same:
                    raise AssertionError(f"{label}: {way} {col} at {k} is {a}, evallib {b}")
    return len(ref)


def params(con: duckdb.DuckDBPyConnection) -> Params:
    """The dashboard's default choices, as bench/run.py makes them."""
    import polars as pl

    from evallib import queries

    runs = queries.runs_overview(con)
    dataset = runs["dataset"][0]
    pair = runs.filter(pl.col("dataset") == dataset)["run_id"].head(2).to_list()
    last = queries.online_date_range(con)["last_day"][0]
    if last is None or len(pair) < 2:
        raise SystemExit("needs a warehouse with two runs and online traces (evallib demo)")
    return {"dataset": dataset, "a": pair[0], "b": pair[1], "run": pair[0], "metric": METRIC,
            "trend_key": TREND_KEY, "slice_key": SLICE_KEY,
            "start": (last - timedelta(days=89)).isoformat(), "end": last.isoformat()}


def pandas_memory(root: Path, q: str, p: Params) -> dict[str, float]:
    """Peak RSS of a fresh process answering ``q`` once with pandas (and after imports)."""
    out = subprocess.run([sys.executable, __file__, "--root", str(root), "--pandas-memory", q,
                          "--params", json.dumps(p)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout)


def _rss_mb() -> float:
    """Peak RSS of this process image. Not ru_maxrss: Linux carries the parent's peak over
    into a child across fork and exec, so a small child reports its parent's peak."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmHWM:")) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run(root: Path, repeat: int) -> list[dict[str, Any]]:
    import duckdb

    sys.path.insert(0, str(ROOT))
    from evallib import connect
    from evallib.warehouse.schema import ROLLUPS
    from evallib.warehouse.store import Store

    root = Path(root).resolve()
    con = connect(str(root))
    store = Store(str(root))
    rolled = [t.name for t in ROLLUPS.values() if store.has_files(t)]
    raw_con = duckdb.connect()
    raw_con.execute("SET TimeZone = 'UTC'")
    p = params(con)
    rows = []
    for q, label, keys, values in QUESTIONS:
        ways: dict[str, Callable[[], pl.DataFrame | pd.DataFrame]] = {
            "evallib": lambda q=q: evallib_answer(con.cursor(), q, p),
            "raw": lambda q=q: raw(raw_con.cursor(), root, q, p),
            "pandas": lambda q=q: pandas_answer(root, q, p),
        }
        groups = check_agree(label, {w: fn() for w, fn in ways.items()}, keys, values)
        row: dict[str, Any] = {"question": label, "groups": groups, "rollups": rolled}
        row.update({w: timed(fn, repeat) for w, fn in ways.items()})
        row["pandas_memory"] = pandas_memory(root, q, p)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    rolled = rows[0]["rollups"] if rows else []
    lines = [
        "## The same questions by hand: pandas and raw DuckDB", "",
        "Each question answered by evallib (`evallib.queries` on `connect()`; rollups: "
        + (", ".join(f"`{t}`" for t in rolled) or "none")
        + "), by one hand-written DuckDB SQL over `read_parquet(<table>/*/part-*.parquet, "
        "hive_partitioning = true)` in a plain connection, and by `pd.read_parquet` "
        "(pyarrow, needed columns only, partitions and committed writes in `filters`) + "
        "groupby. Offline, both baselines keep each run's committed write (latest `runs` "
        "row per run_id). evallib lists the part files once per connection (not timed: the "
        "dashboard caches its connection); the baselines find them on every call. "
        "The three answers were checked equal before timing: same groups, "
        f"equal counts, means and latency quantiles to a relative {REL_TOL:g}. "
        "Ratio > 1: evallib is faster. Pandas memory: peak RSS of a fresh process answering "
        "once (in brackets: over its RSS after imports). `bench/baselines.py`.", "",
        "| question | groups | evallib p50 ms | raw DuckDB p50 ms | pandas p50 ms "
        "| pandas / evallib | raw / evallib | pandas peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ev, rw, pd_ = (r[w]["p50_ms"] for w in ("evallib", "raw", "pandas"))
        mem = r["pandas_memory"]
        lines.append(
            f"| {r['question']} | {r['groups']:,} | {ev:.1f} | {rw:.1f} | {pd_:.1f} "
            f"| {pd_ / ev:.1f}× | {rw / ev:.1f}× "
            f"| {mem['peak_mb']:.0f} (+{mem['peak_mb'] - mem['base_mb']:.0f}) |")
    lines += ["", "evallib's `online_health` also returns latency p99 and the moments of "
              "log-latency, cost and tokens; the baselines compute only the four columns "
              "compared.", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent / "warehouse"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pandas-memory", help=argparse.SUPPRESS)  # the child of pandas_memory
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pandas_memory:
        import pyarrow.dataset  # noqa: F401  (what read_parquet loads; counted in the base)

        base = _rss_mb()
        pandas_answer(Path(args.root), args.pandas_memory, json.loads(args.params))
        print(json.dumps({"base_mb": base, "peak_mb": _rss_mb()}))
        return
    print("\n".join(markdown(run(Path(args.root), args.repeat))))


if __name__ == "__main__":
    main()
