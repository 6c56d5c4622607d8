"""evallib.stats.paired_test by simulation: does it do what its numbers claim?

A/A (no true difference): the false-positive rate is close to alpha. A known difference: the
95% interval covers it about 95% of the time. A large drop: the test almost always sees it.
Data look like eval scores: correlated pairs (the same case is easy or hard for both runs),
binary pass rates near 0.8, ordinal 1–5 grades with many ties, skewed continuous scores in
(0, 1). Seeds are fixed; the tolerances are binomial (3 standard errors of R replications)
plus a small slack for the approximations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import expit

from evallib.stats import PairedResult, min_detectable_drop, paired_test

ALPHA = 0.05
R = 2000  # replications per setting
Pairs = tuple[np.ndarray, np.ndarray]
CUTS = sps.norm.ppf(np.cumsum([0.05, 0.10, 0.20, 0.35]))  # grades 1–5: 5%, 10%, 20%, 35%, 30%


def binary_pairs(rng: np.random.Generator, r: int, n: int, p1: float, p2: float,
                 rho: float = 0.5) -> Pairs:
    """Bernoulli pairs with pass rates p1, p2 and correlation rho within a pair."""
    both = p1 * p2 + rho * math.sqrt(p1 * (1 - p1) * p2 * (1 - p2))
    cell = rng.choice(4, size=(r, n), p=[both, p1 - both, p2 - both, 1 - p1 - p2 + both])
    return np.isin(cell, (0, 1)).astype(float), np.isin(cell, (0, 2)).astype(float)


def _latent(rng: np.random.Generator, r: int, n: int, rho: float) -> Pairs:
    z1 = rng.standard_normal((r, n))
    return z1, rho * z1 + math.sqrt(1 - rho**2) * rng.standard_normal((r, n))


def ordinal_pairs(rng: np.random.Generator, r: int, n: int, shift: float = 0.0,
                  rho: float = 0.6) -> Pairs:
    """1–5 grades cut from correlated normals; the candidate's latent score moved by shift."""
    z1, z2 = _latent(rng, r, n, rho)
    return 1.0 + np.searchsorted(CUTS, z1), 1.0 + np.searchsorted(CUTS, z2 + shift)


def ordinal_delta(shift: float) -> float:
    """The true difference in mean grade: E[grade] = 1 + Σ_k P(latent > cut_k)."""
    return float(sps.norm.cdf(shift - CUTS).sum() - sps.norm.cdf(-CUTS).sum())


def continuous_pairs(rng: np.random.Generator, r: int, n: int, shift: float = 0.0,
                     rho: float = 0.6) -> Pairs:
    """Skewed scores in (0, 1): expit(1 + 1.2·z), the candidate's z moved by shift."""
    z1, z2 = _latent(rng, r, n, rho)
    return expit(1 + 1.2 * z1), expit(1 + shift + 1.2 * z2)


def continuous_delta(shift: float) -> float:
    """The true difference in mean score, by Gauss–Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    mean = lambda s: float(w @ expit(1 + s + 1.2 * x)) / math.sqrt(2 * math.pi)  # noqa: E731
    return mean(shift) - mean(0.0)


def run(kind: str, base: np.ndarray, cand: np.ndarray, clusters: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p-values and interval bounds of paired_test on each replication (row)."""
    out = np.array([_fields(paired_test(b, c, kind, clusters=clusters))  # type: ignore[arg-type]
                    for b, c in zip(base, cand, strict=True)])
    return out[:, 0], out[:, 1], out[:, 2]


def _fields(r: PairedResult) -> tuple[float, float, float]:
    return r.p_value, r.ci_low, r.ci_high


def tolerance(rate: float, r: int = R, slack: float = 0.005) -> float:
    return 3 * math.sqrt(rate * (1 - rate) / r) + slack


# Per kind: data under no difference, data with a moderate difference and its true delta,
# and data with a large drop.
Setting = Callable[[np.random.Generator, int, int], Pairs]
NULL: dict[str, Setting] = {
    "binary": lambda rng, r, n: binary_pairs(rng, r, n, 0.8, 0.8),
    "ordinal": lambda rng, r, n: ordinal_pairs(rng, r, n),
    "continuous": lambda rng, r, n: continuous_pairs(rng, r, n),
}
SHIFTED: dict[str, tuple[Setting, float]] = {
    "binary": (lambda rng, r, n: binary_pairs(rng, r, n, 0.8, 0.7), -0.1),
    "ordinal": (lambda rng, r, n: ordinal_pairs(rng, r, n, -0.3), ordinal_delta(-0.3)),
    "continuous": (lambda rng, r, n: continuous_pairs(rng, r, n, -0.3), continuous_delta(-0.3)),
}
LARGE_DROP: dict[str, Setting] = {  # about 5 standard errors of the difference at any n
    "binary": lambda rng, r, n: binary_pairs(rng, r, n, 0.8, 0.8 - 3 / math.sqrt(n), 0.2),
    "ordinal": lambda rng, r, n: ordinal_pairs(rng, r, n, -5 / math.sqrt(n)),
    "continuous": lambda rng, r, n: continuous_pairs(rng, r, n, -5 / math.sqrt(n)),
}
KINDS = list(NULL)
SEED = {"binary": 1, "ordinal": 2, "continuous": 3}


@pytest.mark.parametrize("n", [30, 500])
@pytest.mark.parametrize("kind", KINDS)
def test_false_positive_rate_is_close_to_alpha(kind: str, n: int) -> None:
    rng = np.random.default_rng(SEED[kind] * 1000 + n)
    p, low, high = run(kind, *NULL[kind](rng, R, n))
    rate = float(np.mean(p < ALPHA))
    if kind == "binary" and n == 30:
        # ~5 discordant pairs: a discrete test cannot hold alpha exactly; it must not exceed
        # it, and it must match the exact size (see the enumeration test below).
        want = exact_binary_size(30, 2 * (0.8 - 0.72))
        assert want < ALPHA and abs(rate - want) <= tolerance(want, slack=0.002)
    else:
        assert abs(rate - ALPHA) <= tolerance(ALPHA)
    coverage = float(np.mean((low <= 0) & (high >= 0)))
    assert 0.92 <= coverage <= 0.975


@pytest.mark.parametrize("n", [30, 500])
@pytest.mark.parametrize("kind", KINDS)
def test_interval_covers_the_true_difference(kind: str, n: int) -> None:
    setting, delta = SHIFTED[kind]
    rng = np.random.default_rng(SEED[kind] * 2000 + n)
    _, low, high = run(kind, *setting(rng, R, n))
    coverage = float(np.mean((low <= delta) & (delta <= high)))
    assert 0.92 <= coverage <= 0.975


@pytest.mark.parametrize("n", [30, 500])
@pytest.mark.parametrize("kind", KINDS)
def test_a_large_drop_is_almost_always_detected(kind: str, n: int) -> None:
    rng = np.random.default_rng(SEED[kind] * 3000 + n)
    p, _, high = run(kind, *LARGE_DROP[kind](rng, 300, n))
    assert np.mean(p < ALPHA) >= 0.97 and np.mean(high < 0) >= 0.97


def exact_binary_size(n: int, discordance: float, test: str = "paired_test") -> float:
    """The exact A/A rejection rate of a binary test at n pairs: a sum over every outcome.

    m ~ Binomial(n, discordance) discordant pairs, of which k ~ Binomial(m, 1/2) regressed.
    """
    return sum(sps.binom.pmf(m, n, discordance) * sps.binom.pmf(k, m, 0.5)
               for m, k in _rejected_outcomes(n, test))


@functools.cache
def _rejected_outcomes(n: int, test: str) -> list[tuple[int, int]]:
    """Every (discordant, regressed) count at n pairs for which ``test`` rejects."""
    from statsmodels.stats.contingency_tables import mcnemar

    def p_value(m: int, k: int) -> float:
        if test == "statsmodels exact":
            return mcnemar([[n - m, k], [m - k, 0]], exact=True).pvalue
        base = np.r_[np.ones(k), np.zeros(m - k), np.ones(n - m)]
        cand = np.r_[np.zeros(k), np.ones(m - k), np.ones(n - m)]
        return paired_test(base, cand, "binary").p_value

    return [(m, k) for m in range(n + 1) for k in range(m + 1) if p_value(m, k) < ALPHA]


def test_binary_test_never_exceeds_alpha_and_is_not_the_conservative_exact_test() -> None:
    rates = (0.1, 0.2, 0.3, 0.5)  # share of discordant pairs
    sizes = [exact_binary_size(30, q) for q in rates]
    exact = [exact_binary_size(30, q, "statsmodels exact") for q in rates]
    assert max(sizes) <= ALPHA
    assert sizes[-1] >= 0.9 * ALPHA  # 15 discordant pairs on average: close to alpha
    assert all(mid >= 1.5 * ex for mid, ex in zip(sizes, exact, strict=True))


def test_power_formula_matches_the_simulated_power_of_the_binary_test() -> None:
    rng = np.random.default_rng(4)
    n = 400
    drop = min_detectable_drop(n, 0.8, pair_correlation=0.5)
    p, _, _ = run("binary", *binary_pairs(rng, R, n, 0.8, 0.8 - drop, rho=0.5))
    assert abs(np.mean(p < ALPHA) - 0.8) <= tolerance(0.8, slack=0.03)


def clustered_binary(rng: np.random.Generator, r: int, clusters: int, size: int) -> Pairs:
    """A/A in every cluster on average, but the candidate is better on some clusters (say,
    documents) and worse on others, so pairs in one cluster move together."""
    shape = (r, clusters, 1)
    level = rng.normal(1.4, 0.6, shape) + rng.normal(0, 1, (r, clusters, size))  # logits
    effect = rng.normal(0, 1.0, shape)  # symmetric: the mean difference is exactly zero
    base = rng.random((r, clusters, size)) < expit(level - effect / 2)
    cand = rng.random((r, clusters, size)) < expit(level + effect / 2)
    return base.reshape(r, -1).astype(float), cand.reshape(r, -1).astype(float)


def test_clustered_test_holds_alpha_where_the_naive_test_does_not() -> None:
    rng = np.random.default_rng(5)
    base, cand = clustered_binary(rng, R, 30, 10)
    keys = np.repeat(np.arange(30), 10)
    naive, _, _ = run("binary", base, cand)
    p, low, high = run("binary", base, cand, clusters=keys)
    assert np.mean(naive < ALPHA) > 2 * ALPHA  # ignoring the clusters: false alarms
    assert abs(np.mean(p < ALPHA) - ALPHA) <= tolerance(ALPHA)
    assert 0.92 <= np.mean((low <= 0) & (high >= 0)) <= 0.975
