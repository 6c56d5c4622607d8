"""What a paired comparison of pass rates can and cannot see, before anyone reads a p-value.

Normal approximation for paired binary scores: a drop δ from base rate p on n pairs with pair
correlation ρ is detected with the given power when δ·√n = (z_{1−α/2} + z_power)·sd(d), where
var(d) = p1(1−p1) + p2(1−p2) − 2ρ·√(p1(1−p1)·p2(1−p2)), p1 = p, p2 = p − δ (two-sided test),
ρ kept within the correlations two such rates allow.
Hand-written: statsmodels' power classes take a fixed effect size, but here the spread of the
differences itself depends on the drop. Against the simulated power of `paired_test`
(McNemar mid-p, base rate 0.8, ρ = 0.5) the formula's 80% comes out at 78–80% for n = 30 to
1,000 (tests/properties/test_stats_calibration.py checks n = 400), but 71% at n = 20:
optimistic below 30.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["min_detectable_drop", "n_needed", "power_sentence"]


def min_detectable_drop(n: int, base_rate: float, pair_correlation: float = 0.5,
                        alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest drop in a pass rate (as a fraction, 0.061 = 6.1 points) that a paired test on
    ``n`` cases detects with ``power``; inf when even a drop to zero is out of reach."""
    from scipy.optimize import brentq

    _check(base_rate, pair_correlation, alpha, power)
    if n < 2:
        return math.inf
    z = _z(alpha, power)

    def margin(drop: float) -> float:  # > 0: the drop is detectable
        return drop * math.sqrt(n) - z * _sd_diff(base_rate, base_rate - drop, pair_correlation)

    # The margin need not be monotone for tiny n; take the first crossing on a fine grid. A
    # drop of 0 is never "detectable" (at a base rate of 1 the margin there is 0, not < 0).
    grid = np.linspace(0.0, base_rate, 201)
    grid[0] = min(1e-12, grid[1] / 2)
    above = np.flatnonzero([margin(x) > 0 for x in grid])
    if above.size == 0:
        return math.inf
    if above[0] == 0:
        return float(grid[0])
    return float(brentq(margin, grid[above[0] - 1], grid[above[0]], xtol=1e-12))


def n_needed(drop: float, base_rate: float, pair_correlation: float = 0.5,
             alpha: float = 0.05, power: float = 0.8) -> int:
    """Cases a paired test needs to detect a drop of ``drop`` (a fraction) from ``base_rate``."""
    _check(base_rate, pair_correlation, alpha, power)
    if not 0 < drop <= base_rate:
        raise ValueError(f"drop must be in (0, base_rate], not {drop}")
    sd = _sd_diff(base_rate, base_rate - drop, pair_correlation)
    return max(2, math.ceil((_z(alpha, power) * sd / drop) ** 2 - 1e-9))


def power_sentence(n: int, base_rate: float, pair_correlation: float = 0.5,
                   alpha: float = 0.05, power: float = 0.8) -> str:
    """The power line a comparison shows under its verdict, so "not significant" is not read
    as "no regression"."""
    drop = min_detectable_drop(n, base_rate, pair_correlation, alpha, power)
    terms = f"({power:.0%} power, α = {alpha:g})"
    if math.isinf(drop):
        return f"with n = {n}, no drop in the pass rate can be detected {terms}"
    return f"with n = {n}, drops smaller than {100 * drop:.1f} points cannot be detected {terms}"


def _sd_diff(p1: float, p2: float, rho: float) -> float:
    """sd of a paired difference of two pass/fail outcomes with rates p1, p2 and pair
    correlation rho, rho first brought within what the two rates allow (Fréchet bounds:
    a pass rate of 0.99 cannot correlate 0.5 with one of 0.79; at the upper bound every
    discordant pair goes one way and var = δ(1 - δ))."""
    v1, v2 = p1 * (1 - p1), p2 * (1 - p2)
    if v1 > 0 and v2 > 0:
        lo, hi = sorted((p1, p2))
        upper = math.sqrt(lo * (1 - hi) / (hi * (1 - lo)))
        lower = -math.sqrt(min(p1 * p2 / ((1 - p1) * (1 - p2)),
                               (1 - p1) * (1 - p2) / (p1 * p2)))
        rho = min(max(rho, lower), upper)
    return math.sqrt(max(0.0, v1 + v2 - 2 * rho * math.sqrt(v1 * v2)))


def _z(alpha: float, power: float) -> float:
    from scipy.special import ndtri  # the standard normal quantile

    return float(ndtri(1 - alpha / 2) + ndtri(power))


def _check(base_rate: float, pair_correlation: float, alpha: float, power: float) -> None:
    if not 0 < base_rate <= 1:
        raise ValueError(f"base_rate must be in (0, 1], not {base_rate}")
    if not -1 <= pair_correlation <= 1:
        raise ValueError(f"pair_correlation must be in [-1, 1], not {pair_correlation}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must be in (0, 1), not {alpha} and {power}")
