"""The scorer contract: one typed `Sample` in, `Score` rows out, with their provenance.

Like inspect_ai's ``ScorerSpec``, every score says which scorer, which version of its logic
and which arguments produced it (`Scorer.scorer_version`), so a dashboard can tell an old
grader from a new one. "Could not score" is a value (``Score.value is None`` with
``error`` saying why), never a silent fallback to another grade, and a scorer never raises
because of what a task returned.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "Sample", "Score", "Scorer", "args_hash", "canonical_json"]

KINDS = ("binary", "ordinal", "continuous")


@dataclass(frozen=True)
class Sample:
    """The one typed context every scorer receives: a golden case and what the task did."""

    case_id: str
    input: Any
    output: Any  # what the task returned (str, or JSON-able)
    expected: Any = None
    strata: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    retrieved: tuple[str, ...] = ()  # doc ids the task retrieved, rank order (rank 1 first)
    cited: tuple[str, ...] = ()  # doc ids the output cites
    relevant: tuple[str, ...] = ()  # ground-truth relevant doc ids (from the dataset)
    context: tuple[str, ...] = ()  # retrieved passages' text, for faithfulness judging
    latency_ms: float | None = None


@dataclass(frozen=True)
class Score:
    """One row of the ``scores`` table, minus the run and case ids."""

    metric: str
    value: float | None  # None = unscored (never a guessed grade)
    kind: str  # binary | ordinal | continuous
    passed: bool | None = None
    rationale: str | None = None
    scorer: str = ""
    scorer_version: str = ""  # name + version + hash of arguments (like inspect_ai ScorerSpec)
    cost_usd: float = 0.0  # judge cost, for cost accounting
    error: str | None = None  # why unscored


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces), so equal arguments hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    return repr(value)


def args_hash(args: Mapping[str, Any], length: int = 8) -> str:
    """Short sha256 of the canonical JSON of a scorer's arguments."""
    return hashlib.sha256(canonical_json(dict(args)).encode()).hexdigest()[:length]


class Scorer(abc.ABC):
    """A configured scorer. Subclasses set ``kind`` and ``version`` as class attributes.

    Sync scorers implement `_score`; `score` runs it and turns an unexpected exception into
    an unscored row, so one odd output never stops a run. Async scorers (judges) override
    `score` itself.
    """

    name: str  # default metric name
    kind: str
    version: str = "1"  # bump when the scorer's logic changes
    args: Mapping[str, Any]  # the arguments it was built with (recorded)
    family: str = ""  # which scorer this is (its factory's name), stored as Score.scorer

    def __init__(self, name: str, args: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.args = dict(args or {})

    @property
    def scorer_version(self) -> str:
        """``name@version#argshash``: which logic and which arguments made a score."""
        return f"{self.name}@{self.version}#{args_hash(self.args)}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.scorer_version} {canonical_json(self.args)}>"

    async def score(self, sample: Sample) -> list[Score]:
        """What evaluate() awaits: every score this scorer gives one sample."""
        try:
            result = self._score(sample)
        except Exception as exc:  # a scorer bug or an odd output must not stop the run
            return [self.unscored(f"{type(exc).__name__}: {exc}")]
        return [result] if isinstance(result, Score) else list(result)

    def _score(self, sample: Sample) -> Score | list[Score]:
        raise NotImplementedError(f"{type(self).__name__} implements neither _score nor score")

    def summarize(self, scores: Sequence[Score], samples: Sequence[Sample]) -> dict[str, float]:
        """Run-level figures beyond the per-case mean (e.g. per-class precision/recall/F1)."""
        return {}

    # --- helpers for subclasses -------------------------------------------------------------

    def make(self, value: float | bool | None, *, passed: bool | None = None,
             rationale: str | None = None, metric: str | None = None, kind: str | None = None,
             cost_usd: float = 0.0, error: str | None = None) -> Score:
        """A Score with this scorer's provenance filled in. Binary values pass when 1."""
        kind = kind or self.kind
        if value is not None:
            value = float(value)
            if math.isnan(value):
                value, error = None, error or "score is NaN"
        if passed is None and kind == "binary" and value is not None:
            passed = value == 1.0
        if value is None:
            passed = None
        return Score(metric=metric or self.name, value=value, kind=kind, passed=passed,
                     rationale=rationale, scorer=self.family or type(self).__name__,
                     scorer_version=self.scorer_version, cost_usd=cost_usd, error=error)

    def unscored(self, error: str, *, metric: str | None = None, kind: str | None = None,
                 rationale: str | None = None, cost_usd: float = 0.0) -> Score:
        """Could not score: value None and the reason, never a guessed grade."""
        return self.make(None, metric=metric, kind=kind, rationale=rationale,
                         cost_usd=cost_usd, error=error)
