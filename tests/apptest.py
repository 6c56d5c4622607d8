"""What the page tests share: the dashboard under Streamlit's AppTest, opened as a link
would open it, and the runs as the pages list them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_app(page: str | None = None, *, timeout: float = 60, user: dict[str, Any] | None = None,
             **params: str | list[str]) -> AppTest:
    """Run the app seeded with URL query parameters (and a signed-in ``user``), then switch
    to ``page`` (None: the default page); fail on any exception."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if user is not None:
        at.user = user
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def runs_newest_first(root: str) -> pl.DataFrame:
    """Each run's latest committed write, newest first: the order of the run pickers."""
    return pl.read_parquet(f"{root}/runs/*.parquet").sort("committed_at") \
        .group_by("run_id").last().sort("started_at", descending=True)
