"""Is the judge still agreeing with people? Weighted Cohen's kappa and Krippendorff's alpha
between the judge's score and human labels of the same traces.

- Cohen's kappa (statsmodels ``cohens_kappa``) with linear weights for a 1–5 scale, plain
  for pass/fail, and its asymptotic 95% interval. It needs categories: a continuous score
  has none, so its kappa is NaN.
- Krippendorff's alpha (the ``krippendorff`` package) at the metric's level of measurement
  (nominal for binary, ordinal, interval for continuous), with a percentile bootstrap
  interval over the labelled traces. Alpha depends only on how often each (judge, human)
  pair occurs, so traces with equal pairs are resampled as cells of that table.

Inputs are counts per (judge value, human value), as `evallib.queries.judge_human_counts`
returns them. Krippendorff's guide: alpha ≥ 0.8 reliable, ≥ 0.667 tentative; an interval
wholly below 0.667 is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from .intervals import CONFIDENCE

__all__ = ["ALPHA_THRESHOLD", "MIN_N", "Agreement", "agreement_from_counts",
           "agreement_table"]

ALPHA_THRESHOLD = 0.667
MIN_N = 20
NAN = math.nan
_LEVEL = {"binary": "nominal", "ordinal": "ordinal", "continuous": "interval"}


@dataclass(frozen=True)
class Agreement:
    """Judge vs human on n labelled (trace, label) pairs."""

    kind: str
    n: int
    raw: float  # share of pairs where both said the same
    kappa: float
    kappa_low: float
    kappa_high: float
    kappa_weights: str  # none | linear | "" (no kappa)
    alpha: float
    alpha_low: float
    alpha_high: float
    alpha_level: str
    status: str  # below | ok | unclear | too few (on alpha, like the correlation review)

    @property
    def flagged(self) -> bool:
        return self.status == "below"


def _kappa(table: np.ndarray, values: np.ndarray, kind: str) -> tuple[float, float, float, str]:
    from statsmodels.stats.inter_rater import cohens_kappa

    if kind == "continuous":
        return NAN, NAN, NAN, ""
    weights = "linear" if kind == "ordinal" else "none"
    try:
        res = cohens_kappa(table, weights=values if kind == "ordinal" else None,
                           wt="linear" if kind == "ordinal" else None)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return NAN, NAN, NAN, weights
    kappa = float(res.kappa)
    se = float(res.std_kappa)
    if not math.isfinite(kappa):
        return NAN, NAN, NAN, weights
    from scipy.stats import norm

    half = float(norm.ppf(0.5 + CONFIDENCE / 2)) * se if math.isfinite(se) else NAN
    return kappa, kappa - half, kappa + half, weights


def _alpha(table: np.ndarray, values: np.ndarray, level: str) -> float:
    """Krippendorff's alpha (the package's) of units each rated twice, from the judge ×
    human table of counts."""
    import krippendorff

    ji, hi = np.nonzero(table)
    k = table[ji, hi].astype(np.int64)
    units = np.repeat(np.arange(len(k)), k)
    if len(units) < 2:
        return NAN
    vc = np.zeros((len(units), len(values)))
    np.add.at(vc, (np.arange(len(units)), ji[units]), 1)
    np.add.at(vc, (np.arange(len(units)), hi[units]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        try:
            a = float(krippendorff.alpha(value_counts=vc, value_domain=values,
                                         level_of_measurement=level))
        except (ValueError, ZeroDivisionError):
            return NAN
    return a if math.isfinite(a) else NAN


def _alpha_tables(tables: np.ndarray, values: np.ndarray, level: str) -> np.ndarray:
    """The same alpha for many tables at once (B × V × V), for the bootstrap: each unit
    rated twice adds (a, b) and (b, a) to the coincidence matrix, so alpha is a function of
    the table. Written out because the package takes one reliability matrix per call
    (a thousand calls take seconds); tests check both agree."""
    o = tables + np.swapaxes(tables, 1, 2)  # coincidences
    n_v = o.sum(axis=2)  # B × V
    n = n_v.sum(axis=1)
    if level == "nominal":
        d2 = np.broadcast_to(1.0 - np.eye(len(values)), o.shape)
    elif level == "interval":
        d2 = np.broadcast_to((values[:, None] - values[None, :]) ** 2, o.shape)
    else:  # ordinal: (sum of n_g for g between c and k, minus half of n_c + n_k)^2
        cum = np.cumsum(n_v, axis=1)
        lo = np.minimum.outer(np.arange(len(values)), np.arange(len(values)))
        hi = np.maximum.outer(np.arange(len(values)), np.arange(len(values)))
        between = cum[:, hi] - cum[:, lo] + n_v[:, lo]
        d2 = (between - (n_v[:, :, None] + n_v[:, None, :]) / 2) ** 2
    observed = (o * d2).sum(axis=(1, 2))
    expected = np.einsum("bc,bk,bck->b", n_v, n_v, d2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (n - 1) * observed / expected


def agreement_from_counts(judge: ArrayLike, human: ArrayLike, counts: ArrayLike, kind: str,
                          *, n_boot: int = 1000, seed: int = 0,
                          threshold: float = ALPHA_THRESHOLD, min_n: int = MIN_N
                          ) -> Agreement:
    """Agreement of pairs given as (judge value, human value, how many)."""
    j = np.asarray(judge, np.float64)
    h = np.asarray(human, np.float64)
    w = np.asarray(counts, np.float64)
    ok = np.isfinite(j) & np.isfinite(h) & (w > 0)
    j, h, w = j[ok], h[ok], w[ok]
    n = int(w.sum())
    level = _LEVEL.get(kind, "interval")
    if n == 0:
        return Agreement(kind, 0, NAN, NAN, NAN, NAN, "", NAN, NAN, NAN, level, "too few")
    values = np.unique(np.concatenate([j, h]))
    ji, hi = np.searchsorted(values, j), np.searchsorted(values, h)
    table = np.zeros((len(values), len(values)))
    np.add.at(table, (ji, hi), w)
    raw = float(np.trace(table) / n)
    kappa, k_low, k_high, weights = _kappa(table, values, kind)
    alpha = _alpha(table, values, level)
    a_low = a_high = NAN
    if n >= 3 and n_boot > 0 and math.isfinite(alpha):
        rng = np.random.default_rng(seed)
        flat = table.ravel()
        draws = rng.multinomial(n, flat / n, size=n_boot).reshape(n_boot, *table.shape)
        boots = _alpha_tables(draws.astype(np.float64), values, level)
        boots = boots[np.isfinite(boots)]
        if boots.size >= n_boot // 2:
            a_low, a_high = (float(v) for v in np.quantile(
                boots, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]))
    if n < min_n or not math.isfinite(alpha):
        status = "too few"
    elif math.isfinite(a_high) and a_high < threshold:
        status = "below"
    elif math.isfinite(a_low) and a_low >= threshold:
        status = "ok"
    else:
        status = "unclear"
    return Agreement(kind, n, raw, kappa, k_low, k_high, weights, alpha, a_low, a_high,
                     level, status)


def agreement_table(counts: pl.DataFrame, by: Sequence[str] = ("month", "metric"),
                    n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """One `Agreement` per group of `evallib.queries.judge_human_counts` (``kind, judge,
    human, n`` per cell), as a frame: the group keys, kind, n, raw, kappa (+ interval,
    weights), alpha (+ interval, level), status."""
    rows = []
    for keys, cells in counts.group_by(list(by), maintain_order=True):
        a = agreement_from_counts(cells["judge"].to_numpy(), cells["human"].to_numpy(),
                                  cells["n"].to_numpy(), str(cells["kind"][0]),
                                  n_boot=n_boot, seed=seed)
        rows.append(dict(zip(by, keys, strict=True)) | asdict(a))
    schema = {k: counts.schema[k] for k in by} | {
        "kind": pl.String, "n": pl.Int64, "raw": pl.Float64, "kappa": pl.Float64,
        "kappa_low": pl.Float64, "kappa_high": pl.Float64, "kappa_weights": pl.String,
        "alpha": pl.Float64, "alpha_low": pl.Float64, "alpha_high": pl.Float64,
        "alpha_level": pl.String, "status": pl.String}
    return pl.DataFrame(rows, schema=schema).sort(list(by))
