"""What the retriever finds: a gold document is in the top 5 when the retriever's reach beats
the query's hardness; citations, retrieval metrics and the retrievals table follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .params import KB_PER_TOPIC
from .population import _Population
from .text import _text


@dataclass(frozen=True)
class _Retrieval:
    hit: np.ndarray  # a gold document is in the top 5
    k: np.ndarray  # how many gold documents are in the top 5
    doc: np.ndarray  # (n, 5) document numbers by rank
    rel: np.ndarray  # (n, 5) relevant by rank

    def take(self, idx: np.ndarray | slice) -> _Retrieval:
        return _Retrieval(self.hit[idx], self.k[idx], self.doc[idx], self.rel[idx])


def _retrieve(rng: np.random.Generator, pop: _Population, reach: np.ndarray | float
              ) -> _Retrieval:
    n = pop.n
    hit = (reach - pop.h + pop.eta > 0) & (pop.n_gold > 0)
    k = np.where(hit, 1 + rng.binomial(np.maximum(pop.n_gold - 1, 0), 0.65), 0)
    slot = np.arange(5)
    rel_slot = slot[None, :] < k[:, None]
    order = np.argsort(-(rng.gumbel(size=(n, 5)) + 1.6 * rel_slot), axis=1)
    gold_r = pop.gold[:, 0] - pop.qt * KB_PER_TOPIC
    distractor = pop.qt[:, None] * KB_PER_TOPIC + (
        gold_r[:, None] + 100 + slot * 8 + rng.integers(0, 8, (n, 5))) % KB_PER_TOPIC
    slot_doc = np.where(rel_slot, pop.gold[:, np.minimum(slot, 2)], distractor)
    return _Retrieval(hit, k, np.take_along_axis(slot_doc, order, 1),
                      np.take_along_axis(rel_slot, order, 1))


def _cite(rng: np.random.Generator, ret: _Retrieval, correct: np.ndarray,
          u: np.ndarray | None = None) -> np.ndarray:
    """Correct answers cite their best relevant document; others often cite the top hit.
    ``u`` (n × 2 uniforms): each case's own habits, so two runs that answer a case alike
    cite alike (offline runs are paired by case); drawn from ``rng`` when not given."""
    n = len(correct)
    u = rng.random((n, 2)) if u is None else u
    cited = np.zeros((n, 5), dtype=bool)
    good = correct & ret.hit
    rows = np.flatnonzero(good)
    cited[rows, np.argmax(ret.rel[rows], axis=1)] = True
    cited[:, 0] |= ~good & (u[:, 0] < 0.6)
    cited[:, 1] |= u[:, 1] < 0.2
    return cited


def _retrieval_metrics(pop: _Population, ret: _Retrieval, cited: np.ndarray
                       ) -> dict[str, np.ndarray]:
    oos = pop.oos
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(oos, np.nan, ret.k / np.maximum(pop.n_gold, 1))
        prec_at = np.cumsum(ret.rel, axis=1) / np.arange(1, 6)
        ap = np.where(ret.k > 0, (prec_at * ret.rel).sum(1) / np.maximum(ret.k, 1), 0.0)
        n_cited = cited.sum(1)
        cite_acc = (cited & ret.rel).sum(1) / n_cited
    return {"context_recall": recall, "context_precision": np.where(oos, np.nan, ap),
            "citation_accuracy": np.where(oos | (n_cited == 0), np.nan, cite_acc)}


def _retrieval_table(key_name: str, keys: pa.Array, pop: _Population, ret: _Retrieval,
                     cited: np.ndarray, extra: dict[str, pa.Array] | None = None) -> pa.Table:
    n = pop.n
    rows = pa.array(np.repeat(np.arange(n), 5))
    cols: dict[str, Any] = {key_name: keys.take(rows)}
    for name, arr in (extra or {}).items():
        cols[name] = arr.take(rows)
    cols |= {
        "doc_id": _text().kb.take(pa.array(ret.doc.ravel())),
        "rank": pa.array(np.tile(np.arange(1, 6, dtype=np.int64), n)),
        # Out-of-scope questions have no gold document: relevance is not judged.
        "relevant": pa.array(ret.rel.ravel(), mask=np.repeat(pop.oos, 5)),
        "cited": pa.array(cited.ravel()),
    }
    return pa.table(cols)
