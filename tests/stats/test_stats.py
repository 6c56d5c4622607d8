"""evallib.stats' paired tests, FDR and power against numbers worked out by hand and against
direct scipy/statsmodels calls. Calibration by simulation lives in test_stats_calibration.py."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

from evallib import stats
from evallib.stats import PairedResult, benjamini_hochberg, paired_test

T975_DF2 = 4.302652729911275  # t(0.975, df = 2)
KINDS = ["binary", "ordinal", "continuous"]


def _pairs(n_both: int, n_regressed: int, n_improved: int, n_neither: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Binary baseline/candidate arrays with the given cells of the paired 2×2 table."""
    base = [1] * n_both + [1] * n_regressed + [0] * n_improved + [0] * n_neither
    cand = [1] * n_both + [0] * n_regressed + [1] * n_improved + [0] * n_neither
    return np.array(base, float), np.array(cand, float)


# --- binary: McNemar mid-p ----------------------------------------------------------------

def test_binary_mid_p_by_hand_and_against_statsmodels_exact() -> None:
    base, cand = _pairs(10, 5, 1, 4)
    r = paired_test(base, cand, "binary")
    # 6 discordant pairs, 1 improved: P(X < 1) + P(X <= 1) for X ~ Binomial(6, 1/2)
    assert r.p_value == pytest.approx(1 / 64 + 7 / 64)
    exact = mcnemar([[10, 5], [1, 4]], exact=True).pvalue  # 2 P(X <= 1): conservative
    assert r.p_value == pytest.approx(exact - sps.binom.pmf(1, 6, 0.5)) and r.p_value < exact
    assert (r.n, r.baseline, r.candidate, r.delta) == (20, 0.75, 0.55, pytest.approx(-0.2))
    assert (r.test, r.reason, r.significant) == ("McNemar mid-p", None, False)


def _score_z(regressed: int, improved: int, n: int, delta: float) -> float:
    """Tango's score statistic the long way: the multinomial likelihood of the paired table
    maximised numerically under delta = p(improved) - p(regressed), then the score z."""
    from scipy.optimize import minimize_scalar

    def nll(q: float) -> float:  # q = P(regressed); P(improved) = q + delta
        qi, rest = q + delta, 1 - 2 * q - delta
        return -(regressed * math.log(max(q, 1e-300)) + improved * math.log(max(qi, 1e-300))
                 + (n - regressed - improved) * math.log(max(rest, 1e-300)))

    lo, hi = max(0.0, -delta), (1 - delta) / 2
    q = minimize_scalar(nll, bounds=(lo, hi), method="bounded",
                        options={"xatol": 1e-13}).x
    return (improved - regressed - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


@pytest.mark.parametrize(("regressed", "improved", "n"),
                         [(5, 1, 20), (40, 20, 160), (0, 0, 30), (3, 0, 3), (7, 9, 400)])
def test_binary_interval_is_tangos_score_interval(regressed: int, improved: int,
                                                  n: int) -> None:
    """Each bound is where the score statistic, from a numerically maximised restricted
    likelihood, equals ±1.96 (or the bound is ±1 when it never does)."""
    base = np.r_[np.ones(regressed), np.zeros(improved), np.ones(n - regressed - improved)]
    cand = np.r_[np.zeros(regressed), np.ones(improved), np.ones(n - regressed - improved)]
    r = paired_test(base, cand, "binary")
    z = sps.norm.ppf(0.975)
    for bound, sign in ((r.ci_low, 1), (r.ci_high, -1)):
        if abs(bound) < 1 - 1e-9:
            assert _score_z(regressed, improved, n, bound) == pytest.approx(sign * z,
                                                                             abs=1e-5)
    assert -1 <= r.ci_low <= r.delta <= r.ci_high <= 1
    assert r.ci_high - r.ci_low > 0.02  # never zero-width at finite n


def test_thirty_cases_without_a_discordant_pair_are_not_certain() -> None:
    """Issue 17's repro: 30 cases, none changed, was "delta 0.000 [0.000, 0.000]". Tango:
    ±z²/(n + z²) = ±0.1135."""
    r = paired_test(np.ones(30), np.ones(30), "binary")
    z2 = sps.norm.ppf(0.975) ** 2
    assert (r.delta, r.ci_low, r.ci_high) == (0.0, pytest.approx(-z2 / (30 + z2)),
                                              pytest.approx(z2 / (30 + z2)))
    assert math.isnan(r.p_value) and not r.testable and r.reason == "all pairs equal"


def test_binary_mid_p_approaches_the_chi_square_test_for_many_discordant_pairs() -> None:
    base, cand = _pairs(300, 60, 40, 100)
    r = paired_test(base, cand, "binary")
    chi2 = mcnemar([[300, 60], [40, 100]], exact=False, correction=False).pvalue
    assert r.p_value == pytest.approx(chi2, abs=0.005) and r.significant == (chi2 < 0.05)
    assert paired_test(*_pairs(3, 7, 7, 3), "binary").p_value == 1.0  # balanced discordance


def test_binary_interval_stays_within_minus_one_and_one() -> None:
    r = paired_test([1, 1, 1], [0, 0, 0], "binary")
    assert r.ci_low == -1.0 and -1.0 < r.ci_high < 1  # every pair regressed, 3 pairs
    r = paired_test([1, 0], [0, 0], "binary")
    assert -1.0 <= r.ci_low < -0.5 < r.ci_high <= 1.0


def test_binary_refuses_values_other_than_zero_and_one() -> None:
    with pytest.raises(ValueError, match="binary scores must be 0, 1"):
        paired_test([1, 0.5], [1, 1], "binary")


# --- ordinal: Wilcoxon signed-rank, Pratt -------------------------------------------------

def test_ordinal_pratt_exact_by_hand() -> None:
    # d = 0, 1, -2, 3, 3: ranks of |d| with the zero 1, 2, 3, 4.5, 4.5; the zero's rank
    # dropped, R+ = 2 + 4.5 + 4.5 = 11 of 14, E = 7. Of the 2⁴ sign patterns of the ranks
    # 2, 3, 4.5, 4.5, those with |R+ - 7| ≥ 4: R+ ∈ {0, 2, 3, 11, 12, 14} → 6 of 16.
    r = paired_test([2, 2, 4, 1, 2], [2, 3, 2, 4, 5], "ordinal")
    assert r.p_value == pytest.approx(6 / 16)
    assert (r.test, r.delta) == ("Wilcoxon signed-rank (Pratt)", pytest.approx(1.0))
    assert r.ci_low < r.delta < r.ci_high


def test_ordinal_matches_scipy_with_ties_and_exactly_without() -> None:
    rng = np.random.default_rng(5)
    base, cand = rng.integers(1, 6, 120), rng.integers(1, 6, 120)  # > 50 changed: normal
    want = sps.wilcoxon(cand - base, zero_method="pratt", method="asymptotic").pvalue
    assert paired_test(base, cand, "ordinal").p_value == pytest.approx(want)
    distinct = np.array([0.5, -1.5, 2.5, 3.5, -4.5, 5.5, 6.5, 7.5])
    want = sps.wilcoxon(distinct, method="exact").pvalue
    assert paired_test(np.zeros(8), distinct, "ordinal").p_value == pytest.approx(want)
    assert want == pytest.approx(2 * 19 / 256)  # R- = 2 + 5; 19 of 2⁸ rank subsets sum to <= 7


# --- continuous: paired t -----------------------------------------------------------------

def test_continuous_is_the_paired_t_test_when_differences_are_symmetric() -> None:
    r = paired_test([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], "continuous")
    # mean 2, sd 1, se 1/√3, t = 2√3 on 2 df; skewness 0: Hall's correction vanishes
    assert r.p_value == pytest.approx(2 * sps.t.sf(2 * math.sqrt(3), 2))
    assert (r.ci_low, r.ci_high) == pytest.approx((2 - T975_DF2 / math.sqrt(3),
                                                    2 + T975_DF2 / math.sqrt(3)))
    d = np.array([-0.3, -0.1, 0.0, 0.2, 0.5, 0.1, -0.4, 0.4, 0.6, -0.2])
    d = np.r_[d, -d] + 0.05  # symmetric about 0.05
    r, want = paired_test(np.zeros(20), d, "continuous"), sps.ttest_1samp(d, 0)
    ci = want.confidence_interval(0.95)
    assert (r.p_value, r.ci_low, r.ci_high) == pytest.approx((want.pvalue, ci.low, ci.high),
                                                             rel=1e-9)
    assert (r.test, r.significant) == ("paired t (skew-corrected)", want.pvalue < 0.05)


def test_skewed_differences_get_halls_interval_by_hand() -> None:
    """Hall (1992): the t statistic T = (mean - m)/se goes through g(T) = T + aT² + a²T³/3
    + γ/(6√n), a = γ/(3√n), and the interval is {m: |g(T(m))| ≤ t(0.975, n - 1)}. Solved
    here by bisection, independently of the closed-form inverse in the code."""
    from scipy.optimize import brentq

    d = np.array([0.0, 0.01, -0.02, 0.02, 0.01, -0.6, 0.0, 0.03, -0.7, 0.01, 0.02, -0.01])
    n, mean, sd = d.size, d.mean(), d.std(ddof=1)
    se, gamma = sd / math.sqrt(n), np.mean((d - d.mean()) ** 3) / sd**3
    a = gamma / (3 * math.sqrt(n))

    def g(m: float) -> float:
        t = (mean - m) / se
        return t + a * t * t + a * a * t**3 / 3 + gamma / (6 * math.sqrt(n))

    q = sps.t.ppf(0.975, n - 1)
    low, high = brentq(lambda m: g(m) - q, -5, mean), brentq(lambda m: g(m) + q, mean, 5)
    r = paired_test(np.zeros(n), d, "continuous")
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), rel=1e-9)
    assert r.p_value == pytest.approx(2 * min(sps.t.cdf(g(0), n - 1), sps.t.sf(g(0), n - 1)))
    t_ci = sps.ttest_1samp(d, 0).confidence_interval(0.95)
    assert r.ci_low < t_ci.low and r.ci_high < t_ci.high  # longer on the side of the tail


def test_identical_non_zero_differences_get_the_exact_sign_flip_test() -> None:
    """No spread, no standard error: the sign-flip test, p = 2·2^-n. Before: p = 0 and the
    interval (0.5, 0.5); with float noise on top, p = 1e-22."""
    r = paired_test([0.25, 0.5, 0.75], [0.75, 1.0, 1.25], "continuous")
    assert (r.p_value, r.test, r.testable) == (0.25, "sign-flip (exact)", False)
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high)
    noisy = 0.1 + np.random.default_rng(0).normal(0, 1e-17, 30)
    r = paired_test(np.zeros(30), noisy, "continuous")
    assert r.p_value == pytest.approx(2 * 0.5**30) and r.significant


def test_alpha_only_sets_significance_the_interval_stays_95() -> None:
    base, cand = _pairs(20, 9, 2, 5)
    loose, strict = (paired_test(base, cand, "binary", alpha=a) for a in (0.1, 0.01))
    assert 0.01 < loose.p_value < 0.1 and loose.significant and not strict.significant
    assert (loose.ci_low, loose.ci_high, loose.alpha) == (strict.ci_low, strict.ci_high, 0.1)


# --- degenerate input ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_no_pairs_means_nan_and_untestable(kind: str) -> None:
    r = paired_test([], [], kind)
    assert (r.n, r.significant, r.testable) == (0, False, False) and math.isnan(r.p_value)
    assert all(math.isnan(x) for x in (r.baseline, r.candidate, r.delta, r.ci_low, r.ci_high))
    assert r.reason == "no pairs scored on both sides"


@pytest.mark.parametrize("kind", KINDS)
def test_all_unscored_is_no_pairs_and_says_what_was_dropped(kind: str) -> None:
    r = paired_test([np.nan, 1, None], [0, np.nan, None], kind)
    assert r.n == 0 and math.isnan(r.p_value)
    assert r.reason == "3 unscored pairs dropped; no pairs scored on both sides"


@pytest.mark.parametrize("kind", KINDS)
def test_one_pair_has_a_delta_but_no_interval(kind: str) -> None:
    r = paired_test([1], [0], kind)
    assert (r.n, r.delta, r.reason, r.testable) == (1, -1.0, "n < 2", False)
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high) and math.isnan(r.p_value)


@pytest.mark.parametrize("kind", KINDS)
def test_all_pairs_equal_is_untestable_and_never_a_zero_interval(kind: str) -> None:
    r = paired_test([1, 0, 1, 1], [1, 0, 1, 1], kind)
    assert (r.n, r.baseline, r.delta) == (4, 0.75, 0)
    assert r.reason == "all pairs equal" and not r.significant and not r.testable
    assert math.isnan(r.p_value) and r.verdict == "untestable"
    if kind == "binary":  # Tango: ±z²/(n + z²)
        assert (r.ci_low, r.ci_high) == pytest.approx((-0.4899, 0.4899), abs=1e-4)
    else:  # no spread: no interval, rather than (0, 0)
        assert math.isnan(r.ci_low) and math.isnan(r.ci_high)


@pytest.mark.parametrize("kind", KINDS)
def test_unscored_pairs_are_dropped_from_both_sides(kind: str) -> None:
    base, cand = _pairs(10, 5, 1, 4)
    full = paired_test(base, cand, kind)
    r = paired_test([*base, np.nan, 1.0], [*cand, 0.0, None], kind)
    assert r.reason == "2 unscored pairs dropped"
    assert (r.n, r.delta, r.p_value, r.ci_low) == (full.n, full.delta, full.p_value,
                                                   full.ci_low)


def test_bad_input_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="aligned"):
        paired_test([1, 0], [1], "binary")
    with pytest.raises(ValueError, match="one-dimensional"):
        paired_test([[1, 0]], [[1, 1]], "binary")
    with pytest.raises(ValueError, match="kind must be one of"):
        paired_test([1], [1], "nominal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        paired_test([1.0, math.inf], [1.0, 0.0], "continuous")
    with pytest.raises(ValueError, match="alpha"):
        paired_test([1, 0], [1, 1], "binary", alpha=5)
    with pytest.raises(ValueError, match="3 keys for 2 pairs"):
        paired_test([1, 0], [1, 1], "binary", clusters=["a", "b", "c"])


def test_result_is_frozen() -> None:
    r = paired_test([1, 0], [1, 1], "binary")
    assert isinstance(r, PairedResult)
    with pytest.raises(AttributeError):
        r.p_value = 0.0  # type: ignore[misc]


# --- clustered standard errors ------------------------------------------------------------

def test_clustered_cr2_and_bell_mccaffrey_by_matrices() -> None:
    """CR2 the long way: the design is a column of ones, H = 11ᵀ/N, each cluster's residuals
    scaled by (I - H_gg)^(-1/2) (a matrix square root), V = Σ (1ᵀA_g e_g)²/N²; the degrees of
    freedom are Satterthwaite's for that quadratic form, from the full N × N matrices."""
    from scipy.linalg import sqrtm

    d = np.array([1, 0, 1, 0, 0, -1, 1, 1, 0, 2], dtype=float)
    keys = ["a", "a", "a", "b", "b", "c", "c", "d", "d", "d"]
    codes = np.array([ord(k) - ord("a") for k in keys])
    big_n = d.size
    h = np.ones((big_n, big_n)) / big_n
    e = d - d.mean()
    adjust = np.zeros((big_n, big_n))  # block-diagonal (I - H_gg)^(-1/2)
    for g in range(4):
        idx = np.flatnonzero(codes == g)
        block = np.linalg.inv(sqrtm(np.eye(idx.size) - h[np.ix_(idx, idx)]).real)
        adjust[np.ix_(idx, idx)] = block
    sums = [np.ones(np.sum(codes == g)) @ (adjust @ e)[codes == g] for g in range(4)]
    var = float(np.sum(np.square(sums))) / big_n**2
    # V = εᵀ M ε with M = (I - H)ᵀ Aᵀ B Bᵀ A (I - H) / N² (B: cluster indicators)
    b = np.eye(4)[codes]
    m = (np.eye(big_n) - h) @ adjust.T @ b @ b.T @ adjust @ (np.eye(big_n) - h) / big_n**2
    df = np.trace(m) ** 2 / np.trace(m @ m)
    r = paired_test(np.zeros(big_n), d, "continuous", clusters=keys)
    t = d.mean() / math.sqrt(var)
    assert r.p_value == pytest.approx(2 * sps.t.sf(t, df), rel=1e-9)
    half = sps.t.ppf(0.975, df) * math.sqrt(var)
    assert (r.ci_low, r.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert (r.test, r.n) == ("clustered t (CR2)", 10)


@pytest.mark.parametrize("kind", KINDS)
def test_one_case_per_cluster_is_the_paired_t(kind: str) -> None:
    rng = np.random.default_rng(3)
    base, cand = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    want = sps.ttest_rel(cand, base)
    for keys in (range(60), [None] * 60, [math.nan] * 60):  # a missing key stands alone
        r = paired_test(base, cand, kind, clusters=keys)
        assert (r.p_value, r.ci_low) == pytest.approx(
            (want.pvalue, max(-1.0, want.confidence_interval().low)))
        assert r.test == "clustered t (CR2)"


def test_correlated_clusters_widen_the_interval() -> None:
    rng = np.random.default_rng(11)
    cluster_effect = np.repeat(rng.normal(0, 0.3, 12), 10)  # 12 clusters of 10 cases
    base = rng.random(120)
    cand = base + cluster_effect + rng.normal(0, 0.05, 120)
    keys = np.repeat([f"doc{i}" for i in range(12)], 10)
    naive = paired_test(base, cand, "continuous")
    clustered = paired_test(base, cand, "continuous", clusters=keys)
    assert clustered.delta == naive.delta
    assert clustered.ci_high - clustered.ci_low > 2.5 * (naive.ci_high - naive.ci_low)
    assert clustered.p_value > naive.p_value


def test_clustered_keys_follow_the_dropped_pairs_and_need_two_clusters() -> None:
    r = paired_test([0, 0, np.nan, 0], [1, 2, 0, 4], "continuous", clusters=["a", "a", "b", "a"])
    assert (r.n, r.reason) == (3, "1 unscored pair dropped; fewer than 2 clusters")
    assert math.isnan(r.ci_low) and math.isnan(r.p_value) and r.delta == pytest.approx(7 / 3)
    tuples = paired_test([0, 0, 0, 0], [1, 2, 0, 4], "continuous",
                         clusters=[("x", 1), ("x", 1), ("y", 2), ("y", 2)])
    assert tuples.reason is None and tuples.test == "clustered t (CR2)"


def test_unhashable_cluster_keys_are_compared_by_value() -> None:
    """Before: lists (a JSON stratum) raised TypeError."""
    lists = paired_test([0, 0, 0, 0], [1, 2, 0, 4], "continuous",
                        clusters=[["x", 1], ["x", 1], {"y": 2}, {"y": 2}])
    tuples = paired_test([0, 0, 0, 0], [1, 2, 0, 4], "continuous",
                         clusters=["x", "x", "y", "y"])
    assert (lists.p_value, lists.ci_low) == (tuples.p_value, tuples.ci_low)


def test_clusters_with_identical_means_get_the_exact_sign_flip_test() -> None:
    """Five clusters of four cases, one improved in each: every cluster's mean difference is
    0.25, so CR1's standard error was 0 and p = 0. The sign-flip test over 5 clusters: only
    all-same-sign patterns are as extreme, p = 2/32, and nothing at G = 5 can reach 0.05."""
    base, cand = np.zeros(20), np.zeros(20)
    cand[::4] = 1
    r = paired_test(base, cand, "binary", clusters=np.repeat(np.arange(5), 4))
    assert (r.p_value, r.testable, r.significant) == (2 / 32, False, False)
    assert r.test == "sign-flip (exact) over clusters" and "5 clusters" in r.reason
    eight = paired_test(np.zeros(32), np.tile([1.0, 0, 0, 0], 8), "binary",
                        clusters=np.repeat(np.arange(8), 4))
    assert eight.p_value == pytest.approx(2 / 256) and eight.significant


# --- Benjamini–Hochberg -------------------------------------------------------------------

def test_benjamini_hochberg_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 → p·5/rank 0.025, 0.025, 0.05, 0.05, 0.5, then the
    # running minimum from the largest down.
    got = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.5])
    assert got == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])


def test_benjamini_hochberg_skips_untested_and_takes_empty() -> None:
    got = benjamini_hochberg([0.01, np.nan, 0.04, 0.03, None, 0.005, 0.5])
    assert np.isnan(got[[1, 4]]).all()
    assert got[[0, 2, 3, 5, 6]] == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert benjamini_hochberg([]).shape == (0,)
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        benjamini_hochberg([0.2, 1.5])


# --- power --------------------------------------------------------------------------------

def test_n_needed_by_hand() -> None:
    # 0.8 → 0.7, ρ = 0.5: var(d) = 0.16 + 0.21 - √(0.16·0.21) = 0.186697;
    # n = ((1.959964 + 0.841621)² · var) / 0.1² = 146.54 → 147
    assert stats.n_needed(0.1, 0.8) == 147
    assert stats.n_needed(0.1, 0.8, pair_correlation=0.0) == math.ceil(
        (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) ** 2 * 0.37 / 0.01)


@pytest.mark.parametrize("n", [10, 30, 120, 500, 5000])
def test_min_detectable_drop_and_n_needed_round_trip(n: int) -> None:
    drop = stats.min_detectable_drop(n, 0.8)
    assert 0 < drop < 0.8
    assert stats.n_needed(drop, 0.8) == n


def test_power_moves_the_right_way() -> None:
    drops = [stats.min_detectable_drop(n, 0.8) for n in (20, 50, 100, 400, 1600)]
    assert drops == sorted(drops, reverse=True)
    by_rho = [stats.min_detectable_drop(200, 0.8, rho) for rho in (0.0, 0.3, 0.6, 0.9)]
    assert by_rho == sorted(by_rho, reverse=True)
    assert stats.min_detectable_drop(200, 0.8, power=0.9) > stats.min_detectable_drop(200, 0.8)
    assert stats.min_detectable_drop(200, 0.8, alpha=0.01) > stats.min_detectable_drop(200, 0.8)
    needs = [stats.n_needed(drop, 0.8) for drop in (0.02, 0.05, 0.1, 0.2)]
    assert needs == sorted(needs, reverse=True)
    assert stats.min_detectable_drop(1600, 0.8) == pytest.approx(
        stats.min_detectable_drop(400, 0.8) / 2, rel=0.05)  # ~1/√n


def test_power_sentence() -> None:
    line = stats.power_sentence(120, 0.8)
    drop = 100 * stats.min_detectable_drop(120, 0.8)
    assert line == (f"with n = 120, drops smaller than {drop:.1f} points cannot be detected "
                    "(80% power, α = 0.05)")
    assert re.search(r"90% power, α = 0\.01\)$", stats.power_sentence(50, 0.7, 0.4, 0.01, 0.9))
    assert stats.min_detectable_drop(1, 0.8) == math.inf
    assert stats.power_sentence(1, 0.8).startswith("with n = 1, no drop in the pass rate can")


def test_power_refuses_impossible_settings() -> None:
    for kwargs in ({"base_rate": 1.2}, {"base_rate": 0.8, "pair_correlation": 2},
                   {"base_rate": 0.8, "power": 1.0}):
        with pytest.raises(ValueError):
            stats.min_detectable_drop(100, **kwargs)
    with pytest.raises(ValueError, match="drop"):
        stats.n_needed(0.9, 0.8)


def test_public_api_is_exported() -> None:
    assert {"paired_test", "PairedResult", "benjamini_hochberg", "wilson_interval",
            "with_intervals", "min_detectable_drop", "n_needed", "power_sentence"} <= set(
        stats.__all__)
    assert all(hasattr(stats, name) for name in stats.__all__)


@pytest.mark.parametrize("seed", range(40))
def test_hand_written_signed_rank_matches_scipy(seed: int) -> None:
    """The numpy Pratt signed-rank test gives scipy's asymptotic p: ties, zeros, any n."""
    from scipy.stats import wilcoxon

    from evallib.stats.signed_rank import _asymptotic_p

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    diff = (rng.integers(1, 6, n) - rng.integers(1, 6, n)).astype(float)  # 1–5 scale
    if seed % 4 == 0:
        diff = np.round(rng.normal(0.1, 1, n), 1)  # continuous-ish with ties and zeros
    if not diff.any():
        diff[0] = 1.0
    magnitudes, counts = np.unique(np.abs(diff), return_counts=True)
    ranks = sps.rankdata(np.abs(diff))
    expected = wilcoxon(diff, zero_method="pratt", method="asymptotic").pvalue
    assert _asymptotic_p(diff, magnitudes, counts, float(ranks[diff > 0].sum())) == \
        pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("base_rate", [1.0, 0.999, 0.8])
def test_a_perfect_baseline_still_has_a_positive_detectable_drop(base_rate: float) -> None:
    """At a base rate of 1 the spread of the differences vanishes as the drop does; a drop
    of 0 must not come out as "detectable"."""
    drop = stats.min_detectable_drop(400, base_rate, 0.5)
    assert 0.005 < drop < 0.1
    assert stats.n_needed(drop, base_rate, 0.5) == pytest.approx(400, abs=2)


def test_pair_correlation_is_kept_within_what_the_rates_allow() -> None:
    """A pass rate of 0.99 cannot correlate 0.5 with one of 0.79: the formula used to take
    the impossible correlation and promised more than 30 cases can see (a detectable drop
    of 18.1 points at n = 30, base rate 0.99; now 20.7). At the Fréchet bound every
    discordant pair goes one way, so var(d) = δ(1 - δ), whatever the base rate."""
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    drop = stats.min_detectable_drop(30, 0.99, 0.5)
    assert drop == pytest.approx(0.2074, abs=1e-3)
    assert drop * math.sqrt(30) == pytest.approx(z * math.sqrt(drop * (1 - drop)), rel=1e-6)
    assert stats.min_detectable_drop(30, 0.95, 0.5) == pytest.approx(drop, rel=1e-6)
    assert stats.n_needed(0.2, 0.99) == math.ceil(z * z * 0.16 / 0.04)  # 32, was 27
    # where 0.5 is feasible nothing changes: 0.8 → 0.7 (the hand-worked 147 above)
    assert stats.n_needed(0.1, 0.8) == 147


def test_exact_signed_rank_by_enumeration_with_ties_and_zeros() -> None:
    """The exact conditional p equals brute force over every sign pattern (Pratt ranks)."""
    from evallib.stats.signed_rank import signed_rank

    rng = np.random.default_rng(2)
    for _ in range(60):
        d = rng.integers(-2, 3, int(rng.integers(2, 11))).astype(float)
        if not d.any():
            continue
        ranks = sps.rankdata(np.abs(d))
        nz = d != 0
        r_plus, centre = ranks[d > 0].sum(), ranks[nz].sum() / 2
        sums = np.array([np.dot(s, ranks[nz]) for s in itertools.product(
            [0, 1], repeat=int(nz.sum()))])
        want = np.mean(np.abs(sums - centre) >= abs(r_plus - centre) - 1e-9)
        got = signed_rank(d)
        assert got.p_value == pytest.approx(want, abs=1e-12)
        assert got.direction == int(np.sign(round(r_plus - centre, 9)))
    distinct = rng.normal(size=25)  # no ties: scipy's exact distribution
    assert signed_rank(distinct).p_value == pytest.approx(
        sps.wilcoxon(distinct, method="exact").pvalue, rel=1e-10)


def test_benjamini_hochberg_equals_statsmodels() -> None:
    """scipy's BH (loaded for every compare anyway) gives statsmodels' numbers, ties, zeros
    and ones included."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 50, 500):
        for _ in range(50):
            p = rng.uniform(size=n) ** rng.uniform(0.2, 3)
            p[rng.uniform(size=n) < 0.1] = rng.choice([0.0, 1.0, 0.05])
            np.testing.assert_allclose(benjamini_hochberg(p),
                                       multipletests(p, method="fdr_bh")[1], rtol=1e-12)
