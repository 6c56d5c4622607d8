"""What the readers' rule costs: one row per key where a key may repeat (`evallib.warehouse.keys`).

The views apply the rule only to partitions that hold more than one part file. A warehouse
built in one batch per day has none; a production warehouse has today's (a recorder
flushes every few seconds) and, until `evallib compact` runs, the last days'. This script
copies the bench warehouse (hard links), splits its newest ``--days`` days of every online
table into ``--files`` part files each, as a recorder would have written them, adds a
retried flush (the same file twice) per day, then times every dashboard query of
`bench/run.py` on that copy with the rule and without it (the same files, the rule turned
off: what readers would count without keys), and prints the p95 ratio of each query.

    .venv/bin/python bench/dedupe.py --root bench/warehouse
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/run.py)

from evallib.warehouse import keys  # noqa: E402
from evallib.warehouse import schema as S  # noqa: E402
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


def timings(root: Path, repeat: int, rule: bool) -> dict[str, float]:
    keyed = keys.LATEST_WINS
    if not rule:
        keys.LATEST_WINS = frozenset()
    try:
        return {label: t["p95_ms"] for label, t in bench.query_timings(root, repeat)}
    finally:
        keys.LATEST_WINS = keyed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(HERE / "warehouse"))
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    copy = Path(args.root).with_name(Path(args.root).name + "-split")
    repeated = split_copy(Path(args.root), copy, args.days, args.files)
    print(f"{copy}: newest {args.days} days of {', '.join(ONLINE)} as {args.files} files "
          f"a day, plus a retried flush a day ({repeated:,} rows stored twice)")
    for where in (Path(args.root), copy):
        on, off = timings(where, args.repeat, True), timings(where, args.repeat, False)
        worst = max(on, key=lambda k: on[k] / off[k])
        print(f"\n{where.name}: p95 with the rule / without, per query")
        for label in on:
            print(f"  {on[label]:8.1f} / {off[label]:8.1f} ms  {on[label] / off[label]:5.2f}x  "
                  f"{label}")
        print(f"worst: {on[worst] / off[worst]:.2f}x ({worst}); slowest with the rule: "
              f"{max(on.values()):.0f} ms")
    shutil.rmtree(copy)


if __name__ == "__main__":
    main()
