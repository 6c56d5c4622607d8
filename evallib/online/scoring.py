"""Judging sampled traces later (`evallib score-online`): the traces a metric has not
scored yet, scored with the same scorers offline evaluation uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import EvallibError
from .recorder import score_rows

__all__ = ["metrics_of", "resolve_scorers", "score_online", "strata_dict"]

# Constant SQL, bound parameters (as in evallib.queries).
_UNSCORED_TRACES = """
    SELECT t.trace_id, t.timestamp, t.input, t.output, t.strata, t.latency_ms
    FROM online_traces t
    WHERE t.date >= $since AND ($until IS NULL OR t.date <= $until)
      AND NOT EXISTS (SELECT 1 FROM online_scores s
                      WHERE s.trace_id = t.trace_id AND s.metric = $metric
                        AND s.date >= $since)
    ORDER BY t.timestamp, t.trace_id
    LIMIT $limit"""
_TRACE_DOCS = """
    SELECT trace_id, doc_id, rank, relevant, cited FROM online_retrievals
    WHERE date >= $since AND list_contains($ids, trace_id)
    ORDER BY trace_id, rank"""


def metrics_of(scorer: Any) -> list[str]:
    """The metric names a scorer writes (a rubric: one per criterion)."""
    return [c.name for c in getattr(scorer, "criteria", ())] or [scorer.name]


def resolve_scorers(spec: str, judge_model: str | None = None) -> list[Any]:
    """Scorers from ``--scorers``: names of `evallib.scorers` factories that need no
    arguments (an LLM judge factory gets ``Judge(judge_model)``), retrieval metrics
    (``recall@5``, ``mrr``, ``citation_hit_rate``), or ``module:attribute`` naming a
    configured scorer, a list of them, or a factory."""
    import importlib

    from .. import scorers as lib
    from ..scorers.retrieval import RETRIEVAL_METRICS, retrieval_metric

    out = []
    for name in (n.strip() for n in spec.split(",") if n.strip()):
        metric, _, k = name.partition("@")
        if ":" in name:
            module, _, attr = name.partition(":")
            try:
                obj = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as e:
                raise EvallibError(f"--scorers {name}: {e}") from None
        elif metric in RETRIEVAL_METRICS:
            if k and not k.isdigit():
                raise EvallibError(f"--scorers {name}: k must be a whole number")
            out.append(retrieval_metric(metric, int(k) if k else None))
            continue
        elif name in lib.__all__ and name[0].islower():
            obj = getattr(lib, name)
        else:
            raise EvallibError(f"unknown scorer {name!r}: use a factory of evallib.scorers, a "
                               "retrieval metric like recall@5, or module:attribute")
        out += _instantiate(obj, name, judge_model)
    if not out:
        raise EvallibError("--scorers names no scorer")
    return out


def _instantiate(obj: Any, name: str, judge_model: str | None) -> list[Any]:
    import inspect

    from ..scorers.base import Scorer

    if isinstance(obj, Scorer):
        return [obj]
    if isinstance(obj, list | tuple) and obj and all(isinstance(s, Scorer) for s in obj):
        return list(obj)
    if not callable(obj):
        raise EvallibError(f"--scorers {name}: not a scorer, a list of scorers or a factory")
    kwargs = {}
    if "judge" in inspect.signature(obj).parameters:
        if not judge_model:
            raise EvallibError(f"--scorers {name} is an LLM judge: pass --judge-model MODEL")
        from ..scorers import Judge

        kwargs["judge"] = Judge(judge_model)
    try:
        made = obj(**kwargs)
    except TypeError as e:
        raise EvallibError(f"--scorers {name} needs arguments ({e}); point --scorers at a "
                           "configured scorer instead: module:attribute") from None
    if callable(made) and not isinstance(made, Scorer):
        raise EvallibError(f"--scorers {name}: the factory did not return a scorer")
    return _instantiate(made, name, judge_model)


def score_online(warehouse: Any, scorers: Sequence[Any], since: Any, *, until: Any = None,
                 limit: int | None = None, concurrency: int = 8, batch: int = 200
                 ) -> dict[str, dict[str, int]]:
    """Score sampled traces since ``since`` that have no score yet for each scorer's metric;
    write the scores (in batches, so an interruption keeps what was done) at their trace's
    timestamp. Returns, per metric, how many rows were scored and unscored."""
    import asyncio

    from ..scorers.base import Sample
    from ..warehouse import Warehouse
    from ..warehouse.db import connect

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    counts: dict[str, dict[str, int]] = {}
    for scorer in scorers:
        with connect(wh.store) as con:
            traces = con.sql(_UNSCORED_TRACES, params={
                "since": since, "until": until, "metric": metrics_of(scorer)[0],
                "limit": limit if limit is not None else 2**62}).pl().to_dicts()
            docs = con.sql(_TRACE_DOCS, params={
                "since": since, "ids": [t["trace_id"] for t in traces]}).pl().to_dicts()
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            by_trace.setdefault(d["trace_id"], []).append(d)
        samples = [Sample(
            case_id=t["trace_id"], input=t["input"], output=t["output"],
            strata=strata_dict(t["strata"]), latency_ms=t["latency_ms"],
            retrieved=tuple(d["doc_id"] for d in by_trace.get(t["trace_id"], [])),
            cited=tuple(d["doc_id"] for d in by_trace.get(t["trace_id"], []) if d["cited"]),
            relevant=tuple(d["doc_id"] for d in by_trace.get(t["trace_id"], [])
                           if d["relevant"])) for t in traces]
        for part in _chunks(list(zip(traces, samples, strict=True)), batch):
            scored = asyncio.run(_score_all(scorer, [s for _, s in part], concurrency))
            rows = [r for (t, _), got in zip(part, scored, strict=True)
                    for r in score_rows(t, got)]
            wh.record_online(scores=rows, sources={"online_scores": "score-online"})
            for r in rows:
                c = counts.setdefault(r["metric"], {"scored": 0, "unscored": 0})
                c["scored" if r["value"] is not None else "unscored"] += 1
    return counts


async def _score_all(scorer: Any, samples: list[Any], concurrency: int) -> list[list[Any]]:
    import asyncio

    from ..authoring.evaluation import score_safely

    gate = asyncio.Semaphore(concurrency)

    async def one(sample: Any) -> list[Any]:
        async with gate:
            return await score_safely(scorer, sample)

    return await asyncio.gather(*(one(s) for s in samples))


def strata_dict(value: Any) -> dict[str, str]:
    """A MAP as polars returns it (a list of key/value structs), or a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    return {kv["key"]: kv["value"] for kv in value or []}


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
