"""`evallib import inspect LOG…`: Inspect AI eval logs (``.eval`` or ``.json``), one run per
log, read with inspect_ai's own reader (the optional ``inspect`` extra).

The run id comes from the log's ``eval_id``, so importing a log again adds nothing. Scores:
Inspect's letters C / P / I / N become 1 / 0.5 / 0 / 0 (as Inspect's own metrics count
them): a scorer that only gives C, I or N is binary, one that gives partial credit is
ordinal; numbers keep their values (all 0/1: binary, whole numbers: ordinal, else
continuous); a dict value gives one metric per key (``scorer.key``). With several epochs a
case's row holds the mean over epochs, plus ``pass^k`` and ``flip_rate``, as `evaluate` does.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from ..authoring.evaluation import (
    _epoch_rows,  # one definition of the epoch rows for every producer
)
from ..errors import DataError, EvallibError
from ..scorers.base import Score, args_hash
from ..warehouse import Warehouse
from .common import Rows, as_text, kind_of, short_hash, slug, strata_from

LETTERS = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}
_WORDS = {"yes": 1.0, "true": 1.0, "no": 0.0, "false": 0.0}


def import_inspect(path: str | os.PathLike[str], warehouse: Warehouse, *,
                   replace: bool = False, run_name: str | None = None) -> dict[str, Any]:
    """Import one log. Returns run_id, cases, status and ``skipped`` (already imported)."""
    src = os.fspath(path)
    log = _read(src)
    spec = log.eval
    run_id = "inspect-" + slug(spec.eval_id or spec.run_id or short_hash(src, spec.created),
                               100)
    if not replace and warehouse.run_exists(run_id):
        return {"run_id": run_id, "cases": 0, "status": log.status, "skipped": True}
    samples = log.samples or []
    if not samples:
        raise DataError(f"the log has no samples (status: {log.status}); was it written with "
                        "--no-log-samples?", source=src, field="samples")
    rows = _rows(samples, _scorer_versions(spec))
    run = {"run_id": run_id, "name": run_name or spec.task_display_name or spec.task,
           "dataset": spec.dataset.name or spec.task, "model": spec.model,
           "started_at": spec.created, "source": "import:inspect",
           "tags": sorted(set(spec.tags or []) | set(log.tags or [])) or None,
           "git_sha": spec.revision.commit if spec.revision else None}
    try:
        warehouse.record_run(run, rows.get("cases"), rows.get("scores"), replace=replace,
                             sources={"run": f"{src} (eval)"})
    except DataError as e:
        raise rows.locate(e, src) from None
    return {"run_id": run_id, "cases": len(rows.get("cases")), "status": log.status,
            "skipped": False}


def _read(src: str) -> Any:
    if not os.path.isfile(src):
        raise DataError("no such file", source=src)
    if not src.endswith((".eval", ".json")):
        raise DataError("not an Inspect log: expected a .eval or .json file", source=src)
    try:
        from inspect_ai.log import read_eval_log
    except ImportError:
        raise EvallibError("reading Inspect logs needs inspect_ai: pip install -e '.[inspect]'"
                           ) from None
    try:
        return read_eval_log(src)
    except Exception as e:  # any failure of the reader means "not a log"
        raise DataError(f"not an Inspect log: {_why(e)}", source=src, field=_where(e)) from None


def _why(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):  # pydantic: the first problem is enough to see what file this is
        try:
            first = errors()[0]
            return f"{first['msg']} ({len(errors())} problem(s))"
        except Exception:
            pass
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _where(e: Exception) -> str | None:
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            return ".".join(str(p) for p in errors()[0]["loc"]) or None
        except Exception:
            return None
    return None


def _scorer_versions(spec: Any) -> dict[str, str]:
    """``name#argshash`` per scorer: which scorer with which options made a score."""
    return {s.name: f"{s.name}#{args_hash(s.options or {})}" for s in spec.scorers or []}


def _value(v: Any) -> tuple[float | None, bool]:
    """(number, whether it was a letter or word); None = could not score."""
    if isinstance(v, bool):
        return float(v), True
    if isinstance(v, int | float):
        return (float(v), False) if v == v and abs(v) != float("inf") else (None, False)
    if isinstance(v, str):
        t = v.strip()
        if t.upper() in LETTERS:
            return LETTERS[t.upper()], True
        if t.lower() in _WORDS:
            return _WORDS[t.lower()], True
        try:
            return float(t), False
        except ValueError:
            return None, False
    return None, False


def _metrics(scores: dict[str, Any] | None) -> list[tuple[str, str, Any, str | None]]:
    """(metric, scorer, raw value, explanation) for each value a sample's scorers gave."""
    out = []
    for scorer, s in (scores or {}).items():
        value = s.value
        if isinstance(value, dict):
            out += [(f"{scorer}.{k}", scorer, v, s.explanation) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            out += [(f"{scorer}.{i}", scorer, v, s.explanation) for i, v in enumerate(value)]
        else:
            out.append((scorer, scorer, value, s.explanation))
    return out


def _rows(samples: list[Any], versions: dict[str, str]) -> Rows:
    by_id: dict[str, list[Any]] = defaultdict(list)
    for s in samples:
        by_id[str(s.id)].append(s)
    # The kind of a metric is decided by all its values in the log.
    values: dict[str, list[float | None]] = defaultdict(list)
    letters: dict[str, bool] = defaultdict(bool)
    owner: dict[str, str] = {}
    for s in samples:
        for metric, scorer, raw, _ in _metrics(s.scores):
            v, letter = _value(raw)
            values[metric].append(v)
            letters[metric] |= letter
            owner.setdefault(metric, scorer)
    kinds = {m: "binary" if kind_of(vs) == "binary" else
             "ordinal" if letters[m] else kind_of(vs) for m, vs in values.items()}
    flagged = {m for m in kinds if letters[m] or kinds[m] == "binary"}
    epochs = max(len(v) for v in by_id.values())
    out = Rows()
    for case_id, tries in by_id.items():
        tries.sort(key=lambda s: s.epoch)
        where = f"sample {case_id!r}"
        out.add("cases", _case(case_id, tries), where)
        per_metric: dict[str, list[Score]] = {m: [] for m in kinds}
        for s in tries:
            got = {m: (raw, why) for m, _, raw, why in _metrics(s.scores)}
            for m, kind in kinds.items():
                base = {"metric": m, "kind": kind, "scorer": owner[m],
                        "scorer_version": versions.get(owner[m], owner[m])}
                if m not in got:
                    why = (f"the sample failed: {s.error.message}" if s.error
                           else "the scorer gave no value")
                    per_metric[m].append(Score(value=None, error=why, **base))
                    continue
                v, _ = _value(got[m][0])
                passed = None if v is None or m not in flagged else v == 1.0
                per_metric[m].append(Score(value=v, passed=passed, rationale=got[m][1],
                                           error=None if v is not None else
                                           f"not a score: {got[m][0]!r}", **base))
        for m, scores in per_metric.items():
            rows = [_one(scores[0])] if epochs == 1 else \
                _epoch_rows(m, scores, len(scores), m in flagged)
            for r in rows:
                out.add("scores", {"case_id": case_id, **r}, f"{where}, score {r['metric']!r}")
    return out


def _one(s: Score) -> dict[str, Any]:
    rationale = s.rationale
    if s.value is None and s.error:
        rationale = f"unscored: {s.error}"
    return {"metric": s.metric, "value": s.value, "kind": s.kind, "passed": s.passed,
            "scorer": s.scorer, "scorer_version": s.scorer_version, "rationale": rationale}


def _case(case_id: str, tries: list[Any]) -> dict[str, Any]:
    first = tries[0]
    errors = [s.error.message for s in tries if s.error]
    error = None
    if errors:
        error = errors[0] if len(tries) == 1 else \
            f"{len(errors)}/{len(tries)} epochs failed: {errors[0]}"
    ok = [s for s in tries if not s.error] or tries
    usage = [_usage(s) for s in ok]
    seconds = [s.working_time if s.working_time is not None else s.total_time for s in ok]
    return {"case_id": case_id, "strata": strata_from(first.metadata) or None,
            "input": _input(first.input), "expected": as_text(first.target),
            "output": ok[0].output.completion if ok[0].output and not ok[0].error else None,
            "latency_ms": _mean([t * 1000 if t is not None else None for t in seconds]),
            "tokens_in": _mean([u[0] for u in usage], integer=True),
            "tokens_out": _mean([u[1] for u in usage], integer=True),
            "cost_usd": _mean([u[2] for u in usage]), "error": error}


def _input(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return as_text([{"role": m.role, "content": m.text} for m in value])


def _usage(sample: Any) -> tuple[int | None, int | None, float | None]:
    """Tokens in, tokens out and cost over every model the sample called (None: unknown)."""
    usage = list((sample.model_usage or {}).values())
    if not usage:
        return None, None, None
    costs = [u.total_cost for u in usage if u.total_cost is not None]
    return (sum(u.input_tokens for u in usage), sum(u.output_tokens for u in usage),
            sum(costs) if costs else None)


def _mean(values: list[float | None], integer: bool = False) -> float | int | None:
    given = [v for v in values if v is not None]
    if not given:
        return None
    m = sum(given) / len(given)
    return round(m) if integer else m
