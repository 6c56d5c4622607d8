"""`evallib demo` and `evallib dashboard`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..errors import EvallibError


def demo(args: argparse.Namespace) -> int:
    for name in ("days", "online_per_day", "cases"):
        if getattr(args, name) < 1:
            raise EvallibError(f"--{name.replace('_', '-')} must be at least 1")
    from ..demo import build_demo

    summary = build_demo(args.warehouse, days=args.days, online_per_day=args.online_per_day,
                         cases=args.cases, seed=args.seed, force=args.force)
    print(summary.describe())
    return 0


def dashboard(args: argparse.Namespace) -> int:
    from ..warehouse.store import resolve_root

    app = dashboard_entry()
    env = {**os.environ, "EVALLIB_WAREHOUSE": resolve_root(args.warehouse)}
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.address", "127.0.0.1", "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]
    print(f"Eval Flywheel on http://127.0.0.1:{args.port}  (warehouse {env['EVALLIB_WAREHOUSE']})",
          file=sys.stderr)
    # A checkout's .streamlit/ (config; secrets for login) applies; an installed package
    # reads the current directory's, as `streamlit run` does.
    checkout = (app.parent / ".streamlit").is_dir()
    return subprocess.call(cmd, env=env, cwd=app.parent if checkout else None)


def dashboard_entry() -> Path:
    """app.py: inside the installed package (the wheel carries the top level's app.py and
    pages/ as evallib/dashboard/), else at a source checkout's top level."""
    package = Path(__file__).resolve().parents[1]
    for app in (package / "dashboard" / "app.py", package.parent / "app.py"):
        if app.is_file():
            return app
    raise EvallibError(f"cannot find the dashboard entry app.py in {package / 'dashboard'} "
                       f"or {package.parent}")
