"""Many runs of one dataset side by side: each run's mean per slice of one metric with its
95% interval and n, each run against a reference run, and the cases whose outcome flips.

Each run is tested against the reference exactly as `evallib.analysis.compare` tests a candidate
against its baseline: cases aligned by ``case_id``, pairs scored in both runs, the kind's
paired test (`evallib.stats.paired_test`), a case's slice read from the run's own strata
(a case without one of the keys is left out of the slices, not of "all cases"). As on
Compare, each run's all-cases test stands alone (significant when p < alpha) and the slice
tests are corrected together; the family for Benjamini–Hochberg is the view: every run ×
slice test shown, so "significant" means the same whichever slice cell one looks at.

"Flaky across runs": a case passes in some of the runs and fails in others. A pass is the
score's pass flag, else a binary value of 1; a metric with neither has no flaky cases.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from .. import queries
from ..errors import EvallibError
from ..stats import TESTS, benjamini_hochberg, mean_interval, paired_test
from ..vocabulary import slice_label
from ..warehouse import Connection
from .compare import resolve_run

__all__ = ["MAX_RUNS", "Cell", "ManyRuns", "RunColumn", "compare_many", "default_reference",
           "default_runs", "flaky_cases", "grid", "headline"]

MAX_RUNS = 10
DEFAULT_RELEASES = 5


@dataclass(frozen=True)
class RunColumn:
    """One run of the view, in the order shown (oldest first)."""

    run_id: str
    name: str
    label: str  # the release, else the run's name; unique within the view
    release: str | None
    approved: bool
    started_at: datetime
    reference: bool


@dataclass(frozen=True)
class Cell:
    """One run in one slice (``slice`` empty: all cases): its own mean and 95% interval
    over the cases it scored, and against the reference over the cases both scored
    (NaN, and ``significant`` False, for the reference's own cells)."""

    run_id: str
    slice: dict[str, str]
    n: int
    mean: float
    ci_low: float
    ci_high: float
    n_pairs: int
    reference_mean: float  # the reference's mean over those pairs
    run_mean: float  # this run's mean over those pairs
    delta: float  # run_mean − reference_mean
    p_value: float
    p_adjusted: float  # over the view's slice tests; NaN for all cases (tested alone)
    significant: bool


@dataclass
class ManyRuns:
    """The answer to "how did this metric move across these runs, and where"."""

    dataset: str
    metric: str
    kind: str
    by: tuple[str, ...]
    alpha: float
    reference: str
    runs: list[RunColumn]
    cells: list[Cell]
    flaky: pl.DataFrame  # case_id, strata, n_runs, passed, pass_share, flips, <run_id>…
    warnings: list[str]

    @property
    def test(self) -> str:
        return TESTS.get(self.kind, "")

    @property
    def n_tests(self) -> int:
        """The size of the Benjamini–Hochberg family: every run × slice tested."""
        return sum(not math.isnan(c.p_adjusted) for c in self.cells)

    def frame(self) -> pl.DataFrame:
        """The cells as a frame: run_id, slice (label), then the `Cell` fields."""
        rows = [{**asdict(c), "slice": slice_label(c.slice)} for c in self.cells]
        schema = {"run_id": pl.String, "slice": pl.String, "n": pl.Int64, "mean": pl.Float64,
                  "ci_low": pl.Float64, "ci_high": pl.Float64, "n_pairs": pl.Int64,
                  "reference_mean": pl.Float64, "run_mean": pl.Float64, "delta": pl.Float64,
                  "p_value": pl.Float64, "p_adjusted": pl.Float64, "significant": pl.Boolean}
        return pl.DataFrame(rows, schema=schema, strict=False)

    def to_json(self) -> dict[str, Any]:
        """`evallib compare-many --json`: NaN becomes null, times ISO 8601."""
        return {
            "dataset": self.dataset, "metric": self.metric, "kind": self.kind,
            "by": list(self.by), "alpha": self.alpha, "reference": self.reference,
            "test": self.test, "correction": "Benjamini-Hochberg over every run x slice "
            "test of the view (all cases: each run's test alone)",
            "n_tests": self.n_tests, "warnings": list(self.warnings),
            "runs": [asdict(r) | {"started_at": r.started_at.isoformat()} for r in self.runs],
            "cells": [_nan_to_none(asdict(c)) for c in self.cells],
            "flaky": [self._flaky_json(row) for row in self.flaky.iter_rows(named=True)],
        }

    def _flaky_json(self, row: dict[str, Any]) -> dict[str, Any]:
        """A flaky case: its strata as an object, each run's outcome under "outcomes"."""
        runs = [r.run_id for r in self.runs]
        return {k: v for k, v in row.items() if k not in runs} | {
            "strata": json.loads(row["strata"]) if row["strata"] else {},
            "outcomes": {r: row[r] for r in runs}}


def _nan_to_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


# --- which runs ----------------------------------------------------------------------------


def default_runs(runs: pl.DataFrame, releases: int = DEFAULT_RELEASES) -> list[str]:
    """The newest run and the ``releases`` newest approved runs, oldest first. ``runs``:
    `queries.runs_overview` of one dataset (newest first)."""
    if runs.height == 0:
        return []
    approved = runs.filter(pl.col("approved"))["run_id"].head(releases).to_list()
    chosen = set([runs["run_id"][0], *approved])
    return [r for r in reversed(runs["run_id"].to_list()) if r in chosen]


def default_reference(runs: pl.DataFrame, chosen: Sequence[str]) -> str:
    """The newest approved run of ``chosen`` (not empty) other than the newest one (the
    release the newest run would replace), else the oldest of ``chosen``."""
    order = [r for r in runs["run_id"].to_list() if r in set(chosen)]  # newest first
    approved = set(runs.filter(pl.col("approved"))["run_id"].to_list())
    older = [r for r in order[1:] if r in approved]
    return older[0] if older else order[-1]


# --- the comparison --------------------------------------------------------------------------


def compare_many(con: Connection, runs: Sequence[str], reference: str, metric: str,
                 by: Sequence[str] = (), alpha: float = 0.05) -> ManyRuns:
    """``metric`` in each of ``runs`` (ids or names; the reference is added when missing),
    overall and per slice of the ``by`` keys crossed, each run against ``reference``.

    Raises `EvallibError` for an unknown run, more than `MAX_RUNS` runs, runs of different
    datasets, a metric none of them scored, a key no case has, or alpha outside (0, 1).
    """
    if not 0 < alpha < 1:
        raise EvallibError(f"alpha must be between 0 and 1, not {alpha}")
    keys = tuple(dict.fromkeys(k.strip() for k in by))
    if any(not k for k in keys):
        raise EvallibError("a slicing needs non-empty stratum keys")
    reference = resolve_run(con, reference, "reference")
    ids = list(dict.fromkeys([*(resolve_run(con, r) for r in runs), reference]))
    if len(ids) > MAX_RUNS:
        raise EvallibError(f"{len(ids)} runs (the reference included): at most {MAX_RUNS}")
    info = _run_info(con, ids)
    columns = _columns(info, reference)
    scores = queries.many_run_scores(con, ids, metric)
    if scores.height == 0:
        known = queries.run_metric_summary(con, ids)["metric"].unique().sort().to_list()
        raise EvallibError(f"no run of these has scores of metric {metric!r} (metrics: "
                           f"{', '.join(known) or 'none'})")
    kind = _kind(scores, reference)
    framed = _with_slices(scores, keys)
    cells = _cells(framed, keys, [c.run_id for c in columns], reference, kind, alpha)
    flaky = flaky_cases(scores, [c.run_id for c in columns])
    warnings = _warnings(info, scores, reference, metric)
    return ManyRuns(str(info["dataset"][0]), metric, kind, keys, alpha, reference, columns,
                    cells, flaky, warnings)


def _run_info(con: Connection, ids: list[str]) -> pl.DataFrame:
    info = queries.runs_overview(con).filter(pl.col("run_id").is_in(ids))
    datasets = info["dataset"].unique().sort().to_list()
    if len(datasets) > 1:
        raise EvallibError(f"the runs belong to different datasets ({', '.join(datasets)}): "
                           "compare runs of one dataset")
    return info.sort("started_at", "run_id")


def _columns(info: pl.DataFrame, reference: str) -> list[RunColumn]:
    """The runs oldest first, each labelled by its release (else its name), made unique."""
    rows = list(info.iter_rows(named=True))
    labels = [r["release"] or r["name"] for r in rows]
    for i, r in enumerate(rows):
        if labels.count(labels[i]) > 1:
            labels[i] = f"{r['name']} · {r['started_at']:%Y-%m-%d %H:%M}"
    for i, r in enumerate(rows):
        if labels.count(labels[i]) > 1:
            labels[i] = r["run_id"]
    return [RunColumn(r["run_id"], r["name"], label, r["release"], bool(r["approved"]),
                      r["started_at"], r["run_id"] == reference)
            for r, label in zip(rows, labels, strict=True)]


def _kind(scores: pl.DataFrame, reference: str) -> str:
    own = scores.filter(pl.col("run_id") == reference)["kind"]
    return str((own if own.len() else scores["kind"])[0])


def _col(key: str) -> str:
    return f"\x00stratum:{key}"  # cannot clash with a real column


def _with_slices(scores: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """``scores`` with one column per stratum key (null where the case lacks it), each
    distinct ``strata_json`` parsed once. A key no case has is a usage error."""
    if not keys:
        return scores
    distinct = scores["strata_json"].drop_nulls().unique().to_list()
    parsed = [json.loads(text) for text in distinct]
    lookup = pl.DataFrame(
        {"strata_json": distinct,
         **{_col(k): [p.get(k) if isinstance(p, dict) else None for p in parsed]
            for k in keys}},
        schema={"strata_json": pl.String, **{_col(k): pl.String for k in keys}})
    out = scores.join(lookup, on="strata_json", how="left", maintain_order="left")
    missing = [k for k in keys if out[_col(k)].null_count() == out.height]
    if missing:
        raise EvallibError(f"no case of these runs has the stratum key(s) "
                           f"{', '.join(missing)}")
    return out


def _cells(framed: pl.DataFrame, keys: tuple[str, ...], order: list[str], reference: str,
           kind: str, alpha: float) -> list[Cell]:
    """Every run × slice (all cases first, then slices in sorted order), BH over them all."""
    cols = [_col(k) for k in keys]
    ref = framed.filter(pl.col("run_id") == reference).select(
        "case_id", pl.col("value").alias("ref_value"))
    pairs = framed.join(ref, on="case_id", how="inner")
    groups: list[tuple[dict[str, str], pl.DataFrame, pl.DataFrame]] = [({}, framed, pairs)]
    if keys:
        sliced, sliced_pairs = framed.drop_nulls(cols), pairs.drop_nulls(cols)
        values = sliced.select(cols).unique().sort(cols)
        own = sliced.partition_by(cols, as_dict=True)
        paired = sliced_pairs.partition_by(cols, as_dict=True)
        empty = pairs.clear()
        for row in values.iter_rows():
            label = dict(zip(keys, row, strict=True))
            groups.append((label, own[row], paired.get(row, empty)))
    raw: list[tuple[str, dict[str, str], tuple[Any, ...]]] = []
    for label, own_rows, pair_rows in groups:
        summary = _summaries(own_rows, kind)
        by_run = pair_rows.partition_by("run_id", as_dict=True)
        for run_id in order:
            n, mean, low, high = summary.get(run_id, (0, math.nan, math.nan, math.nan))
            test = (0, math.nan, math.nan, math.nan, math.nan)
            if run_id != reference:
                p = by_run.get((run_id,))
                if p is not None:  # no pair in this slice: not tested, as in Compare
                    test = _test(p, kind)
            raw.append((run_id, label, (n, mean, low, high, *test)))
    # Compare's convention: the all-cases test stands alone, the slices form the family.
    adjusted = benjamini_hochberg([v[-1] if label else math.nan for _, label, v in raw])
    return [Cell(run_id, label, *values, p_adjusted=float(p_adj),
                 significant=bool((p_adj if label else values[-1]) < alpha))
            for (run_id, label, values), p_adj in zip(raw, adjusted, strict=True)]


def _summaries(rows: pl.DataFrame, kind: str) -> dict[str, tuple[int, float, float, float]]:
    """run_id → (n scored, mean, 95% interval) over the run's own cases in ``rows``."""
    s = rows.group_by("run_id").agg(pl.col("value").count().alias("n"),
                                    pl.col("value").mean().alias("mean"),
                                    pl.col("value").std().alias("sd"))
    n = s["n"].to_numpy()
    low, high = mean_interval(np.full(n.size, kind, dtype=object), n,
                              s["mean"].fill_null(math.nan).to_numpy(),
                              s["sd"].fill_null(math.nan).to_numpy())
    return {r: (int(k), float(m) if m is not None else math.nan, float(lo), float(hi))
            for r, k, m, lo, hi in zip(s["run_id"], n, s["mean"], low, high, strict=True)}


def _test(pairs: pl.DataFrame, kind: str) -> tuple[int, float, float, float, float]:
    """n pairs, the reference's and the run's means over them, delta and p (Compare's
    test: `evallib.stats.paired_test` on the pairs, unscored ones dropped)."""
    r = paired_test(pairs["ref_value"].to_numpy(), pairs["value"].to_numpy(), kind)
    return r.n, r.baseline, r.candidate, r.delta, r.p_value


def _warnings(info: pl.DataFrame, scores: pl.DataFrame, reference: str,
              metric: str) -> list[str]:
    """What makes a column less comparable with the reference (never stops the view)."""
    ref = info.filter(pl.col("run_id") == reference).row(0, named=True)
    out = []
    scored = set(scores["run_id"].unique().to_list())
    for r in info.iter_rows(named=True):
        name = r["release"] or r["name"]
        if r["run_id"] not in scored:
            out.append(f"{name} has no scores of {metric}")
        for col, what in (("dataset_version", "golden-set version"),
                          ("judge_version", "judge version")):
            if r["run_id"] != reference and r[col] != ref[col]:
                out.append(f"{name} used another {what} ({r[col]}) than the reference "
                           f"({ref[col]}): compared on the cases both scored")
    return out


# --- flaky cases ---------------------------------------------------------------------------


def flaky_cases(scores: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """Cases that pass in some runs and fail in others, least often passing first: case_id,
    strata (JSON), n_runs (runs with an outcome), passed, pass_share, flips (outcome
    changes from run to run, in ``order``), then one column per run id: pass / fail / null.
    """
    outcome = (pl.when(pl.col("passed").is_not_null()).then(pl.col("passed"))
               .when(pl.col("kind") == "binary").then(pl.col("value") == 1.0)
               .otherwise(None))
    known = scores.select("run_id", "case_id", "strata_json", outcome.alias("pass")) \
        .drop_nulls("pass")
    schema = {"case_id": pl.String, "strata": pl.String, "n_runs": pl.Int64,
              "passed": pl.Int64, "pass_share": pl.Float64, "flips": pl.Int64,
              **{r: pl.String for r in order}}
    if known.height == 0:
        return pl.DataFrame(schema=schema)
    rank = {r: i for i, r in enumerate(order)}
    per_case = (known.with_columns(pl.col("run_id").replace_strict(rank).alias("_i"))
                .sort("case_id", "_i")
                .group_by("case_id", maintain_order=True)
                .agg(pl.col("strata_json").last().alias("strata"),
                     pl.len().alias("n_runs"), pl.col("pass").sum().alias("passed"),
                     (pl.col("pass") != pl.col("pass").shift(1)).sum().alias("flips"))
                .filter((pl.col("passed") > 0) & (pl.col("passed") < pl.col("n_runs"))))
    wide = known.filter(pl.col("case_id").is_in(per_case["case_id"].implode())).select(
        "case_id", "run_id", pl.when(pl.col("pass")).then(pl.lit("pass"))
        .otherwise(pl.lit("fail")).alias("outcome")).pivot(
        "run_id", index="case_id", values="outcome")
    for r in order:
        if r not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.String).alias(r))
    return (per_case.with_columns((pl.col("passed") / pl.col("n_runs")).alias("pass_share"))
            .join(wide, on="case_id", how="left")
            .sort("pass_share", "flips", "case_id", descending=[False, True, False])
            .select(list(schema)).cast({k: v for k, v in schema.items()}))


# --- in words ------------------------------------------------------------------------------


def headline(result: ManyRuns, most: int = 3) -> str:
    """Two or three sentences: which runs are significantly worse than the reference in
    which slices (by how much, with n and adjusted p), then over all cases."""
    labels = {c.run_id: c.label for c in result.runs}
    ref = f"{labels[result.reference]} (reference)"
    d = 2 if result.kind == "ordinal" else 3
    sliced = [c for c in result.cells if c.slice and c.significant]
    worse = sorted((c for c in sliced if c.delta < 0), key=lambda c: (c.p_adjusted, c.delta))
    out = []
    if worse:
        named = "; ".join(
            f"{labels[c.run_id]} in {slice_label(c.slice)}, {c.reference_mean:.{d}f} → "
            f"{c.run_mean:.{d}f} (n = {c.n_pairs}, p_adj {c.p_adjusted:.2g})"
            for c in worse[:most])
        more = f", and {len(worse) - most} more" if len(worse) > most else ""
        out.append(f"Worse than {ref} on {result.metric} in {len(worse)} of "
                   f"{result.n_tests} run × slice tests after Benjamini–Hochberg: "
                   f"{named}{more}.")
    elif result.by:
        out.append(f"No slice of any run is significantly worse than {ref} on "
                   f"{result.metric} ({result.n_tests} run × slice tests, "
                   "Benjamini–Hochberg).")
    better = len(sliced) - len(worse)
    if better:
        out.append(f"{better} run × slice test{'s' if better > 1 else ''} significantly "
                   "better.")
    overall = [c for c in result.cells if not c.slice and c.significant]
    if overall:
        out.append("All cases: " + "; ".join(
            f"{labels[c.run_id]} {'worse' if c.delta < 0 else 'better'} "
            f"({c.reference_mean:.{d}f} → {c.run_mean:.{d}f}, p = {c.p_value:.2g})"
            for c in sorted(overall, key=lambda c: c.delta)) + ".")
    else:
        out.append(f"All cases: no run differs significantly from {ref} "
                   f"(α = {result.alpha:g}).")
    return " ".join(out)


def grid(result: ManyRuns) -> pl.DataFrame:
    """Slices (rows: all cases first) × runs (columns, by label, oldest first): each cell
    "mean (n)", with "WORSE" or "better" when significantly different from the reference
    and "reference" on its column. What `evallib compare-many` prints."""
    d = 2 if result.kind == "ordinal" else 3
    labels = {c.run_id: c.label for c in result.runs}
    rows: dict[str, dict[str, str]] = {}
    for c in result.cells:
        mark = ("reference" if c.run_id == result.reference else
                ("WORSE" if c.delta < 0 else "better") if c.significant else "")
        text = "-" if math.isnan(c.mean) else f"{c.mean:.{d}f} ({c.n})"
        rows.setdefault(slice_label(c.slice), {})[labels[c.run_id]] = \
            f"{text} {mark}".rstrip()
    cols = [c.label for c in result.runs]
    return pl.DataFrame([{"slice": s, **{c: v.get(c, "") for c in cols}}
                         for s, v in rows.items()],
                        schema={"slice": pl.String, **{c: pl.String for c in cols}})
