"""Retrieval metrics for one query, as plain functions and as scorers over `Sample`.

Binary relevance throughout: a document is relevant when its id is in ``relevant``.
``retrieved`` is in rank order (rank 1 first); a document retrieved twice counts once, at
its best rank. A metric of a query with no relevant document is undefined: None, not 0
(a 0 would read as a retrieval failure and drag the run's mean down).

Written by hand: each is a few lines, and the libraries that have them (ranx,
pytrec_eval) bring numba or a C build for whole runs of queries, not one `Sample`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from ..errors import EvallibError
from .base import Sample, Score, Scorer

__all__ = [
    "RETRIEVAL_METRICS", "citation_hit_rate", "context_precision", "mrr", "ndcg_at_k",
    "precision_at_k", "recall_at_k", "retrieval_metric", "retrieval_scorers",
]


def _ranked(retrieved: Iterable[str], k: int | None = None) -> list[str]:
    """Unique ids in rank order, cut at k."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise EvallibError(f"k must be a whole number ≥ 1, not {k!r}")
    return list(dict.fromkeys(retrieved))[:k]


def recall_at_k(retrieved: Sequence[str], relevant: Iterable[str], k: int) -> float | None:
    """Share of the relevant documents found in the top k."""
    rel = set(relevant)
    if not rel:
        return None
    return len(rel.intersection(_ranked(retrieved, k))) / len(rel)


def precision_at_k(retrieved: Sequence[str], relevant: Iterable[str], k: int) -> float | None:
    """Share of the top k that is relevant; the denominator is k even when fewer documents
    were retrieved (as trec_eval does), so retrieving less is not rewarded."""
    rel = set(relevant)
    if not rel:
        return None
    return len(rel.intersection(_ranked(retrieved, k))) / k


def mrr(retrieved: Sequence[str], relevant: Iterable[str], k: int | None = None) -> float | None:
    """Reciprocal rank of the first relevant document (0 if none in the top k); its mean over
    cases is the MRR."""
    rel = set(relevant)
    if not rel:
        return None
    return next((1 / rank for rank, doc in enumerate(_ranked(retrieved, k), 1) if doc in rel),
                0.0)


def ndcg_at_k(retrieved: Sequence[str], relevant: Iterable[str], k: int) -> float | None:
    """DCG of the top k (gain 1 / log2(rank + 1) per relevant document) over the DCG of an
    ideal ranking, which puts min(k, |relevant|) relevant documents first."""
    rel = set(relevant)
    if not rel:
        return None
    dcg = sum(1 / math.log2(rank + 1) for rank, doc in enumerate(_ranked(retrieved, k), 1)
              if doc in rel)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(rel)) + 1))
    return dcg / ideal


def context_precision(retrieved: Sequence[str], relevant: Iterable[str],
                      k: int | None = None) -> float | None:
    """Mean of precision@i over the ranks i ≤ k that hold a relevant document (RAGAS's
    context precision): high when the relevant passages come first; 0 if none is retrieved."""
    rel = set(relevant)
    if not rel:
        return None
    hits, total = 0, 0.0
    for rank, doc in enumerate(_ranked(retrieved, k), 1):
        if doc in rel:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def citation_hit_rate(cited: Iterable[str], relevant: Iterable[str]) -> float | None:
    """Share of the documents the output cites that are relevant. None when nothing is cited
    or nothing is labelled relevant."""
    rel, cites = set(relevant), _ranked(cited)
    if not rel or not cites:
        return None
    return sum(doc in rel for doc in cites) / len(cites)


#: The metrics over ``Sample.retrieved`` and whether they need a cut k.
RETRIEVAL_METRICS: dict[str, tuple[Callable[..., float | None], bool]] = {
    "recall": (recall_at_k, True),
    "precision": (precision_at_k, True),
    "ndcg": (ndcg_at_k, True),
    "mrr": (mrr, False),
    "context_precision": (context_precision, False),
    "citation_hit_rate": (citation_hit_rate, False),  # over Sample.cited instead
}


class RetrievalMetric(Scorer):
    kind, family = "continuous", "retrieval"

    def _score(self, sample: Sample) -> Score:
        metric, k, threshold = self.args["metric"], self.args["k"], self.args["threshold"]
        fn, _ = RETRIEVAL_METRICS[metric]
        value = (citation_hit_rate(sample.cited, sample.relevant) if fn is citation_hit_rate
                 else fn(sample.retrieved, sample.relevant, k))
        if value is None:
            why = ("the output cites no document" if metric == "citation_hit_rate"
                   and sample.relevant else "no document is labelled relevant for this case")
            return self.unscored(f"{self.name} is undefined: {why}")
        found = set(sample.relevant).intersection(
            sample.cited if metric == "citation_hit_rate" else _ranked(sample.retrieved, k))
        passed = None if threshold is None else value >= threshold
        return self.make(value, passed=passed,
                         rationale=f"{len(found)} relevant of {len(set(sample.relevant))}: "
                                   + ", ".join(sorted(found)))


def retrieval_metric(metric: str, k: int | None = None, *, threshold: float | None = None,
                     name: str | None = None) -> Scorer:
    """A scorer for one of `RETRIEVAL_METRICS` over ``Sample.retrieved/cited/relevant``.

    recall, precision and ndcg need ``k``; mrr and context_precision take an optional cut.
    The metric is named like ``recall@5``; ``threshold`` sets the pass flag (value ≥ it).
    """
    if metric not in RETRIEVAL_METRICS:
        raise EvallibError(f"unknown retrieval metric {metric!r}; "
                           f"one of {', '.join(RETRIEVAL_METRICS)}")
    _, needs_k = RETRIEVAL_METRICS[metric]
    if needs_k and k is None:
        raise EvallibError(f"retrieval metric {metric!r} needs k")
    if metric == "citation_hit_rate" and k is not None:
        raise EvallibError("citation_hit_rate takes no k")
    _ranked((), k)  # validates k
    default = metric if k is None else f"{metric}@{k}"
    return RetrievalMetric(name or default, {"metric": metric, "k": k, "threshold": threshold})


def retrieval_scorers(k: int = 5) -> list[Scorer]:
    """Every retrieval metric, cut at k where a cut applies."""
    return [retrieval_metric(m, None if m == "citation_hit_rate" else k)
            for m in RETRIEVAL_METRICS]
