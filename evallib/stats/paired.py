"""Paired comparison of two runs scored on the same cases: is the difference real or noise?

One entry point, `paired_test`, picks the test by metric kind. Every test is two-sided and
tests the difference its verdict reports: "worse" (delta < 0, significant) means the
candidate's mean is lower, never only that its ranks moved.

- binary: McNemar's test, mid-p version (H0: as many pairs regressed as improved). Its exact
  size never exceeds alpha = 0.05 (at most 0.0498 for n = 10 to 1,000), while the exact
  binomial version falls to a quarter of alpha at n = 30 with 20% discordant pairs.
  Interval: Tango's score interval of the difference of pass rates, never zero-width.
- ordinal: Wilcoxon signed-rank, zeros by Pratt's method, exact with ties up to 50 changed
  pairs (H0: the differences are symmetric about 0). Its power on 1–5 scales is real, but
  it can point the other way from the mean (50 pairs 4 → 5 and 15 pairs 5 → 1: the mean
  falls 0.10, the ranks rise, p = 0.0036). Then the p-value is the mean's (skew-corrected
  t, p = 0.56) and ``reason`` says the distribution changed.
- continuous: paired t on the mean difference with Hall's skewness correction.
- clustered (``clusters`` given, any kind): a t test of the mean difference on a CR2
  standard error with Bell–McCaffrey degrees of freedom; neither McNemar nor Wilcoxon has a
  clustered form and pairs in a cluster are not independent.
- no spread (every difference, or every cluster's mean difference, the same and not 0):
  no standard error exists; the exact sign-flip test over the units (p = 2·2^-G).

Ordinal and continuous intervals are the skew-corrected t interval of the mean; see
`evallib.stats.difference`. A result is *untestable* when it cannot carry evidence: fewer
than 2 pairs or clusters, no pair changed, or too few changed pairs for any outcome to reach
p < alpha (4 discordant pairs: the smallest mid-p is 0.0625). Its p-value is NaN when
nothing could be tested, and a family of tests (BH) leaves untestable ones out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .difference import Inference, constant, cr2_mean, no_spread, skew_corrected_t, tango
from .signed_rank import signed_rank

__all__ = ["Kind", "PairedResult", "TESTS", "paired_inference", "paired_test"]

Kind = Literal["binary", "ordinal", "continuous"]
KINDS: tuple[str, ...] = get_args(Kind)

#: The name `PairedResult.test` carries for each kind (and for clustered data).
TESTS: dict[str, str] = {"binary": "McNemar mid-p", "ordinal": "Wilcoxon signed-rank (Pratt)",
                         "continuous": "paired t (skew-corrected)",
                         "clustered": "clustered t (CR2)", "sign-flip": "sign-flip (exact)"}

NAN = math.nan
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class PairedResult:
    """Candidate vs baseline on the same cases; every number a gate or a page needs.

    ``baseline`` and ``candidate`` are means over the pairs both sides scored, ``delta`` is
    ``candidate - baseline`` and ``ci_low``/``ci_high`` its 95% interval (always 95%, whatever
    ``alpha``). ``p_value`` is two-sided; NaN when nothing could be tested (no pair, one
    pair, no pair changed, one cluster). ``testable`` is False then, and also when no
    outcome of this many changed pairs could reach ``alpha``: a family of tests leaves
    such results out. ``reason`` says why, or what was dropped, or that the distribution
    changed against the mean; None when all went well.
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
    testable: bool = True

    @property
    def significant(self) -> bool:
        """The test rejects "no difference" at ``alpha``."""
        return self.testable and self.p_value < self.alpha

    @property
    def verdict(self) -> str:
        """worse | better | no significant change | untestable."""
        if not self.testable:
            return "untestable"
        if not self.significant or self.delta == 0:
            return "no significant change"
        return "worse" if self.delta < 0 else "better"


def paired_test(baseline: ArrayLike, candidate: ArrayLike, kind: Kind, alpha: float = 0.05,
                *, clusters: Iterable[Any] | None = None) -> PairedResult:
    """Compare two runs' scores on the same cases, aligned position by position.

    NaN (or None) on either side means unscored: the pair is dropped and ``reason`` says how
    many. ``clusters`` gives each case's cluster key (None/NaN: a cluster of its own; lists
    and dicts are compared by value); with it the test is the clustered t whatever the kind.
    ``alpha`` sets `significant` and what counts as testable.
    """
    return paired_inference(baseline, candidate, kind, alpha, clusters=clusters)[0]


def paired_inference(baseline: ArrayLike, candidate: ArrayLike, kind: Kind,
                     alpha: float = 0.05, *, clusters: Iterable[Any] | None = None
                     ) -> tuple[PairedResult, Inference | None]:
    """`paired_test` and the `Inference` of its delta (None when nothing can be estimated):
    the interval and the one-sided tests against a margin that the gate's max_drop uses."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    base, cand, keys, dropped = _scored_pairs(baseline, candidate, clusters)
    if kind == "binary" and not all(((x == 0) | (x == 1)).all() for x in (base, cand)):
        raise ValueError("binary scores must be 0, 1 or NaN")
    notes = [f"{dropped} unscored pair{'s' if dropped != 1 else ''} dropped"] if dropped else []
    out = _outcome(cand - base, kind, keys, alpha)
    base_mean, cand_mean = (float(x.sum()) / x.size if x.size else NAN for x in (base, cand))
    low, high = (NAN, NAN) if out.inference is None else (float(out.inference.low),
                                                          float(out.inference.high))
    if kind == "binary":  # a difference of two rates lies in [-1, 1] (NaN stays NaN)
        low, high = (x if math.isnan(x) else min(1.0, max(-1.0, x)) for x in (low, high))
    testable = out.testable and out.min_p < alpha
    if out.testable and not testable:
        out.notes.append(f"{out.units} cannot reach p < {alpha:g} (the smallest possible p "
                         f"is {out.min_p:.2g})")
    result = PairedResult(n=base.size, baseline=base_mean, candidate=cand_mean,
                          delta=cand_mean - base_mean, ci_low=low, ci_high=high,
                          p_value=out.p, test=out.test,
                          reason="; ".join([*notes, *out.notes]) or None, alpha=alpha,
                          testable=testable)
    return result, out.inference


@dataclass
class _Outcome:
    p: float
    test: str
    inference: Inference | None
    notes: list[str]
    testable: bool = True
    min_p: float = 0.0  # the smallest p this many changed units could give
    units: str = ""  # "3 changed pairs": what min_p is about


def _outcome(diff: Floats, kind: Kind, keys: NDArray[np.intp] | None,
             alpha: float) -> _Outcome:
    """The test, its interval, and whether it can carry evidence."""
    test = TESTS["clustered" if keys is not None else kind]
    if diff.size == 0:
        return _Outcome(NAN, test, None, ["no pairs scored on both sides"], False)
    if diff.size < 2:
        return _Outcome(NAN, test, None, ["n < 2"], False)
    if not diff.any():  # nothing to test; against a margin, the exact sign-flip test
        units = diff.size if keys is None else int(keys.max()) + 1
        inference = tango(0, 0, diff.size) if kind == "binary" and keys is None \
            else no_spread(0.0, units)
        return _Outcome(NAN, test, inference, ["all pairs equal"], False)
    if keys is not None:
        return _clustered(diff, keys)
    return _BY_KIND[kind](diff, alpha)


def _binary(diff: Floats, alpha: float) -> _Outcome:
    regressed, improved = int((diff < 0).sum()), int((diff > 0).sum())
    m = regressed + improved
    return _Outcome(_mcnemar_midp(regressed, improved), TESTS["binary"],
                    tango(regressed, improved, diff.size), [], min_p=0.5**m,
                    units=f"{m} discordant pair{'s' if m != 1 else ''}")


def _mcnemar_midp(regressed: int, improved: int) -> float:
    """Two-sided mid-p McNemar test from the discordant counts.

    Written by hand on scipy's binomial CDF: statsmodels' `mcnemar` offers only the exact
    (conservative) and chi-square versions. Given m discordant pairs, the smaller count k is
    Binomial(m, 1/2) under no difference; mid-p = P(X < k) + P(X ≤ k), capped at 1.
    """
    from scipy.special import bdtr

    k, m = min(regressed, improved), regressed + improved
    below = float(bdtr(k - 1, m, 0.5)) if k > 0 else 0.0
    return min(1.0, below + float(bdtr(k, m, 0.5)))


def _mean(diff: Floats) -> tuple[Inference, str]:
    """The mean difference's inference: skew-corrected t, or sign-flip without spread."""
    if constant(diff):
        return no_spread(float(diff.mean()), diff.size), TESTS["sign-flip"]
    return skew_corrected_t(diff), TESTS["continuous"]


def _continuous(diff: Floats, alpha: float) -> _Outcome:
    inference, test = _mean(diff)
    notes = ["every pair changed by the same amount: no spread, exact sign-flip test"] \
        if test == TESTS["sign-flip"] else []
    return _Outcome(inference.p_two_sided(), test, inference, notes,
                    min_p=min(1.0, 2 * 0.5**diff.size) if notes else 0.0,
                    units=f"{diff.size} identical changes")


def _ordinal(diff: Floats, alpha: float) -> _Outcome:
    ranks = signed_rank(diff)
    inference, mean_test = _mean(diff)
    changed = int((diff != 0).sum())
    out = _Outcome(ranks.p_value, TESTS["ordinal"], inference, [], min_p=ranks.min_p,
                   units=f"{changed} changed pair{'s' if changed != 1 else ''}")
    mean_dir = int(np.sign(diff.mean()))
    if ranks.direction and ranks.direction != mean_dir:
        p_mean = inference.p_two_sided()
        way = {1: "up", -1: "down", 0: "not at all"}
        out.notes.append(f"the distribution changed: the ranks moved {way[ranks.direction]} "
                         f"(Wilcoxon p = {ranks.p_value:.2g}), the mean {way[mean_dir]}; "
                         f"p is the mean's ({mean_test}, p = {p_mean:.2g})")
        out.p, out.test, out.min_p = p_mean, mean_test, 0.0
    return out


_BY_KIND = {"binary": _binary, "ordinal": _ordinal, "continuous": _continuous}


def _clustered(diff: Floats, codes: NDArray[np.intp]) -> _Outcome:
    """CR2 t on the mean difference; the exact sign-flip test over clusters when every
    cluster has the same mean (CR1 used to answer p = 0 there)."""
    n_clusters = int(codes.max()) + 1
    if n_clusters < 2:
        return _Outcome(NAN, TESTS["clustered"], None, ["fewer than 2 clusters"], False)
    inference = cr2_mean(diff, codes)
    if inference is not None:
        return _Outcome(inference.p_two_sided(), TESTS["clustered"], inference, [])
    flip = no_spread(float(diff.mean()), n_clusters)
    return _Outcome(flip.p_two_sided(), TESTS["sign-flip"] + " over clusters", flip,
                    ["every cluster changed by the same mean: no cluster-robust standard "
                     "error, exact sign-flip test over the clusters"],
                    min_p=min(1.0, 2 * 0.5**n_clusters), units=f"{n_clusters} clusters")


def _scored_pairs(baseline: ArrayLike, candidate: ArrayLike, clusters: Iterable[Any] | None
                  ) -> tuple[Floats, Floats, NDArray[np.intp] | None, int]:
    """The pairs scored on both sides (None → NaN → dropped), their clusters' dense codes,
    and how many pairs were dropped."""
    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if base.ndim != 1 or base.shape != cand.shape:
        raise ValueError(f"baseline {base.shape} and candidate {cand.shape}: paired scores "
                         "must be one-dimensional and aligned case by case")
    if np.isinf(base).any() or np.isinf(cand).any():
        raise ValueError("scores must be finite (NaN for unscored)")
    keys = None if clusters is None else list(clusters)
    if keys is not None and len(keys) != base.size:
        raise ValueError(f"clusters has {len(keys)} keys for {base.size} pairs")
    scored = ~(np.isnan(base) | np.isnan(cand))
    codes = None if keys is None else _cluster_codes(k for k, s in zip(keys, scored,
                                                                        strict=True) if s)
    return base[scored], cand[scored], codes, int(base.size - scored.sum())


def _cluster_codes(keys: Iterable[Any]) -> NDArray[np.intp]:
    """Dense integer codes for cluster keys in order of first appearance.

    A missing key (None or NaN) is a cluster of its own: a case nobody grouped is
    independent. Unhashable keys (lists, dicts from JSON) are compared by value.
    """
    index: dict[Hashable, int] = {}
    codes = [index.setdefault(object() if _missing(k) else _hashable(k), len(index))
             for k in keys]
    return np.asarray(codes, dtype=np.intp)


def _hashable(key: Any) -> Hashable:
    try:
        hash(key)
    except TypeError:
        return ("\x00unhashable", json.dumps(key, sort_keys=True, default=repr))
    return key


def _missing(key: Any) -> bool:
    return key is None or (isinstance(key, float | np.floating) and math.isnan(key))
