"""Two independent groups, e.g. a canary against the control serving on the same days.

Unlike a run against its baseline there are no pairs: each trace went to one variant. The
test depends on the data:

- a rate (errors, refusals, pass rate, thumbs up): difference of two proportions, score test
  with a Newcombe interval (statsmodels); 0 of 200 against 0 of 200 has no test (p NaN) but
  still an interval (±0.019), never (0, 0);
- a 1–5 scale (ratings, ordinal scores): Mann–Whitney U from value counts, with the
  difference of means and its bootstrap interval. The verdict reports the mean, so when
  U points the other way from the mean the p-value is the bootstrap's of the mean;
- a quantile (latency p50, p95): the ratio of the two quantiles with a bootstrap interval,
  and the p-value from that same bootstrap distribution, so "significant" means "the
  interval of the ratio excludes 1". (It used to be Mann–Whitney's on the whole
  distribution: a canary faster overall with the same p95 was called p95-"worse" in 18 of
  40 simulations);
- a mean of a continuous quantity (cost, continuous scores): Welch's t from the two groups'
  n, mean and sd (scipy).

"Untestable" (nothing varies, or a group is empty) is a NaN p-value, left out of BH.

The dashboard reads groups as counts per value (or per 1%-wide latency bin), never as rows,
so Mann–Whitney is computed from counts: scipy's ``mannwhitneyu`` takes raw samples, and
expanding millions of traces only to rank them again would defeat the aggregation. The
formula is the same asymptotic test with the tie correction and continuity correction that
scipy uses (tests compare the two). Intervals are 95%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .intervals import CONFIDENCE

__all__ = ["UnpairedResult", "bootstrap_quantile_ratio", "mann_whitney_counts",
           "two_proportions", "welch_from_moments"]

NAN = math.nan
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class UnpairedResult:
    """Treatment against control. ``control`` and ``treatment`` are each group's statistic
    (a rate, a mean or a quantile), ``delta`` is ``treatment - control`` (or their ratio,
    when ``relative``), ``ci_low``/``ci_high`` its 95% interval. ``p_value`` is two-sided
    and NaN when nothing can be tested."""

    test: str
    n_control: int
    n_treatment: int
    control: float
    treatment: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    relative: bool = False


def _degenerate(test: str, n_c: int, n_t: int, c: float = NAN, t: float = NAN,
                relative: bool = False) -> UnpairedResult:
    delta = (t / c if c else NAN) if relative else t - c
    return UnpairedResult(test, n_c, n_t, c, t, delta, NAN, NAN, NAN, relative)


def two_proportions(k_control: int, n_control: int, k_treatment: int, n_treatment: int
                    ) -> UnpairedResult:
    """Difference of two rates: score test (statsmodels ``test_proportions_2indep``) and
    Newcombe's hybrid score interval, both well behaved for rare events such as errors."""
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        test_proportions_2indep,
    )

    name = "two proportions (score)"
    if n_control < 1 or n_treatment < 1:
        return _degenerate(name, n_control, n_treatment)
    pc, pt = k_control / n_control, k_treatment / n_treatment
    low, high = confint_proportions_2indep(k_treatment, n_treatment, k_control, n_control,
                                           method="newcomb", compare="diff",
                                           alpha=1 - CONFIDENCE)
    low, high = (float(np.clip(x, -1.0, 1.0)) for x in (low, high))
    if k_control + k_treatment in (0, n_control + n_treatment):  # all 0 or all 1: no test
        return UnpairedResult(name, n_control, n_treatment, pc, pt, pt - pc, low, high, NAN)
    with np.errstate(divide="ignore", invalid="ignore"):
        test = test_proportions_2indep(k_treatment, n_treatment, k_control, n_control,
                                       method="score", compare="diff")
    p = float(test.pvalue)
    return UnpairedResult(name, n_control, n_treatment, pc, pt, pt - pc, low, high,
                          p if math.isfinite(p) else NAN)


def _midranks(total: Floats) -> Floats:
    """Midrank of each value (sorted) given how often it occurs across both groups."""
    before = np.cumsum(total) - total
    return before + (total + 1) / 2


def _mwu_p(values_c: Floats, values_t: Floats) -> tuple[float, float]:
    """U of the treatment and its two-sided asymptotic p (tie- and continuity-corrected)."""
    n_c, n_t = values_c.sum(), values_t.sum()
    total = values_c + values_t
    n = n_c + n_t
    u = float(np.dot(_midranks(total), values_t) - n_t * (n_t + 1) / 2)
    ties = float(np.sum(total ** 3 - total))
    var = n_c * n_t / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u, 1.0
    from scipy.stats import norm

    z = (abs(u - n_c * n_t / 2) - 0.5) / math.sqrt(var)
    return u, float(min(1.0, 2 * norm.sf(max(z, 0.0))))


def mann_whitney_counts(values: ArrayLike, counts_control: ArrayLike,
                        counts_treatment: ArrayLike, *, n_boot: int = 2000, seed: int = 0
                        ) -> UnpairedResult:
    """Mann–Whitney U from how often each value (sorted ascending) occurs in each group;
    the effect is the difference of means with a bootstrap interval (each group's counts
    resampled as a multinomial, which is resampling its rows). When U and the means point
    opposite ways, the p-value is the bootstrap's of the difference of means."""
    v = np.asarray(values, dtype=np.float64)
    c, t = np.asarray(counts_control, np.float64), np.asarray(counts_treatment, np.float64)
    order = np.argsort(v, kind="stable")
    v, c, t = v[order], c[order], t[order]
    n_c, n_t = int(c.sum()), int(t.sum())
    name = "Mann–Whitney U"
    if n_c < 1 or n_t < 1:
        return _degenerate(name, n_c, n_t)
    mc, mt = float(v @ c / n_c), float(v @ t / n_t)
    u, p = _mwu_p(c, t)
    low = high = NAN
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        bc = rng.multinomial(n_c, c / n_c, size=n_boot) @ v / n_c
        bt = rng.multinomial(n_t, t / n_t, size=n_boot) @ v / n_t
        low, high = np.quantile(bt - bc, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        if np.sign(u - n_c * n_t / 2) != np.sign(mt - mc):  # U and the mean disagree
            p, name = _bootstrap_p(bt - bc, 0.0), "difference of means (bootstrap)"
    if len(np.unique(v[(c + t) > 0])) < 2:
        p = NAN  # one value only: nothing to test
    return UnpairedResult(name, n_c, n_t, mc, mt, mt - mc, float(low), float(high), p)


def _bootstrap_p(draws: Floats, null: float) -> float:
    """Two-sided p of ``null`` from bootstrap draws of the effect: twice the share on the
    far side, counting the observed as one draw, so never 0 (percentile-interval duality:
    p < 0.05 exactly when the 95% percentile interval excludes ``null``, up to ties)."""
    below, above = float(np.sum(draws <= null)), float(np.sum(draws >= null))
    return min(1.0, 2 * (min(below, above) + 1) / (draws.size + 1))


def _quantile(values: Floats, counts: Floats, q: float) -> Floats:
    """The q-quantile of each row of counts (lower value at the crossing), vectorised."""
    cum = np.cumsum(counts, axis=-1)
    target = q * cum[..., -1:]
    idx = np.minimum((cum < target).sum(axis=-1), len(values) - 1)
    return values[idx]


def bootstrap_quantile_ratio(values: ArrayLike, counts_control: ArrayLike,
                             counts_treatment: ArrayLike, q: float = 0.95, *,
                             n_boot: int = 2000, seed: int = 0) -> UnpairedResult:
    """Ratio of the q-quantiles (treatment / control), e.g. of p95 latency, with a
    bootstrap interval and the p-value of "ratio = 1" from the same bootstrap draws: the
    verdict then follows the ratio's own interval, not a shift of the whole distribution."""
    v = np.asarray(values, dtype=np.float64)
    c, t = np.asarray(counts_control, np.float64), np.asarray(counts_treatment, np.float64)
    order = np.argsort(v, kind="stable")
    v, c, t = v[order], c[order], t[order]
    n_c, n_t = int(c.sum()), int(t.sum())
    name = f"p{round(q * 100)} ratio (bootstrap)"
    if n_c < 1 or n_t < 1:
        return _degenerate(name, n_c, n_t, relative=True)
    qc, qt = float(_quantile(v, c, q)), float(_quantile(v, t, q))
    p = low = high = NAN
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        bc = _quantile(v, rng.multinomial(n_c, c / n_c, size=n_boot).astype(float), q)
        bt = _quantile(v, rng.multinomial(n_t, t / n_t, size=n_boot).astype(float), q)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = bt / bc
        low, high = np.quantile(ratios, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        p = _bootstrap_p(np.log(ratios), 0.0) if (bc > 0).all() else NAN
    return UnpairedResult(name, n_c, n_t, qc, qt, qt / qc if qc else NAN, float(low),
                          float(high), p, relative=True)


def welch_from_moments(n_control: int, mean_control: float, sd_control: float,
                       n_treatment: int, mean_treatment: float, sd_treatment: float
                       ) -> UnpairedResult:
    """Welch's t test of two means from each group's n, mean and sd (scipy's
    ``ttest_ind_from_stats``), with the Welch–Satterthwaite interval of the difference."""
    from scipy.stats import t as student_t
    from scipy.stats import ttest_ind_from_stats

    name = "Welch t"
    if n_control < 2 or n_treatment < 2 or not all(
            math.isfinite(x) for x in (sd_control, sd_treatment)):
        return _degenerate(name, n_control, n_treatment, mean_control, mean_treatment)
    delta = mean_treatment - mean_control
    vc, vt = sd_control ** 2 / n_control, sd_treatment ** 2 / n_treatment
    if vc + vt == 0:
        return UnpairedResult(name, n_control, n_treatment, mean_control, mean_treatment,
                              delta, delta, delta, 1.0 if delta == 0 else 0.0)
    res = ttest_ind_from_stats(mean_treatment, sd_treatment, n_treatment, mean_control,
                               sd_control, n_control, equal_var=False)
    df = (vc + vt) ** 2 / (vc ** 2 / (n_control - 1) + vt ** 2 / (n_treatment - 1))
    half = float(student_t.ppf(0.5 + CONFIDENCE / 2, df)) * math.sqrt(vc + vt)
    return UnpairedResult(name, n_control, n_treatment, mean_control, mean_treatment, delta,
                          delta - half, delta + half, float(res.pvalue))
