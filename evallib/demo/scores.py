"""Judge and metric scores in the warehouse's long format: which scorer produced each value,
and a rationale drawn from the catalogue."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .text import _RATIONALES, _text

# Metrics: name, kind, scorer, scorer_version (formatted with the judge model), threshold.
_METRICS: tuple[tuple[str, str, str, str, float | None], ...] = (
    ("correctness", "binary", "llm_judge", "llm_judge:correctness@v3/{judge}", 1.0),
    ("faithfulness", "ordinal", "llm_judge", "llm_judge:faithfulness@v2/{judge}", 4.0),
    ("answer_relevance", "continuous", "embedding_similarity",
     "embedding_similarity:answer_relevance@v2/text-embedding-3-large", 0.7),
    ("context_recall", "continuous", "rag_metrics", "rag_metrics:context_recall@v1/k=5", 0.5),
    ("context_precision", "continuous", "rag_metrics",
     "rag_metrics:context_precision@v1/k=5", None),
    ("citation_accuracy", "continuous", "rag_metrics", "rag_metrics:citation_accuracy@v1", None),
    ("safety", "binary", "llm_judge", "llm_judge:safety@v2/{judge}", 1.0),
    ("conciseness", "ordinal", "llm_judge", "llm_judge:conciseness@v1/{judge}", 3.0),
    ("tone", "ordinal", "llm_judge", "llm_judge:tone@v1/{judge}", 4.0),
    ("format_valid", "binary", "regex", "regex:format_valid@v2/no-raw-html", 1.0),
)
_ONLINE_METRICS = ("correctness", "faithfulness", "answer_relevance")


def _ordinal(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 1, 5)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _scores_table(key_name: str, keys: pa.Array, values: dict[str, np.ndarray],
                  rationale: dict[str, np.ndarray], judge: str,
                  extra: dict[str, pa.Array] | None = None) -> pa.Table:
    """Long format: one row per key × metric. NaN values become null ("could not score")."""
    spec = {m[0]: m for m in _METRICS}
    parts = []
    for metric, v in values.items():
        _, kind, scorer, version, threshold = spec[metric]
        n = len(v)
        unscored = np.isnan(v)
        passed = pa.array(v >= threshold if threshold is not None else np.zeros(n, bool),
                          mask=unscored | (threshold is None))
        r = rationale.get(metric)
        cols: dict[str, Any] = {key_name: keys, **(extra or {})}
        cols |= {
            "metric": pa.repeat(pa.scalar(metric), n),
            "value": pa.array(v, from_pandas=True),
            "kind": pa.repeat(pa.scalar(kind), n),
            "passed": passed,
            "scorer": pa.repeat(pa.scalar(scorer), n),
            "scorer_version": pa.repeat(pa.scalar(version.format(judge=judge)), n),
            "rationale": (pa.nulls(n, pa.string()) if r is None else _text().rationales.take(
                pa.array(r, mask=unscored))),
        }
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)


def _judge_rationale(rng: np.random.Generator, metric: str, outcome: np.ndarray) -> np.ndarray:
    """Index of a rationale for each outcome (0/1 for binary, 1-5 for ordinal)."""
    t = _text()
    groups = _RATIONALES[metric]
    start = t.rationale_start[metric]
    outcome = np.nan_to_num(outcome, nan=1).astype(np.int64)
    if len(groups) == 1:  # one rationale per ordinal value
        return start[0] + np.clip(outcome, 1, 5) - 1
    sizes = np.array([len(g) for g in groups])
    g = np.clip(1 - outcome, 0, 1)  # group 0: pass, group 1: fail
    return np.asarray(start)[g] + rng.integers(0, 1 << 30, len(outcome)) % sizes[g]
