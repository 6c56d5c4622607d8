"""Judge vs human agreement at its edges: kappa and Krippendorff's alpha intervals lie in
[-1, 1], are never (1, 1) at perfect agreement, and degenerate tables (one category, all
agree, fewer than 3 labels) give NaN or a bounded interval without numpy warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa

from evallib.stats.agreement import agreement_from_counts


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "invalid value encountered in scalar divide"
        yield


def _in_range(*values: float) -> bool:
    return all(math.isnan(v) or -1 <= v <= 1 for v in values)


def test_perfect_agreement_has_an_interval_below_one() -> None:
    """Before: kappa (1, 1) from the asymptotic standard error of 0, alpha (1, 1) because
    every bootstrap resample agrees too. Now the lower bound comes from the Wilson bound
    of the disagreement: 30 balanced pass/fail pairs, kappa ≥ 1 - z²/(30 + z²)/0.5."""
    a = agreement_from_counts([1, 0], [1, 0], [15, 15], "binary")
    z2 = 1.959964**2
    assert a.kappa == 1.0 and a.kappa_high == 1.0
    assert a.kappa_low == pytest.approx(1 - z2 / (30 + z2) / 0.5, rel=1e-6)
    assert a.alpha == 1.0 and 0.5 < a.alpha_low < 1.0 and a.alpha_high == 1.0
    ordinal = agreement_from_counts([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [10] * 5, "ordinal")
    assert ordinal.kappa_low < 1 and ordinal.alpha_low < 1
    more = agreement_from_counts([1, 0], [1, 0], [150, 150], "binary")
    assert a.kappa_low < more.kappa_low < 1  # more pairs, tighter


def test_kappa_interval_never_exceeds_one() -> None:
    """Near-perfect agreement: the asymptotic interval reached 1.0574 on the demo."""
    counts = [10, 10, 10, 10, 10, 2]
    a = agreement_from_counts([1, 2, 3, 4, 5, 1], [1, 2, 3, 4, 5, 5], counts, "ordinal")
    table = np.diag([12.0, 10, 10, 10, 10])
    table[0, :] = [10, 0, 0, 0, 2]
    raw = cohens_kappa(table, weights=np.arange(1.0, 6), wt="linear")
    half = 1.959964 * raw.std_kappa
    assert a.kappa == pytest.approx(raw.kappa) and raw.kappa + half > 1
    assert a.kappa_high == 1.0 and a.kappa_low == pytest.approx(raw.kappa - half)
    assert _in_range(a.kappa, a.kappa_low, a.kappa_high, a.alpha, a.alpha_low, a.alpha_high)


@pytest.mark.parametrize("kind", ["binary", "ordinal"])
def test_one_category_is_nan_without_warnings(kind: str) -> None:
    a = agreement_from_counts([1], [1], [40], kind)
    assert math.isnan(a.kappa) and math.isnan(a.kappa_low) and math.isnan(a.alpha)
    assert a.status == "too few" and a.raw == 1.0


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_labels_stay_in_range(n: int) -> None:
    a = agreement_from_counts([5, 4], [5, 4], [1, n - 1] if n > 1 else [1, 0], "ordinal")
    b = agreement_from_counts([5], [4], [n], "ordinal")
    for x in (a, b):
        assert x.n == n and x.status == "too few"
        assert _in_range(x.kappa, x.kappa_low, x.kappa_high, x.alpha, x.alpha_low,
                         x.alpha_high)


def test_random_tables_keep_every_bound_in_range() -> None:
    rng = np.random.default_rng(4)
    for _ in range(40):
        k = int(rng.integers(2, 6))
        judge, human = rng.integers(1, k + 1, 12), rng.integers(1, k + 1, 12)
        agree = rng.random(12) < rng.random()
        human = np.where(agree, judge, human)
        a = agreement_from_counts(judge, human, rng.integers(0, 8, 12), "ordinal",
                                  n_boot=200)
        assert _in_range(a.kappa, a.kappa_low, a.kappa_high, a.alpha, a.alpha_low,
                         a.alpha_high)
        if not math.isnan(a.kappa_low):
            assert a.kappa_low <= a.kappa <= a.kappa_high
