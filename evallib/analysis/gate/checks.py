"""The checks of a rule on one slice of cases (min_pass_rate, max_drop with its tested
threshold, max_increase_pct, max, judge_calibrated), each returning an `Outcome`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from .outcome import Outcome, fmt
from .policy import STATS, Rule

__all__ = ["CHECKS_BY_NAME", "CLUSTER", "POWER", "RELATIVE", "drop_verdict", "judge_calibrated",
           "slice_column"]

RELATIVE = ("max_drop", "max_increase_pct")  # need a baseline
CLUSTER = "\x00cluster"  # the cases' cluster key, when the policy clusters
POWER = 0.8  # the power "how many cases would decide" an inconclusive max_drop plans for


def slice_column(key: str) -> str:
    return f"\x00stratum:{key}"  # cannot clash with a real column


def _min_pass_rate(rule: Rule, slice_: dict[str, str] | None, frame: pl.DataFrame,
                   alpha: float) -> Outcome:
    flag = (frame["passed"] if frame["passed"].null_count() < frame.height
            else frame["value"] == 1.0)
    scored = flag.drop_nulls()
    n, unscored = scored.len(), flag.null_count()
    if not n:
        return Outcome(rule, slice_, "skipped", math.nan, 0, message="no scored cases")
    rate = float(scored.cast(pl.Float64).mean())
    failing = tuple(frame.filter(flag.not_().fill_null(False))["case_id"])
    ok = rate >= rule.threshold - 1e-12
    msg = (f"pass rate {fmt(rate)} ({n - len(failing)} of {n}) "
           f"{'≥' if ok else 'below'} {fmt(rule.threshold)}")
    if unscored:
        msg += f"; {unscored} unscored, not counted"
    return Outcome(rule, slice_, "pass" if ok else "fail", rate, n, candidate=rate,
                   message=msg, cases=failing)


def _max_drop(rule: Rule, slice_: dict[str, str] | None, frame: pl.DataFrame,
              alpha: float) -> Outcome:
    """The drop and, for a tested rule, its interval and one-sided p-values against the
    threshold; `_decide` turns them into fail, pass or inconclusive."""
    from ...stats import paired_inference

    kind = frame["kind"][0]
    base, cand = frame["base"].to_numpy(), frame["value"].to_numpy()
    keys = frame[CLUSTER].to_list() if CLUSTER in frame.columns else None
    r, inference = paired_inference(base, cand, kind, alpha, clusters=keys)
    drop = -r.delta
    regressed = frame.filter(pl.col("value") < pl.col("base")) \
        .sort([pl.col("value") - pl.col("base"), "case_id"])["case_id"]
    if not rule.significant or inference is None:
        exceeds = drop > rule.threshold + 1e-12
        msg = (f"{fmt(r.baseline)} → {fmt(r.candidate)}, drop {drop:.3f} "
               f"{'>' if exceeds else '≤'} {fmt(rule.threshold)}")
        if rule.significant:  # nothing to test: say why, and let the policy decide
            return Outcome(rule, slice_, "inconclusive", drop, r.n, r.baseline, r.candidate,
                           message=f"{msg}, untested ({r.reason}): inconclusive",
                           cases=tuple(regressed), inconclusive=True)
        return Outcome(rule, slice_, "fail" if exceeds else "pass", drop, r.n, r.baseline,
                       r.candidate, message=msg, cases=tuple(regressed))
    low, high = -inference.high, -inference.low
    msg = (f"{fmt(r.baseline)} → {fmt(r.candidate)}, drop {drop:.3f} "
           f"[{_signed(low)}, {_signed(high)}]")
    return Outcome(rule, slice_, "pending", drop, r.n, r.baseline, r.candidate,
                   p_value=inference.p_below(-rule.threshold),
                   p_within=inference.p_above(-rule.threshold), message=msg,
                   cases=tuple(regressed), low=low, high=high,
                   power=_cases_to_decide(r.n, drop, low, high, rule.threshold, alpha))


def _signed(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def drop_verdict(p_beyond: Any, p_within: Any, alpha: float) -> Any:
    """fail | pass | inconclusive from the one-sided p-values of "drop ≤ threshold" and
    "drop ≥ threshold" (element-wise on arrays, for simulations): each side at alpha/2, so
    a fail is exactly "the drop's 1 - alpha interval lies beyond the threshold"."""
    beyond, within = np.asarray(p_beyond) < alpha / 2, np.asarray(p_within) < alpha / 2
    out = np.where(beyond, "fail", np.where(within, "pass", "inconclusive"))
    return str(out) if out.ndim == 0 else out


def _max_increase_pct(rule: Rule, slice_: dict[str, str] | None, frame: pl.DataFrame,
                      alpha: float) -> Outcome:
    b, c = float(frame["base"].mean()), float(frame["value"].mean())
    pct = (c - b) / abs(b) * 100 if b else (0.0 if c == b else math.copysign(math.inf, c))
    ok = pct <= rule.threshold + 1e-9
    worst = frame.sort([pl.col("base") - pl.col("value"), "case_id"]) \
        .filter(pl.col("value") > pl.col("base"))["case_id"]
    msg = (f"mean {fmt(b)} → {fmt(c)} ({pct:+.1f}% {'≤' if ok else '>'} "
           f"{rule.threshold:g}%) on {frame.height} cases")
    return Outcome(rule, slice_, "pass" if ok else "fail", pct, frame.height, b, c,
                   message=msg, cases=tuple(worst))


def _max(rule: Rule, slice_: dict[str, str] | None, frame: pl.DataFrame,
         alpha: float) -> Outcome:
    q = STATS[rule.stat]
    col = frame["value"]
    stat = float(col.mean() if q is None else col.quantile(q, interpolation="linear"))
    ok = stat <= rule.threshold + 1e-9
    top = frame.sort(["value", "case_id"], descending=[True, False])
    if q is not None:
        top = top.filter(pl.col("value") > rule.threshold)
    msg = f"{rule.stat} {fmt(stat)} {'≤' if ok else '>'} {fmt(rule.threshold)}"
    return Outcome(rule, slice_, "pass" if ok else "fail", stat, frame.height,
                   candidate=stat, message=msg,
                   cases=tuple(top["case_id"]) if not ok else ())


def judge_calibrated(rule: Rule, judges: list[tuple[str, int, Any]]) -> Outcome:
    """Pass when every judge version that scored the metric has its alpha interval above
    the threshold; observed = the lowest interval bound (NaN: a version has no labels)."""
    if not judges:
        return Outcome(rule, None, "skipped", math.nan, 0,
                       message=f"no {rule.metric} score of the candidate has a value")
    parts, lows, n, ok = [], [], 0, True
    for version, _, c in judges:
        if c is None:
            parts.append(f"{version}: no human labels of {rule.metric} it scored")
            lows.append(math.nan)
            ok = False
            continue
        good = c.status == "calibrated" and c.alpha_low >= rule.threshold - 1e-12
        ok &= good
        n += c.n
        lows.append(c.alpha_low)
        parts.append(f"{version}: alpha {fmt(c.alpha)} [{fmt(c.alpha_low)}, "
                     f"{fmt(c.alpha_high)}] on {c.n:,} labels, "
                     f"{'calibrated' if good else 'not calibrated'} "
                     f"({'interval above' if good else 'needs an interval above'} "
                     f"{fmt(rule.threshold)})")
    observed = math.nan if any(math.isnan(x) for x in lows) else min(lows)
    return Outcome(rule, None, "pass" if ok else "fail", observed, n, candidate=observed,
                   message="; ".join(parts))


CHECKS_BY_NAME = {"min_pass_rate": _min_pass_rate, "max_drop": _max_drop,
           "max_increase_pct": _max_increase_pct, "max": _max}


def _cases_to_decide(n: int, drop: float, low: float, high: float, threshold: float,
                     alpha: float) -> str | None:
    """"about 2,900 cases would decide (80% power)": how many cases put the interval of a
    drop like this one wholly on one side of the threshold, from this interval's width."""
    from scipy.special import ndtri

    gap = abs(drop - threshold)
    if not (math.isfinite(low) and math.isfinite(high)) or n < 2:
        return None
    if gap < 1e-12:
        return f"the drop sits on the threshold {threshold:g}: no number of cases decides it"
    se = (high - low) / (2 * float(ndtri(0.975)))
    needed = n * ((float(ndtri(1 - alpha / 2)) + float(ndtri(POWER))) * se / gap) ** 2
    if needed <= n:
        return None
    return (f"about {_about(math.ceil(needed))} cases would decide whether a drop of "
            f"{drop:.3f} is within {threshold:g} ({POWER:.0%} power)")


def _about(n: int) -> str:
    """Two significant digits: 2,873 → "2,900"."""
    digits = len(str(int(n)))
    return f"{round(n, -(digits - 2)) if digits > 2 else n:,}"
