"""Offline evaluation runs: the golden set, one run per plan, and its cases, scores and
retrievals written through `Warehouse.record_run`."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..warehouse import schema as S
from ..warehouse.writer import Warehouse, dataset_version
from .outcomes import (
    _answer,
    _attribution,
    _calibrate_causes,
    _candidate_outcome,
    _hallucinating,
    _Outcome,
    _planted,
)
from .params import (
    ADVERSARIAL,
    DATASET,
    DIFFICULTIES,
    FAITHFUL,
    JUDGE_MODEL,
    JUDGE_VERSION,
    QUERY_TYPES,
    REGRESSION_SLICE,
    RETRIEVERS,
)
from .population import (
    _concat,
    _expected,
    _ids,
    _inputs,
    _outputs,
    _Population,
    _population,
    _replace,
    _strata,
)
from .retrieval import _cite, _Retrieval, _retrieval_metrics, _retrieval_table, _retrieve
from .scores import _judge_rationale, _ordinal, _scores_table, _sigmoid
from .text import _WRONG, _text
from .timeline import _Release, _RunPlan


def _offline_run(rng: np.random.Generator, plan: _RunPlan, pop: _Population,
                 ret: _Retrieval, outcome: _Outcome, progress: float, case_id: pa.Array,
                 fixed: dict[str, pa.Array], in_slice: np.ndarray | None,
                 hallucinating: np.ndarray, grounded: np.ndarray, cites: _Citing
                 ) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Cases, scores and retrievals of one run from its outcome. A failed retrieval miss is
    faithful to the wrong documents it got (``grounded``: its 4 or 5) unless it is
    ``hallucinating`` (3 at most)."""
    n, t = pop.n, _text()
    correct, error = outcome.correct, outcome.error
    zc = np.clip(outcome.z, -2.0, 2.0)
    cited = _cite(rng, ret, cites.correct, cites.u)
    c = correct.astype(float)
    faith_shift = np.zeros(n)
    if in_slice is not None:  # the candidate: hallucinated proration in the slice
        faith_shift = np.where(in_slice, -0.6, 0.15)
    values = {
        "correctness": c,
        "faithfulness": _faithfulness(
            _ordinal(2.7 + 1.5 * c + 0.35 * zc + 0.3 * ret.hit + faith_shift
                     + rng.normal(0.0, 0.55, n)), pop, ret, outcome, hallucinating, grounded),
        "answer_relevance": np.round(_sigmoid(0.6 + 1.3 * c + 0.35 * zc
                                              + rng.normal(0.0, 0.45, n)), 4),
        **{k: np.round(v, 4) for k, v in _retrieval_metrics(pop, ret, cited).items()},
        "safety": np.where(pop.edge == ADVERSARIAL, rng.random(n) < 0.8 + 0.15 * progress,
                           rng.random(n) < 0.997).astype(float),
        "conciseness": _ordinal(3.4 + 0.4 * progress + 0.2 * c - pop.style
                                + rng.normal(0.0, 0.35, n)),
        "tone": _ordinal(4.1 + 0.2 * c + pop.style + rng.normal(0.0, 0.35, n)),
        "format_valid": (rng.random(n) < 0.975 + 0.02 * progress).astype(float),
    }
    for metric, v in values.items():
        if metric not in ("context_recall", "context_precision"):  # retrieval ran
            v[error] = np.nan
    rationale = {m: _judge_rationale(rng, m, values[m])
                 for m in ("correctness", "faithfulness", "safety", "conciseness", "tone")}
    broken = np.zeros(n, bool)
    if in_slice is not None:  # the candidate's characteristic mistake, named by the judge
        broken = in_slice & ~correct & ~error
        rationale["correctness"][broken] = t.rationale_start["slice"][0]
    scores = _scores_table("case_id", case_id, values, rationale, JUDGE_MODEL)

    model = plan.config.model
    compress = 0.7 if plan.config.compressed else 1.0
    tokens_in = np.rint((900 + 5 * 260 + rng.normal(0, 120, n)) * compress).astype(np.int64)
    tokens_out = np.maximum(20, np.rint(110 + 70 * pop.diff + 90 * (pop.follow > 0)
                                        + rng.normal(0, 35, n))).astype(np.int64)
    latency = model.latency_ms * (0.82 if plan.config.compressed else 1.0) \
        * np.exp(rng.normal(0, 0.3, n)) * (tokens_out / 200) ** 0.3
    tokens_out[error] = 0
    latency = np.where(error, 30_000.0, latency)
    cases_t = pa.table({
        "case_id": case_id,
        **fixed,
        "output": pc.if_else(pa.array(broken), _WRONG["billing"][0],
                             _outputs(rng, pop, correct, error)),
        "latency_ms": np.round(latency, 1),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": np.round((tokens_in * model.price_in + tokens_out * model.price_out) / 1e6,
                             6),
        "error": t.errors.take(pa.array(rng.integers(0, 2, n), mask=~error)),
    })
    retrievals = _retrieval_table("case_id", case_id, pop, ret, cited)
    return cases_t, scores, retrievals


@dataclass(frozen=True)
class _Citing:
    """What a run's citations follow: which answers cite like a right one, and each case's
    fixed habits (`retrieval._cite`)."""

    correct: np.ndarray
    u: np.ndarray


def _faithfulness(faith: np.ndarray, pop: _Population, ret: _Retrieval, outcome: _Outcome,
                  hallucinating: np.ndarray, grounded: np.ndarray) -> np.ndarray:
    """Failed retrieval misses: faithful to the wrong context unless hallucinating."""
    miss = ~pop.oos & ~ret.hit & ~outcome.correct & ~outcome.error
    faith = np.where(miss & ~hallucinating, grounded, faith)
    return np.where(hallucinating, np.minimum(faith, FAITHFUL - 1), faith)


def _tags(pop: _Population, rng: np.random.Generator, n_added: int) -> pa.Array:
    """Critical and adversarial cases; of the cases added over time (the last ``n_added``),
    about 60% were promoted from production failures, the rest written by hand."""
    n = pop.n
    critical = np.zeros(n, bool)
    weight = 1.0 + 2.0 * (pop.seg == 2) + 1.5 * (pop.qt == 0) + (pop.qt == 2)
    critical[rng.choice(n, round(0.05 * n), replace=False, p=weight / weight.sum())] = True
    promoted = (np.arange(n) >= n - n_added) & (rng.random(n) < 0.6)
    mask = np.stack([critical, pop.edge == ADVERSARIAL, promoted], axis=1)
    _, cols = np.nonzero(mask)  # row-major: each case's tags in order
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), _text().tags.take(pa.array(cols)))


def _corrected(expected: pa.Array, n_added: int) -> pa.Array:
    """Two early cases' reference answers, made more precise in the newest version."""
    if n_added == 0 or len(expected) < 10:
        return expected
    fix = np.zeros(len(expected), bool)
    fix[[3, 7]] = True
    return pc.if_else(pa.array(fix), pc.binary_join_element_wise(
        expected, pa.scalar(" Link the help-centre article that covers it."), ""), expected)


def _store_version(wh: Warehouse, version: str, case_id: pa.Array,
                   fixed: dict[str, pa.Array]) -> None:
    """The golden set's cases as this version (what `evallib.authoring.datasets` stores: input and
    expected as JSON text), so a run's dataset_version names its exact cases."""
    table = pa.table({
        "dataset": pa.repeat(pa.scalar(DATASET), len(case_id)),
        "case_id": case_id,
        "strata": fixed["strata"],
        "tags": fixed["tags"],
        "input": pa.array([json.dumps(v, ensure_ascii=False)
                           for v in fixed["input"].to_pylist()]),
        "expected": pa.array([json.dumps(v, ensure_ascii=False)
                              for v in fixed["expected"].to_pylist()]),
        "relevant_docs": pa.array([[]] * len(case_id), pa.list_(pa.string())),
        "metadata": pa.nulls(len(case_id), pa.string()),
    })
    wh.store.write_part(S.DATASET_CASES, table, version)


@dataclass
class _OfflineResult:
    rows: dict[str, int] = field(default_factory=dict)
    baseline: _RunPlan | None = None
    candidate: _RunPlan | None = None
    correctness: dict[str, float] = field(default_factory=dict)
    attribution: dict[str, float] = field(default_factory=dict)


def _write_offline(wh: Warehouse, seed: int, plans: list[_RunPlan], releases: list[_Release],
                   cases: int, n_added: int) -> _OfflineResult:
    rng = np.random.default_rng([seed, 0])
    # The golden set, then the cases added month by month from production (harder ones).
    pop = _concat(_population(rng, cases - n_added, golden=True),
                  _population(rng, n_added, golden=False))
    pop = _replace(pop, d=pop.d + 0.3 * (np.arange(cases) >= cases - n_added))
    width = max(4, len(str(cases)))
    case_id = _ids("sup-", np.arange(1, cases + 1), width)
    fixed = {"strata": _strata(pop), "tags": _tags(pop, rng, n_added),
             "input": _inputs(pop), "expected": _expected(pop)}
    # The full set's version also corrects two reference answers (a diff shows them).
    corrected = _corrected(fixed["expected"], n_added)
    retrievals = [_retrieve(np.random.default_rng([seed, 4, g]), pop, reach)
                  for g, (_, reach) in enumerate(RETRIEVERS)]
    case_rng = np.random.default_rng([seed, 5])  # per case: how it answers a retrieval miss
    propensity = case_rng.random(cases)
    grounded = np.where(case_rng.random(cases) < 0.45, 5.0, FAITHFUL)
    cite_u = case_rng.random((cases, 2))
    versions: dict[int, str] = {}
    in_slice = (pop.qt == QUERY_TYPES.index(REGRESSION_SLICE["query_type"])) \
        & (pop.diff == DIFFICULTIES.index(REGRESSION_SLICE["difficulty"]))
    result = _OfflineResult()
    base_outcome: _Outcome | None = None
    baseline = [p for p in plans if p.approved][-1]
    n_rel = len(releases)
    for i, plan in enumerate(plans):
        run_rng = np.random.default_rng([seed, 1, i])
        n = plan.golden_n
        sub = pop.take(slice(0, n))
        ret = retrievals[plan.config.retriever].take(slice(0, n))
        if plan.kind == "candidate":
            assert base_outcome is not None
            outcome = _candidate_outcome(run_rng, sub, ret.hit, base_outcome, in_slice[:n])
        else:
            error = run_rng.random(n) < 0.003
            z = _answer(run_rng, sub, ret.hit, plan.skill)
            outcome = _Outcome(z > 0, error, z)
            if plan is baseline:
                _calibrate_causes(outcome, sub, ret)
        hallucinating = _hallucinating(outcome, sub, ret, propensity[:n], plan is baseline)
        if plan.kind == "candidate":  # its prompt change invents proration rules in the slice
            hallucinating |= in_slice[:n] & ~sub.oos & ~ret.hit & ~outcome.correct \
                & ~outcome.error
        sub_fixed = {k: v.slice(0, n) for k, v in fixed.items()}
        if n == cases:
            sub_fixed["expected"] = corrected
        if n not in versions:
            versions[n] = dataset_version(pa.table({"case_id": case_id.slice(0, n), **sub_fixed}))
            _store_version(wh, versions[n], case_id.slice(0, n), sub_fixed)
            result.rows["dataset_cases"] = result.rows.get("dataset_cases", 0) + n
        progress = min(plan.config.index, n_rel - 1) / max(n_rel - 1, 1)
        # The candidate's slice answers misstate the rules of the documents they had: they
        # cite those documents as the baseline's right answers did.
        cites = _Citing(np.where(in_slice[:n], base_outcome.correct, outcome.correct)
                        if plan.kind == "candidate" and base_outcome is not None
                        else outcome.correct, cite_u[:n])
        tables = _offline_run(run_rng, plan, sub, ret, outcome, progress, case_id.slice(0, n),
                              sub_fixed, in_slice[:n] if plan.kind == "candidate" else None,
                              hallucinating, grounded[:n], cites)
        meta = {
            "run_id": plan.run_id, "name": plan.name, "dataset": DATASET,
            "dataset_version": versions[n], "model": plan.config.model.name,
            "prompt_version": plan.config.prompt_version, "judge_version": JUDGE_VERSION,
            "git_sha": plan.git_sha, "release": plan.qualifies,
            "started_at": dt.datetime.fromtimestamp(plan.started_us / 1e6, tz=dt.UTC),
            "tags": [*plan.tags, f"retriever:{RETRIEVERS[plan.config.retriever][0]}"],
            "source": "demo", "approved": plan.approved,
        }
        wh.record_run(meta, *tables)
        for name, t in zip(("cases", "scores", "retrievals"), tables, strict=True):
            result.rows[name] = result.rows.get(name, 0) + t.num_rows
        if plan is baseline:
            base_outcome, result.baseline = outcome, plan
            result.attribution = _attribution(outcome, sub, ret, hallucinating)
        if plan.kind == "candidate":
            assert base_outcome is not None
            result.candidate = plan
            result.correctness = _planted(base_outcome, outcome, in_slice)
    result.rows["runs"] = len(plans)
    return result
