"""The Review page's parts: who is labelling, the session's queue and labels, one item as
the rater sees it, and the agreement tables and figure. Writes go through
`evallib.authoring.review` (the path `evallib review import` takes)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, cast

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from evallib import queries as Q
from evallib.analysis.calibration import THRESHOLD
from evallib.authoring.review import record_labels, retract_label, review_queue
from evallib.errors import EvallibError
from evallib.warehouse import Warehouse
from pages._common import Days, query

# in words: tables cannot draw icons
STATUS = {"calibrated": "calibrated", "reliable": "reliable", "below": "below 0.8",
          "unclear": "unclear (spans 0.8)", "too few": "too few labels"}
PLAIN = {"calibrated": "calibrated", "reliable": "reliable", "below": "below 0.8",
         "unclear": "unclear", "too few": "too few"}
COLUMNS: dict[str, Literal["small", "medium", "large"]] = {
    "judge version": "medium", "status": "small", "n": "small"}
_MD = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~])")


@dataclass(frozen=True)
class Item:
    """One thing to label: a production trace (and the day its score was written), or a
    case of a run."""

    trace_id: str | None = None
    day: date | None = None
    run_id: str | None = None
    case_id: str | None = None

    @property
    def key(self) -> str:
        return self.trace_id or f"{self.run_id}/{self.case_id}"

    def subject(self) -> dict[str, str | None]:
        return {"trace_id": self.trace_id, "run_id": self.run_id, "case_id": self.case_id}


@dataclass(frozen=True)
class Choice:
    """What to label: the queue's source, run (offline), metric and its kind, size, strata
    keys, batch (the draw's seed) and days (online)."""

    source: str
    run: str | None
    metric: str
    kind: str
    n: int
    by: tuple[str, ...]
    seed: int
    days: Days | None = None  # online: the traces of these days


RECENT_DAYS = 30  # the queue's default window, as `evallib review sample --since 30d`


def rater_name() -> str | None:
    """The signed-in user when login is configured; else a name typed once and kept in
    the URL (``?rater=``)."""
    if getattr(st.user, "is_logged_in", False):
        who = st.user.get("email") or st.user.get("name")
        if who:
            st.caption(f":material/person: Labelling as **{who}** (signed in)")
            return str(who)
    name = st.text_input("Your name", key="rater", bind="query-params",
                         placeholder="e.g. ana.r", icon=":material/person:",
                         help="Stored with every label you give; kept in the URL, so a "
                              "bookmark opens the page as you.")
    return name.strip() or None


def markdown_text(text: str | None) -> str:
    """Model text shown as written: Markdown characters escaped, line breaks kept."""
    if not text:
        return "_(empty)_"
    return _MD.sub(r"\\\1", text).replace("\n", "  \n")


# --- the session's queue and labels --------------------------------------------------------


def queue(spec: tuple, draw: Callable[[], pl.DataFrame], n: int, seed: int) -> list[Item]:
    """The queue of ``spec`` (the `Choice` and the rater), drawn once per session from the
    pool ``draw`` reads: later labels do not reshuffle it, and the pool is not read again."""
    frozen = st.session_state.setdefault("review_queues", {})
    if spec not in frozen:
        pool = draw()
        rows = pool.to_dicts()
        frozen[spec] = [Item(trace_id=r["item"], day=r["date"]) if "date" in r
                        else Item(run_id=spec[0].run, case_id=r["item"])
                        for r in (rows[i] for i in review_queue(pool, n, seed=seed))]
    return frozen[spec]


def once(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per session for ``key`` (the queue's scale: it reads a year of
    scores on a large warehouse, and does not change while the queue is labelled)."""
    memo = st.session_state.setdefault("review_once", {})
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def written() -> list[dict[str, Any]]:
    """Labels this session wrote and has not taken back, oldest first (the undo stack)."""
    return st.session_state.setdefault("review_written", [])


def labelled(rater: str, metric: str) -> set[str]:
    """Items ``rater`` has labelled for ``metric``: the warehouse's (as of the cached
    snapshot, up to a minute old) without those taken back, plus this session's."""
    taken_back = st.session_state.setdefault("review_retracted", set())
    stored = query(Q.rater_labels, rater, metric)
    keys = {Item(t, None, r, c).key for t, r, c, at in stored.select(
        "trace_id", "run_id", "case_id", "labeled_at").iter_rows()
        if (Item(t, None, r, c).key, at) not in taken_back}
    seen = st.session_state.setdefault("review_stored", set())  # found stored on submit
    return keys | {k for r, m, k in seen if r == rater and m == metric} | {
        Item(w["trace_id"], None, w["run_id"], w["case_id"]).key for w in written()
        if w["labeler"] == rater and w["metric"] == metric}


def current(items: list[Item], done: set[str]) -> Item | None:
    """The first item neither labelled nor skipped; then the skipped ones, in skip order."""
    skipped = st.session_state.setdefault("review_skipped", [])
    for item in items:
        if item.key not in done and item.key not in skipped:
            return item
    by_key = {i.key: i for i in items}
    return next((by_key[k] for k in skipped if k in by_key and k not in done), None)


def submit(root: str, item: Item, metric: str, rater: str, value: float,
           details: dict[str, Any]) -> None:
    """Button callback: write the label (as `evallib review import` would) and reveal the
    judge's score of the item just answered."""
    note = (st.session_state.get(f"note_{item.key}") or "").strip() or None
    row = item.subject() | {"metric": metric, "value": float(value), "labeler": rater,
                            "labeled_at": datetime.now(UTC), "note": note}
    try:
        result = record_labels(Warehouse(root), [row], source="the Review page")
    except EvallibError as e:
        st.session_state["review_error"] = str(e)
        return
    if result.imported:
        written().append(row)
    else:  # labelled before (another tab, or the cached snapshot did not show it yet)
        st.session_state.setdefault("review_stored", set()).add((rater, metric, item.key))
    skipped = st.session_state.setdefault("review_skipped", [])
    if item.key in skipped:
        skipped.remove(item.key)
    st.session_state["review_last"] = {
        "key": item.key, "value": float(value), "stored": bool(result.imported),
        "judge": details.get("judge"), "rationale": details.get("rationale"),
        "judge_version": details.get("judge_version")}


def skip(item: Item) -> None:
    """Button callback: come back to this item after the others."""
    skipped = st.session_state.setdefault("review_skipped", [])
    if item.key in skipped:
        skipped.remove(item.key)
    skipped.append(item.key)
    st.session_state.pop("review_last", None)


def undo(root: str) -> None:
    """Button callback: take back this session's last label (the item comes back)."""
    stack = written()
    if not stack:
        return
    row = stack.pop()
    try:
        found = retract_label(Warehouse(root), row)
    except EvallibError as e:
        stack.append(row)
        st.session_state["review_error"] = str(e)
        return
    st.session_state.setdefault("review_retracted", set()).add(
        (Item(row["trace_id"], None, row["run_id"], row["case_id"]).key, row["labeled_at"]))
    st.session_state.pop("review_last", None)
    if not found:
        st.session_state["review_error"] = ("That label was not found in the warehouse "
                                            "(taken back already?)")


def progress(items: list[Item], done: set[str]) -> int:
    """The bar: "12 of 20 labelled · 2 skipped"; returns how many are labelled."""
    n_done = sum(i.key in done for i in items)
    keys = {i.key for i in items}
    skipped = [k for k in st.session_state.get("review_skipped", [])
               if k not in done and k in keys]
    st.progress(n_done / len(items), text=f"**{n_done} of {len(items)}** labelled"
                + (f" · {len(skipped)} skipped" if skipped else ""))
    return n_done


def reveal(kind: str) -> None:
    """After an answer: what you said, what the judge said and why."""
    last = st.session_state.get("review_last")
    if not last:
        return
    judge = "no score" if last["judge"] is None else value_label(kind, last["judge"])
    agree = last["judge"] is not None and abs(last["judge"] - last["value"]) < 1e-9
    stored = "Saved" if last["stored"] else "Already stored (kept the first label)"
    st.info(f"{stored}: you said **{value_label(kind, last['value'])}** for `{last['key']}`; "
            f"the judge said **{judge}** ({'agrees' if agree else 'differs'}). "
            f"{markdown_text(last['rationale'])}",
            icon=":material/check_circle:" if agree else ":material/compare_arrows:")


def scale(kind: str, lo: float | None, hi: float | None) -> list[float] | None:
    """The values a rater picks from: 0/1 for a binary metric, the whole steps from the
    lowest to the highest score for an ordinal one; None for a continuous one (a slider)."""
    if kind == "binary":
        return [0.0, 1.0]
    if kind == "ordinal" and lo is not None and hi is not None and hi - lo <= 10:
        return [float(v) for v in range(math.floor(lo), math.ceil(hi) + 1)]
    return None


def value_icon(kind: str, value: float) -> str | None:
    if kind == "binary":
        return ":material/thumb_up:" if value == 1 else ":material/thumb_down:"
    return None


def value_label(kind: str, value: float) -> str:
    if kind == "binary":
        return "Pass · 1" if value == 1 else "Fail · 0"
    return f"{value:g}"


# --- agreement -------------------------------------------------------------------------------


def ci(value: float, low: float, high: float, fmt: str = "{:.2f}") -> str:
    def one(x: float) -> str:
        return "–" if x is None or x != x else fmt.format(x)

    return f"{one(value)} [{one(low)}, {one(high)}]"


def calibration_rows(table: pl.DataFrame) -> pl.DataFrame:
    """`evallib.analysis.calibration.calibrate` for display: status in words, each statistic with
    its 95% interval."""
    rows = [{"judge version": r["judge_version"], "status": STATUS.get(r["status"], r["status"]),
             "n": r["n"],
             "alpha": ci(r["alpha"], r["alpha_low"], r["alpha_high"]),
             "kappa": ci(r["kappa"], r["kappa_low"], r["kappa_high"]),
             "exact": ci(r["exact"], r["exact_low"], r["exact_high"]),
             "bias": ci(r["bias"], r["bias_low"], r["bias_high"], "{:+.3f}"),
             "verbosity ρ": ci(r["verbosity"], r["verbosity_low"], r["verbosity_high"],
                               "{:+.2f}") + (" longer rated higher" if r["verbose"] else "")}
            for r in table.iter_rows(named=True)]
    return pl.DataFrame(rows, schema={c: pl.Int64 if c == "n" else pl.String for c in (
        "judge version", "status", "n", "alpha", "kappa", "exact", "bias", "verbosity ρ")})


def confusion_table(cells: pl.DataFrame, version: str) -> pl.DataFrame:
    """One version's confusion table: a row per judge value, a column per human value."""
    one = cells.filter(pl.col("judge_version") == version)
    humans = sorted(one["human"].unique().to_list())
    rows = []
    for j in sorted(one["judge"].unique().to_list()):
        got = dict(one.filter(pl.col("judge") == j).select("human", "n").iter_rows())
        rows.append({"judge said": f"{j:g}"} | {f"human said {h:g}": got.get(h, 0)
                                                for h in humans})
    return pl.DataFrame(rows)


def calibration_figure(table: pl.DataFrame) -> go.Figure:
    """Each judge version's alpha with its 95% interval against the 0.8 bar."""
    colors = {"calibrated": "#2e7d32", "below": "#c62828", "unclear": "#ef6c00",
              "too few": "#757575"}
    fig = go.Figure()
    for status, color in colors.items():
        rows = table.filter(pl.col("status") == status)
        if not rows.height:
            continue
        alpha = rows["alpha"].fill_nan(None)
        fig.add_trace(go.Scatter(
            x=alpha.to_list(), y=rows["judge_version"].to_list(), mode="markers",
            name=PLAIN[status], marker={"color": color, "size": 11},
            error_x={"type": "data", "symmetric": False,
                     "array": (rows["alpha_high"] - rows["alpha"]).fill_nan(None).to_list(),
                     "arrayminus": (rows["alpha"] - rows["alpha_low"]).fill_nan(None)
                     .to_list()},
            customdata=rows["n"].to_list(), meta={"role": "series"},
            hovertemplate="%{y}<br>alpha %{x:.2f}, n = %{customdata:,}<extra></extra>"))
    fig.add_vline(x=THRESHOLD, line_dash="dash", line_color="#555",
                  annotation_text=f"{THRESHOLD} bar", annotation_position="top")
    fig.update_layout(height=max(200, 60 * table.height + 110),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": 1.12, "x": 0})
    lowest = cast(float, table["alpha_low"].fill_nan(0).min() or 0)
    fig.update_xaxes(title_text="Krippendorff's alpha, judge vs humans (95% CI)",
                     range=[min(-0.1, lowest - 0.05), 1.02])
    fig.update_yaxes(autorange="reversed")
    return fig
