"""Who asks what: golden cases and production queries drawn from their strata with latent
difficulty and retrieval hardness, and the Arrow columns that describe them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..warehouse import schema as S
from .params import (
    ADVERSARIAL,
    AMBIGUOUS,
    GOLDEN_DIFFICULTY,
    GOLDEN_DIFFICULTY_OTHER,
    GOLDEN_EDGE,
    GOLDEN_QUERY_TYPE,
    GOLDEN_SEGMENT,
    KB_PER_TOPIC,
    MU_DIFFICULTY,
    MU_EDGE,
    MU_QUERY_TYPE,
    MULTI_HOP,
    NU_DIFFICULTY,
    NU_EDGE,
    OUT_OF_SCOPE,
    PROD_DIFFICULTY,
    PROD_EDGE,
    PROD_QUERY_TYPE,
    PROD_SEGMENT,
    QUERY_TYPES,
)
from .text import _FOLLOW_UPS, _PREFIXES, _text


@dataclass(frozen=True)
class _Population:
    qt: np.ndarray
    diff: np.ndarray
    edge: np.ndarray
    seg: np.ndarray
    d: np.ndarray  # latent difficulty of answering
    h: np.ndarray  # latent hardness of retrieving
    eta: np.ndarray  # the query's own retrieval noise
    n_gold: np.ndarray  # gold documents (0: none, out of scope)
    gold: np.ndarray  # (n, 3) gold document numbers in the knowledge base
    text: np.ndarray  # index into the aligned input/expected pools
    follow: np.ndarray  # multi-hop follow-up (0: none)
    style: np.ndarray  # how the case tends to be judged on tone and length

    @property
    def n(self) -> int:
        return len(self.qt)

    @property
    def oos(self) -> np.ndarray:
        return self.edge == OUT_OF_SCOPE

    def take(self, idx: np.ndarray | slice) -> _Population:
        return _Population(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _concat(a: _Population, b: _Population) -> _Population:
    return _Population(*(np.concatenate([getattr(a, f), getattr(b, f)])
                         for f in _Population.__dataclass_fields__))


def _replace(pop: _Population, **changes: np.ndarray) -> _Population:
    return _Population(**{f: changes.get(f, getattr(pop, f))
                          for f in _Population.__dataclass_fields__})


def _quota(rng: np.random.Generator, n: int, p: tuple[float, ...]) -> np.ndarray:
    """Exactly round(p·n) of each code (largest remainders), shuffled."""
    p_ = np.asarray(p) / np.sum(p)
    counts = np.floor(p_ * n).astype(int)
    counts[np.argsort(-(p_ * n - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(p_)), counts))


def _choice(rng: np.random.Generator, n: int, p: tuple[float, ...]) -> np.ndarray:
    return rng.choice(len(p), size=n, p=np.asarray(p) / np.sum(p))


def _population(rng: np.random.Generator, n: int, *, golden: bool) -> _Population:
    if golden:
        qt = _quota(rng, n, GOLDEN_QUERY_TYPE)
        diff = np.empty(n, dtype=np.int64)
        for code in range(len(QUERY_TYPES)):
            idx = np.flatnonzero(qt == code)
            diff[idx] = _quota(rng, len(idx), GOLDEN_DIFFICULTY.get(code, GOLDEN_DIFFICULTY_OTHER))
        edge, seg = _quota(rng, n, GOLDEN_EDGE), _quota(rng, n, GOLDEN_SEGMENT)
    else:
        qt, diff = _choice(rng, n, PROD_QUERY_TYPE), _choice(rng, n, PROD_DIFFICULTY)
        edge, seg = _choice(rng, n, PROD_EDGE), _choice(rng, n, PROD_SEGMENT)
    d = MU_DIFFICULTY[diff] + MU_EDGE[edge] + MU_QUERY_TYPE[qt] + rng.normal(0.0, 0.8, n)
    h = NU_DIFFICULTY[diff] + NU_EDGE[edge] + rng.normal(0.0, 0.8, n)
    multi = edge == MULTI_HOP
    n_gold = np.where(multi, 2 + (rng.random(n) < 0.4), 1 + (rng.random(n) < 0.15))
    n_gold = np.where(edge == OUT_OF_SCOPE, 0, n_gold)
    base = rng.integers(0, KB_PER_TOPIC, n)
    gold = qt[:, None] * KB_PER_TOPIC + (base[:, None] + np.array([0, 37, 74])) % KB_PER_TOPIC
    group = np.select([edge == AMBIGUOUS, edge == OUT_OF_SCOPE, edge == ADVERSARIAL],
                      [5, 6, 7], qt)
    text = _text().inputs.pick(group, rng.integers(0, 1 << 30, n))
    follow = np.where(multi, 1 + rng.integers(0, len(_FOLLOW_UPS) - 1, n), 0)
    return _Population(qt, diff, edge, seg, d, h, rng.normal(0.0, 0.3, n), n_gold, gold,
                       text, follow, rng.normal(0.0, 0.5, n))


def _strata(pop: _Population) -> pa.Array:
    n = pop.n
    offsets = pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32))
    keys = _text().strata_keys.take(pa.array(np.tile(np.arange(4), n)))
    codes = np.stack([pop.qt, 5 + pop.diff, 8 + pop.edge, 13 + pop.seg], axis=1).ravel()
    return pa.MapArray.from_arrays(offsets, keys, _text().strata_values.take(pa.array(codes)))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), type=S.TIMESTAMP)


def _inputs(pop: _Population) -> pa.Array:
    t = _text()
    return pc.binary_join_element_wise(t.inputs.strings.take(pa.array(pop.text)),
                                       t.follow_q.take(pa.array(pop.follow)), "")


def _expected(pop: _Population) -> pa.Array:
    t = _text()
    return pc.binary_join_element_wise(t.expected.take(pa.array(pop.text)),
                                       t.follow_a.take(pa.array(pop.follow)), "")


def _outputs(rng: np.random.Generator, pop: _Population, correct: np.ndarray,
             error: np.ndarray) -> pa.Array:
    """Correct answers paraphrase the reference; wrong ones come from a pool of plausible
    mistakes for the query type; errored calls have no output."""
    t, n = _text(), pop.n
    group = np.select([pop.edge == OUT_OF_SCOPE, pop.edge == ADVERSARIAL], [5, 6], pop.qt)
    wrong = t.wrong.pick(group, rng.integers(0, 1 << 30, n))
    body = pc.if_else(pa.array(correct), t.good.take(pa.array(pop.text)),
                      t.wrong.strings.take(pa.array(wrong)))
    special = (pop.edge != 0) & (pop.edge != MULTI_HOP)  # no pleasantries before a refusal
    prefix = np.where(special, 0, rng.integers(0, len(_PREFIXES), n))
    out = pc.binary_join_element_wise(t.prefixes.take(pa.array(prefix)), body,
        t.follow_a.take(pa.array(np.where(correct, pop.follow, 0))), "")
    return pc.if_else(pa.array(error), pa.nulls(n, pa.string()), out)
