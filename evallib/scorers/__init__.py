"""Scorers: small factories returning a `Scorer` that turns one `Sample` into `Score` rows,
each carrying the scorer's name, version and a hash of its arguments.

- `deterministic`: exact match, contains, regex, JSON Schema, classification, numeric
  tolerance, tool-call arguments.
- `retrieval`: recall@k, precision@k, MRR, nDCG@k, context precision, citation hit rate, as
  plain functions and as scorers.
- `judge`: LLM-as-judge through the openai client (rubric, reference, pairwise). Loaded on
  first use, since importing openai takes a second that deterministic runs need not pay.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Sample, Score, Scorer
from .deterministic import (
    classification,
    contains,
    exact_match,
    json_schema,
    normalize_text,
    numeric_match,
    regex_match,
    tool_call_args,
)
from .retrieval import (
    citation_hit_rate,
    context_precision,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    retrieval_metric,
    retrieval_scorers,
)

_JUDGE = ("Criterion", "Judge", "PairwiseResult", "judge_pairwise", "judge_reference",
          "judge_rubric", "pairwise_preference")

__all__ = [
    "Criterion", "Judge", "PairwiseResult", "Sample", "Score", "Scorer", "citation_hit_rate",
    "classification", "contains", "context_precision", "exact_match", "json_schema",
    "judge_pairwise", "judge_reference", "judge_rubric", "mrr", "ndcg_at_k", "normalize_text",
    "numeric_match", "pairwise_preference", "precision_at_k", "recall_at_k", "regex_match",
    "retrieval_metric", "retrieval_scorers", "tool_call_args",
]


def __getattr__(name: str) -> Any:
    if name in _JUDGE:
        return getattr(importlib.import_module(".judge", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
