"""`evallib …`: exit 0 ok, 1 a gate or check failed, 2 bad usage or bad data (no traceback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import EvallibError
from ..warehouse.db import retrying
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command not in CREATORS:
            _require_warehouse(args.warehouse)
        return retrying(lambda: args.handler(args))
    except EvallibError as e:
        print(f"evallib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


# Commands that may create the warehouse directory; every other one reads an existing one.
CREATORS = frozenset({"demo", "import"})


def _require_warehouse(root: str | None) -> None:
    """A typo in --warehouse is an error, not an empty warehouse ("no runs")."""
    from ..warehouse.store import resolve_root

    path = resolve_root(root)
    if "://" in path or os.path.isdir(path):
        return
    what = "is not a directory" if os.path.exists(path) else "does not exist"
    raise EvallibError(f"no warehouse at {path}: the path {what} (evallib demo --warehouse "
                       "PATH writes a demo warehouse; evallib import … records results into "
                       "a new one)")
