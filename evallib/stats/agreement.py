"""Is the judge still agreeing with people? Weighted Cohen's kappa and Krippendorff's alpha
between the judge's score and human labels of the same traces.

- Cohen's kappa (statsmodels ``cohens_kappa``) with linear weights for a 1–5 scale, plain
  for pass/fail, and its asymptotic 95% interval, widened where that interval collapses:
  at perfect agreement its standard error is 0, so it claimed (1, 1) from any n. Kappa is
  1 - D_o/D_e (observed over chance disagreement, weights in [0, 1]); at D_o = 0 the lower
  bound is 1 - D_o⁺/D_e with D_o⁺ the Wilson upper bound of D_o (conservative for a mean
  of values in [0, 1]): 30 perfect pairs of a balanced pass/fail give [0.77, 1]. Every
  bound is clipped to [-1, 1] (the asymptotic one reached 1.06 on the demo). One category
  only, or no chance disagreement, is NaN, without numpy's "invalid value" warnings. A
  continuous score has no categories: NaN.
- Krippendorff's alpha at the metric's level of measurement (nominal for binary, ordinal,
  interval for continuous), with a percentile bootstrap interval over the labelled traces.
  Alpha depends only on how often each (judge, human) pair occurs, so traces with equal
  pairs are resampled as cells of that table. Computed from the table's non-empty cells
  (`_alpha_cells`; equal to the ``krippendorff`` package, the tests check), since a
  continuous score has as many values as labels. At perfect agreement every resample
  agrees too, so the lower bound comes from the Wilson bound of the disagreement instead
  (`_alpha_floor`); bounds are clipped to [-1, 1].

Inputs are counts per (judge value, human value), as `evallib.queries.judge_human_counts`
returns them. Krippendorff's guide: alpha ≥ 0.8 reliable, ≥ 0.667 tentative; an interval
wholly below 0.667 is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from .intervals import CONFIDENCE, wilson_interval

__all__ = ["ALPHA_THRESHOLD", "MIN_N", "Agreement", "agreement_from_counts",
           "agreement_table"]

ALPHA_THRESHOLD = 0.667
MIN_N = 20
NAN = math.nan
_LEVEL = {"binary": "nominal", "ordinal": "ordinal", "continuous": "interval"}
#: Bootstrap tables are drawn and scored at most this many cell counts at a time.
_CHUNK = 1 << 21
Floats = NDArray[np.float64]


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


def _kappa(ji: NDArray[np.int64], hi: NDArray[np.int64], cells: Floats, values: Floats,
           kind: str) -> tuple[float, float, float, str]:
    from statsmodels.stats.inter_rater import cohens_kappa

    if kind == "continuous":
        return NAN, NAN, NAN, ""
    weights = "linear" if kind == "ordinal" else "none"
    table = np.zeros((len(values), len(values)))  # categories: a few values
    table[ji, hi] = cells
    n = float(cells.sum())
    w = (np.abs(values[:, None] - values[None, :]) / max(float(np.ptp(values)), 1e-300)
         if kind == "ordinal" else 1.0 - np.eye(len(values)))
    observed = float((w * table).sum()) / n  # D_o: weighted disagreement, in [0, 1]
    expected = float(table.sum(1) @ w @ table.sum(0)) / n**2  # D_e, by chance
    if len(values) < 2 or not expected > 0:
        return NAN, NAN, NAN, weights
    with np.errstate(divide="ignore", invalid="ignore"):
        try:
            res = cohens_kappa(table, weights=values if kind == "ordinal" else None,
                               wt="linear" if kind == "ordinal" else None)
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return NAN, NAN, NAN, weights
    kappa, se = float(res.kappa), float(res.std_kappa)
    if not math.isfinite(kappa):
        return NAN, NAN, NAN, weights
    from scipy.stats import norm

    half = float(norm.ppf(0.5 + CONFIDENCE / 2)) * se if math.isfinite(se) else NAN
    low, high = kappa - half, kappa + half
    if observed == 0:  # the asymptotic interval collapses to (1, 1)
        _, d_high = wilson_interval(0.0, n)
        low = min(low, 1 - float(d_high[()]) / expected)
    return kappa, float(np.clip(low, -1, 1)), float(np.clip(high, -1, 1)), weights


def _value_totals(index: NDArray[np.int64], w: Floats, n_values: int) -> Floats:
    """How often each value was given on one side of tables ``w`` (B × cells): B × V."""
    order = np.argsort(index, kind="stable")
    given = index[order]
    starts = np.flatnonzero(np.r_[True, given[1:] != given[:-1]])
    out = np.zeros((w.shape[0], n_values))
    out[:, given[starts]] = np.add.reduceat(w[:, order], starts, axis=1)
    return out


def _alpha_cells(ji: NDArray[np.int64], hi: NDArray[np.int64], w: Floats, values: Floats,
                 level: str) -> Floats:
    """Krippendorff's alpha of tables given as cells (judge value ``values[ji]``, human
    value ``values[hi]``) with counts ``w`` (B × cells), each unit rated twice.

    Written out because the package cannot scale to continuous scores: it builds a units ×
    values × values array (300 labels of a continuous score: gigabytes) and takes one
    table per call. Here alpha = 1 - (n - 1)·observed/expected with observed = 2·Σ cells
    w·δ²(judge, human) and expected = Σ_c Σ_k n_c n_k δ²(c, k) = 2n·Σ_c n_c (m_c - m̄)²
    for δ² = (m_c - m_k)²: the interval metric on the values, and the ordinal metric on
    their cumulative midpoints m_c = Σ_{g<c} n_g + n_c/2 (the same expression). Memory is
    B × (cells + values), never values². Tests check it equals the package."""
    n_v = _value_totals(ji, w, len(values)) + _value_totals(hi, w, len(values))
    n = n_v.sum(axis=1)
    if level == "nominal":
        observed = 2 * w[:, ji != hi].sum(axis=1)
        expected = n * n - (n_v * n_v).sum(axis=1)
    else:
        m = (np.broadcast_to(values, n_v.shape) if level == "interval"
             else np.cumsum(n_v, axis=1) - n_v / 2)
        observed = 2 * (w * (m[:, ji] - m[:, hi]) ** 2).sum(axis=1)
        centred = m - (n_v * m).sum(axis=1, keepdims=True) / n[:, None]
        expected = 2 * n * (n_v * centred * centred).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (n - 1) * observed / expected


def _alpha_floor(ji: NDArray[np.int64], hi: NDArray[np.int64], w: Floats, values: Floats,
                 level: str) -> float:
    """At perfect agreement, where every bootstrap resample agrees perfectly too: alpha at
    the Wilson upper bound of the observed disagreement, scaled to [0, 1] by the largest
    possible δ² with the expected disagreement held. Alpha is linear in the observed
    disagreement, with slope (N - 1)·2n·largest/expected. NaN otherwise."""
    if (ji != hi).any():
        return NAN
    n = float(w.sum())
    n_v = _value_totals(ji, w[None], len(values))[0] + _value_totals(hi, w[None],
                                                                       len(values))[0]
    big_n = float(n_v.sum())
    if level == "nominal":
        largest, expected = 1.0, big_n * big_n - float(np.dot(n_v, n_v))
    else:
        m = values if level == "interval" else np.cumsum(n_v) - n_v / 2
        largest = float(np.ptp(m[n_v > 0])) ** 2
        centred = m - float(np.dot(n_v, m)) / big_n
        expected = 2 * big_n * float(np.dot(n_v, centred * centred))
    if not (largest > 0 and expected > 0):
        return NAN
    _, high = wilson_interval(0.0, n)
    return 1 - (big_n - 1) * 2 * n * largest / expected * float(high[()])


def _alpha_bootstrap(ji: NDArray[np.int64], hi: NDArray[np.int64], w: Floats, n: int,
                     values: Floats, level: str, n_boot: int, seed: int) -> Floats:
    """Alpha of ``n_boot`` resamples of the n labelled traces (a multinomial draw of the
    cells), drawn a chunk at a time so memory does not grow with n_boot."""
    rng = np.random.default_rng(seed)
    per = max(1, _CHUNK // len(w))
    return np.concatenate([
        _alpha_cells(ji, hi, rng.multinomial(n, w / n, size=min(per, n_boot - i))
                     .astype(np.float64), values, level)
        for i in range(0, n_boot, per)])


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
    # the (judge, human) table as its non-empty cells, row-major: a continuous score has as
    # many values as labels, and a dense values × values table (times n_boot) does not fit
    codes, ci = np.unique(np.searchsorted(values, j) * len(values) + np.searchsorted(values, h),
                          return_inverse=True)
    ji, hi = np.divmod(codes, len(values))
    # weighted, so float64 (numpy's stubs type every bincount as integers)
    cells = cast(Floats, np.bincount(ci, weights=w, minlength=len(codes)))
    raw = float(cells[ji == hi].sum() / n)
    kappa, k_low, k_high, weights = _kappa(ji, hi, cells, values, kind)
    alpha = float(_alpha_cells(ji, hi, cells[None], values, level)[0]) if n >= 2 else NAN
    # alpha lies in [-1, 1] except with a handful of labels; shown within its range
    alpha = float(np.clip(alpha, -1, 1)) if math.isfinite(alpha) else NAN
    a_low = a_high = NAN
    if n >= 3 and n_boot > 0 and math.isfinite(alpha):
        boots = _alpha_bootstrap(ji, hi, cells, n, values, level, n_boot, seed)
        boots = boots[np.isfinite(boots)]
        if boots.size >= n_boot // 2:
            a_low, a_high = (float(v) for v in np.quantile(
                boots, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]))
            floor = _alpha_floor(ji, hi, cells, values, level)
            a_low, a_high = (float(np.clip(v, -1, 1)) for v in (
                np.nanmin([a_low, floor]), np.nanmax([a_high, alpha])))
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
