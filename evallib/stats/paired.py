"""Paired comparison of two runs scored on the same cases: is the difference real or noise?

One entry point, `paired_test`, picks the test by metric kind:

- binary: McNemar's test, mid-p version. Its exact size (summed over every outcome, for n = 10
  to 1,000 and 2–50% discordant pairs) never exceeds alpha = 0.05 (at most 0.0498), while the
  exact binomial version falls to a quarter of alpha at n = 30 with 20% discordant pairs and
  the chi-square version reaches 0.054. tests/test_stats_calibration.py checks n = 30.
- ordinal: Wilcoxon signed-rank, zeros handled by Pratt's method. "zsplit" keeps zeros in
  both rank sums and becomes conservative when many pairs tie, as ordinal pairs do (A/A
  false-positive rate 0.03–0.04 with half the pairs tied, against Pratt's 0.05).
- continuous: paired t.

The interval is always the 95% t interval of the mean paired difference, whatever the kind
and whatever ``alpha``: for binary pairs, d ∈ {-1, 0, 1}, this is the interval Miller (2024,
"Adding Error Bars to Evals", arXiv:2411.00640) recommends, and it covers close to 95% at
n = 30. So a test on location (Wilcoxon, McNemar) and the interval of the mean can
occasionally disagree on "significant"; the p-value decides.

With ``clusters`` (cases that share a document, a conversation, a template …) the kind's test
is replaced by a t test on a cluster-robust standard error of the mean difference, since
neither McNemar nor Wilcoxon has a clustered form and pairs in a cluster are not independent.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .intervals import CONFIDENCE

__all__ = ["Kind", "PairedResult", "TESTS", "paired_test"]

Kind = Literal["binary", "ordinal", "continuous"]
KINDS: tuple[str, ...] = get_args(Kind)

#: The name `PairedResult.test` carries for each kind (and for clustered data).
TESTS: dict[str, str] = {"binary": "McNemar mid-p", "ordinal": "Wilcoxon signed-rank (Pratt)",
                         "continuous": "paired t", "clustered": "clustered paired t"}

NAN = math.nan
Floats = NDArray[np.float64]
TestOutcome = tuple[float, float, float]  # p_value, ci_low, ci_high


@dataclass(frozen=True)
class PairedResult:
    """Candidate vs baseline on the same cases; every number a gate or a page needs.

    ``baseline`` and ``candidate`` are means over the pairs both sides scored, ``delta`` is
    ``candidate - baseline`` and ``ci_low``/``ci_high`` its 95% interval (always 95%, whatever
    ``alpha``). ``p_value`` is two-sided and never NaN: 1.0 when nothing can be tested.
    NaN appears only where nothing can be estimated: the means when n = 0, the interval when
    n < 2 or there are fewer than two clusters. All pairs equal gives delta 0, interval (0, 0).
    ``reason`` says why a result is degenerate or what was dropped; None when all went well.
    """

    n: int
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    reason: str | None = None
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        """The test rejects "no difference" at ``alpha``."""
        return self.p_value < self.alpha


def paired_test(baseline: ArrayLike, candidate: ArrayLike, kind: Kind, alpha: float = 0.05,
                *, clusters: Iterable[Hashable] | None = None) -> PairedResult:
    """Compare two runs' scores on the same cases, aligned position by position.

    binary: McNemar mid-p; ordinal: Wilcoxon signed-rank (Pratt); continuous: paired t; the
    interval is the 95% t interval of the mean difference (see the module docstring for why).
    NaN (or None) on either side means unscored: the pair is dropped and ``reason`` says how
    many. ``clusters`` gives each case's cluster key (None/NaN: a cluster of its own); with it
    the test is the clustered paired t whatever the kind. ``alpha`` only sets `significant`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    base, cand, keys, dropped = _scored_pairs(baseline, candidate, clusters)
    if kind == "binary" and not np.isin(np.concatenate([base, cand]), (0.0, 1.0)).all():
        raise ValueError("binary scores must be 0, 1 or NaN")
    notes = [f"{dropped} unscored pair{'s' if dropped != 1 else ''} dropped"] if dropped else []
    (p, low, high), note = _outcome(cand - base, kind, keys)
    if kind == "binary":  # a difference of two rates lies in [-1, 1]
        low, high = (float(x) for x in np.clip([low, high], -1.0, 1.0))
    base_mean, cand_mean = (float(x.mean()) if x.size else NAN for x in (base, cand))
    return PairedResult(n=base.size, baseline=base_mean, candidate=cand_mean,
                        delta=cand_mean - base_mean, ci_low=low, ci_high=high, p_value=p,
                        test=TESTS["clustered" if keys is not None else kind],
                        reason="; ".join([*notes, *([note] if note else [])]) or None,
                        alpha=alpha)


def _outcome(diff: Floats, kind: Kind, keys: NDArray[np.object_] | None
             ) -> tuple[TestOutcome, str | None]:
    """The test's p and interval, or the degenerate answer and why."""
    if diff.size == 0:
        return (1.0, NAN, NAN), "no pairs scored on both sides"
    if diff.size < 2:
        return (1.0, NAN, NAN), "n < 2"
    if not diff.any():
        return (1.0, 0.0, 0.0), "all pairs equal"
    if keys is not None:
        return _clustered_t(diff, keys)
    return _BY_KIND[kind](diff), None


def _scored_pairs(baseline: ArrayLike, candidate: ArrayLike,
                  clusters: Iterable[Hashable] | None
                  ) -> tuple[Floats, Floats, NDArray[np.object_] | None, int]:
    """The pairs scored on both sides (None → NaN → dropped), their cluster keys, and how
    many pairs were dropped."""
    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if base.ndim != 1 or base.shape != cand.shape:
        raise ValueError(f"baseline {base.shape} and candidate {cand.shape}: paired scores "
                         "must be one-dimensional and aligned case by case")
    if np.isinf(base).any() or np.isinf(cand).any():
        raise ValueError("scores must be finite (NaN for unscored)")
    keys = None if clusters is None else np.fromiter(clusters, dtype=object)
    if keys is not None and keys.size != base.size:
        raise ValueError(f"clusters has {keys.size} keys for {base.size} pairs")
    scored = ~(np.isnan(base) | np.isnan(cand))
    return (base[scored], cand[scored], None if keys is None else keys[scored],
            int(base.size - scored.sum()))


def _t_test(estimate: float, se: float, df: float) -> TestOutcome:
    """Two-sided p and 95% interval for ``estimate`` with standard error ``se`` on ``df``.

    Written on scipy.special's t distribution rather than scipy.stats.ttest_rel, which gives
    the same numbers (the tests check) at ~1 ms per call: a compare runs hundreds of tests.
    """
    from scipy.special import stdtr, stdtrit

    if se == 0:  # no spread at all (e.g. every difference identical): nothing is noise
        return (1.0 if estimate == 0 else 0.0), estimate, estimate
    half = float(stdtrit(df, 0.5 + CONFIDENCE / 2)) * se
    return float(2 * stdtr(df, -abs(estimate) / se)), estimate - half, estimate + half


def _mean_t(diff: Floats) -> TestOutcome:
    """The one-sample t test and interval of the mean difference (the paired t)."""
    n = diff.size
    return _t_test(float(diff.mean()), float(diff.std(ddof=1)) / math.sqrt(n), n - 1)


def _mcnemar_midp(regressed: int, improved: int) -> float:
    """Two-sided mid-p McNemar test from the discordant counts.

    Written by hand on scipy's binomial CDF: statsmodels' `mcnemar` offers only the exact
    (conservative) and chi-square versions. Given m discordant pairs, the smaller count k is
    Binomial(m, 1/2) under no difference; mid-p = P(X < k) + P(X ≤ k), capped at 1.
    """
    from scipy.special import bdtr

    k, m = min(regressed, improved), regressed + improved
    if m == 0:
        return 1.0
    below = float(bdtr(k - 1, m, 0.5)) if k > 0 else 0.0
    return min(1.0, below + float(bdtr(k, m, 0.5)))


def _binary(diff: Floats) -> TestOutcome:
    return (_mcnemar_midp(int((diff < 0).sum()), int((diff > 0).sum())), *_mean_t(diff)[1:])


def _ordinal(diff: Floats) -> TestOutcome:
    # Exact when there are no ties or zeros and n <= 50, else the normal approximation with
    # Pratt's and the tie correction (A/A rate 0.05–0.06 from n = 8 on). scipy's method="auto"
    # would run a permutation test for n <= 13 with ties: ~2 s a call here.
    magnitudes, counts = np.unique(np.abs(diff), return_counts=True)
    if magnitudes.size == diff.size and diff.all() and diff.size <= 50:
        from scipy.stats import wilcoxon

        p = float(wilcoxon(diff, zero_method="pratt", method="exact").pvalue)
    else:
        p = _signed_rank_asymptotic(diff, magnitudes, counts)
    return (p, *_mean_t(diff)[1:])


def _signed_rank_asymptotic(diff: Floats, magnitudes: Floats, counts: NDArray[np.intp]
                            ) -> float:
    """Two-sided p of the Wilcoxon signed-rank test: Pratt's zeros (ranked, then taken out
    of the mean and variance, Cureton 1967), tie-corrected normal approximation, no
    continuity correction.

    The same number as ``scipy.stats.wilcoxon(diff, zero_method="pratt",
    method="asymptotic")`` (tests/test_stats.py checks to 1e-12), written out in numpy
    because scipy's per-call dispatch costs ~3 ms and a compare runs hundreds of these.
    ``magnitudes``/``counts`` are ``np.unique(np.abs(diff), return_counts=True)``.
    """
    from scipy.special import ndtr

    n = diff.size
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # ranks of tied |d| share their mean
    ranks = average_rank[np.searchsorted(magnitudes, np.abs(diff))]
    r_plus = float(ranks[diff > 0].sum())
    zeros = int((diff == 0).sum())
    mean = (n * (n + 1) - zeros * (zeros + 1)) / 4.0
    var = n * (n + 1) * (2 * n + 1) - zeros * (zeros + 1) * (2 * zeros + 1)
    ties = counts[magnitudes != 0].astype(np.float64)
    var = (var - float(np.sum(ties**3 - ties)) / 2.0) / 24.0
    if var <= 0:
        return 1.0
    return min(1.0, float(2 * ndtr(-abs(r_plus - mean) / math.sqrt(var))))


_BY_KIND = {"binary": _binary, "ordinal": _ordinal, "continuous": _mean_t}


def _clustered_t(diff: Floats, keys: NDArray[np.object_]) -> tuple[TestOutcome, str | None]:
    """t test of the mean difference on a cluster-robust standard error (Miller 2024).

    SE² = C/(C-1) · Σ_c (Σ_{i∈c} (d_i − d̄))² / n², on C − 1 degrees of freedom. The C/(C-1)
    factor is the usual small-sample correction (CR1); with it, one case per cluster gives
    exactly the paired t. Hand-written: statsmodels has it only inside regression models.
    """
    codes = _cluster_codes(keys)
    n_clusters = int(codes.max()) + 1
    if n_clusters < 2:
        return (1.0, NAN, NAN), "fewer than 2 clusters"
    sums = np.bincount(codes, weights=diff - diff.mean(), minlength=n_clusters)
    var = n_clusters / (n_clusters - 1) * float(np.dot(sums, sums)) / diff.size**2
    return _t_test(float(diff.mean()), math.sqrt(var), n_clusters - 1), None


def _cluster_codes(keys: Iterable[Hashable]) -> NDArray[np.intp]:
    """Dense integer codes for cluster keys in order of first appearance.

    A missing key (None or NaN) is a cluster of its own: a case nobody grouped is independent.
    """
    index: dict[Hashable, int] = {}
    codes = [index.setdefault(object() if _missing(k) else k, len(index)) for k in keys]
    return np.asarray(codes, dtype=np.intp)


def _missing(key: Hashable) -> bool:
    return key is None or (isinstance(key, float | np.floating) and math.isnan(key))
