"""Production-weighted estimates (`evallib.analysis.coverage`): hand computations, strata the golden
set lacks, and the false-positive rate of the "differs" flag by simulation."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import t as student_t

from evallib.analysis import coverage

Z = 1.959963984540054


def _cells(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"metric": pl.String, "stratum": pl.String,
                                      "stratum2": pl.String, "kind": pl.String, "n": pl.Int64,
                                      "mean": pl.Float64, "sd": pl.Float64}, orient="row")


def _traffic(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"stratum": pl.String, "stratum2": pl.String,
                                      "n": pl.Int64}, orient="row")


def test_weighted_mean_its_interval_and_the_difference_by_hand() -> None:
    cells = _cells([("m", "a", None, "continuous", 5, 0.5, 0.2),
                    ("m", "b", None, "continuous", 10, 1.0, 0.4)])
    out = coverage.production_weighted(cells, _traffic([("a", None, 30), ("b", None, 70)]))
    row = out.row(0, named=True)
    assert row["plain"] == pytest.approx((5 * 0.5 + 10 * 1.0) / 15)
    assert row["weighted"] == pytest.approx(0.3 * 0.5 + 0.7 * 1.0)
    se = math.sqrt(0.3**2 * 0.04 / 5 + 0.7**2 * 0.16 / 10)
    assert row["weighted_low"] == pytest.approx(0.85 - Z * se)
    assert row["weighted_high"] == pytest.approx(0.85 + Z * se)
    wa, wb = 0.3 - 5 / 15, 0.7 - 10 / 15
    d_se = math.sqrt(wa**2 * 0.04 / 5 + wb**2 * 0.16 / 10)
    assert row["difference"] == pytest.approx(0.85 - 2.5 / 3)
    assert row["difference_se"] == pytest.approx(d_se)
    assert row["differs"] == (abs(0.85 - 2.5 / 3) > Z * d_se)
    assert row["covered"] == 1.0
    # the plain interval is the one the Runs page shows: t over all 15 cases
    sd_all = math.sqrt((4 * 0.04 + 9 * 0.16 + 5 * (0.5 - 2.5 / 3) ** 2
                        + 10 * (1 - 2.5 / 3) ** 2) / 14)
    half = student_t.ppf(0.975, 14) * sd_all / math.sqrt(15)
    assert row["plain_low"] == pytest.approx(2.5 / 3 - half)


def test_traffic_the_golden_set_lacks_is_reported_not_estimated() -> None:
    cells = _cells([("m", "a", "x", "binary", 20, 0.9, None),
                    ("m", None, "x", "binary", 10, 0.5, None)])  # cases lacking the key
    traffic = _traffic([("a", "x", 50), (None, "x", 25), ("c", "x", 25)])
    row = coverage.production_weighted(cells, traffic).row(0, named=True)
    assert row["covered"] == pytest.approx(0.75)  # stratum c has no golden case
    assert row["weighted"] == pytest.approx((50 * 0.9 + 25 * 0.5) / 75)  # missing ↔ missing
    assert row["strata"] == 2
    mixes = coverage.strata_mixes(
        pl.DataFrame({"stratum": ["a", None], "stratum2": ["x", "x"], "n": [20, 10]}),
        traffic)
    lacking = mixes.filter(pl.col("golden_n") == 0)
    assert lacking["stratum"].to_list() == ["c"]
    assert lacking["traffic_share"].item() == pytest.approx(0.25)
    assert mixes.filter(pl.col("stratum") == coverage.MISSING)["golden_share"].item() \
        == pytest.approx(1 / 3)


def test_a_pass_rate_stratum_of_all_passes_still_has_variance() -> None:
    """3 of 3 passing does not mean no uncertainty: the add-one rate 4/5 is used."""
    cells = _cells([("m", "a", None, "binary", 3, 1.0, 0.0),
                    ("m", "b", None, "binary", 97, 0.5, 0.5)])
    row = coverage.production_weighted(cells, _traffic([("a", None, 1), ("b", None, 1)])) \
        .row(0, named=True)
    pa, pb = 4 / 5, (48.5 + 1) / 99
    se = math.sqrt(0.25 * pa * (1 - pa) / 3 + 0.25 * pb * (1 - pb) / 97)
    assert row["weighted_high"] == pytest.approx(min(1.0, 0.75 + Z * se))
    assert row["weighted_low"] == pytest.approx(0.75 - Z * se)
    # the flag's SE uses the pooled rate in every stratum (a score test)
    plain = (3 + 48.5) / 100
    c_a, c_b = 0.5 - 3 / 100, 0.5 - 97 / 100
    assert row["difference_se"] == pytest.approx(
        math.sqrt(plain * (1 - plain) * (c_a**2 / 3 + c_b**2 / 97)))


def _simulate(rng: np.random.Generator, kind: str, sizes: np.ndarray, means: np.ndarray,
              reps: int) -> pl.DataFrame:
    """``reps`` golden sets as one cells frame (one metric per replicate)."""
    rows = []
    for r in range(reps):
        for h, (n, mu) in enumerate(zip(sizes, means, strict=True)):
            x = (rng.random(n) < mu).astype(float) if kind == "binary" else \
                rng.normal(mu, 1.0, n)
            rows.append((f"rep{r:05d}", f"s{h}", None, kind, int(n), float(x.mean()),
                         float(x.std(ddof=1)) if n > 1 else None))
    return _cells(rows)


# A golden set shaped like the demo's: 15 strata of 3 to 60 cases, over-sampling the strata
# production sees least (weights reversed).
SIZES = np.array([3, 4, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 60])
TRAFFIC = _traffic([(f"s{h}", None, int(w)) for h, w in
                    enumerate(1000 * SIZES[::-1] / SIZES.sum())])


@pytest.mark.parametrize(("kind", "mean"), [("binary", 0.5), ("binary", 0.8),
                                            ("binary", 0.95), ("continuous", 0.0)])
def test_the_flag_fires_about_5_percent_of_the_time_when_nothing_differs(
        kind: str, mean: float) -> None:
    """Every stratum has the same true mean, so re-weighting changes nothing: the flag is a
    false positive. 2,000 replications: the rate's binomial sd is 0.005."""
    rng = np.random.default_rng(20261123)
    cells = _simulate(rng, kind, SIZES, np.full(SIZES.size, mean), 2000)
    rate = coverage.production_weighted(cells, TRAFFIC)["differs"].mean()
    print(kind, mean, "false-positive rate", rate)
    assert 0.03 <= rate <= 0.07  # measured: 0.039 to 0.052


def test_the_flag_sees_a_golden_set_that_misrepresents_traffic() -> None:
    """Pass rates from 0.5 to 0.9 across strata and production leaning to the best ones:
    the weighted rate is 0.18 above the plain one, and the flag says so (power 0.87 with
    these 300 replications; 0.61 for a 0.13 gap)."""
    rng = np.random.default_rng(7)
    means = np.linspace(0.5, 0.9, SIZES.size)[::-1]  # big golden strata are the worst
    cells = _simulate(rng, "binary", SIZES, means, 300)
    out = coverage.production_weighted(cells, TRAFFIC)
    assert out["differs"].mean() > 0.75
    assert out["difference"].mean() == pytest.approx(0.176, abs=0.01)
