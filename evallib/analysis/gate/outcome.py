"""What a gate run produces: the runs it compared, one `Outcome` per rule and slice, the
`GateResult` with its verdict and warehouse rows; and how the reports write numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .policy import Policy, Rule

__all__ = ["GateResult", "Outcome", "RunRef", "fmt", "rule_status", "slice_json"]


@dataclass(frozen=True)
class RunRef:
    run_id: str
    name: str
    dataset: str
    started_at: datetime


@dataclass(frozen=True)
class Outcome:
    """One rule on one slice (``slice`` None: on all the rule's cases)."""

    rule: Rule
    slice: dict[str, str] | None
    status: str  # pass | fail | inconclusive | waived | skipped
    observed: float  # pass rate, drop, increase in %, or the statistic
    n: int
    baseline: float = math.nan  # the baseline's mean (checks against a baseline)
    candidate: float = math.nan  # the candidate's mean, rate or statistic
    p_value: float = math.nan
    p_adjusted: float = math.nan
    message: str = ""
    owner: str | None = None
    cases: tuple[str, ...] = ()  # failing or regressed case ids, worst first
    power: str | None = None  # an inconclusive max_drop: how many cases would decide
    low: float = math.nan  # a tested max_drop: the drop's 95% interval
    high: float = math.nan
    p_within: float = math.nan  # one-sided p of "drop ≥ threshold" (p_value: "≤")
    inconclusive: bool = False  # the test could not decide (status says what that does)


@dataclass
class GateResult:
    gate_id: str
    candidate: RunRef
    baseline: RunRef
    baseline_how: str  # "approved" (found) or "given"
    policy: Policy
    warnings: list[str]
    outcomes: list[Outcome]
    notes: list[str]
    created_at: datetime

    @property
    def verdict(self) -> str:
        """fail (any failure) | inconclusive (none, but an inconclusive max_drop under
        on_inconclusive = "warn") | pass."""
        for status in ("fail", "inconclusive"):
            if any(o.status == status for o in self.outcomes):
                return status
        return "pass"

    @property
    def exit_code(self) -> int:
        """1 on fail; 0 on pass and on inconclusive (warn): the report carries it."""
        return 1 if self.verdict == "fail" else 0

    def by_rule(self) -> list[tuple[Rule, list[Outcome]]]:
        return [(r, [o for o in self.outcomes if o.rule is r]) for r in self.policy.rules]

    def rows(self) -> list[dict[str, Any]]:
        """The ``gate_results`` rows of this gate run."""
        return [{"gate_id": self.gate_id, "run_id": self.candidate.run_id,
                 "baseline_id": self.baseline.run_id, "policy_hash": self.policy.sha,
                 "position": i, "rule": o.rule.name, "metric": o.rule.metric,
                 "check_type": o.rule.check, "slice": slice_json(o.slice),
                 "status": o.status, "observed": _finite(o.observed),
                 "threshold": o.rule.threshold, "baseline_value": _finite(o.baseline),
                 "n": o.n, "p_adjusted": _finite(o.p_adjusted), "message": o.message,
                 "owner": o.owner, "created_at": self.created_at}
                for i, o in enumerate(self.outcomes)]


def rule_status(outcomes: list[Outcome]) -> str:
    """A rule fails if any slice fails; else inconclusive if any is; waived if any is
    waived and none fails."""
    for status in ("fail", "inconclusive", "waived", "pass"):
        if any(o.status == status for o in outcomes):
            return status
    return "skipped"



def fmt(x: float) -> str:
    """A number as a reader wants it: 0.933, 0.00457, 3,388."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.01:
        return f"{x:.3f}"
    return f"{x:.3g}"


def slice_json(s: Mapping[str, str] | None) -> str | None:
    return None if not s else json.dumps(dict(sorted(s.items())), separators=(",", ":"),
                                         ensure_ascii=False)


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x
