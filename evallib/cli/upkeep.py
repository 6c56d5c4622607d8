"""Warehouse upkeep: `check`, `compact`, `cache`, `rollup`."""

from __future__ import annotations

import argparse
import json

from ._common import day, size


def check(args: argparse.Namespace) -> int:
    from ..warehouse.maintenance import check

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


def compact(args: argparse.Namespace) -> int:
    from ..warehouse.compact import compact

    report = compact(args.warehouse, day=day(args.date, "--date"),
                     before=day(args.before, "--before"), grace=args.grace,
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


def cache(args: argparse.Namespace) -> int:
    from ..warehouse.cache import PartCache, held, settings
    from ..warehouse.store import Store

    cache = PartCache.get(settings())
    if args.action == "clear":
        gone = cache.clear()
        print(f"removed {gone.files:,} cached part files ({size(gone.bytes)}) from "
              f"{gone.directory}")
        return 0
    status = cache.status()
    store = Store(args.warehouse)
    mine = None if store.is_local else held(store, cache)
    if args.json:
        print(json.dumps({**vars(status), "warehouse": store.root,
                          "warehouse_files": mine}, indent=2))
        return 0
    print(f"cache {status.directory}: {status.files:,} part files, {size(status.bytes)} of "
          f"at most {size(status.max_bytes)}")
    if mine is None:
        print(f"{store.root} is on a local disk: read in place, not cached")
    else:
        print(f"{store.root}: {mine['cached']:,} of {mine['files']:,} current part files "
              f"cached ({size(mine['cached_bytes'])} of {size(mine['bytes'])})")
    return 0


def rollup(args: argparse.Namespace) -> int:
    from ..warehouse.rollup import rollup

    report = rollup(args.warehouse, engine=args.engine, since=day(args.since, "--since"),
                    grace=args.grace)
    if args.json:
        print(json.dumps(vars(report), indent=2))
    else:
        print(f"rolled up {report.days} days of online scores and {report.runs} runs "
              f"(and {report.traffic_days} days of traffic: {report.rows:,} rollup rows) with "
              f"{report.engine} in {report.seconds:.1f} s; {report.fresh_days} days and "
              f"{report.fresh_runs} runs were fresh already")
    return 0
