"""Wilcoxon's signed-rank test with Pratt's zeros: exact with ties for small n, normal
beyond, and which way it points.

Ordinal differences (a 1–5 scale) are mostly ties and zeros. scipy's exact distribution
assumes neither (its ``method="exact"`` refuses them and "auto" switches to a permutation
test, seconds per call), and the normal approximation is poor for few changed pairs:
n = 4, all +1, gives p = 0.0455 where the exact p is 0.125 (nothing at n = 4 can be
significant). So up to `EXACT_MAX` non-zero differences the p-value is the exact
conditional one: given the |d| (tied ranks and all), each non-zero difference's sign is
+ or - with probability 1/2 under "no difference", and the distribution of the sum of the
positive ranks follows by convolution (ranks doubled, so midranks are integers). Beyond
that, the tie-corrected normal approximation (the same number as scipy's
``wilcoxon(d, zero_method="pratt", method="asymptotic")``, tests check to 1e-12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["EXACT_MAX", "SignedRank", "signed_rank"]

EXACT_MAX = 50  # non-zero differences up to which the exact distribution is used
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class SignedRank:
    """``p_value`` two-sided; ``direction`` +1 when the positive ranks exceed their null
    mean (the candidate ranks higher), -1 below, 0 exactly at it; ``min_p`` the smallest
    two-sided p this pattern of |d| could give (2·2^-k exactly; 0 in the normal range)."""

    p_value: float
    direction: int
    min_p: float
    exact: bool


def signed_rank(diff: Floats) -> SignedRank:
    """The signed-rank test of ``diff`` (zeros ranked, then dropped: Pratt)."""
    magnitudes, counts = np.unique(np.abs(diff), return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # ranks of tied |d| share their mean
    ranks = average_rank[np.searchsorted(magnitudes, np.abs(diff))]
    nonzero = diff != 0
    r_plus = float(ranks[diff > 0].sum())
    centre = float(ranks[nonzero].sum()) / 2
    direction = int(np.sign(round(r_plus - centre, 9)))
    k = int(nonzero.sum())
    if k == 0:
        return SignedRank(1.0, 0, 1.0, True)
    if k <= EXACT_MAX:
        p = _exact_p(ranks[nonzero], int((~nonzero).sum()), r_plus)
        return SignedRank(p, direction, min(1.0, 2 * 0.5**k), True)
    return SignedRank(_asymptotic_p(diff, magnitudes, counts, r_plus), direction, 0.0, False)


def _exact_p(ranks: Floats, zeros: int, r_plus: float) -> float:
    """P(|R+ - E| ≥ |r+ - E|) under random signs. Each non-zero rank is ``zeros`` plus its
    rank among the non-zero |d|, so R+ = zeros·c + s over (c positives, s their ranks
    among the non-zero): the joint distribution of (c, 2s) by convolution stays small
    (k × k(k+1)) however many zeros there are."""
    inner = np.rint(2 * (ranks - zeros)).astype(np.int64)  # doubled ranks among non-zero
    k, total = inner.size, int(inner.sum())
    dist = np.zeros((k + 1, total + 1))
    dist[0, 0] = 1.0
    for r in inner:
        moved = np.zeros_like(dist)
        moved[1:, r:] = dist[:-1, : total + 1 - r]
        dist = (dist + moved) / 2
    count, doubled = np.meshgrid(np.arange(k + 1), np.arange(total + 1), indexing="ij")
    stat = 2 * zeros * count + doubled  # 2·R+
    centre = zeros * k + total / 2  # 2·E[R+]
    extreme = np.abs(stat - centre) >= abs(2 * r_plus - centre) - 1e-9
    return float(min(1.0, dist[extreme].sum()))


def _asymptotic_p(diff: Floats, magnitudes: Floats, counts: NDArray[np.intp],
                  r_plus: float) -> float:
    """Pratt's zeros (ranked, then taken out of the mean and variance, Cureton 1967),
    tie-corrected normal approximation, no continuity correction; in numpy because scipy's
    per-call dispatch costs ~3 ms and a compare runs hundreds of these."""
    from scipy.special import ndtr

    n = diff.size
    zeros = int((diff == 0).sum())
    mean = (n * (n + 1) - zeros * (zeros + 1)) / 4.0
    var: float = n * (n + 1) * (2 * n + 1) - zeros * (zeros + 1) * (2 * zeros + 1)
    ties = counts[magnitudes != 0].astype(np.float64)
    var = (var - float(np.sum(ties**3 - ties)) / 2.0) / 24.0
    if var <= 0:
        return 1.0
    return min(1.0, float(2 * ndtr(-abs(r_plus - mean) / math.sqrt(var))))
