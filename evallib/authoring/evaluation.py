"""`evaluate()`: run a task over a golden set, score every case, record the run.

The task is called once per case and epoch, ``concurrency`` at a time (async tasks on the
event loop, sync ones in a thread pool of that size), each call under ``timeout``. A call
that raises or times out does not stop the run: its case records the error and its scores
are recorded unscored. A scorer that raises, or returns a score the warehouse would refuse,
gives an unscored row saying why.

With ``epochs = k > 1`` every case runs k times and each metric's row holds the mean over
the scored epochs (kind ``continuous``, since a mean of passes is a rate); its pass flag is
true only when every scored epoch passed. Metrics with a pass flag also get, per case:

- ``<metric>.pass^k`` (binary): 1 when all k epochs were scored and passed, 0 when any
  failed, unscored when some epoch could not be scored and none failed;
- ``<metric>.flip_rate`` (continuous): the chance that two different epochs of the case
  disagree, 2·p·(1−p)·m/(m−1) over its m scored epochs (p = share passed); 0 = stable.

Per-case latency, tokens and cost are means over the epochs (comparable with a one-epoch
run); `EvalResult.task_cost_usd` is what all calls cost, `judge_cost_usd` what judges cost.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EvallibError
from ..scorers.base import Sample, Score, Scorer
from ..warehouse.schema import KINDS
from .datasets import Case, Dataset, as_text, load_dataset

__all__ = ["EvalResult", "TaskResult", "evaluate", "evaluate_async"]


@dataclass(frozen=True)
class TaskResult:
    """What a task may return instead of a plain output, to report what it did."""

    output: Any
    retrieved: Sequence[str] = ()  # doc ids, rank order
    cited: Sequence[str] | None = None  # None: the task does not report citations
    context: Sequence[str] = ()  # retrieved passages' text, for faithfulness judges
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None


@dataclass
class _Attempt:
    """One epoch of one case."""

    result: TaskResult | None
    error: str | None
    latency_ms: float | None
    sample: Sample | None = None
    scores: list[tuple[Scorer, Score]] = field(default_factory=list)


@dataclass
class EvalResult:
    """What `evaluate` recorded, with the figures a script prints or asserts on."""

    run_id: str
    name: str
    dataset: str
    dataset_version: str
    n_cases: int
    epochs: int
    metrics: dict[str, float]  # mean of the scored values per metric (NaN: none scored)
    n_scored: dict[str, int]
    n_unscored: dict[str, int]
    errors: int  # cases with an error in some epoch
    summaries: dict[str, dict[str, float]]  # scorer name → Scorer.summarize figures
    task_cost_usd: float
    judge_cost_usd: float
    judge_version: str | None
    warehouse: str

    def __str__(self) -> str:
        lines = [f"run {self.run_id}: {self.n_cases} cases of {self.dataset}@"
                 f"{self.dataset_version}, {self.epochs} epoch(s), {self.errors} errors, "
                 f"cost ${self.task_cost_usd:.4f} + judge ${self.judge_cost_usd:.4f}"]
        width = max((len(m) for m in self.metrics), default=0)
        for m, v in self.metrics.items():
            lines.append(f"  {m.ljust(width)}  {v:.3f}  ({self.n_scored[m]} scored, "
                         f"{self.n_unscored[m]} unscored)")
        for scorer, figures in self.summaries.items():
            for k, v in figures.items():
                lines.append(f"  {scorer}: {k} = {v:.3f}")
        return "\n".join(lines)


Task = Callable[[Any], Any]
_RUN_EXTRAS = {"run_id", "git_sha", "release", "tags", "approved", "started_at"}


def evaluate(task: Task, dataset: Dataset | str | os.PathLike[str],
             scorers: Scorer | Sequence[Scorer], *, name: str, model: str | None = None,
             prompt_version: str | None = None, concurrency: int = 8, epochs: int = 1,
             timeout: float | None = None, warehouse: Any = None, **run: Any) -> EvalResult:
    """Run ``task(case.input)`` over ``dataset``, score, record the run; see the module doc.

    ``run`` takes more run metadata: ``run_id``, ``git_sha`` (default: ``$GITHUB_SHA`` or
    ``git rev-parse HEAD``), ``release``, ``tags``, ``approved``, ``started_at``, and
    ``progress`` (default: a stderr line when stderr is a terminal)."""
    coro = evaluate_async(task, dataset, scorers, name=name, model=model,
                          prompt_version=prompt_version, concurrency=concurrency,
                          epochs=epochs, timeout=timeout, warehouse=warehouse, **run)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:  # called from a running loop (a notebook)
        return pool.submit(asyncio.run, coro).result()


async def evaluate_async(task: Task, dataset: Dataset | str | os.PathLike[str],
                         scorers: Scorer | Sequence[Scorer], *, name: str,
                         model: str | None = None, prompt_version: str | None = None,
                         concurrency: int = 8, epochs: int = 1, timeout: float | None = None,
                         warehouse: Any = None, progress: bool | None = None,
                         **run: Any) -> EvalResult:
    """`evaluate` for callers that already run an event loop."""
    from ..warehouse import Warehouse

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    scorer_list = [scorers] if isinstance(scorers, Scorer) else list(scorers)
    _check_args(task, scorer_list, concurrency, epochs, timeout)
    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    unknown = sorted(set(run) - _RUN_EXTRAS)
    if unknown:  # refused before any task call, not after the whole run
        raise EvallibError(f"evaluate() got unknown arguments: {', '.join(unknown)}")
    if run.get("run_id") and wh.run_exists(run["run_id"]):
        raise EvallibError(f"run {run['run_id']!r} is already in the warehouse")
    started = run.pop("started_at", None) or time.time()
    bar = _Progress(name, len(ds) * epochs, sys.stderr.isatty() if progress is None else progress)
    gate = asyncio.Semaphore(concurrency)
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="evallib-task")
    try:
        done = await asyncio.gather(*(_attempt(task, case, scorer_list, gate, pool, timeout, bar)
                                      for case in ds for _ in range(epochs)))
    finally:
        # Not waiting: a timed-out sync call cannot be stopped (Python threads cannot be
        # killed); it finishes in the background and its result is ignored.
        pool.shutdown(wait=False, cancel_futures=True)
    bar.close()
    attempts = [done[i * epochs:(i + 1) * epochs] for i in range(len(ds))]

    rows = _rows(ds, attempts, scorer_list, epochs)
    judge_version = _judge_version(scorer_list)
    meta = {"name": name, "dataset": ds.name, "dataset_version": ds.store(wh),
            "model": model, "prompt_version": prompt_version, "judge_version": judge_version,
            "git_sha": run.pop("git_sha", None) or _git_sha(), "source": "evaluate",
            "started_at": _as_datetime(started), **run}
    run_id = wh.record_run(meta, rows.cases, rows.scores, rows.retrievals,
                           sources={"run": "evaluate(run metadata)"})
    return EvalResult(run_id=run_id, name=name, dataset=ds.name, dataset_version=ds.version,
                      n_cases=len(ds), epochs=epochs, metrics=rows.means, n_scored=rows.n_scored,
                      n_unscored=rows.n_unscored, errors=rows.errors,
                      summaries=_summaries(scorer_list, attempts),
                      task_cost_usd=rows.task_cost, judge_cost_usd=rows.judge_cost,
                      judge_version=judge_version, warehouse=wh.root)


def _check_args(task: Task, scorers: list[Scorer], concurrency: int, epochs: int,
                timeout: float | None) -> None:
    if not callable(task):
        raise EvallibError(f"task must be callable, got {type(task).__name__}")
    for s in scorers:
        if not isinstance(s, Scorer):
            raise EvallibError(f"{s!r} is not a Scorer (use a factory from evallib.scorers)")
    names = [s.name for s in scorers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EvallibError(f"two scorers are named {dup[0]!r}: pass name=… to tell them apart")
    if concurrency < 1 or epochs < 1:
        raise EvallibError("concurrency and epochs must be at least 1")
    if timeout is not None and not timeout > 0:
        raise EvallibError("timeout must be a positive number of seconds (or None)")


async def _attempt(task: Task, case: Case, scorers: list[Scorer], gate: asyncio.Semaphore,
                   pool: ThreadPoolExecutor, timeout: float | None, bar: _Progress) -> _Attempt:
    async with gate:
        attempt = await _call(task, case.input, pool, timeout)
    if attempt.result is not None:
        r = attempt.result
        attempt.sample = Sample(
            case_id=case.case_id, input=case.input, output=r.output, expected=case.expected,
            strata=case.strata, tags=case.tags, metadata=case.metadata,
            retrieved=tuple(str(d) for d in r.retrieved),
            cited=tuple(str(d) for d in r.cited or ()), relevant=case.relevant_docs,
            context=tuple(r.context), latency_ms=attempt.latency_ms)
        for scorer in scorers:
            attempt.scores += [(scorer, s) for s in await score_safely(scorer, attempt.sample)]
    bar.step(attempt.error is not None)
    return attempt


async def _call(task: Task, value: Any, pool: ThreadPoolExecutor, timeout: float | None
                ) -> _Attempt:
    start = time.perf_counter()
    try:
        if _is_async(task):
            out = await asyncio.wait_for(task(value), timeout)
        else:
            loop = asyncio.get_running_loop()
            out = await asyncio.wait_for(loop.run_in_executor(pool, task, value), timeout)
            if inspect.isawaitable(out):
                left = None if timeout is None else timeout - (time.perf_counter() - start)
                out = await asyncio.wait_for(out, left)
    except TimeoutError:
        return _Attempt(None, f"timed out after {timeout:g} s", None)
    except Exception as e:  # the task's own failure: recorded on its case, the run goes on
        return _Attempt(None, f"{type(e).__name__}: {e}", None)
    latency = (time.perf_counter() - start) * 1000
    return _Attempt(out if isinstance(out, TaskResult) else TaskResult(out), None, latency)


def _is_async(task: Task) -> bool:
    return inspect.iscoroutinefunction(task) or \
        inspect.iscoroutinefunction(type(task).__call__)  # an object with async __call__


async def score_safely(scorer: Scorer, sample: Sample) -> list[Score]:
    try:
        scores = list(await scorer.score(sample))
    except Exception as e:  # scorers should not raise; one that does costs its rows only
        return [scorer.unscored(f"scorer raised {type(e).__name__}: {e}")]
    return [_checked(scorer, s) for s in scores] or \
        [scorer.unscored("the scorer returned no score")]


def _checked(scorer: Scorer, s: Any) -> Score:
    """A score the warehouse accepts, or an unscored row saying what was wrong."""
    if not isinstance(s, Score):
        return scorer.unscored(f"the scorer returned {type(s).__name__}, not a Score")
    why = None
    if s.kind not in KINDS:
        why = f"kind {s.kind!r} is not one of {', '.join(KINDS)}"
    elif s.value is not None and not math.isfinite(s.value):
        why = f"value {s.value!r} is not finite"
    elif s.kind == "binary" and s.value not in (None, 0, 1):
        why = f"binary value {s.value!r} is not 0 or 1"
    if why is None:
        return s
    return Score(metric=s.metric, value=None, kind=s.kind if s.kind in KINDS else scorer.kind,
                 scorer=s.scorer, scorer_version=s.scorer_version, cost_usd=s.cost_usd,
                 error=f"invalid score: {why}")


def _summaries(scorers: list[Scorer], attempts: list[list[_Attempt]]
               ) -> dict[str, dict[str, float]]:
    out = {}
    for scorer in scorers:
        samples, scores = [], []
        for a in (a for case in attempts for a in case if a.sample is not None):
            own = [s for sc, s in a.scores if sc is scorer]
            samples.append(a.sample)
            scores += own
        try:
            figures = scorer.summarize(scores, samples) if samples else {}
        except Exception as e:  # a summary is a bonus: say it failed, keep the run
            figures = {}
            print(f"evallib: {scorer.name}.summarize failed: {type(e).__name__}: {e}",
                  file=sys.stderr)
        if figures:
            out[scorer.name] = dict(figures)
    return out


def _judge_version(scorers: list[Scorer]) -> str | None:
    """The judge versions of the judge scorers (model + prompt hash), if any."""
    versions = sorted({v for s in scorers if (v := getattr(s, "judge_version", None))})
    return ",".join(versions) or None


def _git_sha() -> str | None:
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path.cwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _as_datetime(value: Any) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else value


class _Progress:
    """``name: 37/120 (2 errors)`` on one stderr line, redrawn at most ten times a second."""

    def __init__(self, name: str, total: int, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled
        self.done = self.errors = 0
        self.shown = 0.0

    def step(self, error: bool) -> None:
        self.done += 1
        self.errors += error
        now = time.monotonic()
        if self.enabled and (now - self.shown > 0.1 or self.done == self.total):
            self.shown = now
            print(f"\r{self.name}: {self.done}/{self.total} ({self.errors} errors)",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)



# --- from attempts to warehouse rows -----------------------------------------------------------


@dataclass
class _Rows:
    cases: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    retrievals: list[dict[str, Any]] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)
    n_scored: dict[str, int] = field(default_factory=dict)
    n_unscored: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    task_cost: float = 0.0
    judge_cost: float = 0.0


def _rows(ds: Dataset, attempts: list[list[_Attempt]], scorers: list[Scorer], epochs: int
          ) -> _Rows:
    out = _Rows()
    metrics = _metric_catalog(attempts, scorers)
    flagged = {s.metric for case in attempts for a in case for _, s in a.scores
               if s.passed is not None}  # metrics with a pass flag get pass^k, flip rate
    for case, tries in zip(ds, attempts, strict=True):
        out.cases.append(_case_row(case, tries))
        out.errors += any(a.error for a in tries)
        out.task_cost += sum(a.result.cost_usd or 0.0 for a in tries if a.result)
        out.judge_cost += sum(s.cost_usd for a in tries for _, s in a.scores)
        ok = next((a for a in tries if a.result is not None), None)
        if ok is not None:
            out.retrievals += _retrieval_rows(case, ok.result)
        per_metric: dict[str, list[Score | None]] = {m: [] for m in metrics}
        for a in tries:
            got: dict[str, Score] = {}
            for _, s in a.scores:
                got.setdefault(s.metric, s)  # a clashing metric name: the first scorer's
            for m in metrics:
                per_metric[m].append(got.get(m) or _missing(metrics[m], a.error))
        for m, scores in per_metric.items():
            rows = [_one(scores[0])] if epochs == 1 else \
                _epoch_rows(m, scores, epochs, m in flagged)
            out.scores += [{"case_id": case.case_id, **r} for r in rows]
    for r in out.scores:
        m, v = r["metric"], r["value"]
        out.n_scored.setdefault(m, 0)
        out.n_unscored.setdefault(m, 0)
        out.means.setdefault(m, 0.0)
        if v is None:
            out.n_unscored[m] += 1
        else:
            out.n_scored[m] += 1
            out.means[m] += v
    out.means = {m: s / out.n_scored[m] if out.n_scored[m] else math.nan
                 for m, s in out.means.items()}
    return out


def _metric_catalog(attempts: list[list[_Attempt]], scorers: list[Scorer]) -> dict[str, Score]:
    """Every metric the scorers produced, in order, with a template row (kind, provenance):
    errored cases get an unscored row for each. A scorer that never scored gives its name."""
    catalog: dict[str, Score] = {}
    owner: dict[str, str] = {}
    clashes = set()
    for scorer in scorers:
        seen = [s for case in attempts for a in case for sc, s in a.scores if sc is scorer]
        for s in seen or [scorer.unscored("")]:
            if owner.setdefault(s.metric, scorer.name) != scorer.name:
                clashes.add((owner[s.metric], scorer.name, s.metric))
            catalog.setdefault(s.metric, s)
    for first, second, metric in sorted(clashes):
        print(f"evallib: scorers {first!r} and {second!r} both give metric {metric!r}; "
              "keeping the first's", file=sys.stderr)
    return catalog


def _missing(template: Score, error: str | None) -> Score:
    why = f"the task failed: {error}" if error else "the scorer gave no such metric"
    return Score(metric=template.metric, value=None, kind=template.kind,
                 scorer=template.scorer, scorer_version=template.scorer_version, error=why)


def _one(s: Score) -> dict[str, Any]:
    rationale = s.rationale
    if s.value is None and s.error:
        rationale = f"unscored: {s.error}" + (f" ({s.rationale})" if s.rationale else "")
    return {"metric": s.metric, "value": s.value, "kind": s.kind, "passed": s.passed,
            "scorer": s.scorer or None, "scorer_version": s.scorer_version or None,
            "rationale": rationale}


def _epoch_rows(metric: str, scores: list[Score], k: int, flagged: bool
                ) -> list[dict[str, Any]]:
    """The mean row, and pass^k and flip rate when the metric has pass flags."""
    first = scores[0]
    scored = [s for s in scores if s.value is not None]
    flags = [s.passed for s in scored if s.passed is not None]
    failing = next((i for i, s in enumerate(scores) if s.passed is False), None)
    shown = scores[failing] if failing is not None else first
    note = f"epoch {(failing or 0) + 1}/{k}: " + (_one(shown)["rationale"] or "")
    base = {"scorer": first.scorer or None, "scorer_version": first.scorer_version or None}
    mean = sum(s.value for s in scored) / len(scored) if scored else None
    passed = None if not flags else all(flags)
    rows = [{"metric": metric, "value": mean, "kind": "continuous" if first.kind == "binary"
             else first.kind, "passed": passed, "rationale": note, **base}]
    if not flagged:
        return rows
    if False in flags:
        all_pass = 0.0
    elif len(flags) == k:
        all_pass = 1.0
    else:
        all_pass = None
    m = len(flags)
    p = sum(flags) / m if m else 0.0
    flip = 2 * p * (1 - p) * m / (m - 1) if m >= 2 else None
    summary = f"{sum(flags)}/{m} scored epochs passed, {k - m} unscored"
    rows.append({"metric": f"{metric}.pass^{k}", "value": all_pass, "kind": "binary",
                 "passed": None if all_pass is None else all_pass == 1.0,
                 "rationale": summary, **base})
    rows.append({"metric": f"{metric}.flip_rate", "value": flip, "kind": "continuous",
                 "passed": None, "rationale": summary, **base})
    return rows


def _case_row(case: Case, tries: list[_Attempt]) -> dict[str, Any]:
    ok = [a for a in tries if a.result is not None]
    errors = [a.error for a in tries if a.error]
    error = None
    if errors:
        error = errors[0] if len(tries) == 1 else \
            f"{len(errors)}/{len(tries)} epochs failed: {errors[0]}"

    def mean(values: list[float | None], integer: bool = False) -> float | int | None:
        given = [v for v in values if v is not None]
        if not given:
            return None
        m = sum(given) / len(given)
        return round(m) if integer else m

    return {"case_id": case.case_id, "strata": dict(case.strata) or None,
            "tags": list(case.tags) or None, "input": as_text(case.input),
            "expected": as_text(case.expected),
            "output": as_text(ok[0].result.output) if ok else None,
            "latency_ms": mean([a.latency_ms for a in ok]),
            "tokens_in": mean([a.result.tokens_in for a in ok], integer=True),
            "tokens_out": mean([a.result.tokens_out for a in ok], integer=True),
            "cost_usd": mean([a.result.cost_usd for a in ok]), "error": error}


def _retrieval_rows(case: Case, r: TaskResult) -> list[dict[str, Any]]:
    relevant = set(case.relevant_docs)
    cited = None if r.cited is None else {str(d) for d in r.cited}
    return [{"case_id": case.case_id, "doc_id": str(doc), "rank": rank,
             "relevant": (str(doc) in relevant) if relevant else None,
             "cited": None if cited is None else str(doc) in cited}
            for rank, doc in enumerate(r.retrieved, start=1)]
