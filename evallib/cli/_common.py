"""What the command handlers share: printing tables and JSON, numbers and sizes as text,
day options, and the --notify targets."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, overload

from ..errors import EvallibError

Handler = Callable[[argparse.Namespace], int]


def no_format(args: argparse.Namespace) -> int:  # argparse requires FORMAT first
    return 2


def nan_last(x: float) -> float:
    return float("inf") if x != x else x


def num(v: float, sign: bool = False) -> str:
    if v != v:  # NaN
        return "-"
    if 0 < abs(v) < 1e-3:
        return f"{v:+.1e}" if sign else f"{v:.1e}"
    return f"{v:+.3f}" if sign else f"{v:.3f}"


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@overload
def day(value: str, option: str) -> date: ...
@overload
def day(value: None, option: str) -> None: ...
def day(value: str | None, option: str) -> date | None:
    """Every date flag: ``YYYY-MM-DD``, or ``7d`` for seven days ago (UTC); None stays None."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)d", value.strip())
    if m:
        return datetime.now(UTC).date() - timedelta(days=int(m.group(1)))
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise EvallibError(f"{option}: {value!r} is not a date (YYYY-MM-DD) or a number of "
                           "days (7d)") from None


def notify_targets(args: argparse.Namespace, event: str) -> list[Any]:
    """The webhooks ``--notify`` names, resolved before any work (a bad one is exit 2)."""
    if args.notify is None:
        return []
    from ..notify import load_settings, resolve_targets

    load_settings()  # a broken evallib.toml is a usage error now, not after the verdict
    return resolve_targets(args.notify, event)


def notify(args: argparse.Namespace, send: Callable[[Any], list[Any]]) -> None:
    """Send, reporting on stderr through the ``evallib.notify`` logger; whatever happens,
    the command's exit code keeps its meaning."""
    import logging

    from ..notify import load_settings

    log = logging.getLogger("evallib.notify")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"evallib {args.command}: notify: %(message)s"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        settings = load_settings()
        outcomes = send(settings)
        skipped = sum(o.status == "skipped" for o in outcomes)
        sent = sum(o.status == "sent" for o in outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
        log.info("%d sent, %d failed, %d already sent (or not due)%s", sent, failed, skipped,
                 "" if settings.dashboard_url else "; set EVALLIB_DASHBOARD_URL to link "
                 "messages to the dashboard")
    except Exception as e:  # a notification never changes the verdict
        log.error("gave up: %s: %s", type(e).__name__, e)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def json_default(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def print_table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%d %H:%M")
        if isinstance(v, bool):
            return "yes" if v else ""
        return "" if v is None else str(v)

    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
