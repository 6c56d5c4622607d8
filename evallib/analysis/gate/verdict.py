"""The release gate: "should we ship?" answered by a policy file, with an exit code.

A policy (TOML) lists ``[[rules]]``; each names a ``metric`` and exactly one check:

- ``min_pass_rate``: the candidate's pass rate (mean of ``passed``; of the value for a
  binary metric without pass flags) is at least this, on its own;
- ``max_drop``: the baseline's mean minus the candidate's, over the cases both scored, is at
  most this. With ``significant = true`` (default) the threshold itself is tested, from the
  drop's 95% interval (Tango's for pass rates, the skew-corrected t for means, CR2 with a
  ``cluster`` key): **fail** when the whole interval lies beyond the threshold (one-sided
  p < alpha/2 for "drop ≤ threshold", Benjamini–Hochberg over every tested max_drop of the
  gate), **pass** when it lies within (p < alpha/2 for "drop ≥ threshold"), and
  **inconclusive** otherwise, with how many cases would decide. ``on_inconclusive`` (policy
  or rule: "warn" by default, "fail" or "pass") says what inconclusive does: warn reports it
  and exits 0;
- ``max_increase_pct``: the candidate's mean is at most this many percent above the
  baseline's, over the cases both have (cost, latency, tokens or any metric);
- ``max`` with ``stat = "mean" | "p50" | "p95" | "p99"``: an absolute budget;
- ``judge_calibrated``: every judge version that scored the metric in the candidate is
  calibrated against human labels: its Krippendorff alpha's 95% interval lies above this
  (0.8 is the usual bar); no labels is not calibrated (`evallib.analysis.calibration`).

``latency_ms``, ``cost_usd``, ``tokens_in`` and ``tokens_out`` come from the cases table,
every other metric from the scores. ``where = {stratum = value | [values]}`` and
``tags = ["critical"]`` (any of them) narrow a rule to some cases; ``by = [keys]`` makes it
hold in every slice. ``[[risk_acceptances]]`` waive failures of a named rule (optionally one
``slice``) or of one ``case_id`` in min_pass_rate rules, until ``expires``.

Reading the policy lives in `evallib.analysis.gate.policy`. A policy mistake (unknown key, wrong
type, no check or two, unknown metric, a filter no case matches) raises `PolicyError` naming
the file, the rule and the key: exit 2, no verdict.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import polars as pl

from ... import queries
from ...errors import EvallibError
from ...warehouse import Connection
from .checks import CHECKS_BY_NAME, CLUSTER, RELATIVE, drop_verdict, judge_calibrated, slice_column
from .outcome import GateResult, Outcome, RunRef, fmt, rule_status, slice_json
from .policy import CASE_METRICS, Acceptance, Policy, Rule

__all__ = ["GateData", "GateResult", "Outcome", "RunRef", "drop_verdict", "evaluate", "fmt",
           "rule_status", "run_gate", "slice_json"]


def run_gate(con: Connection, candidate: str, policy: Policy, baseline: str = "approved", *,
             today: date | None = None, cluster: str | None = None) -> GateResult:
    """Evaluate ``policy`` on ``candidate`` against ``baseline`` (a run id, or "approved":
    the newest approved run of the same dataset started before the candidate). ``cluster``
    (a stratum key, or input/expected) overrides the policy's."""
    from ..compare import compare_runs

    if cluster is not None:
        policy = replace(policy, cluster=cluster)

    cand = _run(con, candidate, "candidate")
    if baseline == "approved":
        found = queries.latest_approved(con, cand.dataset, before=cand.started_at)
        if not found.height:
            raise EvallibError(
                f"no approved run of dataset {cand.dataset!r} started before the candidate "
                f"{cand.run_id} ({cand.started_at:%Y-%m-%d %H:%M}): approve one with "
                "`evallib approve RUN`, or pass --baseline RUN")
        base, how = _run(con, found["run_id"][0], "baseline"), "approved"
    else:
        base, how = _run(con, baseline, "baseline"), "given"
    warnings = compare_runs(con, cand.run_id, base.run_id, cluster=policy.cluster).warnings
    data = GateData.load(con, cand.run_id, base.run_id, policy)
    outcomes, notes = evaluate(policy, data, today or datetime.now(UTC).date())
    return GateResult(uuid.uuid4().hex, cand, base, how, policy, warnings, outcomes, notes,
                      datetime.now(UTC))


def evaluate(policy: Policy, data: GateData, today: date) -> tuple[list[Outcome], list[str]]:
    """Every rule on the loaded runs: outcomes in rule order (then slice order), and notes
    on expired risk acceptances. No warehouse access: the part a simulation can repeat."""
    outcomes = [o for r in policy.rules for o in _evaluate(r, data, policy)]
    return _waive(_decide(outcomes, policy), policy.acceptances, today)


def _run(con: Connection, ref: str, role: str) -> RunRef:
    """The run ``ref`` names: a run id, or a run name (its newest run)."""
    from ..compare import resolve_run

    run_id = resolve_run(con, ref, role)
    rows = queries.runs_by_id(con, [run_id])
    if not rows.height:
        raise EvallibError(f"unknown {role} run {run_id!r} (see: evallib runs)")
    r = rows.row(0, named=True)
    return RunRef(r["run_id"], r["name"], r["dataset"], r["started_at"])


@dataclass
class GateData:
    """What the rules read: both runs' cases (case_id, strata, tags, latency_ms, tokens_in,
    tokens_out, cost_usd) and scores (case_id, metric, kind, value, passed)."""

    cand_cases: pl.DataFrame
    cand_scores: pl.DataFrame
    base_cases: pl.DataFrame
    base_scores: pl.DataFrame
    cand_id: str
    base_id: str
    cand_metrics: list[str]
    # judge_calibrated rules: (metric, threshold) → the candidate's judge versions of the
    # metric, each with its number of scores and calibration (None: no human labels)
    judges: dict[tuple[str, float], list[tuple[str, int, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, con: Connection, cand: str, base: str, policy: Policy) -> GateData:
        metrics = sorted({r.metric for r in policy.rules if r.metric not in CASE_METRICS})
        cc, cs = queries.run_case_values(con, cand), queries.run_scores(con, cand, metrics)
        if policy.cluster is not None:
            cc = _with_cluster(con, cc, cand, policy.cluster)
        bc, bs = ((cc, cs) if base == cand else
                  (queries.run_case_values(con, base), queries.run_scores(con, base, metrics)))
        known = queries.run_metric_summary(con, [cand])["metric"].to_list()
        judges = {}
        for r in policy.rules:
            if r.check == "judge_calibrated" and r.metric in known:
                from ..calibration import judge_status

                judges[(r.metric, r.threshold)] = judge_status(con, cand, r.metric,
                                                               threshold=r.threshold)
        return cls(cc, cs, bc, bs, cand, base, known, judges)

    def values(self, metric: str, baseline: bool = False) -> pl.DataFrame:
        """case_id, kind, value, passed of one metric in one run."""
        cases, scores = ((self.base_cases, self.base_scores) if baseline
                         else (self.cand_cases, self.cand_scores))
        if metric in CASE_METRICS:
            return cases.select("case_id", pl.lit("continuous").alias("kind"),
                                pl.col(metric).cast(pl.Float64).alias("value"),
                                pl.lit(None, pl.Boolean).alias("passed"))
        return scores.filter(pl.col("metric") == metric).select("case_id", "kind", "value",
                                                                "passed")




def _with_cluster(con: Connection, cases: pl.DataFrame, run_id: str, key: str) -> pl.DataFrame:
    """``cases`` with each case's cluster key (null: a cluster of its own)."""
    from ..compare import CASE_FIELDS

    if key in CASE_FIELDS:
        fields = queries.case_scores(con, run_id).select("case_id", pl.col(key).alias(CLUSTER))
        return cases.join(fields.unique("case_id"), on="case_id", how="left",
                          maintain_order="left")
    out = cases.with_columns(pl.col("strata").map.get(key).alias(CLUSTER))
    if out[CLUSTER].null_count() == out.height:
        raise EvallibError(f"no case of run {run_id} has the stratum key {key!r} to cluster "
                           f"by (or use a case field: {', '.join(CASE_FIELDS)})")
    return out


def _evaluate(rule: Rule, data: GateData, policy: Policy) -> list[Outcome]:
    """The rule's outcomes (one, or one per slice), max_drop still before BH."""
    if rule.metric not in CASE_METRICS and rule.metric not in data.cand_metrics:
        raise rule.error(
            f"unknown metric {rule.metric!r}: run {data.cand_id} has scores for "
            f"{', '.join(data.cand_metrics) or 'no metric'}, and its cases give "
            f"{', '.join(CASE_METRICS)}")
    if rule.check == "judge_calibrated":
        return [judge_calibrated(rule, data.judges.get((rule.metric, rule.threshold), []))]
    cases = _matching_cases(rule, data)
    frame = cases.join(data.values(rule.metric), on="case_id", how="inner")
    if rule.check in RELATIVE:
        base = data.values(rule.metric, baseline=True)
        if not base.height:
            raise EvallibError(f"{rule.source}: {rule.label}: the baseline run "
                               f"{data.base_id} has no {rule.metric} values")
        frame = frame.join(base.select("case_id", pl.col("value").alias("base")),
                           on="case_id", how="inner")
    if rule.check == "min_pass_rate" and frame["passed"].null_count() == frame.height \
            and (frame["kind"] != "binary").any():
        raise rule.error(f"min_pass_rate needs pass flags, and {rule.metric} has none "
                         "(use max_drop or max)")
    if not rule.by:
        return [_check(rule, None, frame, policy.alpha)]
    cols = [slice_column(k) for k in rule.by]
    frame = frame.drop_nulls(cols).sort([*cols, "case_id"])
    return [_check(rule, dict(zip(rule.by, key, strict=True)), group, policy.alpha)
            for key, group in frame.group_by(cols, maintain_order=True)]


def _check(rule: Rule, slice_: dict[str, str] | None, frame: pl.DataFrame,
           alpha: float) -> Outcome:
    """The rule's check on one slice; "skipped" when no case has the values it needs
    (min_pass_rate keeps unscored cases, to report how many)."""
    if rule.check != "min_pass_rate":
        frame = frame.drop_nulls(["value", "base"] if rule.check in RELATIVE else ["value"])
        if not frame.height:
            return Outcome(rule, slice_, "skipped", math.nan, 0,
                           message="no case with a value in both runs"
                           if rule.check in RELATIVE else "no case with a value")
    return CHECKS_BY_NAME[rule.check](rule, slice_, frame, alpha)


def _matching_cases(rule: Rule, data: GateData) -> pl.DataFrame:
    """The candidate's cases the rule applies to, with a column per stratum key it uses;
    a key, value or tag no case has is a policy mistake, not an empty pass."""
    cases = data.cand_cases
    keys = set(cases.select(pl.col("strata").map.keys().explode())["strata"].drop_nulls())
    for key in (*rule.where, *rule.by):
        if key not in keys:
            raise rule.error(f"no case of run {data.cand_id} has the stratum key {key!r} "
                             f"(keys: {', '.join(sorted(keys)) or 'none'})")
    used = dict.fromkeys([*rule.where, *rule.by])
    full = cases.select("case_id", "tags", *([CLUSTER] if CLUSTER in cases.columns else []),
                        *(pl.col("strata").map.get(k).alias(slice_column(k)) for k in used))
    frame = full
    for key, values in rule.where.items():
        seen = set(full[slice_column(key)].drop_nulls())
        missing = [v for v in values if v not in seen]
        if missing:
            raise rule.error(f"no case of run {data.cand_id} has {key} = {missing[0]!r} "
                             f"(values: {', '.join(sorted(seen))})")
        frame = frame.filter(pl.col(slice_column(key)).is_in(list(values)))
    if rule.tags:
        seen = set(cases["tags"].explode().drop_nulls())
        missing = [t for t in rule.tags if t not in seen]
        if missing:
            raise rule.error(f"no case of run {data.cand_id} has the tag {missing[0]!r} "
                             f"(tags: {', '.join(sorted(seen)) or 'none'})")
        frame = frame.filter(pl.any_horizontal(pl.col("tags").list.contains(t).fill_null(False)
                                               for t in rule.tags))
    if not frame.height:
        raise rule.error(f"no case of run {data.cand_id} matches both 'where' and 'tags'")
    return frame.drop("tags")


def _decide(outcomes: list[Outcome], policy: Policy) -> list[Outcome]:
    """Each tested max_drop: fail when its interval lies beyond the threshold, with
    Benjamini–Hochberg over the one-sided p-values of every tested max_drop of the gate
    (each slice × rule); pass when the interval lies within; inconclusive otherwise, which
    the policy's on_inconclusive turns into a warning, a failure or a pass."""
    from ...stats import benjamini_hochberg

    tested = [i for i, o in enumerate(outcomes) if o.status == "pending"]
    adjusted: np.ndarray | list[float] = (
        benjamini_hochberg([outcomes[i].p_value for i in tested]) if tested else [])
    out = list(outcomes)
    for i, p_adj in zip(tested, adjusted, strict=True):
        o = out[i]
        verdict = drop_verdict(p_adj, o.p_within, policy.alpha)
        threshold = fmt(o.rule.threshold)
        detail = {"fail": f"lies beyond {threshold} (one-sided p {o.p_value:.2g}, "
                          f"BH-adjusted {p_adj:.2g})",
                  "pass": f"lies within {threshold} (one-sided p {o.p_within:.2g})",
                  "inconclusive": f"holds {threshold}: inconclusive"}[verdict]
        if verdict == "inconclusive" and drop_verdict(o.p_value, 1.0, policy.alpha) == "fail":
            detail = (f"lies beyond {threshold} (one-sided p {o.p_value:.2g}) but not after "
                      f"Benjamini–Hochberg over {len(tested)} tests (adjusted {p_adj:.2g}): "
                      "inconclusive")
        out[i] = replace(o, status=verdict, p_adjusted=float(p_adj),
                         message=f"{o.message} {detail}",
                         power=o.power if verdict == "inconclusive" else None,
                         inconclusive=verdict == "inconclusive")
    return [_inconclusive(o, policy) for o in out]


def _inconclusive(o: Outcome, policy: Policy) -> Outcome:
    """An inconclusive outcome as the policy wants it: reported (warn), failed or passed,
    saying so, then how many cases would decide."""
    if o.status != "inconclusive":
        return o
    what = policy.inconclusive_as(o.rule)
    msg = o.message if what == "warn" else (
        f'{o.message}, counted as {what} (on_inconclusive = "{what}")')
    return replace(o, status="inconclusive" if what == "warn" else what,
                   message=f"{msg}; {o.power}" if o.power else msg)


def _waive(outcomes: list[Outcome], acceptances: tuple[Acceptance, ...],
           today: date) -> tuple[list[Outcome], list[str]]:
    """Apply the risk acceptances to failures; an expired one waives nothing, and says so."""
    notes = [f"{a.describe()} expired on {a.expires}: it waives nothing"
             for a in acceptances if a.expired(today)]
    out = []
    for o in outcomes:
        if o.status not in ("fail", "inconclusive"):
            out.append(o)
            continue
        for_rule = [a for a in acceptances if a.rule == o.rule.name and a.case_id is None
                    and (a.slice is None or a.slice == o.slice)]
        active = [a for a in for_rule if not a.expired(today)]
        used = active
        if not active and o.rule.check == "min_pass_rate":
            used = _case_waivers(o, acceptances, today)
        if used:
            owners = ", ".join(dict.fromkeys(a.owner for a in used))
            reasons = "; ".join(dict.fromkeys(f"{a.reason} (until {a.expires})" for a in used))
            o = replace(o, status="waived", owner=owners,
                        message=f"{o.message}; waived by {owners}: {reasons}")
        else:
            by_case = o.rule.check == "min_pass_rate"
            expired = [a for a in acceptances if a.expired(today)
                       and (a in for_rule or (by_case and a.case_id in o.cases
                                              and a.rule in (None, o.rule.name)))]
            if expired:
                o = replace(o, message=o.message + "; " + "; ".join(
                    f"risk acceptance by {a.owner} expired on {a.expires}" for a in expired))
        out.append(o)
    return out, notes


def _case_waivers(o: Outcome, acceptances: tuple[Acceptance, ...],
                  today: date) -> list[Acceptance]:
    """Case acceptances that lift a min_pass_rate slice back to its threshold, or none."""
    by_case = {a.case_id: a for a in acceptances if a.case_id in o.cases
               and a.rule in (None, o.rule.name) and not a.expired(today)}
    if not by_case:
        return []
    rate = o.observed + len(by_case) / o.n
    return list(by_case.values()) if rate >= o.rule.threshold - 1e-12 else []
