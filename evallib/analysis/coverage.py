"""Does the golden set look like production? Its strata mix beside the traffic's, and each
offline metric re-weighted to the traffic (post-stratification).

A golden set over-samples what is hard or risky, so its plain mean answers "how good are we
on the golden set", not "how good are we for our users". Post-stratification answers the
second: the mean of each stratum (a value of a key, or a pair of values of two keys) weighted
by that stratum's share of production traffic instead of its share of golden cases,

    weighted = Σ_h W_h · mean_h,   SE² = Σ_h W_h² · s_h² / n_h,

with W_h the traffic shares renormalised over the strata the golden set has (traffic in
strata it lacks is reported apart, as ``uncovered``: no estimate can speak for it). The
traffic shares come from tens of thousands of traces and are treated as known.

The flag: ``differs`` when weighted − plain is outside its own 95% interval's reach, i.e.
|D| > z·SE(D) with D = Σ_h (W_h − n_h/n) · mean_h and SE(D)² = Σ_h (W_h − n_h/n)² s_h²/n_h
(the two estimates come from the same cases, so the test is on their difference, not on
whether two intervals overlap). Stratum variances s_h²: the sample variance, pooled across
strata for a stratum with fewer than `MIN_N` cases; for a pass rate, in SE the add-one rate
(x + 1) / (n + 2), so a stratum of 3 passes does not claim zero variance, and in SE(D) the
pooled rate of all cases (a score test: under "re-weighting changes nothing" every stratum
shares it). The false-positive rate of the flag, simulated in tests/analysis/test_coverage.py with
15 strata of 3 to 60 cases, is 4–6% for pass rates of 0.5 to 0.95 and for means.

The plain mean's interval is the one the Runs page shows for the run (Wilson for a pass
rate, t for a mean), from the strata's pooled moments.

Written by hand (a dozen lines of arithmetic): statsmodels has no post-stratified mean, and
survey packages bring a design-object API for what is one weighted sum here.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..stats import mean_interval
from ..vocabulary import MISSING  # the stratum of rows without the key

__all__ = ["MIN_N", "MISSING", "production_weighted", "strata_mixes"]

MIN_N = 5  # below this many cases a stratum's own variance is too noisy: pool it
_CELL = ("stratum", "stratum2")


def _cells(df: pl.DataFrame) -> pl.DataFrame:
    """Null stratum values (rows lacking the key) become their own stratum, `MISSING`."""
    cols = [c for c in _CELL if c in df.columns]
    return df.with_columns(pl.col(c).fill_null(MISSING) for c in cols)


def strata_mixes(golden: pl.DataFrame, traffic: pl.DataFrame) -> pl.DataFrame:
    """One row per stratum found in either: ``golden_n``, ``golden_share``, ``traffic_n``,
    ``traffic_share`` (0 where absent), largest traffic share first. Inputs: ``stratum``,
    ``stratum2`` (null without a second key), ``n`` (`queries.strata_mix` and
    `queries.online_strata_mix`)."""
    g = _cells(golden).select(*_CELL, pl.col("n").alias("golden_n"))
    t = _cells(traffic).select(*_CELL, pl.col("n").alias("traffic_n"))
    both = g.join(t, on=list(_CELL), how="full", coalesce=True).with_columns(
        pl.col("golden_n", "traffic_n").fill_null(0).cast(pl.Int64))
    return both.with_columns(
        (pl.col("golden_n") / pl.col("golden_n").sum()).alias("golden_share"),
        (pl.col("traffic_n") / pl.col("traffic_n").sum()).alias("traffic_share"),
    ).sort("traffic_share", "golden_share", *_CELL, descending=[True, True, False, False])


def _variances(kind: str, n: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Each stratum's variance of one value (see the module docstring)."""
    if kind == "binary":
        p = (mean * n + 1) / (n + 2)  # add-one: never 0 or 1
        return p * (1 - p)
    var = np.where(np.isfinite(sd), sd**2, np.nan)
    ok = (n >= MIN_N) & np.isfinite(var)
    pooled = (float(np.sum((n[ok] - 1) * var[ok]) / np.sum(n[ok] - 1))
              if ok.any() and np.sum(n[ok] - 1) > 0 else float(np.nanmean(var)) if
              np.isfinite(var).any() else 0.0)
    return np.where(ok, var, pooled)


def _pooled_sd(n: np.ndarray, mean: np.ndarray, sd: np.ndarray, plain: float) -> float:
    """The sd of all the metric's values, from the strata's moments."""
    total = n.sum()
    if total < 2:
        return np.nan
    within = np.sum(np.where(n > 1, (n - 1) * np.nan_to_num(sd) ** 2, 0.0))
    return float(np.sqrt((within + np.sum(n * (mean - plain) ** 2)) / (total - 1)))


def production_weighted(cells: pl.DataFrame, traffic: pl.DataFrame,
                        confidence: float = 0.95) -> pl.DataFrame:
    """Per metric of ``cells`` (`queries.slice_summary`: metric, stratum, stratum2, kind, n,
    mean, sd), its plain mean over the golden cases and its production-weighted mean with
    ``traffic`` (`queries.online_strata_mix`): ``n``, ``plain``, ``plain_low/high``,
    ``weighted``, ``weighted_low/high``, ``difference`` (weighted − plain), its
    ``difference_se``, ``differs`` (outside its uncertainty at ``confidence``),
    ``covered`` (the traffic share in strata this metric has golden cases for) and
    ``strata`` (how many strata the golden set has for it)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    t = _cells(traffic).group_by(list(_CELL)).agg(pl.col("n").sum().alias("traffic_n"))
    total = float(t["traffic_n"].sum()) if t.height else 0.0
    scored = (_cells(cells).filter(pl.col("n") > 0).join(t, on=list(_CELL), how="left")
              .sort("metric", maintain_order=True))
    metric, kinds = scored["metric"].to_numpy(), scored["kind"].to_numpy()
    ns, means = (scored[c].cast(pl.Float64).to_numpy() for c in ("n", "mean"))
    sds = scored["sd"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    traffic_ns = scored["traffic_n"].fill_null(0).cast(pl.Float64).to_numpy()
    bounds = np.flatnonzero(np.r_[True, metric[1:] != metric[:-1], True]) if len(metric) \
        else np.array([0])
    rows = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):  # one metric's strata: [a, b)
        kind, n, mean, traffic_n = str(kinds[a]), ns[a:b], means[a:b], traffic_ns[a:b]
        var = _variances(kind, n, mean, sds[a:b])
        plain_w = n / n.sum()
        plain = float(plain_w @ mean)
        row = {"metric": metric[a], "kind": kind, "n": int(n.sum()), "strata": int(b - a),
               "plain": plain, "plain_sd": _pooled_sd(n, mean, sds[a:b], plain),
               "covered": traffic_n.sum() / total if total else 0.0}
        if traffic_n.sum() > 0:
            w = traffic_n / traffic_n.sum()
            weighted = float(w @ mean)
            se = float(np.sqrt(np.sum(w**2 * var / n)))
            # the flag tests "re-weighting changes nothing": for a pass rate, under that
            # hypothesis every stratum shares the pooled rate (a score test)
            null_var = plain * (1 - plain) if kind == "binary" else var
            d_se = float(np.sqrt(np.sum((w - plain_w) ** 2 * null_var / n)))
            diff = weighted - plain
            row |= {"weighted": weighted, "weighted_low": weighted - z * se,
                    "weighted_high": weighted + z * se, "difference": diff,
                    "difference_se": d_se, "differs": bool(abs(diff) > z * d_se)}
        rows.append(row)
    schema = {"metric": pl.String, "kind": pl.String, "n": pl.Int64, "strata": pl.Int64,
              "plain": pl.Float64, "plain_sd": pl.Float64, "weighted": pl.Float64,
              "weighted_low": pl.Float64, "weighted_high": pl.Float64,
              "difference": pl.Float64, "difference_se": pl.Float64, "differs": pl.Boolean,
              "covered": pl.Float64}
    out = pl.DataFrame(rows, schema=schema, strict=False)
    low, high = mean_interval(out["kind"].to_numpy(), out["n"].to_numpy(),
                              out["plain"].to_numpy(), out["plain_sd"].to_numpy(), confidence)
    rate = pl.col("kind") == "binary"  # a pass rate's interval stays within [0, 1]
    return out.with_columns(
        pl.Series("plain_low", low, dtype=pl.Float64),
        pl.Series("plain_high", high, dtype=pl.Float64),
        *(pl.when(rate).then(pl.col(c).clip(0.0, 1.0)).otherwise(pl.col(c)).alias(c)
          for c in ("weighted_low", "weighted_high")),
    ).fill_nan(None).select(
        "metric", "kind", "n", "strata", "plain", "plain_low", "plain_high", "weighted",
        "weighted_low", "weighted_high", "difference", "difference_se", "differs", "covered")
