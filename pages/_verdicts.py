"""Each page's answer in one sentence, computed from the same frames the page shows below it.
Pure Python and polars: no streamlit, no SQL (`pages._ui.verdict` draws one).

A verdict's ``tone`` picks its colour and icon (bad, warn, good, info); its text always says
in words what the colour means, so nothing rests on colour alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import polars as pl

from evallib.vocabulary import slice_name
from pages._tables import SAME, SMALL_N, WORSE, human

MAX_NAMED = 3  # a sentence names at most this many findings, then "and N more"


@dataclass(frozen=True)
class Verdict:
    tone: str  # bad | warn | good | info
    text: str  # Markdown, one or two sentences


def _num(v: float | None, kind: str | None = None) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:.2f}" if kind == "ordinal" else f"{v:.3f}"


def _p(p: float | None) -> str:
    return "–" if p is None or p != p else f"{p:.2g}"


def _more(items: Sequence[str], limit: int = MAX_NAMED) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- Runs and Trends ---------------------------------------------------------------------


def runs_verdict(runs: pl.DataFrame, gates: pl.DataFrame) -> Verdict:
    """Where the newest run stands: approved, gated (and how), and what it should be
    compared with."""
    if runs.height == 0:
        return Verdict("info", "No run yet.")
    newest = runs.row(0, named=True)
    when = f"{newest['started_at']:%Y-%m-%d}"
    gate = gates.filter(pl.col("run_id") == newest["run_id"]) if gates.height else gates
    approved = runs.slice(1).filter(pl.col("approved"))
    base = approved.row(0, named=True) if approved.height else None
    against = (f"the approved baseline is **{base['name']}**"
               f"{' (' + base['release'] + ')' if base.get('release') else ''}, "
               f"{base['started_at']:%Y-%m-%d}" if base else "no earlier run is approved")
    if newest["approved"]:
        of = f" of {newest['release']}" if newest.get("release") else ""
        return Verdict("good", f"The newest run, **{newest['name']}** ({when}), is an approved "
                               f"release baseline{of}.")
    if gate.height:
        g = gate.row(0, named=True)
        if g["verdict"] == "fail":
            return Verdict("bad", f"The newest run, **{newest['name']}** ({when}), **failed** "
                                  f"its release gate ({_plural(int(g['n_failed']), 'rule row')}"
                                  f" failed); {against}.")
        return Verdict("good", f"The newest run, **{newest['name']}** ({when}), **passed** its "
                               f"release gate; {against}.")
    return Verdict("info", f"The newest run, **{newest['name']}** ({when}), is not approved and "
                           f"was never gated; {against}. Compare them before it ships.")


def offline_trend_verdict(trend: pl.DataFrame, metric: str, key: str | None) -> Verdict:
    """The newest run's mean (or its lowest stratum) beside the newest approved run's."""
    if trend.height == 0:
        return Verdict("info", f"No run has a score of **{human(metric)}** yet.")
    newest_id = trend.sort("started_at")["run_id"][-1]
    rows = trend.filter(pl.col("run_id") == newest_id)
    name = rows["name"][0]
    approved = trend.filter(pl.col("approved") & (pl.col("run_id") != newest_id))
    base = approved.sort("started_at").filter(pl.col("run_id") == approved.sort(
        "started_at")["run_id"][-1]) if approved.height else None

    def cell(r: dict[str, Any]) -> str:
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = "" if lo is None or hi is None else f" [{_num(lo)}, {_num(hi)}]"
        return f"{_num(r['mean'])}{ci}"

    if key is None:
        text = f"**{human(metric)}** of the newest run **{name}**: {cell(rows.row(0, named=True))}"
        if base is not None:
            text += f"; of the approved **{base['name'][0]}**: {cell(base.row(0, named=True))}"
        return Verdict("info", text + ". Each interval is one run's; Compare tests a difference.")
    low = rows.drop_nulls("mean").sort("mean").row(0, named=True)
    return Verdict("info", f"In the newest run **{name}**, {key} = **{low['stratum']}** has the "
                           f"lowest **{human(metric)}**: {cell(low)} (n = {low['n']}).")


def online_trend_verdict(daily: pl.DataFrame, metric: str, key: str | None) -> Verdict:
    """The newest day's mean against the window's, or the lowest group over the window."""
    if daily.height == 0:
        return Verdict("info", f"No trace scored on **{human(metric)}** in these days.")
    if key is None:
        last = daily.sort("day").row(-1, named=True)
        total, n = cast(float, (daily["mean"] * daily["n"]).sum()), cast(int, daily["n"].sum())
        overall = total / max(n, 1)
        return Verdict("info", f"**{human(metric)}** on production: {_num(last['mean'])} on "
                               f"{last['day']:%Y-%m-%d} (n = {last['n']:,}) against "
                               f"{_num(overall)} over the window.")
    groups = daily.group_by("stratum").agg(
        ((pl.col("mean") * pl.col("n")).sum() / pl.col("n").sum()).alias("mean"),
        pl.col("n").sum()).drop_nulls("stratum").sort("mean")
    low = groups.row(0, named=True)
    return Verdict("info", f"Over these days {key} = **{low['stratum']}** has the lowest "
                           f"**{human(metric)}**: {_num(low['mean'])} (n = {low['n']:,}).")


# --- Compare -------------------------------------------------------------------------------


def _by_slice(rows: pl.DataFrame, values: dict[str, dict[str, str]]) -> list[str]:
    """``billing × hard: correctness 0.500 → 0.217 (p adj 0.005), …`` per slice."""
    out = []
    for (label,), tests in rows.group_by(["slice"], maintain_order=True):
        parts = [f"{human(r['metric'])} {_num(r['baseline'], r['kind'])} → "
                 f"{_num(r['candidate'], r['kind'])} (p adj {_p(r['p adjusted'])})"
                 for r in tests.iter_rows(named=True)]
        out.append(f"**{slice_name(values.get(label, {'': label}))}**: " + ", ".join(parts))
    return out


def compare_verdict(result: Any, headline: pl.DataFrame, slices: pl.DataFrame,
                    values: dict[str, dict[str, str]], gate: pl.DataFrame | None = None
                    ) -> Verdict:
    """Worse anywhere after correction (slices named, worst first), else no change and the
    smallest drop the overall n can detect; the release gate's verdict when there is one."""
    if not result.comparable:
        why = "; ".join(w for w in result.warnings if w.startswith("different"))
        return Verdict("bad", f"**Not comparable**: {why}.")
    worse = slices.filter(pl.col("verdict") == WORSE)
    worse_overall = headline.filter(pl.col("verdict") == WORSE)
    better = headline.filter(pl.col("verdict") != SAME).filter(pl.col("verdict") != WORSE)
    gate_text, gate_failed = _gate_sentence(gate)
    first = headline.row(0, named=True) if headline.height else None
    overall = ("Overall no metric changed significantly"
               + (f" ({human(first['metric'])} {_num(first['baseline'], first['kind'])} → "
                  f"{_num(first['candidate'], first['kind'])})" if first else "") + ".")
    if worse_overall.height:
        overall = "Overall worse on " + ", ".join(
            f"**{human(r['metric'])}** {_num(r['baseline'], r['kind'])} → "
            f"{_num(r['candidate'], r['kind'])} (p {_p(r['p'])})"
            for r in worse_overall.iter_rows(named=True)) + "."
    if worse.height:
        text = (f"**Worse in {_plural(worse.height, 'slice × metric test')} after "
                f"correction**: {_more(_by_slice(worse, values))}. {overall}")
        return Verdict("bad", text + gate_text)
    if worse_overall.height:
        return Verdict("bad", f"**Worse**: {overall[len('Overall worse on '):]} No slice is "
                              f"significantly worse after correction." + gate_text)
    tested = f"{_plural(slices.height, 'slice × metric test')} after correction" \
        if slices.height else "no slice tested"
    power = ""
    if first is not None and first["detectable drop"] == first["detectable drop"] \
            and first["detectable drop"] is not None:
        drop = first["detectable drop"]
        size = f"{drop * 100:.1f} points" if first["kind"] == "binary" \
            else _num(drop, first["kind"])
        power = (f" With n = {first['n']}, drops of {human(first['metric'])} smaller than "
                 f"{size} cannot be detected.")
    gains = (" Better on " + ", ".join(human(m) for m in better["metric"]) + ".") \
        if better.height else ""
    tone = "bad" if gate_failed else "good"
    return Verdict(tone, f"**No significant drop anywhere**: overall and in {tested}."
                         f"{gains}{power}{gate_text}")


def _gate_sentence(gate: pl.DataFrame | None) -> tuple[str, bool]:
    if gate is None or gate.height == 0:
        return "", False
    failed = gate.filter(pl.col("status") == "fail").height
    when = f"{gate['created_at'][0]:%Y-%m-%d %H:%M}"
    if failed:
        return (f" **Release gate failed** ({when}): "
                f"{_plural(failed, 'rule row')} failed."), True
    if undecided := gate.filter(pl.col("status") == "inconclusive").height:
        return (f" Release gate **inconclusive** ({when}): {_plural(undecided, 'rule row')} "
                "could not tell a drop from noise (too few cases); nothing failed."), False
    return f" Release gate passed ({when}).", False


# --- Slices --------------------------------------------------------------------------------


def cell_verdict(grid: pl.DataFrame, metric: str, key: str, key2: str | None, what: str
                 ) -> Verdict:
    """The cell most surely low: the lowest upper end of a 95% interval (a tiny cell's low
    mean is not enough), with its mean, interval and n."""
    rows = grid.drop_nulls("mean")
    if rows.height == 0:
        return Verdict("info", f"No {what} is scored on **{human(metric)}**.")
    ranked = rows.with_columns(pl.coalesce("ci_high", "mean").alias("_hi")).sort("_hi", "mean")
    low = ranked.row(0, named=True)
    kind = low["kind"]
    ci = "" if low["ci_low"] is None else \
        f" [{_num(low['ci_low'], kind)}, {_num(low['ci_high'], kind)}]"
    small = f" — fewer than {SMALL_N} {what}s" if low["n"] < SMALL_N else ""
    label = slice_name({k: low[k] for k in (key, key2) if k})
    return Verdict("warn", f"Worst cell: **{label}**, "
                           f"{human(metric)} {_num(low['mean'], kind)}{ci} (n = {low['n']}"
                           f"{small}); its interval ends lowest of the {rows.height} cells.")


def delta_cell_verdict(rows: pl.DataFrame, metric: str, values: dict[str, dict[str, str]]
                       ) -> Verdict:
    """Against a baseline: the cells significantly worse after correction, worst first;
    else the largest drop, named as not significant."""
    if rows.height == 0:
        return Verdict("info", f"No cell has **{human(metric)}** in both runs.")
    worse = rows.filter(pl.col("verdict") == WORSE)
    if worse.height:
        return Verdict("bad", f"**Worse in {_plural(worse.height, 'cell')} after correction**: "
                              + _more(_by_slice(worse, values)) + ".")
    top = rows.row(0, named=True)
    if top["delta"] is None or not top["delta"] < 0:
        return Verdict("good", f"**No cell is worse** on {human(metric)} than in the baseline.")
    label = slice_name(values.get(top["slice"], {"": top["slice"]}))
    return Verdict("good", f"**No cell is significantly worse** on {human(metric)} after "
                           f"correction; the largest drop, not significant, is **{label}** "
                           f"{_num(top['baseline'], top['kind'])} → "
                           f"{_num(top['candidate'], top['kind'])} "
                           f"(p adj {_p(top['p adjusted'])}).")


# --- RAG ---------------------------------------------------------------------------------


def rag_verdict(overall: pl.DataFrame, shift: pl.DataFrame | None, what: str,
                baseline: str = "") -> Verdict:
    """The dominant failure class (share of the attributed failures) and, against a
    baseline, the classes that moved significantly (overall and per slice)."""
    failing = int(overall["failing"][0]) if overall.height else 0
    if failing == 0:
        return Verdict("good", f"No failing {what} to attribute.")
    ranked = overall.sort("n", descending=True)
    top = ranked.row(0, named=True)
    rest = ", ".join(f"{r['class']} {r['n']:,}" for r in ranked.slice(1).iter_rows(named=True))
    text = (f"Most failures are **{top['class']}**: {top['n']:,} of {failing:,} failing "
            f"{what}s ({top['share']:.0%}); then {rest}.")
    if shift is None:
        return Verdict("warn", text)
    moved = shift.filter(pl.col("significant"))
    if moved.height == 0:
        return Verdict("info", text + f" Against **{baseline}** no class moved significantly.")
    parts = [f"{r['class']}{'' if r['stratum'] == 'all' else ' in ' + r['stratum']} "
             f"{'rose' if r['delta_n'] > 0 else 'fell'} {r['baseline_n']} → {r['candidate_n']}"
             f" (p adj {_p(r['p_adjusted'])})"
             for r in moved.sort("p_adjusted").iter_rows(named=True)]
    tone = "bad" if (moved["delta_n"] > 0).any() else "good"
    return Verdict(tone, text + f" Against **{baseline}**: " + _more(parts) + ".")


# --- Online and Correlation ------------------------------------------------------------


def dataset_verdict(dataset: str, history: pl.DataFrame, runs: pl.DataFrame) -> Verdict:
    """The golden set's newest version (``history`` from `golden_sets.version_history`,
    oldest first): its size, what changed since the version before, and whether a run has
    used it yet (``runs``: `queries.version_runs`)."""
    v = history.row(-1, named=True)
    used = runs.filter(pl.col("dataset_version") == v["dataset_version"]).height
    size = f"**{dataset}** is at version `{v['dataset_version']}`: {v['n_cases']:,} cases"
    if history.height > 1:
        size += (f", {v['added']} added ({v['added_promoted']} promoted from production), "
                 f"{v['removed']} removed and {v['changed']} changed since the version "
                 "before")
    if not used:
        return Verdict("warn", f"{size}. No run has used it yet: its scores are not known.")
    return Verdict("info", f"{size}; {used} run{'s' if used != 1 else ''} used it.")


def online_verdict(alerts: Sequence[Any], start: date, end: date) -> Verdict:
    """The open alerts by name; else that none is open (and the newest closed one)."""
    opened = [a for a in alerts if a.status == "open"]
    if opened:
        return Verdict("bad", f"**{_plural(len(opened), 'open alert')}**: "
                              + _more([a.message for a in opened]) + ".")
    closed = sorted((a for a in alerts if a.status != "open"), key=lambda a: a.last_day)
    text = f"**No open alert** from {start:%Y-%m-%d} to {end:%Y-%m-%d}"
    if closed:
        last = closed[-1]
        text += (f"; {_plural(len(closed), 'closed alert')} in the window, the newest on "
                 f"{last.first_day:%Y-%m-%d}: {last.signal.replace('_', ' ')}"
                 + (f", as release {last.release} began serving" if last.release else ""))
    return Verdict("good", text + ".")


def correlation_verdict(month: str, correlations: pl.DataFrame, agreement: pl.DataFrame,
                        threshold: float) -> Verdict:
    """What fell below the bar this month (new) apart from what was below before
    (chronic), and apart from pairs with too few traces to say (not flags)."""
    def pair(r: dict[str, Any]) -> str:
        return f"{human(r['metric'])} vs {r['feedback']} {_num(r['r'], 'ordinal')}"

    def names(rows: pl.DataFrame) -> str:
        return ", ".join(pair(r) for r in rows.iter_rows(named=True))

    status = pl.col("status")
    was_below = pl.col("prev_status").fill_null("") == "below" \
        if "prev_status" in correlations.columns else pl.lit(False)
    new = correlations.filter((status == "below") & ~was_below)
    chronic = correlations.filter((status == "below") & was_below)
    unclear = correlations.filter(status == "unclear")
    few = correlations.filter(status == "too few")
    judge = agreement.filter(status == "below") if agreement.height else agreement
    parts = []
    if new.height:
        parts.append(f"**Fell below {threshold} this month**: {names(new)}.")
    if chronic.height:
        parts.append(f"**Still below {threshold}** (as the month before): {names(chronic)}.")
    if judge.height:
        parts.append("**The judge disagrees with human labels** on " + ", ".join(
            f"{human(r['metric'])} (alpha {_num(r['alpha'], 'ordinal')})"
            for r in judge.iter_rows(named=True)) + ".")
    tone = "bad" if new.height or judge.height else "warn" if chronic.height else "good"
    if tone == "good":
        ok = correlations.filter(status == "ok")
        if correlations.height == few.height:
            parts.append(f"No score–feedback pair has enough traces in {month} to tell.")
            tone = "info"
        elif unclear.height:
            parts.append(f"**No correlation is below {threshold}** in {month}; "
                         f"{_plural(unclear.height, 'pair')} cannot be told apart from it yet: "
                         f"{names(unclear)}.")
            tone = "info"
        else:
            lowest = ok.sort("r").row(0, named=True)
            parts.append(f"**Every score–feedback correlation in {month} is at least "
                         f"{threshold}** (lowest: {pair(lowest)}); the judge agrees with "
                         "human labels.")
    if few.height:
        parts.append("Too few traces to tell (not a flag): " + ", ".join(
            f"{human(r['metric'])} vs {r['feedback']} (n = {r['n']})"
            for r in few.iter_rows(named=True)) + ".")
    return Verdict(tone, (f"{month}: " if tone in ("bad", "warn") else "") + " ".join(parts))
