"""How large is a paired difference, and does it lie beyond a margin?

Each estimator gives the 95% interval of a difference *and* a one-sided test of it against
any margin, both from one statistic, so "the interval lies beyond the margin" and "the test
rejects at α/2" never disagree. `paired_test` reads its interval from here; the gate tests a
`max_drop` threshold with the same `Inference`.

- pass rates: Tango's score interval for the difference of paired proportions (Tango 1998,
  Stat Med 17:891): the score statistic with the restricted maximum likelihood estimate of
  the discordant cells, inverted. Never zero-width at finite n (30 pairs with no discordant
  pair: ±0.114); coverage 0.940–1.00, exact over every outcome, at n = 30 and 400, base
  rates 0.5–0.99, drops of 0–2 points, pair correlations 0.5 and 0.85
  (tests/properties/test_stats_calibration.py). statsmodels 0.15 has no paired interval (its
  `confint_proportions_2indep` is for independent groups), so it is written here.
- means: Student t with Hall's (1992, JRSS B 54:221) monotone cubic transformation, which
  removes the skewness term of the t statistic. With a few large changes among many small
  ones (an eval where the candidate breaks a tenth of the cases) the plain t interval at
  n = 30 covers 0.87 and misses on one side only; this one covers 0.935 (2,000
  replications, tests/properties/test_stats_calibration.py).
- clustered means: CR2 (Bell–McCaffrey) standard error with their Satterthwaite degrees of
  freedom, closed form for a mean (see `cr2_mean`).
- no spread at all (every difference, or every cluster's mean difference, the same): no
  standard error exists, so the exact sign-flip (permutation) test over the units, which
  for identical units has the closed form p = 2^-G per side.

Hand-written where scipy/statsmodels have no such function (Tango, Hall, CR2 for a mean);
the distributions are scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .intervals import CONFIDENCE

__all__ = ["Inference", "cr2_mean", "no_spread", "skew_corrected_t", "tango",
           "tango_interval", "tango_z"]

Floats = NDArray[np.float64]
PFunc = Callable[[float], float]


@dataclass(frozen=True)
class Inference:
    """A difference's estimate, its 95% interval, and one-sided p-values against a margin.

    ``p_below(m)`` tests H0: delta ≥ m (small when the difference is surely below m);
    ``p_above(m)`` tests H0: delta ≤ m. The interval is {m: both ≥ (1 - CONFIDENCE)/2}.
    """

    estimate: float
    low: float
    high: float
    method: str
    p_below: PFunc
    p_above: PFunc

    def p_two_sided(self, margin: float = 0.0) -> float:
        return min(1.0, 2 * min(self.p_below(margin), self.p_above(margin)))


# --- pass rates: Tango's score interval ---------------------------------------------------


def tango_z(regressed: ArrayLike, improved: ArrayLike, n: ArrayLike, delta0: ArrayLike
            ) -> Floats:
    """Tango's score statistic for H0: p(candidate) - p(baseline) = delta0 (element-wise).

    ``regressed`` pairs passed in the baseline only, ``improved`` in the candidate only. The
    restricted MLE of the regressed cell is the positive root of 2n·q² - W·q - r·d(1-d) = 0
    with W = r + i - d(2n - i + r) (derived from the multinomial likelihood; Tango's eq. 3);
    z = (i - r - n·d) / sqrt(n(2q + d(1 - d))), decreasing in d.
    """
    r, i, n, d = (np.asarray(x, np.float64) for x in np.broadcast_arrays(
        regressed, improved, n, delta0))
    w = r + i - d * (2 * n - i + r)
    q = (w + np.sqrt(np.maximum(w * w + 8 * n * r * d * (1 - d), 0.0))) / (4 * n)
    var = n * (2 * q + d * (1 - d))
    num = i - r - n * d
    with np.errstate(divide="ignore", invalid="ignore"):
        z = num / np.sqrt(var)
    # var = 0 only at d = 0 without discordant pairs or at d = ±1: 0, or ±inf beyond
    return np.where(var > 0, z, np.where(num == 0, 0.0, np.copysign(np.inf, num)))


def tango_interval(regressed: ArrayLike, improved: ArrayLike, n: ArrayLike,
                   confidence: float = CONFIDENCE) -> tuple[Floats, Floats]:
    """Tango's score interval of p(candidate) - p(baseline), element-wise (vectorised
    bisection of the monotone statistic to 1e-12: simulations call it on arrays)."""
    from scipy.special import ndtri

    r, i, n = (np.asarray(x, np.float64) for x in np.broadcast_arrays(regressed, improved, n))
    z = float(ndtri(0.5 + confidence / 2))
    est = np.where(n > 0, (i - r) / np.where(n > 0, n, 1), 0.0)
    lo = [np.full(est.shape, -1.0), est.copy()]  # the lower bound lies in [lo[0], lo[1]]
    hi = [est.copy(), np.full(est.shape, 1.0)]
    for _ in range(42):  # 2^-42 of a width-2 bracket < 1e-12
        m = (lo[0] + lo[1]) / 2
        beyond = tango_z(r, i, n, m) > z  # m still below the lower bound
        lo = [np.where(beyond, m, lo[0]), np.where(beyond, lo[1], m)]
        m = (hi[0] + hi[1]) / 2
        beyond = tango_z(r, i, n, m) < -z  # m already above the upper bound
        hi = [np.where(beyond, hi[0], m), np.where(beyond, m, hi[1])]
    low, high = (lo[0] + lo[1]) / 2, (hi[0] + hi[1]) / 2
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def tango(regressed: int, improved: int, n: int) -> Inference:
    """`Inference` of a paired difference of pass rates from its discordant counts (one
    table: scalar root finding, ~50 µs, where the vectorised bisection takes ~1 ms)."""
    from scipy.optimize import brentq
    from scipy.special import ndtr, ndtri

    z = float(ndtri(0.5 + CONFIDENCE / 2))
    est = (improved - regressed) / n

    def score(d: float) -> float:
        return _tango_z1(regressed, improved, n, d)

    low = -1.0 if score(-1.0) <= z else brentq(lambda d: score(d) - z, -1.0, est,
                                                xtol=1e-12)
    high = 1.0 if score(1.0) >= -z else brentq(lambda d: score(d) + z, est, 1.0,
                                                xtol=1e-12)
    return Inference(est, low, high, "Tango score interval",
                     lambda m: float(ndtr(score(m))), lambda m: float(ndtr(-score(m))))


def _tango_z1(r: int, i: int, n: int, d: float) -> float:
    """`tango_z` for one table, in plain floats."""
    w = r + i - d * (2 * n - i + r)
    q = (w + math.sqrt(max(w * w + 8 * n * r * d * (1 - d), 0.0))) / (4 * n)
    var = n * (2 * q + d * (1 - d))
    num = i - r - n * d
    if var > 0:
        return num / math.sqrt(var)
    return 0.0 if num == 0 else math.copysign(math.inf, num)


# --- means: t with Hall's skewness correction ---------------------------------------------


def skew_corrected_t(diff: Floats) -> Inference:
    """The mean of ``diff`` with Hall's transformation of its t statistic.

    T(m) = (mean - m)/se; Hall's g(T) = T + aT² + a²T³/3 + γ/(6√n) with a = γ/(3√n) and γ
    the sample skewness; g is increasing, g(T) is referred to t(n - 1), and g inverts in
    closed form: T = ((1 + 3a(y - γ/(6√n)))^(1/3) - 1)/a. With γ = 0 it is the paired t.
    ``diff`` must have n ≥ 2 and a positive spread (see `no_spread` otherwise).
    """
    from scipy.special import stdtr, stdtrit

    n = diff.size
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    se = sd / math.sqrt(n)
    gamma = float(np.mean((diff - mean) ** 3)) / sd**3
    a, shift, df = gamma / (3 * math.sqrt(n)), gamma / (6 * math.sqrt(n)), n - 1

    def g(t: float) -> float:
        return t + a * t * t + a * a * t**3 / 3 + shift

    def g_inverse(y: float) -> float:
        if abs(a) < 1e-12:
            return y - shift
        return (np.cbrt(1 + 3 * a * (y - shift)) - 1) / a

    q = float(stdtrit(df, 0.5 + CONFIDENCE / 2))
    return Inference(mean, mean - se * g_inverse(q), mean - se * g_inverse(-q),
                     "t (skew-corrected)",
                     lambda m: float(stdtr(df, g((mean - m) / se))),
                     lambda m: float(stdtr(df, -g((mean - m) / se))))


# --- clustered means: CR2 with Bell–McCaffrey degrees of freedom --------------------------


def cr2_mean(diff: Floats, codes: NDArray[np.intp]) -> Inference | None:
    """The mean of ``diff`` with a cluster-robust (CR2) standard error on Bell–McCaffrey
    degrees of freedom; None when every cluster has the same mean (no standard error).

    For a mean, CR2's adjustment (I - H_gg)^(-1/2) scales cluster g's residual sum S_g by
    1/sqrt(1 - n_g/N), so var = Σ S_g² / ((1 - n_g/N)·N²). Its degrees of freedom are
    Satterthwaite's for that quadratic form: tr(CK)²/tr(CKCK) with K = diag(n) - nnᵀ/N
    (the covariance of the S_g under independent errors) and C = diag(1/((1 - n_g/N)N²)).
    Equal sizes give G - 1 and the CR1 variance; a dominant cluster gives fewer degrees of
    freedom, which is what keeps the A/A rate near alpha (CR1 on G - 1 reaches 0.3–0.5).
    """
    from scipy.special import stdtr, stdtrit

    n_g = np.bincount(codes).astype(np.float64)
    big_n = float(diff.size)
    mean = float(diff.mean())
    sums = np.bincount(codes, weights=diff - mean, minlength=n_g.size)
    if _same(sums / n_g + mean, mean):
        return None
    c = 1.0 / ((1.0 - n_g / big_n) * big_n**2)
    se = math.sqrt(float(np.sum(c * sums * sums)))
    # tr(CK) and tr(CKCK) for K = diag(n) - nn'/N, without forming G × G matrices
    cn = c * n_g
    tr_ck = float(cn.sum() - np.dot(cn, n_g) / big_n)
    tr_ckck = float(np.dot(cn, cn) - 2 * np.dot(cn * cn, n_g) / big_n
                    + np.dot(cn, n_g) ** 2 / big_n**2)
    df = tr_ck**2 / tr_ckck
    half = float(stdtrit(df, 0.5 + CONFIDENCE / 2)) * se
    return Inference(mean, mean - half, mean + half, "CR2, Bell–McCaffrey df",
                     lambda m: float(stdtr(df, (mean - m) / se)),
                     lambda m: float(stdtr(df, -(mean - m) / se)))


# --- no spread: the exact sign-flip test --------------------------------------------------


def no_spread(mean: float, units: int) -> Inference:
    """Every one of ``units`` independent units (cases, or clusters) moved by ``mean``.

    Under "no difference" each unit's difference is as likely negated (the runs are
    exchangeable), and of the 2^G sign patterns only the observed one is as extreme, so
    each one-sided p is 2^-G against any margin on the other side of the mean (1 on the
    same side). There is no spread to give an interval: it is NaN.
    """
    tail = 0.5**units

    def below(m: float) -> float:  # H0: delta >= m
        return tail if mean < m else 1.0

    def above(m: float) -> float:  # H0: delta <= m
        return tail if mean > m else 1.0

    return Inference(mean, math.nan, math.nan, "sign-flip (exact)", below, above)


def _same(values: Floats, centre: float) -> bool:
    """All equal to ``centre`` up to float noise (sums of 0.1s are not exactly 0.3)."""
    scale = max(1.0, float(np.max(np.abs(values))), abs(centre))
    return float(np.max(np.abs(values - centre))) <= 1e-9 * scale


def constant(diff: Floats) -> bool:
    """Every difference the same, up to float noise."""
    return _same(diff, float(diff.mean()))
