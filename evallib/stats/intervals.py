"""Intervals for one run's means, as the dashboard shows them next to each metric.

A binary metric's pass rate gets a Wilson score interval (well behaved near 0 and 1 and for
small n, unlike the normal approximation); ordinal and continuous metrics get a Student t
interval for the mean. "Cannot be estimated" stays NaN (null in frames), never a made-up number.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

__all__ = ["CONFIDENCE", "mean_interval", "t_interval", "wilson_interval", "with_intervals"]

CONFIDENCE = 0.95

Interval = tuple[NDArray[np.float64], NDArray[np.float64]]


def _floats(x: ArrayLike) -> NDArray[np.float64]:
    return np.asarray(x, dtype=np.float64)


def wilson_interval(successes: ArrayLike, n: ArrayLike, confidence: float = CONFIDENCE
                    ) -> Interval:
    """Wilson score interval for ``successes`` out of ``n`` (element-wise; NaN where n = 0)."""
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.broadcast_arrays(_floats(successes), _floats(n))
    low, high = np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    ok = n > 0
    if ok.any():
        low[ok], high[ok] = proportion_confint(k[ok], n[ok], alpha=1 - confidence,
                                               method="wilson")
    return low, high


def t_interval(mean: ArrayLike, sd: ArrayLike, n: ArrayLike, confidence: float = CONFIDENCE
               ) -> Interval:
    """Student t interval for a mean from its sample sd and n (NaN where n < 2 or sd unknown)."""
    from scipy.stats import t as student_t

    m, s, n = np.broadcast_arrays(_floats(mean), _floats(sd), _floats(n))
    low, high = np.full(m.shape, np.nan), np.full(m.shape, np.nan)
    ok = (n >= 2) & np.isfinite(s) & np.isfinite(m)
    if ok.any():
        half = student_t.ppf(0.5 + confidence / 2, df=n[ok] - 1) * s[ok] / np.sqrt(n[ok])
        low[ok], high[ok] = m[ok] - half, m[ok] + half
    return low, high


def mean_interval(kind: ArrayLike, n: ArrayLike, mean: ArrayLike, sd: ArrayLike,
                  confidence: float = CONFIDENCE) -> Interval:
    """Interval for each row's mean, by metric kind: Wilson for binary, t otherwise."""
    kinds = np.asarray(kind, dtype=object)
    n_, m, s = _floats(n), _floats(mean), _floats(sd)
    low, high = t_interval(m, s, n_, confidence)
    binary = kinds == "binary"
    if binary.any():
        successes = np.rint(np.nan_to_num(m[binary]) * n_[binary])
        low[binary], high[binary] = wilson_interval(successes, n_[binary], confidence)
    return low, high


def with_intervals(df: pl.DataFrame, *, kind: str = "kind", n: str = "n", mean: str = "mean",
                   sd: str = "sd", confidence: float = CONFIDENCE) -> pl.DataFrame:
    """``df`` with ``ci_low`` and ``ci_high`` for the mean of each row (null when undefined).

    ``kind``, ``n``, ``mean``, ``sd`` name the columns holding the metric kind, the number of
    scored values, their mean and sample standard deviation.
    """
    low, high = mean_interval(df[kind].to_numpy(), df[n].to_numpy(), df[mean].to_numpy(),
                              df[sd].to_numpy(), confidence)
    return df.with_columns(
        pl.Series("ci_low", low, dtype=pl.Float64, nan_to_null=True),
        pl.Series("ci_high", high, dtype=pl.Float64, nan_to_null=True),
    )
