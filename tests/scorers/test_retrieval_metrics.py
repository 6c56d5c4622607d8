"""Retrieval metrics against hand-computed examples (the arithmetic is in the comments), and
the scorers that wrap them."""

from __future__ import annotations

import asyncio
import math

import pytest

from evallib.errors import EvallibError
from evallib.scorers import (
    Sample,
    citation_hit_rate,
    context_precision,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    retrieval_metric,
    retrieval_scorers,
)

# One query: ranks 1..5 retrieved d1 d2 d3 d4 d5; relevant {d2, d4, d9} (d9 never retrieved).
RETRIEVED = ["d1", "d2", "d3", "d4", "d5"]
RELEVANT = {"d2", "d4", "d9"}
L2, L3, L4, L5 = math.log2(2), math.log2(3), math.log2(4), math.log2(5)  # 1, 1.585, 2, 2.32


def test_recall_at_k() -> None:
    assert recall_at_k(RETRIEVED, RELEVANT, 1) == 0  # top 1 = {d1}: 0 of 3
    assert recall_at_k(RETRIEVED, RELEVANT, 2) == pytest.approx(1 / 3)  # {d2}: 1 of 3
    assert recall_at_k(RETRIEVED, RELEVANT, 5) == pytest.approx(2 / 3)  # {d2, d4}: 2 of 3
    assert recall_at_k(RETRIEVED, RELEVANT, 50) == pytest.approx(2 / 3)  # k past the list
    assert recall_at_k(["d2", "d9", "d4"], RELEVANT, 3) == 1  # all 3 of 3


def test_precision_at_k() -> None:
    assert precision_at_k(RETRIEVED, RELEVANT, 1) == 0  # d1: 0/1
    assert precision_at_k(RETRIEVED, RELEVANT, 2) == 0.5  # d1 d2: 1/2
    assert precision_at_k(RETRIEVED, RELEVANT, 4) == 0.5  # d1..d4: 2/4
    assert precision_at_k(RETRIEVED, RELEVANT, 5) == pytest.approx(0.4)  # 2/5
    # Only 2 retrieved, both relevant, k = 4: 2/4 (the denominator stays k, as in trec_eval)
    assert precision_at_k(["d2", "d4"], RELEVANT, 4) == 0.5


def test_mrr() -> None:
    assert mrr(RETRIEVED, RELEVANT) == 0.5  # first relevant at rank 2 → 1/2
    assert mrr(["d4", "d1"], RELEVANT) == 1.0  # rank 1 → 1/1
    assert mrr(["d1", "d3", "d5", "d9"], RELEVANT) == 0.25  # rank 4 → 1/4
    assert mrr(["d1", "d3", "d5", "d9"], RELEVANT, k=3) == 0  # cut at 3: none found
    assert mrr(["d1", "d3"], RELEVANT) == 0  # none retrieved → 0 (defined: a miss)


def test_ndcg_at_k() -> None:
    # k = 5: DCG = 1/log2(3) (d2 at rank 2) + 1/log2(5) (d4 at rank 4) = 0.6309 + 0.4307
    # ideal: 3 relevant, so ranks 1..3 hold one each: 1/log2(2) + 1/log2(3) + 1/log2(4)
    #        = 1 + 0.6309 + 0.5 = 2.1309 → nDCG@5 = 1.0616 / 2.1309 = 0.4982
    want5 = (1 / L3 + 1 / L5) / (1 / L2 + 1 / L3 + 1 / L4)
    assert ndcg_at_k(RETRIEVED, RELEVANT, 5) == pytest.approx(want5)
    assert ndcg_at_k(RETRIEVED, RELEVANT, 5) == pytest.approx(0.49818, abs=1e-5)
    # k = 2: DCG = 1/log2(3) = 0.6309; ideal with min(2, 3) = 2 slots: 1 + 0.6309 → 0.3869
    assert ndcg_at_k(RETRIEVED, RELEVANT, 2) == pytest.approx((1 / L3) / (1 / L2 + 1 / L3))
    # A perfect ranking scores 1; one relevant doc at rank 1 of a one-relevant query too.
    assert ndcg_at_k(["d2", "d4", "d9", "d1"], RELEVANT, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"x"}, 10) == 1.0
    assert ndcg_at_k(["y", "x"], {"x"}, 10) == pytest.approx(1 / L3)  # 0.6309
    assert ndcg_at_k(["y", "z"], {"x"}, 10) == 0


def test_context_precision_as_in_ragas() -> None:
    # Relevant at ranks 2 and 4: precision@2 = 1/2, precision@4 = 2/4 → mean (0.5 + 0.5)/2
    assert context_precision(RETRIEVED, RELEVANT) == 0.5
    # Relevant at ranks 1 and 3: precision@1 = 1, precision@3 = 2/3 → (1 + 2/3)/2 = 5/6
    assert context_precision(["d2", "x", "d4"], RELEVANT) == pytest.approx(5 / 6)
    # Same docs, relevant ones first: precision@1 = 1, precision@2 = 1 → 1
    assert context_precision(["d2", "d4", "x"], RELEVANT) == 1.0
    # Cut at k = 3: only d2 (rank 2) counts → precision@2 = 1/2
    assert context_precision(RETRIEVED, RELEVANT, k=3) == 0.5
    assert context_precision(["x", "y"], RELEVANT) == 0  # nothing relevant retrieved


def test_citation_hit_rate() -> None:
    assert citation_hit_rate(["d2", "d4", "d1"], RELEVANT) == pytest.approx(2 / 3)  # 2 of 3
    assert citation_hit_rate(["d2", "d2", "d5"], RELEVANT) == 0.5  # unique: d2, d5 → 1 of 2
    assert citation_hit_rate(["d1"], RELEVANT) == 0
    assert citation_hit_rate([], RELEVANT) is None  # no citations: nothing to rate


@pytest.mark.parametrize("metric", [
    lambda: recall_at_k(RETRIEVED, [], 3), lambda: precision_at_k(RETRIEVED, set(), 3),
    lambda: mrr(RETRIEVED, []), lambda: ndcg_at_k(RETRIEVED, [], 3),
    lambda: context_precision(RETRIEVED, []), lambda: citation_hit_rate(["d1"], []),
])
def test_empty_relevant_set_is_undefined_not_zero(metric) -> None:
    assert metric() is None


def test_duplicate_retrievals_count_once_at_their_best_rank() -> None:
    # d2 d2 d4 → unique d2 (rank 1) d4 (rank 2): precision@2 = 2/2, recall@2 = 2/3
    assert precision_at_k(["d2", "d2", "d4"], RELEVANT, 2) == 1.0
    assert recall_at_k(["d2", "d2", "d4"], RELEVANT, 2) == pytest.approx(2 / 3)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k_is_refused(k) -> None:
    with pytest.raises(EvallibError, match="k must be"):
        recall_at_k(RETRIEVED, RELEVANT, k)


def _run(scorer, sample):
    (s,) = asyncio.run(scorer.score(sample))
    return s


SAMPLE = Sample("c1", "q", "answer [d2][d1]", retrieved=tuple(RETRIEVED),
                relevant=tuple(sorted(RELEVANT)), cited=("d2", "d1"))


def test_scorers_wrap_the_functions_with_named_metrics() -> None:
    got = {s.name: _run(s, SAMPLE) for s in retrieval_scorers(k=5)}
    assert {n: s.value for n, s in got.items()} == pytest.approx({
        "recall@5": 2 / 3, "precision@5": 0.4, "ndcg@5": 0.49818, "mrr@5": 0.5,
        "context_precision@5": 0.5, "citation_hit_rate": 0.5}, abs=1e-5)
    assert all(s.kind == "continuous" and s.error is None for s in got.values())
    assert got["recall@5"].rationale == "2 relevant of 3: d2, d4"
    assert got["citation_hit_rate"].rationale == "1 relevant of 3: d2"
    assert got["recall@5"].scorer == "retrieval"
    assert got["recall@5"].scorer_version != got["precision@5"].scorer_version


def test_scorer_threshold_sets_the_pass_flag() -> None:
    assert _run(retrieval_metric("recall", 5, threshold=0.5), SAMPLE).passed is True
    assert _run(retrieval_metric("recall", 5, threshold=0.7), SAMPLE).passed is False
    assert _run(retrieval_metric("recall", 5), SAMPLE).passed is None


def test_scorer_without_relevant_labels_is_unscored_with_the_reason() -> None:
    s = _run(retrieval_metric("ndcg", 3), Sample("c", "q", "a", retrieved=("d1",)))
    assert s.value is None and s.error == (
        "ndcg@3 is undefined: no document is labelled relevant for this case")
    s = _run(retrieval_metric("citation_hit_rate"), Sample("c", "q", "a", relevant=("d1",)))
    assert s.value is None and "cites no document" in s.error


@pytest.mark.parametrize(("args", "message"), [
    (("recall",), "needs k"), (("hit_rate", 3), "unknown retrieval metric"),
    (("citation_hit_rate", 3), "takes no k"), (("mrr", 0), "k must be"),
])
def test_bad_scorer_arguments_are_refused(args, message) -> None:
    with pytest.raises(EvallibError, match=message):
        retrieval_metric(*args)
