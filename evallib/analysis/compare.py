"""Run vs baseline: a paired test per metric overall and per slice, BH over each family.

Cases are aligned by ``case_id``; only (case, metric) pairs scored in both runs count. The
comparability guard (different dataset_version, judge_version or scorer version per metric)
never stops a comparison: it sets ``comparable`` to False and says why in ``warnings``.

``by`` lists slicings; each is a list of stratum keys, crossed (``[["a", "b"]]`` slices by
every (a, b) pair of values). A case without one of the keys is left out of that slicing.
Two Benjamini–Hochberg families: the overall metrics, and every slice × metric. Only
testable results count in a family (see `evallib.stats.paired`): a slice of one case, or
with no changed pair, or too few to ever reach alpha, is shown as untestable with its n and
reason, a NaN adjusted p, and does not dilute the others. ``significant`` is an adjusted p
below ``alpha``.

``cluster`` names what makes cases dependent (a stratum key such as a conversation or
document id, or the case field ``input`` or ``expected``): every test is then the
clustered t (CR2), cases without the key standing alone. Without one, a stratum key that
looks like a grouping id and holds repeated values is named in ``warnings``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from .. import queries
from ..errors import EvallibError
from ..stats import PairedResult, benjamini_hochberg, min_detectable_drop, paired_test
from ..warehouse import Connection

__all__ = ["CASE_FIELDS", "Comparison", "MetricComparison", "SliceComparison", "compare_runs",
           "grouping_keys", "min_detectable", "power_line", "resolve_run"]

#: Case fields a comparison can cluster by (besides any stratum key).
CASE_FIELDS = ("input", "expected")
#: Stratum key names that say "cases sharing this value are not independent".
_GROUPING = re.compile(r"(conv|session|thread|dialog|chat|doc|article|page|source|"
                       r"template|ticket|parent|group|cluster|user|customer|_id$|^id$)", re.I)


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
    p_adjusted: float = math.nan  # BH over the testable overall metrics
    testable: bool = True
    reason: str | None = None  # why untestable, what was dropped, or what else changed

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
    ci_low: float = math.nan
    ci_high: float = math.nan
    testable: bool = True
    reason: str | None = None

    @property
    def verdict(self) -> str:
        """worse | better | no significant change | untestable (n, reason)."""
        if not self.testable:
            return f"untestable (n = {self.n}: {self.reason})"
        if not self.significant or self.delta == 0:
            return "no significant change"
        return "worse" if self.delta < 0 else "better"


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
    cluster: str | None = None  # the key cases were clustered by
    n_clusters: int = 0

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md's ``compare --json`` object (plus ``cluster``); NaN becomes None."""
        return {"candidate": self.candidate, "baseline": self.baseline,
                "comparable": self.comparable, "warnings": list(self.warnings),
                "metrics": [_nan_to_none(asdict(m)) for m in self.metrics],
                "slices": [_nan_to_none(asdict(s)) for s in self.slices],
                "cluster": self.cluster}


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def resolve_run(con: Connection, ref: str, role: str = "run") -> str:
    """The run id ``ref`` names: a run id, or a run name (its newest run)."""
    found = queries.run_lookup(con, ref)
    if found.height == 0:
        what = role if role == "run" else f"{role} run"
        raise EvallibError(f"unknown {what} {ref!r}{_did_you_mean(con, ref)} "
                           "(see: evallib runs)")
    return str(found["run_id"][0])


def _did_you_mean(con: Connection, ref: str) -> str:
    """``; did you mean 'rc-v3.2-candidate'?``: the closest run names (or ids) to a typo."""
    import difflib

    runs = queries.runs_overview(con)
    names, ids = list(dict.fromkeys(runs["name"])), runs["run_id"].to_list()
    close = [k for k in names if ref in k][:3] or [k for k in ids if ref in k][:3] or \
        difflib.get_close_matches(ref, names, n=3, cutoff=0.6) or \
        difflib.get_close_matches(ref, ids, n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""


def compare_runs(con: Connection, candidate: str, baseline: str,
                 by: Sequence[Sequence[str]] = (), alpha: float = 0.05,
                 cluster: str | None = None) -> Comparison:
    """Compare ``candidate`` with ``baseline`` overall and per slice of ``by``, clustered by
    ``cluster`` if given.

    Raises `EvallibError` for an unknown run id, a stratum key no case of the candidate
    run has (for ``by`` or ``cluster``), or an alpha outside (0, 1).
    """
    if not 0 < alpha < 1:
        raise EvallibError(f"alpha must be between 0 and 1, not {alpha}")
    slicings = [list(dict.fromkeys(keys)) for keys in by]
    if any(not keys or any(not k for k in keys) for keys in slicings):
        raise EvallibError("a slicing needs one or more non-empty stratum keys")
    if cluster is not None and not cluster.strip():
        raise EvallibError("the cluster key must not be empty")
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
    pairs, n_clusters = _with_cluster(con, pairs, candidate, cluster)
    if cluster is None:
        warnings += [f"cases share {key} ({shared} values held by 2 or more cases) but are "
                     f"treated as independent: compare with --cluster {key}"
                     for key, shared in grouping_keys(pairs).items()]
    metrics = _metric_rows(pairs, alpha, cluster is not None)
    slices = _slices(pairs, slicings, alpha, cluster is not None)
    return Comparison(candidate, baseline, comparable, warnings, metrics, slices, alpha, cases,
                      cluster, n_clusters)


def _guard(con: Connection, cand: dict[str, Any], base: dict[str, Any]) -> list[str]:
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


_CLUSTER = "\x00cluster"  # cannot clash with a real column


def _with_cluster(con: Connection, pairs: pl.DataFrame, candidate: str, cluster: str | None
                  ) -> tuple[pl.DataFrame, int]:
    """``pairs`` with the cluster key's value of each case (null: a cluster of its own) and
    how many clusters the compared cases form."""
    if cluster is None:
        return pairs, 0
    if cluster in CASE_FIELDS:
        fields = queries.case_scores(con, candidate, metric=pairs["metric"][0]
                                     if pairs.height else None)
        lookup = fields.select("case_id", pl.col(cluster).alias(_CLUSTER)).unique("case_id")
        out = pairs.join(lookup, on="case_id", how="left", maintain_order="left")
    else:
        out = _with_strata_columns(pairs, [cluster]).rename({_col(cluster): _CLUSTER})
        if pairs.height and out[_CLUSTER].null_count() == out.height:
            raise EvallibError(f"no compared case has the stratum key {cluster!r} to cluster "
                               f"by (or use a case field: {', '.join(CASE_FIELDS)})")
    per_case = out.unique("case_id")[_CLUSTER]
    return out, per_case.n_unique() - (per_case.null_count() > 0) + per_case.null_count()


def grouping_keys(pairs: pl.DataFrame) -> dict[str, int]:
    """Stratum keys that look like a grouping id: named like one (conversation, document,
    session, … _id), with as many values as a tenth of the cases or more (a category such as
    user_segment has a handful), some of them shared: key → how many values 2 or more cases
    share."""
    distinct = pairs["strata_json"].drop_nulls().unique().to_list()
    names = {k for text in distinct for k in (json.loads(text) or {}) if _GROUPING.search(k)}
    if not names:
        return {}
    cases = _with_strata_columns(pairs, sorted(names)).unique("case_id")
    out = {}
    for key in sorted(names):
        sizes = cases[_col(key)].drop_nulls().value_counts()
        shared = int((sizes["count"] >= 2).sum()) if sizes.height else 0
        if shared and sizes.height >= max(3, cases.height / 10):
            out[key] = shared
    return out


def _groups(pairs: pl.DataFrame, keys: list[str]):
    """(metric, kind, baseline values, candidate values, cluster keys or None, key values)
    per group, in a stable order."""
    cols = ["metric", *keys]
    clustered = _CLUSTER in pairs.columns
    grouped = (pairs.group_by(cols, maintain_order=True)
               .agg(pl.col("kind").first(), pl.col("baseline"), pl.col("candidate"),
                    *([pl.col(_CLUSTER)] if clustered else []))
               .sort(cols))
    for row in grouped.iter_rows(named=True):
        base = np.array(row["baseline"], dtype=np.float64)
        cand = np.array(row["candidate"], dtype=np.float64)
        yield (row["metric"], row["kind"], base, cand,
               row[_CLUSTER] if clustered else None, {k: row[k] for k in keys})


def _metric_rows(pairs: pl.DataFrame, alpha: float, clustered: bool
                 ) -> list[MetricComparison]:
    """Every metric over all common cases; BH over the testable ones."""
    rows = []
    for metric, kind, base, cand, keys, _ in _groups(pairs, []):
        r = paired_test(base, cand, kind, alpha, clusters=keys)
        scored = ~(np.isnan(base) | np.isnan(cand))
        diff = cand[scored] - base[scored]
        detectable = min_detectable(kind, base[scored], cand[scored], alpha)
        if clustered and keys is not None:
            detectable *= _design_effect(diff, [k for k, s in zip(keys, scored, strict=True)
                                                if s])
        rows.append(MetricComparison(
            metric, kind, r.n, r.baseline, r.candidate, r.delta, r.ci_low, r.ci_high,
            r.p_value, r.test, False, regressed=int((diff < 0).sum()),
            improved=int((diff > 0).sum()), unchanged=int((diff == 0).sum()),
            min_detectable=detectable, testable=r.testable, reason=r.reason))
    adjusted = _adjust([m.p_value if m.testable else math.nan for m in rows])
    return [replace(m, p_adjusted=p, significant=bool(p < alpha))
            for m, p in zip(rows, adjusted, strict=True)]


def _adjust(p_values: list[float]) -> list[float]:
    """BH over the non-NaN p-values (NaN: not in the family)."""
    return [float(p) for p in benjamini_hochberg(p_values)] if p_values else []


def _design_effect(diff: np.ndarray, keys: list[Any]) -> float:
    """How much wider clustering makes the standard error of the mean difference
    (CR2 over naive), at least 1; 1 when either cannot be estimated."""
    from ..stats.paired import _cluster_codes

    codes = _cluster_codes(keys)
    if diff.size < 2 or codes.max() < 1 or not np.std(diff) > 0:
        return 1.0
    n_g = np.bincount(codes).astype(float)
    sums = np.bincount(codes, weights=diff - diff.mean())
    cr2 = float(np.sum(sums**2 / (1 - n_g / diff.size))) / diff.size**2
    naive = float(np.var(diff, ddof=1)) / diff.size
    return max(1.0, math.sqrt(cr2 / naive)) if naive > 0 else 1.0


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
    """The pairs' correlation, clipped to [0, 0.95]; 0.5 when it cannot be estimated (the
    power formula then keeps it within what the two rates allow)."""
    if base.std() == 0 or cand.std() == 0:
        return 0.5
    return float(np.clip(np.corrcoef(base, cand)[0, 1], 0.0, 0.95))


def _slices(pairs: pl.DataFrame, slicings: list[list[str]], alpha: float,
            clustered: bool) -> list[SliceComparison]:
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
        for metric, kind, base, cand, clusters, values in _groups(frame, cols):
            label = {k: values[_col(k)] for k in keys}
            r = paired_test(base, cand, kind, alpha, clusters=clusters if clustered else None)
            tested.append((label, metric, r))
    adjusted = _adjust([r.p_value if r.testable else math.nan for _, _, r in tested])
    return [SliceComparison(label, metric, r.n, r.baseline, r.candidate, r.delta, r.p_value,
                            p_adj, bool(p_adj < alpha), r.ci_low, r.ci_high, r.testable,
                            r.reason)
            for (label, metric, r), p_adj in zip(tested, adjusted, strict=True)]


def _col(key: str) -> str:
    return f"\x00stratum:{key}"  # cannot clash with a real column


def _with_strata_columns(pairs: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``pairs`` with one column per stratum key (null where a case lacks it), read from
    each distinct ``strata_json`` once. Values become strings (JSON for a list or a map)."""
    distinct = pairs["strata_json"].drop_nulls().unique().to_list()
    parsed = [json.loads(text) for text in distinct]
    lookup = pl.DataFrame(
        {"strata_json": distinct,
         **{_col(k): [_text(p.get(k)) if isinstance(p, dict) else None for p in parsed]
            for k in keys}},
        schema={"strata_json": pl.String, **{_col(k): pl.String for k in keys}})
    return pairs.join(lookup, on="strata_json", how="left", maintain_order="left")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
