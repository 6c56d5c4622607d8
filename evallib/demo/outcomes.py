"""Who answers correctly: the latent answer margin, the candidate's planted slice regression
and the baseline's calibrated failure causes, with the numbers the summary reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import (
    BASELINE_SKILL,
    FAILURE_CAUSES,
    HIT_BONUS,
    OUT_OF_SCOPE_BONUS,
    OVERALL_DELTA,
    RUN_NOISE,
    SLICE_DROP,
)
from .population import _Population
from .retrieval import _Retrieval


@dataclass
class _Outcome:
    correct: np.ndarray
    error: np.ndarray
    z: np.ndarray


def _answer(rng: np.random.Generator, pop: _Population, hit: np.ndarray,
            skill: np.ndarray | float) -> np.ndarray:
    """The latent margin of a correct answer (> 0: correct)."""
    bonus = np.where(pop.oos, OUT_OF_SCOPE_BONUS, HIT_BONUS * hit)
    return skill + bonus - pop.d + rng.normal(0.0, RUN_NOISE, pop.n)


def _candidate_outcome(rng: np.random.Generator, pop: _Population, hit: np.ndarray,
                       base: _Outcome, in_slice: np.ndarray) -> _Outcome:
    """A prompt change that is a little better almost everywhere and breaks the slice:
    ~SLICE_DROP of the slice's cases that passed now fail, and the overall paired delta is
    pinned at OVERALL_DELTA, so the mean hides the regression."""
    z = _answer(rng, pop, hit, BASELINE_SKILL + 0.12)
    error = rng.random(pop.n) < 0.003
    correct = z > 0
    correct[in_slice] = base.correct[in_slice]
    both = ~base.error & ~error
    passing = np.flatnonzero(in_slice & base.correct & both)
    drop = min(len(passing), round(SLICE_DROP * (in_slice & both).sum()))
    flipped = rng.choice(passing, drop, replace=False)
    correct[flipped] = False
    z[flipped] = np.minimum(z[flipped], -0.3)
    excess = int(correct[both].sum() - base.correct[both].sum()) \
        - round(OVERALL_DELTA * both.sum())
    outside = ~in_slice & both
    if excess > 0:  # too good: the weakest passes outside the slice fail
        idx = np.flatnonzero(outside & correct)
        idx = idx[np.argsort(z[idx], kind="stable")[:excess]]
        correct[idx], z[idx] = False, np.minimum(z[idx], -0.05)
    elif excess < 0:
        idx = np.flatnonzero(outside & ~correct)
        idx = idx[np.argsort(-z[idx], kind="stable")[:-excess]]
        correct[idx], z[idx] = True, np.maximum(z[idx], 0.05)
    return _Outcome(correct, error, z)


def _causes(pop: _Population, ret: _Retrieval) -> dict[str, np.ndarray]:
    """Where a failure starts: no gold document in the top 5 (a retrieval miss; split into
    retrieval and both by the answer's faithfulness), one there, or none exists."""
    return {"retrieval": ~pop.oos & (ret.k == 0), "generation": ret.k > 0, "other": pop.oos}


_BOTH_GIVEN_MISS = FAILURE_CAUSES["both"] / (FAILURE_CAUSES["retrieval"]
                                             + FAILURE_CAUSES["both"])


def _hallucinating(outcome: _Outcome, pop: _Population, ret: _Retrieval, u: np.ndarray,
                   exact: bool = False) -> np.ndarray:
    """Failed retrieval misses whose answer makes claims no retrieved document supports (the
    rest answer faithfully from the wrong documents). ``u`` is each case's fixed propensity,
    so the same cases hallucinate run after run; ``exact`` pins the share of failures to
    FAILURE_CAUSES["both"] (the baseline), else each miss hallucinates with its expected
    share."""
    miss = _causes(pop, ret)["retrieval"] & ~outcome.correct & ~outcome.error
    if not exact:
        return miss & (u < _BOTH_GIVEN_MISS)
    total = int((~outcome.correct & ~outcome.error).sum())
    idx = np.flatnonzero(miss)
    pick = idx[np.argsort(u[idx], kind="stable")[:round(FAILURE_CAUSES["both"] * total)]]
    out = np.zeros(pop.n, bool)
    out[pick] = True
    return out


def _calibrate_causes(outcome: _Outcome, pop: _Population, ret: _Retrieval) -> None:
    """Pin the baseline's failure mix to FAILURE_CAUSES (the model gives it only on average;
    a few hundred cases leave it several points off). Only cases next to the pass threshold
    move, and as many start passing as start failing, so the pass rate is unchanged."""
    failing = ~outcome.correct & ~outcome.error
    total = int(failing.sum())
    shares = {"retrieval": FAILURE_CAUSES["retrieval"] + FAILURE_CAUSES["both"],
              "other": FAILURE_CAUSES["other"]}
    targets = {k: round(share * total) for k, share in shares.items()}
    targets["generation"] = total - targets["retrieval"] - targets["other"]
    z = outcome.z
    for cause, mask in _causes(pop, ret).items():
        gap = targets[cause] - int((failing & mask).sum())
        if gap > 0:  # more failures of this cause: its weakest passes fail
            idx = np.flatnonzero(mask & outcome.correct & ~outcome.error)
            idx = idx[np.argsort(z[idx], kind="stable")[:gap]]
            outcome.correct[idx], z[idx] = False, np.minimum(z[idx], -0.05)
        elif gap < 0:
            idx = np.flatnonzero(mask & failing)
            idx = idx[np.argsort(-z[idx], kind="stable")[:-gap]]
            outcome.correct[idx], z[idx] = True, np.maximum(z[idx], 0.05)


def _attribution(outcome: _Outcome, pop: _Population, ret: _Retrieval,
                 hallucinating: np.ndarray) -> dict[str, float]:
    """Why the run's failed cases failed (evallib.analysis.rag's classes): no gold document in the
    top 5 and a faithful answer (retrieval) or an unfaithful one (both), one there and the
    answer still wrong (generation), or no gold document exists (other)."""
    failing = ~outcome.correct & ~outcome.error
    n = max(int(failing.sum()), 1)
    causes = _causes(pop, ret)
    masks = {"retrieval": causes["retrieval"] & ~hallucinating,
             "both": causes["retrieval"] & hallucinating,
             "generation": causes["generation"], "other": causes["other"]}
    return {cause: float((failing & mask).sum() / n) for cause, mask in masks.items()}


def _planted(base: _Outcome, cand: _Outcome, in_slice: np.ndarray) -> dict[str, float]:
    both = ~cand.error & ~base.error
    s = both & in_slice
    return {"baseline_overall": float(base.correct[~base.error].mean()),
            "candidate_overall": float(cand.correct[~cand.error].mean()),
            "paired_delta": float(cand.correct[both].mean() - base.correct[both].mean()),
            "baseline_slice": float(base.correct[s].mean()),
            "candidate_slice": float(cand.correct[s].mean()),
            "slice_cases": int(in_slice.sum())}
