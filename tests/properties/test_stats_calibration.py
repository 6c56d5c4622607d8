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
import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import expit

from evallib.stats import PairedResult, benjamini_hochberg, min_detectable_drop, paired_test

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


# --- issue 21 and 17: intervals and verdicts that hold ------------------------------------
# Exact where every outcome can be enumerated (paired pass rates: the discordant counts), by
# simulation otherwise. `python tests/properties/test_stats_calibration.py` prints the tables the
# README quotes.


def discordant_outcomes(n: int, p1: float, delta: float, rho: float = 0.5
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (regressed, improved) count of n pairs with pass rates p1 and p1 + delta and
    pair correlation rho (kept feasible), with its probability; negligible ones dropped."""
    p2 = p1 + delta
    both = min(p1 * p2 + rho * math.sqrt(p1 * (1 - p1) * p2 * (1 - p2)), p1, p2)
    regress, improve = p1 - both, p2 - both
    m = np.arange(n + 1)
    pm = sps.binom.pmf(m, n, regress + improve)
    keep = m[pm > 1e-13]
    r = np.concatenate([np.arange(k + 1) for k in keep])
    total = np.repeat(keep, keep + 1)
    prob = np.repeat(pm[keep], keep + 1) * sps.binom.pmf(
        r, total, regress / (regress + improve) if regress + improve else 0.5)
    return r, total - r, prob


def exact_coverage(n: int, p1: float, delta: float, interval: str = "tango",
                   rho: float = 0.5) -> float:
    """P(the interval of the pass-rate delta covers delta), summed over every outcome."""
    from evallib.stats import tango_interval

    r, i, prob = discordant_outcomes(n, p1, delta, rho)
    if interval == "tango":
        low, high = tango_interval(r, i, n)
    else:  # the t interval of d ∈ {-1, 0, 1} the paired test used to show
        mean = (i - r) / n
        sd = np.sqrt(np.maximum(r + i - n * mean**2, 0) / (n - 1))
        half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    return float(prob[(low <= delta + 1e-12) & (delta - 1e-12 <= high)].sum())


@pytest.mark.parametrize("n", [30, 400])
@pytest.mark.parametrize("base_rate", [0.5, 0.9, 0.95, 0.99])
def test_pass_rate_delta_interval_covers_at_least_93_percent(n: int, base_rate: float) -> None:
    """Tango's interval, exactly over every outcome, at no change and at small drops, pairs
    correlated 0.5 and 0.85: at least 0.93 (measured 0.940–1.0)."""
    for delta, rho in itertools.product((0.0, -0.005, -0.02), (0.5, 0.85)):
        assert exact_coverage(n, base_rate, delta, rho=rho) >= 0.93, (delta, rho)


def test_the_old_t_interval_of_issue_17_covered_a_third() -> None:
    """n = 30, base rate 0.95, delta -0.005, pairs correlated 0.85 (most cases unchanged):
    the t interval, (0, 0) whenever no pair changed, covered 0.365; Tango's 0.99."""
    assert exact_coverage(30, 0.95, -0.005, "t", rho=0.85) == pytest.approx(0.365, abs=0.01)
    assert exact_coverage(30, 0.95, -0.005, rho=0.85) >= 0.99


def unequal_clusters(rng: np.random.Generator, sizes: np.ndarray) -> tuple[Pairs, np.ndarray]:
    """One A/A replication of `clustered_binary` with clusters of the given sizes."""
    codes = np.repeat(np.arange(sizes.size), sizes)
    level = rng.normal(1.4, 0.6, sizes.size)[codes] + rng.normal(0, 1, codes.size)
    effect = rng.normal(0, 1.0, sizes.size)[codes]
    base = rng.random(codes.size) < expit(level - effect / 2)
    cand = rng.random(codes.size) < expit(level + effect / 2)
    return (base.astype(float), cand.astype(float)), codes


def cr1_p(diff: np.ndarray, codes: np.ndarray) -> float:
    """The clustered test as it was: CR1 standard error on G - 1 degrees of freedom."""
    g, n = int(codes.max()) + 1, diff.size
    sums = np.bincount(codes, weights=diff - diff.mean(), minlength=g)
    var = g / (g - 1) * float(sums @ sums) / n**2
    return float(2 * sps.t.sf(abs(diff.mean()) / math.sqrt(var), g - 1)) if var > 0 else 0.0


UNEQUAL = {  # A/A rate at alpha 0.05 with 1,000 replications: CR1 before, CR2 now
    "10 clusters, lognormal sizes": lambda rng: np.maximum(
        1, np.round(rng.lognormal(2.3, 1.0, 10))).astype(int),  # 0.086 → 0.036
    "10 clusters, one dominant": lambda rng: np.array([150] + [4] * 9),  # 0.573 → 0.042
    "30 clusters, one dominant": lambda rng: np.array([400] + [4] * 29),  # 0.724 → 0.045
}


@pytest.mark.parametrize("setting", list(UNEQUAL))
def test_clustered_test_holds_alpha_with_unequal_cluster_sizes(setting: str) -> None:
    rng = np.random.default_rng(21)
    reps, cr1, cr2 = 1000, 0, 0
    for _ in range(reps):
        (base, cand), codes = unequal_clusters(rng, UNEQUAL[setting](rng))
        cr1 += cr1_p(cand - base, codes) < ALPHA
        cr2 += paired_test(base, cand, "binary", clusters=codes).p_value < ALPHA
    print(setting, cr1 / reps, cr2 / reps)
    assert cr1 / reps > 0.07  # the old test's false alarms, as the audit found
    assert 0.02 <= cr2 / reps <= 0.075  # the issue's bar, in every row


def test_ordinal_verdicts_follow_the_mean_they_report() -> None:
    """Issue 21's repro: 50 pairs 4 → 5 and 15 pairs 5 → 1 of 100. The mean falls 0.10 but
    the ranks rise: Wilcoxon's p = 0.0036 made it "significantly worse". Now p is the
    mean's (skew-corrected t, 0.53) and the result says the distribution changed."""
    base = np.r_[np.full(50, 4.0), np.full(15, 5.0), np.full(35, 3.0)]
    cand = np.r_[np.full(50, 5.0), np.full(15, 1.0), np.full(35, 3.0)]
    r = paired_test(base, cand, "ordinal")
    assert r.delta == pytest.approx(-0.1) and r.verdict == "no significant change"
    assert r.p_value == pytest.approx(0.53, abs=0.01) and r.test == "paired t (skew-corrected)"
    assert "the distribution changed" in r.reason and "Wilcoxon p = 0.0036" in r.reason
    mirror = paired_test(cand, base, "ordinal")
    assert mirror.delta == pytest.approx(0.1) and mirror.verdict == "no significant change"
    # In such a population (true mean -0.1, ranks rising) at n = 100, how often does the
    # verdict say "worse"? Before: whenever Wilcoxon rejected and the sample mean fell.
    rng = np.random.default_rng(8)
    d = rng.choice([1.0, -4.0, 0.0], size=(400, 100), p=[0.5, 0.15, 0.35])
    results = [paired_test(np.zeros(100), row, "ordinal") for row in d]
    old = np.mean([sps.wilcoxon(row, zero_method="pratt").pvalue < ALPHA and row.mean() < 0
                   for row in d])
    new = np.mean([x.verdict == "worse" for x in results])
    t_alone = np.mean([sps.ttest_1samp(row, 0).pvalue < ALPHA and row.mean() < 0 for row in d])
    print(old, new, t_alone)
    assert old > 0.4 and new <= t_alone + 0.03  # now no more often than a test of the mean
    for row, x in zip(d, results, strict=True):  # and never against its own ranks' test
        if x.verdict == "worse" and x.test.startswith("Wilcoxon"):
            assert np.sign(row.mean()) == -1


def test_ordinal_test_is_exact_for_few_changed_pairs() -> None:
    """n = 4, all +1: the normal approximation gave p = 0.0455; the exact p is 2/16. And for
    small n with ties, the size conditional on the |d| never exceeds alpha: every sign
    pattern of each configuration enumerated."""
    r = paired_test(np.zeros(4), np.ones(4), "ordinal")
    assert (r.p_value, r.testable, r.significant) == (0.125, False, False)
    rng = np.random.default_rng(12)
    for _ in range(12):
        k = int(rng.integers(4, 11))
        magnitudes = rng.integers(0, 4, k).astype(float)  # ties and zeros (Pratt)
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=k)))
        size = np.mean([paired_test(np.zeros(k), s * magnitudes, "ordinal").p_value < ALPHA
                        for s in signs])
        assert size <= ALPHA + 1e-12, magnitudes


def test_skewed_continuous_interval_covers_where_the_t_interval_did_not() -> None:
    """n = 30 differences of an eval where the candidate breaks a tenth of the cases badly
    (-U(0.3, 0.9)) and the rest move by noise: the t interval covers 0.869, missing on
    one side only; Hall's interval 0.935 (2,000 replications)."""
    rng = np.random.default_rng(30)
    d = np.where(rng.random((R, 30)) < 0.1, -rng.uniform(0.3, 0.9, (R, 30)),
                 rng.normal(0, 0.03, (R, 30)))
    mean = -0.06
    _, low, high = run("continuous", np.zeros_like(d), d)
    t = sps.t.ppf(0.975, 29) * d.std(axis=1, ddof=1) / math.sqrt(30)
    t_cover = np.mean((d.mean(axis=1) - t <= mean) & (mean <= d.mean(axis=1) + t))
    print(t_cover, np.mean((low <= mean) & (mean <= high)))
    assert abs(t_cover - 0.869) <= tolerance(0.869)
    assert np.mean((low <= mean) & (mean <= high)) >= 0.93


def test_bh_with_degenerate_slices_keeps_fdr_and_finds_the_real_ones() -> None:
    """Issue 21's family: three 60-case slices with a real drop beside 30 one-case slices.
    Untestable slices are left out: the real ones are found far more often, and in the
    A/A version no false discovery is made more often than alpha."""
    rng = np.random.default_rng(33)

    def family(drop: float) -> list[PairedResult]:
        out = []
        for n in [60] * 3 + [1] * 30:
            base, cand = binary_pairs(rng, 1, n, 0.8, 0.8 - drop, rho=0.5)
            out.append(paired_test(base[0], cand[0], "binary"))
        return out

    found_old = found_new = false_any = 0
    reps = 150
    for _ in range(reps):
        real = family(0.15)
        new = benjamini_hochberg([x.p_value if x.testable else np.nan for x in real])
        old = benjamini_hochberg([1.0 if np.isnan(x.p_value) else x.p_value for x in real])
        found_new += int(np.sum(new[:3] < ALPHA))
        found_old += int(np.sum(old[:3] < ALPHA))
        null = family(0.0)
        adjusted = benjamini_hochberg([x.p_value if x.testable else np.nan for x in null])
        false_any += bool(np.nanmin(adjusted, initial=1.0) < ALPHA)
    print(found_old / (3 * reps), found_new / (3 * reps), false_any / reps)
    assert found_new > 1.5 * found_old
    assert false_any / reps <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)


def test_monitor_mean_test_holds_the_alpha_it_uses() -> None:
    """The alert detector's test of a day's mean against its 14 baseline days, at the
    alpha = 0.001 it uses: stationary latency-like days (ln ms, ±2% day-to-day wobble,
    weekends at 60% traffic), 40,000 tests through `evallib.analysis.monitor._mean_test`. The
    random-effects z it replaced flagged 0.0041 of such days (tests/analysis/test_monitor.py runs
    every signal through the whole detector)."""
    from evallib.analysis.monitor import _mean_test

    rng = np.random.default_rng(1001)
    reps, days, k = 200, 214, 14
    n = rng.poisson(np.where(np.arange(days) % 7 >= 5, 600, 1000), (reps, days)).astype(float)
    m = 7.3 + rng.normal(0, 0.02, (reps, days)) + rng.normal(0, 0.4 / np.sqrt(n))
    sd = 0.4 * np.sqrt(rng.chisquare(n - 1) / (n - 1))
    t, df = np.array([_mean_test(n[r], m[r], sd[r], i, np.arange(i - k, i), 1.0)[0]
                      for r in range(reps) for i in range(k, days)]).T
    p = sps.t.sf(t, df)
    print(np.mean(p < 0.001), np.mean(p < 0.05), p.size)
    assert np.mean(p < 0.001) <= 0.001 + 3 * math.sqrt(0.001 * 0.999 / p.size)
    assert abs(np.mean(p < 0.05) - 0.05) <= tolerance(0.05, p.size)


# --- the gate's max_drop: P(fail) against the true drop, exactly ---------------------------

def gate_fail_probability(n: int, drop: float, threshold: float = 0.02, rule: str = "new",
                          base_rate: float = 0.8, rho: float = 0.6) -> float:
    """P(a single max_drop rule fails) summed over every outcome of n pairs: "new" is the
    three-way verdict (Tango's one-sided p of drop ≤ threshold below alpha/2), "old" was
    "point drop > threshold and McNemar mid-p < alpha"."""
    from scipy.special import ndtr

    from evallib.analysis.gate.verdict import drop_verdict
    from evallib.stats.difference import tango_z

    r, i, prob = discordant_outcomes(n, base_rate, -drop, rho)
    if rule == "old":
        k, m = np.minimum(r, i), r + i
        mid_p = np.minimum(1, np.where(k > 0, sps.binom.cdf(k - 1, m, 0.5), 0)
                           + sps.binom.cdf(k, m, 0.5))
        return float(prob[((r - i) / n > threshold) & (mid_p < ALPHA) & (m > 0)].sum())
    z = tango_z(r, i, n, -threshold)
    return float(prob[drop_verdict(ndtr(z), ndtr(-z), ALPHA) == "fail"].sum())


def test_gate_fails_at_most_alpha_half_at_its_threshold_and_catches_2_5x() -> None:
    """Threshold 0.02, base rate 0.8, pair correlation 0.6 (issue 21's setting), exact. The
    old rule failed 20% (n = 400) and 49% (n = 4,000) of runs whose drop equalled the
    threshold; the three-way verdict 0.0250 and 0.0251 (the score test is accurate to the
    third digit), and 99.9% at 2.5× the threshold with 4,000 cases."""
    for n in (400, 4000):
        assert gate_fail_probability(n, 0.02) <= ALPHA / 2 * 1.01
        assert gate_fail_probability(n, 0.02, rule="old") > 4 * ALPHA / 2
        assert gate_fail_probability(n, 0.015) < ALPHA / 2  # within tolerance: rarer still
    assert gate_fail_probability(4000, 0.05) >= 0.8


GATE_DROPS = (0.0, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06)


def gate_curve() -> str:
    """The README's table: P(fail) by true drop, old rule and three-way verdict."""
    lines = ["| true drop | old n = 400 | new n = 400 | old n = 4,000 | new n = 4,000 |",
             "|---|---|---|---|---|"]
    for drop in GATE_DROPS:
        cells = [gate_fail_probability(n, drop, rule=rule) for n in (400, 4000)
                 for rule in ("old", "new")]
        lines.append(f"| {drop:.3f} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(gate_curve())
    for n in (30, 400):
        print(n, {p: round(min(exact_coverage(n, p, d) for d in (0.0, -0.005, -0.02)), 4)
                  for p in (0.5, 0.9, 0.95, 0.99)})
