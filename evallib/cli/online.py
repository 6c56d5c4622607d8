"""Production traffic: `score-online` and `alerts`."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import day, json_default, notify, notify_targets, print_table


def score_online(args: argparse.Namespace) -> int:
    from ..online import resolve_scorers, score_online

    scorers = resolve_scorers(args.scorers, args.judge_model)
    counts = score_online(args.warehouse, scorers, day(args.since, "--since"),
                          until=day(args.until, "--until"), limit=args.limit,
                          concurrency=args.concurrency)
    for metric, c in counts.items():
        print(f"{metric}: {c['scored']} scored, {c['unscored']} unscored")
    if not counts:
        print("nothing to score: every trace in the window has these metrics",
              file=sys.stderr)
    return 0


def alerts(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..analysis.monitor import record_alerts

    targets = notify_targets(args, "alerts")
    alerts = record_alerts(args.warehouse, since=day(args.since, "--since"),
                   record=not args.no_record)
    n_open = sum(a.status == "open" for a in alerts)
    if args.json:
        print(json.dumps([asdict(a) for a in alerts], default=json_default, indent=2))
    elif not alerts:
        print("no alerts", file=sys.stderr)
    else:
        print_table([{"status": a.status.upper() if a.status == "open" else a.status,
                       "signal": a.signal, "days": f"{a.first_day} → {a.last_day}",
                       "message": a.message} for a in alerts],
                     ["status", "signal", "days", "message"])
        print(f"{n_open} open, {len(alerts) - n_open} closed", file=sys.stderr)
    if targets:
        from ..notify import notify_alerts

        notify(args, lambda settings: notify_alerts(args.warehouse, alerts, targets,
                                                     settings))
    return 1 if n_open else 0
