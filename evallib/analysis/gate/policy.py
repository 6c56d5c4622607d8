"""Gate policies: a TOML file of ``[[rules]]`` and ``[[risk_acceptances]]``, checked so that
a typo stops the gate (exit 2, naming the file, the rule and the key) instead of passing it.

See `evallib.analysis.gate.verdict` for what each check means; this module only reads and validates.
Rules are numbered from 1 in messages (``rules[3]`` is the third ``[[rules]]`` table).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ...errors import EvallibError
from ...vocabulary import slice_label

__all__ = ["CASE_METRICS", "CHECKS", "ON_INCONCLUSIVE", "STATS", "Acceptance", "Policy",
           "PolicyError", "Rule", "load_policy", "parse_policy"]

CASE_METRICS = ("latency_ms", "cost_usd", "tokens_in", "tokens_out")
CHECKS = ("min_pass_rate", "max_drop", "max_increase_pct", "max", "judge_calibrated")
STATS = {"mean": None, "p50": 0.5, "p95": 0.95, "p99": 0.99}
RULE_KEYS = ("name", "metric", "by", "where", "tags", *CHECKS, "significant", "stat",
             "on_inconclusive")
ACCEPTANCE_KEYS = ("rule", "case_id", "slice", "owner", "reason", "expires")
TOP_KEYS = ("alpha", "on_inconclusive", "cluster", "rules", "risk_acceptances")
#: What an inconclusive max_drop (its interval holds the threshold) does to the gate.
ON_INCONCLUSIVE = ("warn", "fail", "pass")


class PolicyError(EvallibError):
    """The policy file is wrong: the message names the file, the rule and the key."""


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based, in file order
    name: str
    metric: str
    check: str
    threshold: float
    by: tuple[str, ...] = ()
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    significant: bool = True
    stat: str = "mean"
    source: str = "policy"
    named: bool = True  # False: the name was made up from the rule
    on_inconclusive: str | None = None  # None: the policy's

    @property
    def label(self) -> str:
        return f'rules[{self.index}] ("{self.name}")' if self.named else f"rules[{self.index}]"

    def error(self, message: str) -> PolicyError:
        return PolicyError(f"{self.source}: {self.label}: {message}")

    def describe(self) -> str:
        """``correctness max_drop 0.02 (tested) by query_type × difficulty``."""
        check = f"{self.stat} " if self.check == "max" else ""
        parts = [f"{self.metric} {check}{self.check} {self.threshold:g}"]
        if self.check == "max_drop":
            parts[0] += " (tested)" if self.significant else " (point estimate)"
        if self.where:
            parts.append("where " + ", ".join(f"{k} in {'|'.join(v)}"
                                              for k, v in self.where.items()))
        if self.tags:
            parts.append("tags " + "|".join(self.tags))
        if self.by:
            parts.append("by " + " × ".join(self.by))
        return " ".join(parts)


@dataclass(frozen=True)
class Acceptance:
    index: int
    owner: str
    reason: str
    expires: date
    rule: str | None = None
    case_id: str | None = None
    slice: dict[str, str] | None = None

    def expired(self, today: date) -> bool:
        return today > self.expires  # valid through its expiry day

    def describe(self) -> str:
        what = " ".join(p for p in (f"rule {self.rule!r}" if self.rule else "",
                                    f"case {self.case_id}" if self.case_id else "",
                                    f"slice {slice_label(self.slice)}" if self.slice else "")
                        if p)
        return f"risk_acceptances[{self.index}] ({what}, owner {self.owner})"


@dataclass(frozen=True)
class Policy:
    path: str
    sha: str
    rules: tuple[Rule, ...]
    acceptances: tuple[Acceptance, ...] = ()
    alpha: float = 0.05
    on_inconclusive: str = "warn"
    cluster: str | None = None  # a stratum key (or input/expected) that groups cases

    def inconclusive_as(self, rule: Rule) -> str:
        """warn | fail | pass: what an inconclusive outcome of ``rule`` does."""
        return rule.on_inconclusive or self.on_inconclusive


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and check a policy file; `PolicyError` on any mistake."""
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except OSError as e:
        raise PolicyError(f"{name}: cannot read the policy: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise PolicyError(f"{name}: not valid TOML: {e}") from None
    return parse_policy(data, source=name, sha=hashlib.sha256(raw).hexdigest()[:12])


def parse_policy(data: Mapping[str, Any], source: str = "policy", sha: str = "") -> Policy:
    """A parsed TOML document → `Policy`, refusing what a typo would make silently pass."""
    def fail(message: str) -> PolicyError:
        return PolicyError(f"{source}: {message}")

    _unknown_keys(data, TOP_KEYS, fail)
    alpha = data.get("alpha", 0.05)
    if not _is_number(alpha) or not 0 < alpha < 1:
        raise fail(f"'alpha' must be a number between 0 and 1, not {alpha!r}")
    on_inconclusive = _choice(data.get("on_inconclusive", "warn"), "on_inconclusive", fail)
    cluster = data.get("cluster")
    if cluster is not None and (not isinstance(cluster, str) or not cluster.strip()):
        raise fail(f"'cluster' must be a stratum key (a non-empty string), not "
                   f"{_type(cluster)}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise fail("no rules: add at least one [[rules]] table")
    rules = tuple(_rule(i, raw, source) for i, raw in enumerate(raw_rules, 1))
    seen: dict[str, Rule] = {}
    for r in rules:
        if r.name in seen:
            raise r.error(f"duplicate rule name {r.name!r} (also {seen[r.name].label})")
        seen[r.name] = r
    raw_acc = data.get("risk_acceptances", [])
    if not isinstance(raw_acc, list):
        raise fail("'risk_acceptances' must be an array of tables ([[risk_acceptances]])")
    accepted = tuple(_acceptance(i, raw, source, seen) for i, raw in enumerate(raw_acc, 1))
    return Policy(source, sha, rules, accepted, float(alpha), on_inconclusive, cluster)


def _choice(value: Any, key: str, fail) -> str:
    if value not in ON_INCONCLUSIVE:
        raise fail(f"'{key}' must be one of {', '.join(repr(v) for v in ON_INCONCLUSIVE)}, "
                   f"not {_type(value)}")
    return str(value)


def _rule(i: int, raw: Any, source: str) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{source}: rules[{i}]: must be a table ([[rules]])")
    name = raw.get("name")
    rule = Rule(i, name if isinstance(name, str) and name.strip() else "", "", "", 0.0,
                source=source, named=isinstance(name, str) and bool(name.strip()))
    if "name" in raw and not rule.named:
        raise rule.error(f"'name' must be a non-empty string, not {_type(name)}")
    _unknown_keys(raw, RULE_KEYS, rule.error)
    metric = raw.get("metric")
    if metric is None:
        raise rule.error("missing key 'metric'")
    if not isinstance(metric, str) or not metric.strip():
        raise rule.error(f"'metric' must be a non-empty string, not {_type(metric)}")
    checks = [c for c in CHECKS if c in raw]
    if not checks:
        raise rule.error(f"no check: give one of {', '.join(CHECKS)}")
    if len(checks) > 1:
        raise rule.error(f"two checks ({', '.join(checks)}): give exactly one per rule")
    check = checks[0]
    threshold = raw[check]
    if not _is_number(threshold):
        raise rule.error(f"'{check}' must be a number, not {_type(threshold)}")
    bounds = {"min_pass_rate": (0, 1), "max_drop": (0, math.inf),
              "max_increase_pct": (0, math.inf), "judge_calibrated": (0, 1)
              }.get(check, (-math.inf, math.inf))
    if not bounds[0] <= threshold <= bounds[1]:
        raise rule.error(f"'{check}' = {threshold} is out of range "
                         f"({'between 0 and 1' if bounds[1] == 1 else 'at least 0'})")
    if check == "judge_calibrated":
        for key in ("by", "where", "tags"):
            if key in raw:
                raise rule.error(f"'{key}' does not go with judge_calibrated: a judge is "
                                 "calibrated on every human label of the metric it scored")
    if "significant" in raw and check != "max_drop":
        raise rule.error("'significant' goes with max_drop only")
    significant = raw.get("significant", True)
    if not isinstance(significant, bool):
        raise rule.error(f"'significant' must be true or false, not {_type(significant)}")
    if "on_inconclusive" in raw and (check != "max_drop" or not significant):
        raise rule.error("'on_inconclusive' goes with a max_drop that is tested "
                         "(significant = true)")
    on_inconclusive = (_choice(raw["on_inconclusive"], "on_inconclusive", rule.error)
                       if "on_inconclusive" in raw else None)
    if "stat" in raw and check != "max":
        raise rule.error("'stat' goes with max only")
    stat = raw.get("stat", "mean")
    if stat not in STATS:
        raise rule.error(f"'stat' must be one of {', '.join(STATS)}, not {stat!r}")
    if metric in CASE_METRICS and check in ("min_pass_rate", "max_drop", "judge_calibrated"):
        raise rule.error(f"'{check}' needs a scored metric; {metric} comes from the cases "
                         "table (use max or max_increase_pct)")
    by = _strings(raw, "by", rule)
    tags = _strings(raw, "tags", rule)
    where = _where(raw.get("where"), rule) if "where" in raw else {}
    rule = replace(rule, metric=metric, check=check, threshold=float(threshold), by=by,
                   where=where, tags=tags, significant=significant, stat=stat,
                   on_inconclusive=on_inconclusive)
    return rule if rule.named else replace(rule, name=rule.describe())


def _acceptance(i: int, raw: Any, source: str, rules: dict[str, Rule]) -> Acceptance:
    def fail(message: str) -> PolicyError:
        return PolicyError(f"{source}: risk_acceptances[{i}]: {message}")

    if not isinstance(raw, dict):
        raise fail("must be a table ([[risk_acceptances]])")
    _unknown_keys(raw, ACCEPTANCE_KEYS, fail)
    for key in ("owner", "reason"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise fail(f"'{key}' is required (who accepts the risk, and why)")
    expires = raw.get("expires")
    if isinstance(expires, datetime):
        expires = expires.date()
    if not isinstance(expires, date):
        raise fail(f"'expires' must be a TOML date such as 2026-12-31 (unquoted), "
                   f"not {_type(expires)}")
    rule, case_id, slice_ = raw.get("rule"), raw.get("case_id"), raw.get("slice")
    if rule is None and case_id is None:
        raise fail("give 'rule' (a rule's name) or 'case_id'")
    for key, value in (("rule", rule), ("case_id", case_id)):
        if value is not None and not isinstance(value, str):
            raise fail(f"'{key}' must be a string, not {_type(value)}")
    if rule is not None and rule not in rules:
        close = difflib.get_close_matches(rule, list(rules), n=1)
        raise fail(f"'rule' = {rule!r} names no rule"
                   + (f" (did you mean {close[0]!r}?)" if close else ""))
    if case_id is not None and rule is not None and rules[rule].check != "min_pass_rate":
        raise fail(f"a 'case_id' acceptance applies to min_pass_rate rules; {rule!r} is a "
                   f"{rules[rule].check} rule")
    if slice_ is not None:
        target = rules.get(rule) if rule else None
        if target is None or not target.by:
            raise fail("'slice' needs 'rule' naming a rule with 'by'")
        if (not isinstance(slice_, dict) or set(slice_) != set(target.by)
                or not all(isinstance(v, str) for v in slice_.values())):
            raise fail(f"'slice' must give a string value for each of {', '.join(target.by)}")
        slice_ = {k: slice_[k] for k in target.by}
    return Acceptance(i, raw["owner"], raw["reason"], expires, rule, case_id, slice_)


def _unknown_keys(raw: Mapping[str, Any], known: tuple[str, ...], fail) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise fail(f"unknown key '{key}'{hint}")


def _strings(raw: Mapping[str, Any], key: str, rule: Rule) -> tuple[str, ...]:
    if key not in raw:
        return ()
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise rule.error(f"'{key}' must be an array of non-empty strings, not {_type(value)}")
    if not value:
        raise rule.error(f"'{key}' must not be empty")
    return tuple(dict.fromkeys(value))


def _where(value: Any, rule: Rule) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict) or not value:
        raise rule.error("'where' must be a table such as {query_type = \"billing\"}, "
                         f"not {_type(value)}")
    out = {}
    for key, v in value.items():
        values = [v] if isinstance(v, str) else v
        if not isinstance(values, list) or not values or not all(
                isinstance(x, str) for x in values):
            raise rule.error(f"'where.{key}' must be a string or an array of strings, "
                             f"not {_type(v)}")
        out[key] = tuple(values)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _type(v: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "a table", date: "a date", datetime: "a date-time"}
    return "nothing" if v is None else f"{names.get(type(v), type(v).__name__)} ({v!r})"


