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
from typing import Any, cast

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


#: Bootstrap tables are drawn and scored at most this many cell counts at a time.
_CHUNK = 1 << 21


@dataclass(frozen=True)
class _Cells:
    """A contingency table as its non-empty cells, in row-major order (x, then y).

    Never dense: raw pairs of two continuous scores have as many distinct values as pairs,
    so a dense table is n × n and its bootstrap n_boot × n × n (2,000 pairs × 300 resamples
    grew a test worker to 18 GB). Cells are at most n, and a multinomial over them resamples
    the pairs just as one over the dense table does (empty cells never receive a pair)."""

    xs: Floats  # distinct x values, ascending
    ys: Floats
    xi: NDArray[np.int64]  # each cell's index into xs
    yi: NDArray[np.int64]
    w: Floats  # each cell's count
    x_starts: NDArray[np.int64]  # first cell of each x value
    by_y: NDArray[np.int64]  # the cells in (y, x) order
    y_starts: NDArray[np.int64]  # first cell of each y value, in by_y order


def _cells(x: Floats, y: Floats, w: Floats) -> _Cells:
    keep = w > 0
    x, y, w = x[keep], y[keep], w[keep]
    xs, xi = np.unique(x, return_inverse=True)
    ys, yi = np.unique(y, return_inverse=True)
    codes, ci = np.unique(xi.astype(np.int64) * len(ys) + yi, return_inverse=True)
    xi, yi = np.divmod(codes, max(len(ys), 1))
    by_y = np.lexsort((xi, yi))
    # weighted, so float64 (numpy's stubs type every bincount as integers)
    counts = cast(Floats, np.bincount(ci, weights=w, minlength=len(codes)))
    return _Cells(xs, ys, xi, yi, counts, _starts(xi), by_y, _starts(yi[by_y]))


def _starts(sorted_index: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])


def _margins(c: _Cells, w: Floats) -> tuple[Floats, Floats]:
    """Row (x) and column (y) totals of tables ``w`` (B × cells): B × len(xs), B × len(ys)."""
    return (np.add.reduceat(w, c.x_starts, axis=1),
            np.add.reduceat(w[:, c.by_y], c.y_starts, axis=1))


def _weighted_pearson(a: Floats, b: Floats, w: Floats) -> Floats:
    """Pearson's r of cell scores ``a`` and ``b`` (B × cells, or one row for all) weighted
    by the cell counts ``w`` (B × cells)."""
    n = w.sum(axis=1)
    da = a - (w * a).sum(axis=1)[:, None] / n[:, None]
    db = b - (w * b).sum(axis=1)[:, None] / n[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * da * db).sum(axis=1) / np.sqrt(
            (w * da * da).sum(axis=1) * (w * db * db).sum(axis=1))


def _midranks(margins: Floats) -> Floats:
    return np.cumsum(margins, axis=-1) - margins + (margins + 1) / 2


def _kendall_tau_b(c: _Cells, w: Floats) -> Floats:
    """Kendall's tau-b of tables ``w`` (B × cells): concordant minus discordant pairs of
    cells, a block of cells against all at a time (memory bounded, time B × cells²)."""
    k = len(c.w)
    block = max(1, _CHUNK // k)
    s = np.zeros(w.shape[0])
    for i in range(0, k, block):
        sign = (np.sign(c.xi[i:i + block, None] - c.xi[None, :])
                * np.sign(c.yi[i:i + block, None] - c.yi[None, :])).astype(np.float64)
        s += ((w @ sign.T) * w[:, i:i + block]).sum(axis=1)
    rows, cols = _margins(c, w)
    n = w.sum(axis=1)
    n0 = n * (n - 1) / 2
    n1 = (rows * (rows - 1) / 2).sum(axis=1)
    n2 = (cols * (cols - 1) / 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / 2 / np.sqrt((n0 - n1) * (n0 - n2))  # s counted each pair twice


def _coefficient(method: str, c: _Cells, w: Floats) -> Floats:
    """The coefficient of each table ``w`` (B × cells) over the cells ``c``."""
    if method == "pointbiserial":
        return _weighted_pearson(c.xs[c.xi][None], c.ys[c.yi][None], w)
    if method == "spearman":
        rows, cols = _margins(c, w)
        return _weighted_pearson(_midranks(rows)[:, c.xi], _midranks(cols)[:, c.yi], w)
    if method == "kendall":
        return _kendall_tau_b(c, w)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


def _bootstrap(method: str, c: _Cells, n: int, n_boot: int, seed: int) -> Floats:
    """The coefficients of ``n_boot`` resamples of the n pairs (a multinomial draw of the
    cells), drawn and scored a chunk at a time so memory does not grow with n_boot."""
    rng = np.random.default_rng(seed)
    per = max(1, _CHUNK // len(c.w))
    return np.concatenate([
        _coefficient(method, c, rng.multinomial(n, c.w / n, size=min(per, n_boot - i))
                     .astype(np.float64))
        for i in range(0, n_boot, per)])


def correlation_from_table(x: ArrayLike, y: ArrayLike, counts: ArrayLike, method: str, *,
                           n_boot: int = 2000, seed: int = 0, threshold: float = THRESHOLD,
                           min_n: int = MIN_N) -> Correlation:
    """The coefficient of pairs given as (x value, y value, how many pairs), with a
    percentile bootstrap interval (resampling pairs) and the review's status."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    c = _cells(np.asarray(x, np.float64), np.asarray(y, np.float64),
               np.asarray(counts, dtype=np.float64))
    n = int(round(c.w.sum()))
    if n < 2 or len(c.xs) < 2 or len(c.ys) < 2:  # a constant side has no correlation
        return Correlation(method, n, NAN, NAN, NAN, "too few")
    r = float(_coefficient(method, c, c.w[None])[0])
    low = high = NAN
    if n >= 3 and n_boot > 0:
        rs = _bootstrap(method, c, n, n_boot, seed)
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
