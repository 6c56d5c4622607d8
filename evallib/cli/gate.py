"""The release gate: `gate` and `approve`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EvallibError
from ._common import notify, notify_targets


def gate(args: argparse.Namespace) -> int:
    from ..analysis.gate import junit, load_policy, markdown, run_gate, terminal
    from ..warehouse import Warehouse
    from ..warehouse.db import connect

    targets = notify_targets(args, "gate")
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
        from ..notify import notify_gate

        notify(args, lambda settings: notify_gate(args.warehouse, result, targets, settings))
    return result.exit_code


def approve(args: argparse.Namespace) -> int:
    import getpass

    from ..warehouse import Warehouse

    who = args.by
    if not who:
        try:
            who = getpass.getuser()
        except OSError:
            raise EvallibError("cannot tell who you are: pass --by NAME") from None
    row = Warehouse(args.warehouse).record_approval(args.run, who, args.note)
    print(f"approved {args.run} by {who} at {row['approved_at']:%Y-%m-%d %H:%M:%S} UTC")
    return 0
