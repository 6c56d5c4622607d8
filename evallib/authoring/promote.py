"""The flywheel: production traces that failed become new golden cases.

`evallib promote --failing --since DATE --dataset golden.jsonl` finds sampled traces with a
failing score (``passed`` false, or a binary 0 without a flag) since DATE, for ``--metric``
or any metric, and appends each as a case:

- ``case_id`` ``prod-<trace_id>``; ``input`` the trace's input, redacted again (traces are
  redacted when recorded; patterns may have grown since); no ``expected`` yet (a person
  writes it; metadata carries the failing output and the judge's reason to help);
- the trace's ``strata``; tags ``promoted`` and ``promoted:<trace_id>`` (provenance);
- skipped: traces already promoted (by that tag) and inputs already in the set, compared
  after normalising (redacted, case-folded, whitespace collapsed, trailing punctuation
  dropped), so one question asked a hundred times becomes one case.

The file is rewritten atomically (JSONL: the existing lines are kept byte for byte and the
new ones appended) and the new version is stored in the warehouse.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ..online import DEFAULT_REDACTOR, Redactor, strata_dict
from ..vocabulary import strata_text
from .datasets import Case, Dataset, load_dataset, write_atomic

__all__ = ["PromoteResult", "normalise_input", "promote_failing"]

# Constant SQL, bound parameters (as in evallib.queries).
_FAILING = """
    SELECT t.trace_id, any_value(t.timestamp) AS timestamp, any_value(t.input) AS input,
           any_value(t.output) AS output, any_value(t.strata) AS strata,
           list(s.metric ORDER BY s.metric) AS failed_metrics,
           list(s.rationale ORDER BY s.metric) AS rationales
    FROM online_scores s JOIN online_traces t USING (trace_id)
    WHERE s.date >= $since AND t.date >= $since AND ($until IS NULL OR t.date <= $until)
      AND ($metric IS NULL OR s.metric = $metric)
      AND (s.passed = false OR (s.passed IS NULL AND s.kind = 'binary' AND s.value = 0))
    GROUP BY t.trace_id
    ORDER BY timestamp, t.trace_id"""


@dataclass
class PromoteResult:
    path: str
    old_version: str
    new_version: str | None  # None when nothing was added
    added: list[Case] = field(default_factory=list)
    already_promoted: int = 0
    duplicate_input: int = 0
    failing: int = 0

    def describe(self) -> str:
        lines = [f"{self.failing} failing traces; {len(self.added)} new cases, "
                 f"{self.already_promoted} already promoted, {self.duplicate_input} with an "
                 "input already in the set"]
        if self.new_version:
            lines.append(f"{self.path}: version {self.old_version} -> {self.new_version}")
        for c in self.added:
            strata = strata_text(c.strata)
            failed = ",".join(c.metadata.get("failed_metrics", []))
            text = c.input if isinstance(c.input, str) else json.dumps(c.input)
            lines.append(f"  + {c.case_id}  [{strata}]  failed {failed}: {_short(text)}")
        return "\n".join(lines)


def normalise_input(text: str, redactor: Redactor | None = DEFAULT_REDACTOR) -> str:
    """What makes two inputs "the same question" for deduplication."""
    text = redactor(text) if redactor else text
    text = re.sub(r"\s+", " ", text.casefold()).strip()
    return re.sub(r"[\s.!?…]+$", "", text)


def promote_failing(warehouse: Any, dataset_path: str | os.PathLike[str], *, since: date,
                    until: date | None = None, metric: str | None = None,
                    limit: int | None = None, dry_run: bool = False,
                    redactor: Redactor | None = DEFAULT_REDACTOR) -> PromoteResult:
    """Append failing production traces to the golden set at ``dataset_path``."""
    from ..warehouse import Warehouse

    wh = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
    path = Path(dataset_path)
    ds = load_dataset(path)
    with wh.connect() as con:
        failing = con.sql(_FAILING, params={"since": since, "until": until,
                                            "metric": metric}).pl().to_dicts()
    result = PromoteResult(str(path), ds.version, None, failing=len(failing))
    promoted = {t.removeprefix("promoted:") for c in ds for t in c.tags
                if t.startswith("promoted:")}
    inputs = {normalise_input(_text(c.input), redactor) for c in ds}
    ids = {c.case_id for c in ds}
    for trace in failing:
        if limit is not None and len(result.added) >= limit:
            break
        if trace["trace_id"] in promoted:
            result.already_promoted += 1
            continue
        key = normalise_input(trace["input"] or "", redactor)
        if key in inputs:
            result.duplicate_input += 1
            continue
        case = _case(trace, ids, redactor)
        inputs.add(key)
        ids.add(case.case_id)
        result.added.append(case)
    if not result.added:
        return result
    new = Dataset(ds.name, [*ds.cases, *result.added], source=str(path))
    result.new_version = new.version
    if not dry_run:
        _write(path, new, result.added)
        new.store(wh)
    return result


def _case(trace: dict[str, Any], taken: set[str], redactor: Redactor | None) -> Case:
    clean = redactor or (lambda s: s)
    base = "prod-" + re.sub(r"[^A-Za-z0-9._-]+", "-", trace["trace_id"])
    case_id, n = base, 1
    while case_id in taken:
        n += 1
        case_id = f"{base}-{n}"
    rationale = next((r for r in trace["rationales"] if r), None)
    return Case(
        case_id=case_id, input=_parsed(clean(trace["input"] or "")), expected=None,
        strata=strata_dict(trace["strata"]),
        tags=("promoted", f"promoted:{trace['trace_id']}"),
        metadata={"source": "production", "trace_id": trace["trace_id"],
                  "timestamp": trace["timestamp"].isoformat(),
                  "failed_metrics": list(trace["failed_metrics"]),
                  "failing_output": clean(trace["output"] or ""),
                  "judge_rationale": clean(rationale) if rationale else None},
    )


def _write(path: Path, new: Dataset, added: list[Case]) -> None:
    if path.suffix.lower() != ".jsonl":
        new.save(path)
        return
    old = path.read_bytes()
    if old and not old.endswith(b"\n"):
        old += b"\n"
    lines = "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in added)
    write_atomic(path, old + lines.encode())


def _parsed(text: str) -> Any:
    """Online inputs are stored as text; structured ones as JSON text: give those back."""
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
