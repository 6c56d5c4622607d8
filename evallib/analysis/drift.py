"""Has production moved? A window of days against reference days, per feature: input and
output length, each stratum's mix, each online score's distribution.

A feature is flagged only when a test *and* an effect size agree that it moved:

- the test fits its type: chi-square on categories (scipy ``chi2_contingency``), or
  two-sample Kolmogorov–Smirnov for a quantity, at p < `P_MAX`. With thousands of traces
  it finds any difference, so it is necessary, never sufficient;
- the population stability index (PSI) with the usual bands (< 0.1 stable, 0.1–0.25
  moderate, ≥ 0.25 major) over ten bins holding a tenth of the reference each, or over
  each value when a quantity takes few (`FEW_VALUES`) values;
- for a quantity, also a practical size in its own units, the typical change (the
  Wasserstein-1 distance, the mean gap between the two quantile functions): on the log
  scale for lengths, so ×1.2 means a fifth longer, and in reference standard deviations
  for scores (`EFFECT`). A whole-mass move between neighbouring values of a feature with a
  handful of them gives PSI in the thousands of percent while nothing practical moved:
  hidden traffic whose inputs went from 6 to 7 characters read "major, PSI 7.31".

``band`` is the PSI band capped by the practical size's band; ``flagged`` needs band
moderate or major and the test. Inputs are counts per value (or per fine bin) and period,
as `evallib.queries.online_drift_counts` returns them: lengths in 2%-wide log bins labelled
by their lower edge rounded to 0.1 (`online_rollups`), which `_whole_lengths` turns back
into the smallest whole length each bin holds (6.8 is 7 characters). The KS statistic is
the largest gap between the two cumulative shares at the fine bins' edges: exact when each
fine bin holds one value, otherwise a slight underestimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["BANDS", "EFFECT", "FEW_VALUES", "MIN_N", "P_MAX", "DriftResult", "band",
           "categorical_drift", "continuous_drift", "drift_report", "psi"]

BANDS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))
MIN_N = 30  # traces (or scores) per period below which nothing is said
P_MAX = 0.05  # the test's p must be below this for a flag
FEW_VALUES = 20  # a quantity with at most this many values gets a PSI bin per value
#: the typical change (Wasserstein-1) where a quantity's move becomes moderate, and major:
#: lengths on the log scale (×1.2, ×1.5), scores in reference standard deviations
EFFECT = {"log": (math.log(1.2), math.log(1.5)), "sd": (0.1, 0.25)}
_EPS = 1e-4  # share given to an empty bin, so PSI stays finite
_LOG_BINS = 50  # online_rollups' length bins: floor(ln(1 + length) · 50)
_ORDER = ("stable", "moderate", "major")


@dataclass(frozen=True)
class DriftResult:
    """One feature, window against reference. ``bins`` are (label, reference share, window
    share) for a chart; ``moved`` says in words what moved most."""

    feature: str
    kind: str  # categorical | continuous
    n_reference: int
    n_window: int
    psi: float
    band: str  # stable | moderate | major | too few: PSI's, capped by the practical size
    test: str
    statistic: float
    p_value: float
    moved: str
    bins: tuple[tuple[str, float, float], ...] = ()
    effect: float = math.nan  # a quantity's typical change (log scale, or in sds)
    psi_band: str = ""  # PSI's own band

    @property
    def flagged(self) -> bool:
        """Moved: the band is moderate or major and the test agrees (p < `P_MAX`)."""
        return self.band in ("moderate", "major") and self.p_value < P_MAX


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
                       p, moved, bins, psi_band=band(value))


def _median(x: np.ndarray, shares: np.ndarray) -> float:
    return float(x[min(int(np.searchsorted(np.cumsum(shares), 0.5)), len(x) - 1)])


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _whole_lengths(x: np.ndarray) -> np.ndarray:
    """The smallest whole length in each of online_rollups' log bins, from the bin's label
    (its lower edge exp(k/50) - 1, rounded to 0.1): of the bins near the label, the one
    whose edge rounds to it and that holds a whole number (below 5, several bins share a
    label but only one holds a length)."""
    x = np.asarray(x, np.float64)
    guess = np.round(_LOG_BINS * np.log1p(x))
    out = np.full(x.shape, np.nan)
    for offset in (0, -1, 1, -2, 2):
        k = guess + offset
        edge, upper = np.expm1(k / _LOG_BINS), np.expm1((k + 1) / _LOG_BINS)
        whole = np.ceil(edge - 1e-9)
        ok = np.isnan(out) & (np.round(edge, 1) == x) & (whole < upper)
        out[ok] = whole[ok]
    return np.where(np.isnan(out), np.ceil(x - 1e-9), out)


def _typical_change(t: np.ndarray, rs: np.ndarray, ws: np.ndarray) -> float:
    """Wasserstein-1 distance of two distributions over sorted support ``t``: the area
    between their CDFs (scipy's ``wasserstein_distance`` with these weights, which the
    tests check)."""
    gaps = np.abs(np.cumsum(rs) - np.cumsum(ws))[:-1]
    return float(np.dot(gaps, np.diff(t)))


def _effect_band(effect: float, scale: str) -> str:
    moderate, major = EFFECT[scale]
    return "major" if effect >= major else "moderate" if effect >= moderate else "stable"


def continuous_drift(feature: str, x: np.ndarray, reference: np.ndarray, window: np.ndarray,
                     n_bins: int = 10, scale: str = "sd") -> DriftResult:
    """PSI (over ``n_bins`` reference-quantile bins, or each value when there are at most
    `FEW_VALUES`), two-sample KS and the typical change, from counts per fine bin (``x``:
    each fine bin's lower edge). ``scale="log"`` for lengths (``x`` the rollup's log-bin
    labels: whole lengths, typical change on ln(1 + length)), "sd" for scores."""
    from scipy.stats import kstwo

    order = np.argsort(np.asarray(x, np.float64), kind="stable")
    x = np.asarray(x, np.float64)[order]
    r = np.asarray(reference, np.float64)[order]
    w = np.asarray(window, np.float64)[order]
    nr, nw = int(r.sum()), int(w.sum())
    if nr < MIN_N or nw < MIN_N:
        return DriftResult(feature, "continuous", nr, nw, math.nan, "too few", "KS", math.nan,
                           1.0, "not enough traces")
    if scale == "log":
        x = _whole_lengths(x)
    rs, ws = r / nr, w / nw
    if len(x) <= FEW_VALUES:  # few values: a bin each (deciles would straddle them)
        group = np.arange(len(x))
    else:  # fine bin i joins the reference decile its midpoint share falls in
        mid = np.cumsum(rs) - rs / 2
        group = np.minimum((mid * n_bins).astype(int), n_bins - 1)
    used = np.unique(group)
    rg = np.array([r[group == g].sum() for g in used])
    wg = np.array([w[group == g].sum() for g in used])
    value = psi(rg, wg)
    d = float(np.max(np.abs(np.cumsum(rs) - np.cumsum(ws))))
    en = nr * nw / (nr + nw)
    p = float(kstwo.sf(d, np.round(en)))
    t = np.log1p(x) if scale == "log" else x
    effect = _typical_change(t, rs, ws)
    if scale == "sd":
        spread = math.sqrt(float(np.dot(rs, (t - np.dot(rs, t)) ** 2)))
        effect = effect / spread if spread > 0 else (0.0 if effect == 0 else math.inf)
    psi_band = band(value)
    capped = min(psi_band, _effect_band(effect, scale), key=_ORDER.index)
    mr, mw = _median(x, rs), _median(x, ws)
    size = (f"typical change ×{math.exp(effect):.2f}" if scale == "log"
            else f"typical change {effect:.2f} sd")
    moved = f"median {_fmt(mr)} → {_fmt(mw)} ({size})"
    bins = tuple((f"≥ {_fmt(x[group == g][0])}", float(rgi / nr), float(wgi / nw))
                 for g, rgi, wgi in zip(used, rg, wg, strict=True))
    return DriftResult(feature, "continuous", nr, nw, value, capped, "KS", d, p, moved,
                       bins, effect, psi_band)


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
            scale = "log" if "length" in str(feature) else "sd"
            out.append(continuous_drift(str(feature), wide[key].to_numpy(), ref, win,
                                        scale=scale))
    return sorted(out, key=lambda d: (not math.isfinite(d.psi), -(d.psi if
                                                                   math.isfinite(d.psi) else 0)))
