"""evallib.stats' paired tests, FDR and power against numbers worked out by hand and against
direct scipy/statsmodels calls. Calibration by simulation lives in test_stats_calibration.py."""

from __future__ import annotations

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


def test_binary_interval_is_the_t_interval_of_the_paired_differences() -> None:
    base, cand = _pairs(10, 5, 1, 4)
    d = cand - base  # five -1, one +1: mean -0.2, sd² = (6 - 20·0.04) / 19
    r = paired_test(base, cand, "binary")
    half = sps.t.ppf(0.975, 19) * math.sqrt(5.2 / 19 / 20)
    assert (r.ci_low, r.ci_high) == pytest.approx((-0.2 - half, -0.2 + half))
    want = sps.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((want.low, want.high))


def test_binary_mid_p_approaches_the_chi_square_test_for_many_discordant_pairs() -> None:
    base, cand = _pairs(300, 60, 40, 100)
    r = paired_test(base, cand, "binary")
    chi2 = mcnemar([[300, 60], [40, 100]], exact=False, correction=False).pvalue
    assert r.p_value == pytest.approx(chi2, abs=0.005) and r.significant == (chi2 < 0.05)
    assert paired_test(*_pairs(3, 7, 7, 3), "binary").p_value == 1.0  # balanced discordance


def test_binary_interval_stays_within_minus_one_and_one() -> None:
    r = paired_test([1, 1, 1], [0, 0, 0], "binary")
    assert r.ci_low == -1.0 and r.ci_high == -1.0  # every pair regressed: no spread
    r = paired_test([1, 0], [0, 0], "binary")
    assert (r.ci_low, r.ci_high) == (-1.0, 1.0)  # -0.5 ± 12.7 · 0.5 by t on 1 df


def test_binary_refuses_values_other_than_zero_and_one() -> None:
    with pytest.raises(ValueError, match="binary scores must be 0, 1"):
        paired_test([1, 0.5], [1, 1], "binary")


# --- ordinal: Wilcoxon signed-rank, Pratt -------------------------------------------------

def test_ordinal_pratt_by_hand() -> None:
    # d = 0, 1, -2, 3, 3: ranks of |d| with the zero 1, 2, 3, 4.5, 4.5; the zero's rank
    # dropped, R+ = 11. Mean 5·6/4 - 1·2/4 = 7; variance 5·6·11/24 - 1·2·3/24 - (2³-2)/48.
    r = paired_test([2, 2, 4, 1, 2], [2, 3, 2, 4, 5], "ordinal")
    z = (11 - 7) / math.sqrt(13.75 - 0.25 - 0.125)
    assert r.p_value == pytest.approx(2 * sps.norm.sf(z))
    assert (r.test, r.delta) == ("Wilcoxon signed-rank (Pratt)", pytest.approx(1.0))
    want = sps.ttest_1samp([0, 1, -2, 3, 3], 0).confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((want.low, want.high))


def test_ordinal_matches_scipy_with_ties_and_exactly_without() -> None:
    rng = np.random.default_rng(5)
    base, cand = rng.integers(1, 6, 40), rng.integers(1, 6, 40)
    want = sps.wilcoxon(cand - base, zero_method="pratt", method="asymptotic").pvalue
    assert paired_test(base, cand, "ordinal").p_value == pytest.approx(want)
    distinct = np.array([0.5, -1.5, 2.5, 3.5, -4.5, 5.5, 6.5, 7.5])
    want = sps.wilcoxon(distinct, method="exact").pvalue
    assert paired_test(np.zeros(8), distinct, "ordinal").p_value == pytest.approx(want)
    assert want == pytest.approx(2 * 19 / 256)  # R- = 2 + 5; 19 of 2⁸ rank subsets sum to <= 7


# --- continuous: paired t -----------------------------------------------------------------

def test_continuous_is_the_paired_t_test() -> None:
    r = paired_test([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], "continuous")
    # mean 2, sd 1, se 1/√3, t = 2√3 on 2 df
    assert r.p_value == pytest.approx(2 * sps.t.sf(2 * math.sqrt(3), 2))
    assert (r.ci_low, r.ci_high) == pytest.approx((2 - T975_DF2 / math.sqrt(3),
                                                    2 + T975_DF2 / math.sqrt(3)))
    rng = np.random.default_rng(1)
    base = rng.random(50)
    cand = np.clip(base + rng.normal(0.05, 0.2, 50), 0, 1)
    r, want = paired_test(base, cand, "continuous"), sps.ttest_rel(cand, base)
    ci = want.confidence_interval(0.95)
    assert (r.p_value, r.ci_low, r.ci_high) == pytest.approx((want.pvalue, ci.low, ci.high),
                                                             rel=1e-12)
    assert (r.test, r.significant) == ("paired t", want.pvalue < 0.05)


def test_identical_non_zero_differences_are_certain() -> None:
    r = paired_test([0.25, 0.5, 0.75], [0.75, 1.0, 1.25], "continuous")
    assert (r.p_value, r.ci_low, r.ci_high) == (0.0, pytest.approx(0.5), pytest.approx(0.5))


def test_alpha_only_sets_significance_the_interval_stays_95() -> None:
    base, cand = _pairs(20, 9, 2, 5)
    loose, strict = (paired_test(base, cand, "binary", alpha=a) for a in (0.1, 0.01))
    assert 0.01 < loose.p_value < 0.1 and loose.significant and not strict.significant
    assert (loose.ci_low, loose.ci_high, loose.alpha) == (strict.ci_low, strict.ci_high, 0.1)


# --- degenerate input ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_no_pairs_means_nan_but_p_one(kind: str) -> None:
    r = paired_test([], [], kind)
    assert (r.n, r.p_value, r.significant) == (0, 1.0, False)
    assert all(math.isnan(x) for x in (r.baseline, r.candidate, r.delta, r.ci_low, r.ci_high))
    assert r.reason == "no pairs scored on both sides"


@pytest.mark.parametrize("kind", KINDS)
def test_all_unscored_is_no_pairs_and_says_what_was_dropped(kind: str) -> None:
    r = paired_test([np.nan, 1, None], [0, np.nan, None], kind)
    assert (r.n, r.p_value) == (0, 1.0)
    assert r.reason == "3 unscored pairs dropped; no pairs scored on both sides"


@pytest.mark.parametrize("kind", KINDS)
def test_one_pair_has_a_delta_but_no_interval(kind: str) -> None:
    r = paired_test([1], [0], kind)
    assert (r.n, r.delta, r.p_value, r.reason) == (1, -1.0, 1.0, "n < 2")
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high)


@pytest.mark.parametrize("kind", KINDS)
def test_all_pairs_equal_is_zero_with_a_zero_interval(kind: str) -> None:
    r = paired_test([1, 0, 1, 1], [1, 0, 1, 1], kind)
    assert (r.n, r.baseline, r.delta, r.ci_low, r.ci_high, r.p_value) == (4, 0.75, 0, 0, 0, 1)
    assert r.reason == "all pairs equal" and not r.significant


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

def test_clustered_se_by_hand() -> None:
    d = [1, 0, 1, 0, 0, -1, 1]
    keys = ["a", "a", "a", "b", "b", "c", "c"]
    r = paired_test(np.zeros(7), d, "continuous", clusters=keys)
    # d̄ = 2/7; cluster sums of d - d̄: 8/7, -4/7, -4/7 → Σ² = 96/49.
    # SE² = 3/2 · (96/49) / 7² = 144/2401, SE = 12/49, t = (2/7) / (12/49) = 7/6 on 2 df.
    assert r.p_value == pytest.approx(2 * sps.t.sf(7 / 6, 2))
    assert (r.ci_low, r.ci_high) == pytest.approx((2 / 7 - T975_DF2 * 12 / 49,
                                                   2 / 7 + T975_DF2 * 12 / 49))
    assert (r.test, r.n) == ("clustered paired t", 7)


@pytest.mark.parametrize("kind", KINDS)
def test_one_case_per_cluster_is_the_paired_t(kind: str) -> None:
    rng = np.random.default_rng(3)
    base, cand = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    want = sps.ttest_rel(cand, base)
    for keys in (range(60), [None] * 60, [math.nan] * 60):  # a missing key stands alone
        r = paired_test(base, cand, kind, clusters=keys)
        assert (r.p_value, r.ci_low) == pytest.approx(
            (want.pvalue, max(-1.0, want.confidence_interval().low)))
        assert r.test == "clustered paired t"


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
    assert (r.n, r.p_value, r.reason) == (3, 1.0, "1 unscored pair dropped; fewer than 2 clusters")
    assert math.isnan(r.ci_low) and r.delta == pytest.approx(7 / 3)
    tuples = paired_test([0, 0, 0, 0], [1, 2, 0, 4], "continuous",
                         clusters=[("x", 1), ("x", 1), ("y", 2), ("y", 2)])
    assert tuples.reason is None and tuples.test == "clustered paired t"


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

    from evallib.stats.paired import _signed_rank_asymptotic

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    diff = (rng.integers(1, 6, n) - rng.integers(1, 6, n)).astype(float)  # 1–5 scale
    if seed % 4 == 0:
        diff = np.round(rng.normal(0.1, 1, n), 1)  # continuous-ish with ties and zeros
    if not diff.any():
        diff[0] = 1.0
    magnitudes, counts = np.unique(np.abs(diff), return_counts=True)
    expected = wilcoxon(diff, zero_method="pratt", method="asymptotic").pvalue
    assert _signed_rank_asymptotic(diff, magnitudes, counts) == pytest.approx(
        expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("base_rate", [1.0, 0.999, 0.8])
def test_a_perfect_baseline_still_has_a_positive_detectable_drop(base_rate: float) -> None:
    """At a base rate of 1 the spread of the differences vanishes as the drop does; a drop
    of 0 must not come out as "detectable"."""
    drop = stats.min_detectable_drop(400, base_rate, 0.5)
    assert 0.005 < drop < 0.1
    assert stats.n_needed(drop, base_rate, 0.5) == pytest.approx(400, abs=2)
