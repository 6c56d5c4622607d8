"""Run vs baseline: a paired test per metric overall and per slice, BH over the slices.

Cases are aligned by ``case_id``; only (case, metric) pairs scored in both runs count. The
comparability guard (different dataset_version, judge_version or scorer version per metric)
never stops a comparison: it sets ``comparable`` to False and says why in ``warnings``.

``by`` lists slicings; each is a list of stratum keys, crossed (``[["a", "b"]]`` slices by
every (a, b) pair of values). A case without one of the keys is left out of that slicing.
Benjamini–Hochberg runs over every slice × metric tested in one comparison; a slice is
``significant`` when its adjusted p is below ``alpha``, an overall metric when its p is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from . import queries
from .errors import EvallibError
from .stats import PairedResult, benjamini_hochberg, min_detectable_drop, paired_test

__all__ = ["Comparison", "MetricComparison", "SliceComparison", "compare_runs", "min_detectable",
           "power_line", "resolve_run"]


@dataclass(frozen=True)
class MetricComparison:
    """One metric over every case both runs scored."""

    metric: str
    kind: str
    n: int
    baseline: float
    candidate: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    significant: bool
    regressed: int = 0  # cases whose score went down (of the n scored on both sides)
    improved: int = 0
    unchanged: int = 0
    min_detectable: float = math.nan  # smallest drop of the mean detectable (80% power)

    @property
    def power_line(self) -> str:
        """Why "not significant" is not "no regression": what this n could have seen."""
        return power_line(self.kind, self.n, self.min_detectable)


@dataclass(frozen=True)
class SliceComparison:
    """One metric within one slice (a value for each key of one slicing)."""

    slice: dict[str, str]
    metric: str
    n: int
    baseline: float
    candidate: float
    delta: float
    p_value: float
    p_adjusted: float
    significant: bool


@dataclass
class Comparison:
    """The answer to "did the candidate get better or worse than the baseline, and where"."""

    candidate: str
    baseline: str
    comparable: bool
    warnings: list[str]
    metrics: list[MetricComparison]
    slices: list[SliceComparison]
    alpha: float = 0.05
    cases: dict[str, int] = field(default_factory=dict)  # common / added / removed

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md's ``compare --json`` object; NaN becomes None (null)."""
        return {"candidate": self.candidate, "baseline": self.baseline,
                "comparable": self.comparable, "warnings": list(self.warnings),
                "metrics": [_nan_to_none(asdict(m)) for m in self.metrics],
                "slices": [_nan_to_none(asdict(s)) for s in self.slices]}


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def resolve_run(con: Any, ref: str, role: str = "run") -> str:
    """The run id ``ref`` names: a run id, or a run name (its newest run)."""
    found = queries.run_lookup(con, ref)
    if found.height == 0:
        what = role if role == "run" else f"{role} run"
        raise EvallibError(f"unknown {what} {ref!r}{_did_you_mean(con, ref)} "
                           "(see: evallib runs)")
    return str(found["run_id"][0])


def _did_you_mean(con: Any, ref: str) -> str:
    """``; did you mean 'rc-v3.2-candidate'?``: the closest run names (or ids) to a typo."""
    import difflib

    runs = queries.runs_overview(con)
    names, ids = list(dict.fromkeys(runs["name"])), runs["run_id"].to_list()
    close = [k for k in names if ref in k][:3] or [k for k in ids if ref in k][:3] or \
        difflib.get_close_matches(ref, names, n=3, cutoff=0.6) or \
        difflib.get_close_matches(ref, ids, n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""


def compare_runs(con: Any, candidate: str, baseline: str,
                 by: Sequence[Sequence[str]] = (), alpha: float = 0.05) -> Comparison:
    """Compare ``candidate`` with ``baseline`` overall and per slice of ``by``.

    Raises `EvallibError` for an unknown run id or a stratum key no case of the candidate
    run has, or an alpha outside (0, 1).
    """
    if not 0 < alpha < 1:
        raise EvallibError(f"alpha must be between 0 and 1, not {alpha}")
    slicings = [list(dict.fromkeys(keys)) for keys in by]
    if any(not keys or any(not k for k in keys) for keys in slicings):
        raise EvallibError("a slicing needs one or more non-empty stratum keys")
    candidate = resolve_run(con, candidate, "candidate")
    baseline = resolve_run(con, baseline, "baseline")
    runs = {r["run_id"]: r for r in
            queries.run_versions(con, [candidate, baseline]).iter_rows(named=True)}

    warnings = _guard(con, runs[candidate], runs[baseline])
    comparable = not warnings
    cases = queries.case_sets(con, candidate, baseline)
    if cases["added"]:
        warnings.append(f"{cases['added']} case(s) only in the candidate (added): not compared")
    if cases["removed"]:
        warnings.append(f"{cases['removed']} case(s) only in the baseline (removed): "
                        "not compared")

    pairs = queries.paired_scores(con, candidate, baseline)
    metrics = [_metric_row(metric, kind, base, cand, alpha)
               for metric, kind, base, cand in _groups(pairs, [])]
    slices = _slices(pairs, slicings, alpha)
    return Comparison(candidate, baseline, comparable, warnings, metrics, slices, alpha, cases)


def _guard(con: Any, cand: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Why the two runs' numbers may not be comparable (empty when they are)."""
    out = []
    for col in ("dataset_version", "judge_version"):
        if cand[col] != base[col]:
            out.append(f"different {col}: candidate {cand[col]!r}, baseline {base[col]!r}")
    versions = queries.scorer_versions(con, cand["run_id"], base["run_id"])
    for row in versions.iter_rows(named=True):
        b, c = row["baseline_versions"] or [], row["candidate_versions"] or []
        if b and c and b != c:
            out.append(f"different scorer_version for {row['metric']}: candidate "
                       f"{', '.join(c)}, baseline {', '.join(b)}")
    return out


def _groups(pairs: pl.DataFrame, keys: list[str]):
    """(metric, kind, baseline values, candidate values[, key values]) per group, in a
    stable order."""
    cols = ["metric", *keys]
    grouped = (pairs.group_by(cols, maintain_order=True)
               .agg(pl.col("kind").first(), pl.col("baseline"), pl.col("candidate"))
               .sort(cols))
    for row in grouped.iter_rows(named=True):
        base = np.array(row["baseline"], dtype=np.float64)
        cand = np.array(row["candidate"], dtype=np.float64)
        if keys:
            yield row["metric"], row["kind"], base, cand, {k: row[k] for k in keys}
        else:
            yield row["metric"], row["kind"], base, cand


def _metric_row(metric: str, kind: str, base: np.ndarray, cand: np.ndarray,
                alpha: float) -> MetricComparison:
    r = paired_test(base, cand, kind, alpha)
    scored = ~(np.isnan(base) | np.isnan(cand))
    diff = cand[scored] - base[scored]
    return MetricComparison(metric, kind, r.n, r.baseline, r.candidate, r.delta, r.ci_low,
                            r.ci_high, r.p_value, r.test, r.p_value < alpha,
                            regressed=int((diff < 0).sum()), improved=int((diff > 0).sum()),
                            unchanged=int((diff == 0).sum()),
                            min_detectable=min_detectable(kind, base[scored], cand[scored],
                                                           alpha))


def power_line(kind: str, n: int, detectable: float) -> str:
    """"with n = 397, drops smaller than 4.5 points of the pass rate cannot be detected"."""
    if math.isnan(detectable):
        return f"with n = {n}, no drop can be detected"
    size = f"{100 * detectable:.1f} points of the pass rate" if kind == "binary" else (
        f"{detectable:.3g} in the mean")
    return f"with n = {n}, drops smaller than {size} cannot be detected (80% power)"


def min_detectable(kind: str, base: np.ndarray, cand: np.ndarray, alpha: float) -> float:
    """Smallest drop of the mean these n pairs detect with 80% power (NaN: none). Pass rates
    use `min_detectable_drop` with the pairs' observed correlation; other kinds the normal
    approximation z·sd(d)/√n with the observed spread of the differences."""
    n = base.size
    if n < 2:
        return math.nan
    if kind == "binary":
        rate = float(base.mean())
        if rate == 0:
            return math.nan
        rho = _correlation(base, cand)
        drop = min_detectable_drop(n, rate, rho, alpha)
        return math.nan if math.isinf(drop) else drop
    from scipy.special import ndtri

    sd = float(np.std(cand - base, ddof=1))
    return float((ndtri(1 - alpha / 2) + ndtri(0.8)) * sd / math.sqrt(n))


def _correlation(base: np.ndarray, cand: np.ndarray) -> float:
    """The pairs' correlation, clipped to [0, 0.95]; 0.5 when it cannot be estimated."""
    if base.std() == 0 or cand.std() == 0:
        return 0.5
    return float(np.clip(np.corrcoef(base, cand)[0, 1], 0.0, 0.95))


def _slices(pairs: pl.DataFrame, slicings: list[list[str]],
            alpha: float) -> list[SliceComparison]:
    if not slicings:
        return []
    needed = sorted({k for keys in slicings for k in keys})
    with_keys = _with_strata_columns(pairs, needed)
    missing = [k for k in needed if with_keys[_col(k)].null_count() == with_keys.height]
    if missing:
        raise EvallibError(f"no compared case has the stratum key(s) {', '.join(missing)}")
    tested: list[tuple[dict[str, str], str, PairedResult]] = []
    for keys in slicings:
        cols = [_col(k) for k in keys]
        frame = with_keys.drop_nulls(cols)
        for metric, kind, base, cand, values in _groups(frame, cols):
            label = {k: values[_col(k)] for k in keys}
            tested.append((label, metric, paired_test(base, cand, kind, alpha)))
    adjusted = benjamini_hochberg([r.p_value for _, _, r in tested]) if tested else []
    return [SliceComparison(label, metric, r.n, r.baseline, r.candidate, r.delta, r.p_value,
                            float(p_adj), bool(p_adj < alpha))
            for (label, metric, r), p_adj in zip(tested, adjusted, strict=True)]


def _col(key: str) -> str:
    return f"\x00stratum:{key}"  # cannot clash with a real column


def _with_strata_columns(pairs: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``pairs`` with one column per stratum key (null where a case lacks it), read from
    each distinct ``strata_json`` once."""
    distinct = pairs["strata_json"].drop_nulls().unique().to_list()
    parsed = [json.loads(text) for text in distinct]
    lookup = pl.DataFrame(
        {"strata_json": distinct,
         **{_col(k): [p.get(k) if isinstance(p, dict) else None for p in parsed]
            for k in keys}},
        schema={"strata_json": pl.String, **{_col(k): pl.String for k in keys}})
    return pairs.join(lookup, on="strata_json", how="left", maintain_order="left")
