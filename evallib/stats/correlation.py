"""Do automated scores predict what users say? Rank and point-biserial correlations with
bootstrap intervals, computed from contingency tables.

Trace-level pairs (a score, the user's thumbs or rating) reach Python as counts per (score
value, feedback value): a few hundred cells whatever the traffic, so a month of a 50M-row
warehouse never leaves DuckDB as rows. From such a table:

- Spearman's rho is Pearson's r of the midranks, Kendall's tau-b comes from concordant and
  discordant pair counts, point-biserial is Pearson's r of the values. They equal scipy's
  ``spearmanr``, ``kendalltau`` and ``pointbiserialr`` on the expanded pairs (the tests
  check), which is why they are written here: scipy needs the rows.
- The bootstrap resamples traces, which for a table is a multinomial draw of its cells;
  the 95% interval is the percentile interval of those draws.

Which coefficient fits (`choose_method`): a binary side with a binary or continuous one →
point-biserial (phi for two binaries); anything with a rank order → Spearman, midranks
taking the ties of 1–5 scales. Kendall's tau-b is available but not chosen: it runs about
a third lower than Spearman's rho on the same data (tau ≈ 2/π·arcsin rho), so the review's
0.7 bar, set on the Pearson/Spearman scale, would flag nearly every tau.

The review's rule: a correlation whose interval lies wholly below 0.7 is flagged; one
whose interval straddles 0.7 cannot tell (more data would); fewer than ``min_n`` pairs is
"not enough data".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from .intervals import CONFIDENCE

__all__ = ["FEEDBACK_KINDS", "METHODS", "MIN_N", "STATUS", "THRESHOLD", "Correlation",
           "binned_feedback", "choose_method", "correlation", "correlation_from_table",
           "correlation_table", "release_table"]

METHODS = ("spearman", "kendall", "pointbiserial")
THRESHOLD = 0.7
MIN_N = 30
#: status → what the review says about it.
STATUS = {"below": f"below {THRESHOLD}", "ok": f"at least {THRESHOLD}",
          "unclear": f"cannot tell (interval spans {THRESHOLD})", "too few": "not enough data"}
NAN = math.nan
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Correlation:
    """One coefficient with its bootstrap interval, n (pairs) and the review's status."""

    method: str
    n: int
    r: float
    ci_low: float
    ci_high: float
    status: str  # below | ok | unclear | too few

    @property
    def flagged(self) -> bool:
        return self.status == "below"


def choose_method(x_kind: str, y_kind: str) -> str:
    """The coefficient that fits two kinds of data (binary, ordinal, continuous)."""
    kinds = {x_kind, y_kind}
    if "binary" in kinds and kinds <= {"binary", "continuous"}:
        return "pointbiserial"
    return "spearman"


def _status(n: int, r: float, low: float, high: float, threshold: float, min_n: int) -> str:
    if n < min_n or not math.isfinite(r):
        return "too few"
    if math.isfinite(high) and high < threshold:
        return "below"
    if math.isfinite(low) and low >= threshold:
        return "ok"
    return "unclear"


def _tables(x: Floats, y: Floats, w: Floats) -> tuple[Floats, Floats, Floats]:
    """Sorted distinct x and y values and the (len x) × (len y) table of counts."""
    xs, xi = np.unique(x, return_inverse=True)
    ys, yi = np.unique(y, return_inverse=True)
    table = np.zeros((len(xs), len(ys)))
    np.add.at(table, (xi, yi), w)
    return xs, ys, table


def _weighted_pearson(a: Floats, b: Floats, t: Floats) -> Floats:
    """Pearson's r of row scores ``a`` (B × R) and column scores ``b`` (B × C) weighted
    by tables ``t`` (B × R × C)."""
    n = t.sum(axis=(1, 2))
    rows, cols = t.sum(axis=2), t.sum(axis=1)
    ma = (rows * a).sum(axis=1) / n
    mb = (cols * b).sum(axis=1) / n
    da, db = a - ma[:, None], b - mb[:, None]
    cov = np.einsum("br,brc,bc->b", da, t, db)
    va = (rows * da ** 2).sum(axis=1)
    vb = (cols * db ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(va * vb)


def _midranks(margins: Floats) -> Floats:
    return np.cumsum(margins, axis=-1) - margins + (margins + 1) / 2


def _kendall_tau_b(t: Floats) -> Floats:
    """Kendall's tau-b of tables ``t`` (B × R × C) from concordant and discordant pairs."""
    # below_right[r, c] = sum of t[r', c'] with r' > r and c' > c; below_left: c' < c.
    suffix = np.flip(np.cumsum(np.flip(t, 1), 1), 1)  # rows r' >= r
    below = np.concatenate([suffix[:, 1:], np.zeros_like(suffix[:, :1])], 1)  # r' > r
    right = np.flip(np.cumsum(np.flip(below, 2), 2), 2)
    below_right = np.concatenate([right[:, :, 1:], np.zeros_like(right[:, :, :1])], 2)
    left = np.cumsum(below, 2)
    below_left = np.concatenate([np.zeros_like(left[:, :, :1]), left[:, :, :-1]], 2)
    s = (t * (below_right - below_left)).sum(axis=(1, 2))
    n = t.sum(axis=(1, 2))
    n0 = n * (n - 1) / 2
    n1 = (t.sum(2) * (t.sum(2) - 1) / 2).sum(1)
    n2 = (t.sum(1) * (t.sum(1) - 1) / 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / np.sqrt((n0 - n1) * (n0 - n2))


def _coefficient(method: str, xs: Floats, ys: Floats, t: Floats) -> Floats:
    """The coefficient of each table in ``t`` (B × R × C)."""
    if method == "pointbiserial":
        b = t.shape[0]
        return _weighted_pearson(np.broadcast_to(xs, (b, len(xs))),
                                 np.broadcast_to(ys, (b, len(ys))), t)
    if method == "spearman":
        return _weighted_pearson(_midranks(t.sum(2)), _midranks(t.sum(1)), t)
    if method == "kendall":
        return _kendall_tau_b(t)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def correlation_from_table(x: ArrayLike, y: ArrayLike, counts: ArrayLike, method: str, *,
                           n_boot: int = 2000, seed: int = 0, threshold: float = THRESHOLD,
                           min_n: int = MIN_N) -> Correlation:
    """The coefficient of pairs given as (x value, y value, how many pairs), with a
    percentile bootstrap interval (resampling pairs) and the review's status."""
    w = np.asarray(counts, dtype=np.float64)
    xs, ys, table = _tables(np.asarray(x, np.float64), np.asarray(y, np.float64), w)
    n = int(round(table.sum()))
    if n < 2 or len(xs) < 2 or len(ys) < 2:  # a constant side has no correlation
        return Correlation(method, n, NAN, NAN, NAN, "too few")
    r = float(_coefficient(method, xs, ys, table[None])[0])
    low = high = NAN
    if n >= 3 and n_boot > 0:
        rng = np.random.default_rng(seed)
        flat = table.ravel()
        boots = rng.multinomial(n, flat / n, size=n_boot).reshape(n_boot, *table.shape)
        rs = _coefficient(method, xs, ys, boots.astype(np.float64))
        rs = rs[np.isfinite(rs)]  # a resample with a constant side has no coefficient
        if rs.size >= n_boot // 2:
            low, high = (float(v) for v in np.quantile(
                rs, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]))
    return Correlation(method, n, r, low, high,
                       _status(n, r, low, high, threshold, min_n))


def correlation(x: ArrayLike, y: ArrayLike, method: str, *, interval: str = "bootstrap",
                threshold: float = THRESHOLD, min_n: int = MIN_N, **kwargs: Any
                ) -> Correlation:
    """The coefficient of raw pairs (NaN pairs dropped). ``interval="fisher"`` gives the
    Fisher-z interval with Bonett and Wright's variance for Spearman, (1 + r²/2)/(n - 3),
    instead of the bootstrap: with a handful of points (one per release) resamples repeat
    points so often that the bootstrap interval collapses (rho = 1 on 5 releases gives
    [1, 1])."""
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    if interval == "bootstrap":
        return correlation_from_table(xa[ok], ya[ok], np.ones(int(ok.sum())), method,
                                      threshold=threshold, min_n=min_n, **kwargs)
    c = correlation_from_table(xa[ok], ya[ok], np.ones(int(ok.sum())), method, n_boot=0)
    low = high = NAN
    if c.n > 3 and math.isfinite(c.r):
        from scipy.stats import norm

        r = float(np.clip(c.r, -0.99, 0.99))  # atanh(±1) is infinite: ±1 counts as ±0.99
        se = math.sqrt((1 + r * r / 2) / (c.n - 3))
        half = float(norm.ppf(0.5 + CONFIDENCE / 2)) * se
        low, high = math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)
    return Correlation(method, c.n, c.r, low, high,
                       _status(c.n, c.r, low, high, threshold, min_n))


# --- over query results ------------------------------------------------------------------

#: the data kind of each explicit feedback, for `choose_method`
FEEDBACK_KINDS = {"thumbs": "binary", "rating": "ordinal"}
MIN_RELEASES = 5


def _rows(groups: dict[str, Any], c: Correlation) -> dict[str, Any]:
    return {**groups, "method": c.method, "n": c.n, "r": c.r, "ci_low": c.ci_low,
            "ci_high": c.ci_high, "status": c.status}


_SCHEMA = {"method": pl.String, "n": pl.Int64, "r": pl.Float64, "ci_low": pl.Float64,
           "ci_high": pl.Float64, "status": pl.String}


def correlation_table(counts: pl.DataFrame, by: Sequence[str] = ("month", "metric",
                                                                  "feedback"),
                      n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """One coefficient per group of a score × feedback contingency table
    (`evallib.queries.score_feedback_counts`: ``kind, score, feedback_value, n`` per cell):
    the group keys, method, n, r, ci_low, ci_high, status. NaN where undefined."""
    out = []
    for keys, cells in counts.group_by(list(by), maintain_order=True):
        groups = dict(zip(by, keys, strict=True))
        fb_kind = FEEDBACK_KINDS.get(str(groups.get("feedback")), "ordinal")
        method = choose_method(str(cells["kind"][0]), fb_kind)
        c = correlation_from_table(cells["score"].to_numpy(),
                                   cells["feedback_value"].to_numpy(), cells["n"].to_numpy(),
                                   method, n_boot=n_boot, seed=seed)
        out.append(_rows(groups, c))
    schema = {k: counts.schema[k] for k in by} | _SCHEMA
    return pl.DataFrame(out, schema=schema).sort(list(by))


def release_table(releases: pl.DataFrame) -> pl.DataFrame:
    """Release level (`evallib.queries.release_scores`: one row per release × offline
    metric × feedback): Spearman's rho of the releases' offline means against their online
    satisfaction, per (metric, feedback), with a Fisher-z interval; fewer than 5 releases
    is "not enough data"."""
    out = []
    for (metric, feedback), rows in releases.group_by(["metric", "feedback"],
                                                      maintain_order=True):
        c = correlation(rows["offline"].to_numpy(), rows["online"].to_numpy(), "spearman",
                        interval="fisher", min_n=MIN_RELEASES)
        out.append(_rows({"metric": metric, "feedback": feedback}, c))
    schema = {"metric": pl.String, "feedback": pl.String} | _SCHEMA
    return pl.DataFrame(out, schema=schema).sort("metric", "feedback")


def binned_feedback(cells: pl.DataFrame, n_bins: int = 10) -> pl.DataFrame:
    """For a binned scatter of one metric × feedback: the score in at most ``n_bins``
    bins of equal width (each distinct value when there are few), with n and the mean
    feedback of the bin: bin (the mean score in it), n, mean, sd (for intervals)."""
    score = cells["score"].to_numpy().astype(np.float64)
    if cells.height == 0:
        return pl.DataFrame(schema={"bin": pl.Float64, "n": pl.Int64, "mean": pl.Float64,
                                    "sd": pl.Float64})
    distinct = np.unique(score)
    if len(distinct) <= n_bins:
        group = np.searchsorted(distinct, score)
    else:
        edges = np.linspace(distinct[0], distinct[-1], n_bins + 1)
        group = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, n_bins - 1)
    frame = cells.select(
        pl.Series("g", group), pl.col("n"), (pl.col("score") * pl.col("n")).alias("sx"),
        (pl.col("feedback_value") * pl.col("n")).alias("fx"),
        (pl.col("feedback_value") ** 2 * pl.col("n")).alias("fxx"))
    g = frame.group_by("g").agg(pl.col("n").sum(), pl.col("sx").sum(), pl.col("fx").sum(),
                                pl.col("fxx").sum()).sort("g")
    return g.select(
        (pl.col("sx") / pl.col("n")).alias("bin"), pl.col("n").cast(pl.Int64),
        (pl.col("fx") / pl.col("n")).alias("mean"),
        pl.when(pl.col("n") > 1).then(((pl.col("fxx") - pl.col("fx") ** 2 / pl.col("n"))
                                       .clip(0) / (pl.col("n") - 1)).sqrt()).alias("sd"))
