"""Has production moved? A window of days against reference days, per feature: input and
output length, each stratum's mix, each online score's distribution.

Each feature gets the population stability index (PSI) with the usual effect-size bands
(< 0.1 stable, 0.1–0.25 moderate, ≥ 0.25 major) and a test that fits its type: chi-square
on the categories (scipy ``chi2_contingency``), or two-sample Kolmogorov–Smirnov for a
continuous quantity. With thousands of traces a test finds any difference "significant",
so the band, an effect size, decides what is flagged; the p-value says whether a moderate
band could be noise.

Inputs are counts per value (or per fine bin) and period, as
`evallib.queries.online_drift_counts` returns them. A continuous feature's PSI uses ten bins
holding a tenth of the reference each (built from the fine bins); its KS statistic is the
largest gap between the two cumulative shares at the fine bins' edges, which is the exact
statistic when each fine bin holds one value and otherwise a slight underestimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["BANDS", "MIN_N", "DriftResult", "band", "categorical_drift", "continuous_drift",
           "drift_report", "psi"]

BANDS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))
MIN_N = 30  # traces (or scores) per period below which nothing is said
_EPS = 1e-4  # share given to an empty bin, so PSI stays finite


@dataclass(frozen=True)
class DriftResult:
    """One feature, window against reference. ``bins`` are (label, reference share, window
    share) for a chart; ``moved`` says in words what moved most."""

    feature: str
    kind: str  # categorical | continuous
    n_reference: int
    n_window: int
    psi: float
    band: str  # stable | moderate | major | too few
    test: str
    statistic: float
    p_value: float
    moved: str
    bins: tuple[tuple[str, float, float], ...] = ()

    @property
    def flagged(self) -> bool:
        return self.band in ("moderate", "major")


def band(value: float) -> str:
    if not math.isfinite(value):
        return "too few"
    return next(name for upper, name in BANDS if value < upper)


def psi(reference: np.ndarray, window: np.ndarray) -> float:
    """PSI of two count vectors over the same bins: sum of (w - r) · ln(w / r) of shares."""
    r = np.asarray(reference, np.float64)
    w = np.asarray(window, np.float64)
    if r.sum() <= 0 or w.sum() <= 0:
        return math.nan
    r = np.maximum(r / r.sum(), _EPS)
    w = np.maximum(w / w.sum(), _EPS)
    return float(np.sum((w - r) * np.log(w / r)))


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 or x == 0 else f"{x:.1%}"


def categorical_drift(feature: str, labels: list[str], reference: np.ndarray,
                      window: np.ndarray) -> DriftResult:
    """PSI and chi-square over categories (labels aligned with the two count vectors)."""
    from scipy.stats import chi2_contingency

    r, w = np.asarray(reference, np.float64), np.asarray(window, np.float64)
    nr, nw = int(r.sum()), int(w.sum())
    if nr < MIN_N or nw < MIN_N:
        return DriftResult(feature, "categorical", nr, nw, math.nan, "too few", "chi-square",
                           math.nan, 1.0, "not enough traces")
    rs, ws = r / nr, w / nw
    value = psi(r, w)
    keep = (r + w) > 0
    stat, p = math.nan, 1.0
    if keep.sum() >= 2:
        res = chi2_contingency(np.stack([r[keep], w[keep]]))
        stat, p = float(res.statistic), float(res.pvalue)
    i = int(np.argmax(np.abs(ws - rs)))
    moved = f"{labels[i]}: {_pct(rs[i])} → {_pct(ws[i])}"
    bins = tuple((labels[k], float(rs[k]), float(ws[k])) for k in range(len(labels)))
    return DriftResult(feature, "categorical", nr, nw, value, band(value), "chi-square", stat,
                       p, moved, bins)


def _median(x: np.ndarray, shares: np.ndarray) -> float:
    return float(x[min(int(np.searchsorted(np.cumsum(shares), 0.5)), len(x) - 1)])


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def continuous_drift(feature: str, x: np.ndarray, reference: np.ndarray, window: np.ndarray,
                     n_bins: int = 10) -> DriftResult:
    """PSI over ``n_bins`` reference-quantile bins and two-sample KS, from counts per fine
    bin (``x``: each fine bin's lower edge)."""
    from scipy.stats import kstwo

    order = np.argsort(np.asarray(x, np.float64), kind="stable")
    x = np.asarray(x, np.float64)[order]
    r = np.asarray(reference, np.float64)[order]
    w = np.asarray(window, np.float64)[order]
    nr, nw = int(r.sum()), int(w.sum())
    if nr < MIN_N or nw < MIN_N:
        return DriftResult(feature, "continuous", nr, nw, math.nan, "too few", "KS", math.nan,
                           1.0, "not enough traces")
    rs, ws = r / nr, w / nw
    # Fine bin i joins the group of the reference decile its midpoint share falls in.
    mid = np.cumsum(rs) - rs / 2
    group = np.minimum((mid * n_bins).astype(int), n_bins - 1)
    used = np.unique(group)
    rg = np.array([r[group == g].sum() for g in used])
    wg = np.array([w[group == g].sum() for g in used])
    value = psi(rg, wg)
    d = float(np.max(np.abs(np.cumsum(rs) - np.cumsum(ws))))
    en = nr * nw / (nr + nw)
    p = float(kstwo.sf(d, np.round(en)))
    mr, mw = _median(x, rs), _median(x, ws)
    moved = f"median {_fmt(mr)} → {_fmt(mw)}"
    bins = tuple((f"≥ {_fmt(x[group == g][0])}", float(rgi / nr), float(wgi / nw))
                 for g, rgi, wgi in zip(used, rg, wg, strict=True))
    return DriftResult(feature, "continuous", nr, nw, value, band(value), "KS", d, p, moved,
                       bins)


def drift_report(counts: pl.DataFrame) -> list[DriftResult]:
    """Every feature of `queries.online_drift_counts`, largest PSI first (features with too
    few traces last)."""
    out = []
    for (feature, kind), rows in counts.group_by(["feature", "kind"], maintain_order=True):
        key = "value" if kind == "categorical" else "x"
        wide = (rows.pivot(on="period", index=key, values="n", aggregate_function="sum")
                .fill_null(0))
        for period in ("reference", "window"):
            if period not in wide.columns:
                wide = wide.with_columns(pl.lit(0).alias(period))
        wide = wide.drop_nulls(key).sort(key)
        ref, win = wide["reference"].to_numpy(), wide["window"].to_numpy()
        if kind == "categorical":
            out.append(categorical_drift(str(feature), [str(v) for v in wide[key]], ref, win))
        else:
            out.append(continuous_drift(str(feature), wide[key].to_numpy(), ref, win))
    return sorted(out, key=lambda d: (not math.isfinite(d.psi), -(d.psi if
                                                                   math.isfinite(d.psi) else 0)))
