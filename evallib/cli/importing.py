"""`evallib import jsonl|inspect|promptfoo|otel`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import EvallibError


def jsonl(args: argparse.Namespace) -> int:
    from ..importers.jsonl import import_jsonl
    from ..warehouse import Warehouse

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


def inspect_logs(args: argparse.Namespace) -> int:
    from ..importers.inspect import import_inspect
    from ..warehouse import Warehouse

    wh = Warehouse(args.warehouse)
    for path in args.paths:
        r = import_inspect(path, wh, replace=args.replace, run_name=args.run_name)
        print(r["run_id"])
        what = "already imported, skipped (--replace re-imports)" if r["skipped"] else \
            f"imported {r['cases']} cases (log status: {r['status']})"
        print(f"{path}: {what}", file=sys.stderr)
    return 0


def promptfoo(args: argparse.Namespace) -> int:
    from ..importers.promptfoo import import_promptfoo
    from ..warehouse import Warehouse

    wh = Warehouse(args.warehouse)
    keys = {k.strip() for k in args.strata.split(",") if k.strip()} if args.strata else None
    for path in args.paths:
        for r in import_promptfoo(path, wh, replace=args.replace, strata_keys=keys):
            print(r["run_id"])
            what = "already imported, skipped" if r["skipped"] else f"{r['cases']} cases"
            print(f"{path}: {r['provider']} x {r['prompt']}: {what}", file=sys.stderr)
    return 0


def otel(args: argparse.Namespace) -> int:
    from ..importers.otel import import_otel
    from ..warehouse import Warehouse

    wh = Warehouse(args.warehouse)
    for path in args.paths:
        r = import_otel(path, wh)
        without_root = r.pop("without_root")
        _print_merged(path, r)
        if without_root:
            print(f"{path}: {without_root} traces without their root span in the file "
                  "(skipped)")
    return 0
