"""Dashboard plumbing shared by app.py and the pages: the cached connection, cached query
results, the shared sidebar filters and the get-started message. Streamlit lives here, never
in evallib."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Concatenate, ParamSpec, TypeVar

import duckdb
import polars as pl
import streamlit as st

from evallib import queries, resolve_root, stats
from evallib.analysis.compare import Comparison, compare_runs
from evallib.analysis.export import failing_cases, to_csv
from evallib.warehouse import Connection, Live
from evallib.warehouse.db import lost_file

REFRESH_SECONDS = 30  # the snapshot is renewed this often, in the background
TTL_SECONDS = 3600  # results are cached per snapshot key: new data gives a new key
MAX_ENTRIES = 256
_SUMMARY_COLUMNS = {"kind", "n", "mean", "sd"}
T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


@dataclass(frozen=True)
class WarehouseView:
    """Which warehouse this rerun reads, and which of its tables hold data."""

    root: str
    present: frozenset[str]
    snapshot: str = ""  # the snapshot's key: changes when any part file does

    @property
    def has_offline(self) -> bool:
        return "runs" in self.present

    @property
    def has_online(self) -> bool:
        return "online_scores" in self.present

    @property
    def is_empty(self) -> bool:
        return not (self.has_offline or self.has_online)


@dataclass(frozen=True)
class Days:
    """A window of UTC days of production traffic, both ends included."""

    start: date
    end: date


@dataclass(frozen=True)
class Filters:
    """The shared sidebar filters: dataset for offline pages, a day window for online ones
    (None: the warehouse has none)."""

    dataset: str | None = None
    days: Days | None = None


def leave_pages_directory_mode() -> None:
    """Call first in every page. Streamlit runs ``pages/*.py`` directly (multipage "v1",
    the folder listed in the sidebar, app.py skipped) until some run calls st.navigation,
    so a fresh server whose first request is a page link (``/trends?stratum=…``) would
    render that page without the frame. Turn that mode off and rerun through app.py.
    Streamlit 1.67 has no public switch for this; the flag is its own."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def warehouse() -> WarehouseView:
    """Resolved on every rerun, at no cost: the newest snapshot, which a background thread
    renews every ``REFRESH_SECONDS`` (re-listing only what can have changed)."""
    root = resolve_root()
    snap = _live(root).snapshot()
    return WarehouseView(root, snap.present, snap.key)


@st.cache_resource(show_spinner=False, max_entries=4)
def _live(root: str) -> Live:
    """The warehouse as the dashboard follows it, shared by sessions: its newest snapshot
    and read-only connections (DuckDB may open the snapshot's files and nothing else; on
    object storage, local copies from the cache)."""
    return Live(root, every=REFRESH_SECONDS)


def _connection(root: str, snapshot: str) -> duckdb.DuckDBPyConnection:
    """The connection over the snapshot ``snapshot`` names (every query runs on its own
    cursor)."""
    return _live(root).connection(snapshot)


def _read(root: str, snapshot: str, read: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """``read`` on a cursor of the snapshot's connection. When a file of the snapshot is gone
    (`evallib compact` deletes the files it merged), a full new snapshot, and ``read`` again
    on it."""
    for attempt in range(3):
        try:
            with _connection(root, snapshot).cursor() as cur:
                return read(cur)
        except duckdb.Error as e:
            if attempt == 2 or not lost_file(e):
                raise
            snapshot = _live(root).refresh(full=True).key
    raise AssertionError("unreachable")


@st.cache_data(ttl=TTL_SECONDS, max_entries=MAX_ENTRIES, show_spinner=False)
def _query(root: str, snapshot: str, name: str, args: tuple[Any, ...]
           ) -> pl.DataFrame:
    df = _read(root, snapshot, lambda cur: getattr(queries, name)(cur, *args))
    if set(df.columns) >= _SUMMARY_COLUMNS:
        df = stats.with_intervals(df)
    return df


@st.cache_data(ttl=TTL_SECONDS, max_entries=32, show_spinner="Comparing runs…")
def _comparison(root: str, snapshot: str, candidate: str, baseline: str,
                by: tuple[tuple[str, ...], ...], alpha: float,
                cluster: str | None = None) -> Comparison:
    return _read(root, snapshot, lambda cur: compare_runs(cur, candidate, baseline, by=by,
                                                          alpha=alpha, cluster=cluster))


def comparison(candidate: str, baseline: str, by: tuple[tuple[str, ...], ...] = (),
               alpha: float = 0.05, cluster: str | None = None) -> Comparison:
    """Cached `evallib.analysis.compare.compare_runs` (shared by sessions: read-only)."""
    wh = warehouse()
    return _comparison(wh.root, wh.snapshot, candidate, baseline, by, alpha, cluster)


@st.cache_data(ttl=TTL_SECONDS, max_entries=32, show_spinner=False)
def _failures_csv(root: str, snapshot: str, run_id: str, baseline: str | None) -> bytes:
    return _read(root, snapshot, lambda cur: to_csv(failing_cases(cur, run_id, baseline)))


def failures_csv(run_id: str, baseline: str | None = None) -> bytes:
    """The CSV of `evallib export-failures RUN [--baseline BASELINE]`, byte for byte."""
    wh = warehouse()
    return _failures_csv(wh.root, wh.snapshot, run_id, baseline)


@st.cache_data(ttl=TTL_SECONDS, max_entries=32, show_spinner="Computing…")
def _analysis(root: str, snapshot: str, module: str, function: str, args: tuple[Any, ...],
              kwargs: tuple[tuple[str, Any], ...]) -> Any:
    import importlib

    run = getattr(importlib.import_module(module), function)
    return _read(root, snapshot, lambda cur: run(cur, *args, **dict(kwargs)))


def analysis(fn: Callable[Concatenate[Connection, P], R], *args: P.args,
             **kwargs: P.kwargs) -> R:
    """Cached ``fn(con, *args, **kwargs)`` for a computation of `evallib.analysis` over the
    warehouse, called like the function without its connection: ``analysis(detect, start,
    end)``. Results are shared by sessions: treat them as read-only."""
    if not fn.__module__.startswith("evallib.analysis."):
        raise ValueError(f"{fn.__module__}.{fn.__name__} is not an evallib.analysis function")
    wh = warehouse()
    return _analysis(wh.root, wh.snapshot, fn.__module__, fn.__name__, tuple(args),
                     tuple(sorted(kwargs.items())))


def query(fn: Callable[Concatenate[Connection, P], pl.DataFrame], *args: P.args,
          **kwargs: P.kwargs) -> pl.DataFrame:
    """Cached ``fn(con, *args)`` for a function of `evallib.queries`, called like the function
    without its connection: ``query(Q.online_health, start, end, …)``; summaries come with
    95% ``ci_low`` / ``ci_high``. Results are shared by sessions: treat them as read-only."""
    if kwargs or getattr(queries, fn.__name__, None) is not fn:
        raise ValueError(f"{fn.__module__}.{fn.__name__}: not an evallib.queries function "
                         "called with positional arguments")
    wh = warehouse()
    return _query(wh.root, wh.snapshot, fn.__name__, tuple(args))


def sidebar() -> Filters:
    """Warehouse in use, shared filters bound to the URL (so a link reproduces the view)."""
    wh = warehouse()
    sb = st.sidebar
    sb.caption("Warehouse")
    sb.code(wh.root, language=None, wrap_lines=True)
    dataset, days = None, None
    if wh.has_offline:
        names = query(queries.datasets)["dataset"].to_list()
        dataset = sb.selectbox("Dataset (offline)", names, key="dataset", bind="query-params",
                               help="Golden dataset shown on Runs and offline Trends.")
    if wh.has_online:
        first, last = query(queries.online_date_range).row(0)
        if first is not None:
            picked = sb.date_input("Days (online)", (first, last), min_value=first,
                                   max_value=last, key="days", bind="query-params",
                                   help="UTC days of production traffic shown on Trends.")
            days = Days(*_date_window(picked, first, last))
    if sb.button("Refresh data", icon=":material/refresh:",
                 help=f"New data shows up within {REFRESH_SECONDS} s; "
                 "this lists every file again now."):
        _live(wh.root).refresh(full=True)
        st.rerun()
    unreadable_warning()  # after Refresh, so it shows the new snapshot
    unrolled_hint()
    filters = Filters(dataset, days)
    st.session_state["_filters"] = filters
    return filters


def require_login() -> None:
    """Sign in first, through Streamlit's OIDC login, when ``[auth]`` is configured in
    ``.streamlit/secrets.toml``; without it the dashboard is open to whoever reaches it (it
    binds to 127.0.0.1)."""
    try:
        configured = "auth" in st.secrets
    except FileNotFoundError:  # no secrets file at all
        configured = False
    if not configured:
        return
    if getattr(st.user, "is_logged_in", False):
        who = st.user.get("email") or st.user.get("name") or "signed in"
        st.sidebar.caption(f":material/person: {who}")
        st.sidebar.button("Log out", on_click=st.logout)
        return
    st.title("Eval Flywheel")
    st.info("Sign in to see the team's evals.", icon=":material/lock:")
    st.button("Log in", on_click=st.login, type="primary")
    st.stop()


def unreadable_warning() -> None:
    """Files the connection skipped (truncated, corrupt): the pages work without them, but
    their rows are missing until `evallib check` quarantines them and they are restored."""
    bad = query(queries.unreadable_files)
    if bad.height:
        shown = ", ".join(f"`{p}` ({why})" for p, why in bad.select("path", "reason").head(3)
                          .iter_rows())
        more = f" and {bad.height - 3} more" if bad.height > 3 else ""
        st.warning(f"{bad.height} unreadable part file(s) left out of every view, so their "
                   f"rows are missing: {shown}{more}. Run `evallib check` to move them to "
                   "`_quarantine/`.", icon=":material/warning:")


def unrolled_hint() -> None:
    """In the sidebar, what the rollups miss before the newest week (late scores and
    feedback keep changing that until the nightly `evallib rollup`): pages aggregate those
    raw rows, with the same answers, only slower on a large warehouse."""
    gap = query(queries.unrolled).row(0, named=True)
    days, runs = gap["days"] or 0, gap["runs"] or 0
    if days == 0 and runs == 0:
        return
    what = " and ".join(t for t in (f"{days} day{'s' if days > 1 else ''} of traffic"
                                    if days else "",
                                    f"{runs} run{'s' if runs > 1 else ''}" if runs else "")
                        if t)
    st.sidebar.caption(f":material/hourglass_empty: {what} not rolled up yet: pages "
                       "aggregate their raw rows (the same answers, slower on a large "
                       "warehouse). `evallib rollup` rolls them up.")


def _date_window(picked: Any, first: date, last: date) -> tuple[date, date]:
    """While a range is half-picked the widget returns one date: show that single day."""
    days = list(picked) if isinstance(picked, list | tuple) else [picked]
    days = [d for d in days if d is not None] or [first, last]
    return min(days), max(days)


def url_choice(options: list[str], param: str, default: str) -> str:
    """The option the URL names in ``param`` if it is one of ``options``, else ``default``."""
    wanted = st.query_params.get(param)
    return wanted if wanted in options else default


def run_pair(runs: pl.DataFrame) -> tuple[str, str]:
    """Candidate and baseline pickers over ``runs`` (newest first), shared by Runs and
    Compare: seeded from the URL's ``candidate``/``baseline``, else the newest run vs the
    newest approved run before it, and written back to the URL. Not bound with ``bind=``:
    a bound parameter leaves the URL when it equals the default, and the other page must
    always find the pair there."""
    from pages._tables import default_pair, run_labels

    labels = run_labels(runs)
    ids = list(labels)
    default_candidate, default_baseline = default_pair(runs)
    left, right = st.columns(2)
    candidate = left.selectbox(
        "Candidate", ids, format_func=labels.__getitem__, key="pick_candidate",
        persist_state="session", index=ids.index(url_choice(ids, "candidate", default_candidate)),
        help="Default: the newest run.")
    baseline = right.selectbox(
        "Baseline", ids, format_func=labels.__getitem__, key="pick_baseline",
        persist_state="session",
        index=ids.index(url_choice(ids, "baseline", default_baseline)),
        help="Default: the newest approved run before the candidate.")
    st.query_params["candidate"], st.query_params["baseline"] = candidate, baseline
    return candidate, baseline


def filters() -> Filters:
    """The filters the sidebar set in this rerun."""
    return st.session_state.get("_filters", Filters())


OFFLINE, ONLINE = "Offline", "Online"  # the source picker's options; its value is in the URL


def pick_source(wh: WarehouseView) -> str:
    """Offline (a run of the golden set) or Online (production traces of the sidebar's
    days), of those the warehouse holds; bound to the URL."""
    available = [s for s, ok in ((OFFLINE, wh.has_offline), (ONLINE, wh.has_online)) if ok]
    return st.segmented_control("Source", available, key="source", bind="query-params",
                                default=available[0], required=True,
                                help="A run of the golden set, or production traces of the "
                                     "sidebar's days.")


def get_started(root: str, missing: str = "data") -> None:
    """What to do when the warehouse has nothing to show yet."""
    st.info(f"The warehouse at `{root}` has no {missing} yet.", icon=":material/database:")
    st.markdown(
        """
### Get data in

- **Demo** — `make run` builds the demo warehouse (a RAG support assistant: months of runs,
  releases and production traffic) and starts this dashboard. Or run `evallib demo`, then
  press **Refresh data** in the sidebar.
- **Import** another tool's results — `evallib import jsonl FILE --run-name NAME`.
- **Record from Python** —

```python
from evallib import Warehouse

Warehouse("warehouse").record_run(
    {"name": "nightly", "dataset": "support-golden", "model": "my-model"},
    cases=[{"case_id": "c1", "strata": {"query_type": "billing"}, "input": "…"}],
    scores=[{"case_id": "c1", "metric": "correctness", "value": 1.0, "kind": "binary"}],
)
```

- **Another warehouse** — set `EVALLIB_WAREHOUSE=PATH` (a directory or `s3://…`) before
  starting the dashboard.
"""
    )
