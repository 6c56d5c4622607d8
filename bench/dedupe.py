"""What the readers' rule costs: one row per key where a key may repeat (`evallib.warehouse.keys`).

The dashboard's views apply the rule only to the files of a partition that share a key
with another of its files (`evallib.warehouse.db._sharing`). A warehouse built in one batch
per day has no partition of several files; a production warehouse has today's (a recorder
flushes every few seconds) and, until `evallib compact` runs, the last days'. This script
copies the bench warehouse (hard links), splits its newest ``--days`` days of every online
table into ``--files`` part files each, as a recorder would have written them, adds a
retried flush (the same file twice) per day, then times every dashboard query of
`bench/run.py` on that copy with the rule and without it (the same files, the rule turned
off: what readers would count without keys), in turns, and prints the p95 ratio of each
query.

    .venv/bin/python bench/dedupe.py --root bench/warehouse
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/run.py)

from evallib.warehouse import Connection, keys  # noqa: E402
from evallib.warehouse import schema as S  # noqa: E402
from evallib.warehouse.db import open_snapshot, read_paths  # noqa: E402
from evallib.warehouse.snapshot import snapshot  # noqa: E402
from evallib.warehouse.store import Store  # noqa: E402

ONLINE = ("online_traces", "online_scores", "online_retrievals", "feedback")


def split_copy(root: Path, out: Path, days: int, files: int) -> int:
    """``out``: ``root`` hard-linked, its newest days of online tables rewritten as ``files``
    part files per day plus one file written twice. Returns the rows written twice."""
    if out.exists():
        shutil.rmtree(out)
    subprocess.run(["cp", "-al", str(root), str(out)], check=True)
    store, repeated = Store(out), 0
    for name in ONLINE:
        table = S.TABLES[name]
        parts = sorted((out / name).iterdir())[-days:]
        for day in parts:
            originals = sorted(day.glob("part-*.parquet"))
            data = pq.read_table(originals, partitioning=None).select(table.schema.names)
            for p in originals:
                os.remove(p)  # a hard link: the source warehouse keeps its copy
            value = day.name.split("=", 1)[1]
            step = -(-data.num_rows // files)
            for i in range(0, data.num_rows, step):
                store.write_part(table, data.slice(i, step), value)
            store.write_part(table, data.slice(0, step), value)  # a flush retried
            repeated += min(step, data.num_rows)
    return repeated


def timings(root: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Per query, p95 ms with the rule and without it: two snapshots of the same files (one
    built with the rule turned off), timed in turns so both see the same machine."""
    keyed = keys.LATEST_WINS
    with_rule = _dashboards(root)
    keys.LATEST_WINS = frozenset()
    try:
        without = _dashboards(root)
    finally:
        keys.LATEST_WINS = keyed
    pairs = zip(bench.query_cases(with_rule), bench.query_cases(without), strict=True)
    out = {}
    for (label, on), (_, off) in pairs:
        on(), off()  # warm both
        samples: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeat):
            for rule, fn in ((True, on), (False, off)):
                t0 = time.perf_counter()
                fn()
                samples[rule].append((time.perf_counter() - t0) * 1e3)
        out[label] = (_p95(samples[True]), _p95(samples[False]))
    return out


def _dashboards(root: Path) -> Connection:
    """A connection as the dashboard opens it (`evallib.warehouse.Live`): it finds the files
    that share a key once, then applies the rule to those alone."""
    snap = snapshot(str(root))
    return open_snapshot(snap, read_paths(snap), read_only=True, shared_keys=True)


def connection_costs(root: str, rounds: int = 5, flags: tuple[bool, ...] = (False, True)
                     ) -> dict[bool, tuple[float, float]]:
    """Seconds to open the dashboard's first connection, and the median renewal after 50
    new traces (a new snapshot listing only what changed, and its connection), without
    looking for shared keys and with it (`evallib.warehouse.db._sharing`)."""
    from datetime import UTC, datetime

    from evallib import Warehouse
    from evallib.warehouse import db

    out = {}
    for shared in flags:
        db._SHARED.clear()
        t0 = time.perf_counter()
        snap = snapshot(root)
        db.open_snapshot(snap, read_paths(snap), read_only=True, shared_keys=shared).close()
        first = time.perf_counter() - t0
        renewals = []
        for _ in range(rounds):
            now = datetime.now(UTC)
            traces = [{"trace_id": f"renew-{now.timestamp()}-{i}", "timestamp": now}
                      for i in range(50)]
            Warehouse(root).record_online(traces, [{**t, "metric": "m", "value": 1.0,
                                                    "kind": "binary"} for t in traces])
            t0 = time.perf_counter()
            snap = snapshot(root, snap)
            db.open_snapshot(snap, read_paths(snap), read_only=True,
                             shared_keys=shared).close()
            renewals.append(time.perf_counter() - t0)
        out[shared] = (first, sorted(renewals)[len(renewals) // 2])
    return out


def s3_costs(copy: Path, delay: float) -> None:
    """`connection_costs` with the copy in a bucket (moto behind bench/latency_proxy.py,
    ``delay`` seconds a request), each in a new process: cache cold, then warm."""
    import json
    import tempfile

    import s3 as bench_s3  # bench/s3.py

    with bench_s3.s3(delay) as (direct, delayed):
        url, _ = bench_s3.upload(copy, direct)
        for shared in (False, True):
            with tempfile.TemporaryDirectory() as cache:
                for state in ("cold", "warm"):
                    _, out = bench_s3._run([sys.executable, __file__, "--costs-child", url,
                                            str(int(shared))],
                                           bench_s3._env(delayed, cache=cache))
                    first, renewal = json.loads(out)
                    print(f"S3 at {delay * 1000:.0f} ms a request, cache {state}, "
                          f"{'finding' if shared else 'not finding'} shared keys: first "
                          f"{first:.2f} s, renewal after 50 new traces {renewal:.2f} s")


def _p95(samples: list[float]) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(HERE / "warehouse"))
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--s3", type=float, metavar="SECONDS",
                   help="also the connection costs on S3 (moto behind the latency proxy)")
    p.add_argument("--costs-child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.costs_child:
        import json

        url, shared = args.costs_child
        print(json.dumps(connection_costs(url, flags=(shared == "1",))[shared == "1"]))
        return
    copy = Path(args.root).with_name(Path(args.root).name + "-split")
    repeated = split_copy(Path(args.root), copy, args.days, args.files)
    print(f"{copy}: newest {args.days} days of {', '.join(ONLINE)} as {args.files} files "
          f"a day, plus a retried flush a day ({repeated:,} rows stored twice)")
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    for shared, (first, renewal) in connection_costs(str(copy)).items():
        print(f"dashboard connection {'finding' if shared else 'not finding'} shared keys: "
              f"first {first:.2f} s, renewal after 50 new traces {renewal:.2f} s (median)")
    if args.s3:
        s3_costs(copy, args.s3)
    for where in (Path(args.root), copy):
        t = timings(where, args.repeat)
        worst = max(t, key=lambda k: t[k][0] / t[k][1])
        print(f"\n{where.name}: p95 with the rule / without, per query")
        for label, (on, off) in t.items():
            print(f"  {on:8.1f} / {off:8.1f} ms  {on / off:5.2f}x  {label}")
        print(f"worst: {t[worst][0] / t[worst][1]:.2f}x ({worst}); slowest with the rule: "
              f"{max(on for on, _ in t.values()):.0f} ms; load average now "
              f"{os.getloadavg()[0]:.1f}")
    shutil.rmtree(copy)


if __name__ == "__main__":
    main()
