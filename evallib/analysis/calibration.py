"""Judge calibration: may this judge version's scores be trusted? Its agreement with human
labels of the same items, per judge version, before its numbers are used; and how well the
humans agree with each other.

Per (metric, judge version), over the labelled items it scored (`queries.label_pairs`):

- exact share (Wilson 95% interval), Cohen's kappa (linear weights on an ordinal scale,
  asymptotic interval; statsmodels) and Krippendorff's alpha (bootstrap interval), n:
  `evallib.stats.agreement.agreement_from_counts`;
- the confusion table (judge value × human value);
- bias: mean judge − mean human, with a paired t interval;
- verbosity: Spearman's rho of (judge − human) against the output's length in characters,
  with a Fisher-z interval; ``verbose`` when the interval lies above 0 (the judge rates
  longer outputs higher than people do).

A version is ``calibrated`` when its alpha interval lies above `THRESHOLD` (0.8,
Krippendorff's bar for reliable data); ``below`` when it lies under it, ``unclear`` when it
spans it, ``too few`` under `MIN_N` labels. Only ``calibrated`` passes: an interval that
cannot exclude 0.8 is flagged, like one below it.

Agreement among humans: Krippendorff's alpha over the items two or more raters labelled
(any number of raters per item), with a bootstrap interval over items.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from ..stats import t_interval, wilson_interval
from ..stats.agreement import _LEVEL, agreement_from_counts
from ..stats.intervals import CONFIDENCE
from ..warehouse import Connection

__all__ = ["MIN_N", "THRESHOLD", "Calibration", "ReviewAgreement", "calibrate", "confusion",
           "describe", "humans_agreement", "judge_check", "judge_status", "review_agreement",
           "to_json"]

THRESHOLD = 0.8
MIN_N = 20
NAN = math.nan
_STATUS = {"ok": "calibrated", "below": "below", "unclear": "unclear", "too few": "too few"}


@dataclass(frozen=True)
class Calibration:
    """One judge version of one metric against the human labels of the items it scored."""

    metric: str
    judge_version: str
    kind: str
    n: int
    exact: float
    exact_low: float
    exact_high: float
    kappa: float
    kappa_low: float
    kappa_high: float
    alpha: float
    alpha_low: float
    alpha_high: float
    bias: float  # mean judge - mean human
    bias_low: float
    bias_high: float
    verbosity: float  # Spearman rho of (judge - human) vs output length
    verbosity_low: float
    verbosity_high: float
    verbose: bool
    status: str  # calibrated | below | unclear | too few

    @property
    def calibrated(self) -> bool:
        return self.status == "calibrated"


def _one(metric: str, version: str, pairs: pl.DataFrame, threshold: float, n_boot: int,
         seed: int) -> Calibration:
    from ..stats.correlation import correlation

    kind = str(pairs["kind"][0])
    cells = pairs.group_by("judge", "human").len()
    a = agreement_from_counts(cells["judge"], cells["human"], cells["len"], kind,
                              n_boot=n_boot, seed=seed, threshold=threshold, min_n=MIN_N)
    n = a.n
    low, high = (float(v[0]) for v in wilson_interval(np.array([round(a.raw * n)]),
                                                      np.array([n])))
    diff = (pairs["judge"] - pairs["human"]).to_numpy()
    bias = float(diff.mean()) if n else NAN
    sd = float(diff.std(ddof=1)) if n > 1 else NAN
    b_low, b_high = (float(v[0]) for v in t_interval(np.array([bias]), np.array([sd]),
                                                     np.array([n])))
    if sd == 0:  # every pair differs by the same amount: no uncertainty to speak of
        b_low = b_high = bias
    length = pairs["output_length"].cast(pl.Float64).to_numpy()
    v = correlation(diff, length, "spearman", interval="fisher", min_n=MIN_N)
    return Calibration(metric, version, kind, n, a.raw, low, high, a.kappa, a.kappa_low,
                       a.kappa_high, a.alpha, a.alpha_low, a.alpha_high, bias, b_low, b_high,
                       v.r, v.ci_low, v.ci_high, bool(v.n >= MIN_N and v.ci_low > 0),
                       _STATUS[a.status])


def calibrate(pairs: pl.DataFrame, *, threshold: float = THRESHOLD, n_boot: int = 1000,
              seed: int = 0) -> pl.DataFrame:
    """One `Calibration` row per metric × judge version of ``pairs``
    (`queries.label_pairs`), worst alpha first."""
    rows = [asdict(_one(m, v, g, threshold, n_boot, seed))
            for (m, v), g in pairs.group_by("metric", "judge_version", maintain_order=True)]
    schema: dict[str, Any] = {f: pl.Float64 for f in Calibration.__dataclass_fields__} | {
        "metric": pl.String, "judge_version": pl.String, "kind": pl.String, "n": pl.Int64,
        "verbose": pl.Boolean, "status": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("metric", "alpha", "judge_version",
                                                  nulls_last=True)


def confusion(pairs: pl.DataFrame) -> pl.DataFrame:
    """Counts of (judge value, human value) per metric × judge version: metric,
    judge_version, judge, human, n."""
    return (pairs.group_by("metric", "judge_version", "judge", "human")
            .agg(pl.len().cast(pl.Int64).alias("n"))
            .sort("metric", "judge_version", "judge", "human"))


# --- agreement among people --------------------------------------------------------------


def _unit_pairs(values: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, np.ndarray]:
    """Each item rated m ≥ 2 times as its m(m-1)/2 pairs of values, each weighing 1/(m-1):
    Krippendorff's coincidences (every ordered pair of values within an item counts
    1/(m-1)) as the two-sided cells `agreement._alpha_cells` takes. Returns the item index
    of each pair, the pair's two value codes, its weight and the values."""
    multi = values.filter(pl.len().over("item") >= 2)
    vals = np.unique(multi["value"].to_numpy())
    items, a, b, w = [], [], [], []
    for i, (_, g) in enumerate(multi.group_by("item", maintain_order=True)):
        codes = np.searchsorted(vals, g["value"].to_numpy())
        m = len(codes)
        x, y = np.triu_indices(m, 1)
        items.append(np.full(len(x), i))
        a.append(codes[x])
        b.append(codes[y])
        w.append(np.full(len(x), 1.0 / (m - 1)))
    if not items:
        return (np.zeros(0, np.int64),) * 3 + (np.zeros(0), vals)
    return (np.concatenate(items), np.concatenate(a), np.concatenate(b), np.concatenate(w),
            vals)


def _humans_alpha(values: pl.DataFrame, kind: str, n_boot: int, seed: int,
                  threshold: float) -> dict[str, Any]:
    from ..stats.agreement import _alpha_cells

    item, a, b, w, vals = _unit_pairs(values)
    units = int(item.max()) + 1 if item.size else 0
    level = _LEVEL.get(kind, "interval")
    out = {"kind": kind, "items": units, "labels": 0, "raters": values["labeler"].n_unique(),
           "alpha": NAN, "alpha_low": NAN, "alpha_high": NAN, "status": "too few"}
    if units < 2:
        return out
    out["labels"] = int(values.filter(pl.len().over("item") >= 2).height)
    # cells: distinct (a, b) code pairs; each item's weight on each cell
    code, cell = np.unique(a * len(vals) + b, return_inverse=True)
    ji, hi = np.divmod(code, len(vals))
    per_item = np.zeros((units, len(code)))
    np.add.at(per_item, (item, cell), w)
    alpha = float(_alpha_cells(ji, hi, per_item.sum(axis=0)[None], vals, level)[0])
    rng = np.random.default_rng(seed)
    boots = []
    for start in range(0, n_boot, 200):  # resample items, 200 tables at a time
        draw = rng.multinomial(units, np.full(units, 1 / units), size=min(200, n_boot - start))
        boots.append(_alpha_cells(ji, hi, draw @ per_item, vals, level))
    rs = np.concatenate(boots) if boots else np.zeros(0)
    rs = rs[np.isfinite(rs)]
    low = high = NAN
    if rs.size >= n_boot // 2 and n_boot:
        low, high = (float(q) for q in np.quantile(rs, [(1 - CONFIDENCE) / 2,
                                                        (1 + CONFIDENCE) / 2]))
    status = ("too few" if units < MIN_N or not math.isfinite(alpha) else
              "below" if high < threshold else "reliable" if low >= threshold else "unclear")
    return out | {"alpha": alpha if math.isfinite(alpha) else NAN, "alpha_low": low,
                  "alpha_high": high, "status": status}


def humans_agreement(values: pl.DataFrame, *, threshold: float = THRESHOLD,
                     n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """Krippendorff's alpha among raters per metric, over the items two or more of them
    labelled (`queries.label_values`: metric?, item, labeler, value, kind): metric, kind,
    items, labels, raters, alpha (+ 95% interval), status (reliable | unclear | below |
    too few, against ``threshold``)."""
    frame = values if "metric" in values.columns else values.with_columns(
        pl.lit("").alias("metric"))
    rows = [{"metric": m} | _humans_alpha(g, str(g["kind"].drop_nulls().first() or
                                                 "continuous"), n_boot, seed, threshold)
            for (m,), g in frame.group_by("metric", maintain_order=True)]
    schema = {"metric": pl.String, "kind": pl.String, "items": pl.Int64, "labels": pl.Int64,
              "raters": pl.Int64, "alpha": pl.Float64, "alpha_low": pl.Float64,
              "alpha_high": pl.Float64, "status": pl.String}
    return pl.DataFrame(rows, schema=schema)


# --- over a warehouse --------------------------------------------------------------------


def judge_check(con: Connection, metric: str, labels: pl.DataFrame | None = None, *,
                threshold: float = THRESHOLD, n_boot: int = 1000, seed: int = 0
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`calibrate` and `confusion` of every judge version that scored ``metric`` on a
    labelled item: labels of the warehouse, or ``labels`` (trace_id, run_id, case_id,
    labeler, value; e.g. a labelling sheet not imported)."""
    from datetime import date

    from .. import queries
    from ..errors import EvallibError

    known = set(queries.metrics(con)["metric"]) | set(queries.online_review_metrics(
        con, date.min, date.max)["metric"])
    if metric not in known:
        raise EvallibError(f"no scores of metric {metric!r} in the warehouse (metrics: "
                           f"{', '.join(sorted(known)) or 'none'})")
    if labels is None:
        pairs = queries.label_pairs(con, metric)
    else:
        cols = {c: labels[c].fill_null("").to_list() for c in ("trace_id", "run_id", "case_id")}
        pairs = queries.sheet_label_pairs(con, metric, cols["trace_id"], cols["run_id"],
                                          cols["case_id"], labels["labeler"].to_list(),
                                          labels["value"].to_list())
    return calibrate(pairs, threshold=threshold, n_boot=n_boot, seed=seed), confusion(pairs)


@dataclass(frozen=True)
class ReviewAgreement:
    """The Review page's agreement section for one metric."""

    calibration: pl.DataFrame  # `calibrate`: one row per judge version
    confusion: pl.DataFrame  # `confusion`
    judge: pl.DataFrame  # `calibrate` with every judge version pooled (one row, or none)
    humans: pl.DataFrame  # `humans_agreement` (one row)


def review_agreement(con: Connection, metric: str, *, threshold: float = THRESHOLD,
                     n_boot: int = 1000, seed: int = 0) -> ReviewAgreement:
    """Judge vs humans (per version, and pooled) beside humans vs humans, on every human
    label of ``metric`` in the warehouse."""
    from .. import queries

    pairs = queries.label_pairs(con, metric)
    values = queries.label_values(con, metric).with_columns(pl.lit(metric).alias("metric"))
    pooled = pairs.with_columns(pl.lit("all versions").alias("judge_version"))
    return ReviewAgreement(calibrate(pairs, threshold=threshold, n_boot=n_boot, seed=seed),
                           confusion(pairs),
                           calibrate(pooled, threshold=threshold, n_boot=n_boot, seed=seed),
                           humans_agreement(values, threshold=threshold, n_boot=n_boot,
                                            seed=seed))


def judge_status(con: Connection, run_id: str, metric: str, *, threshold: float = THRESHOLD
                 ) -> list[tuple[str, int, Calibration | None]]:
    """Each judge version that scored ``metric`` in a run (with how many scores) and its
    calibration over every human label of ``metric`` it scored (None: no labels)."""
    from .. import queries

    used = queries.run_judge_versions(con, run_id, metric)
    table, _ = judge_check(con, metric, threshold=threshold)
    found = {r["judge_version"]: Calibration(**r) for r in table.iter_rows(named=True)}
    return [(v, int(n), found.get(v)) for v, n in used.iter_rows()]


# --- `evallib judge-check` -----------------------------------------------------------------


def _num(x: float, sign: bool = False) -> str:
    return "-" if x is None or x != x else (f"{x:+.3f}" if sign else f"{x:.3f}")


def _ci(row: dict[str, Any], name: str, sign: bool = False) -> str:
    return (f"{_num(row[name], sign)} [{_num(row[name + '_low'], sign)}, "
            f"{_num(row[name + '_high'], sign)}]")


def describe(table: pl.DataFrame, cells: pl.DataFrame, threshold: float = THRESHOLD) -> str:
    """The judge-check report as text: one line per judge version, then each confusion
    table (rows: the judge's value; columns: the humans')."""
    w = max([len("judge_version"), *(len(v) for v in table["judge_version"])])
    lines = [f"{'judge_version':<{w}} {'n':>5}  {'exact':<21} {'kappa':<21} {'alpha':<21} "
             f"{'bias (judge - human)':<24} {'verbosity rho':<22} status"]
    for r in table.iter_rows(named=True):
        status = r["status"] + (", verbose" if r["verbose"] else "")
        lines.append(f"{r['judge_version']:<{w}} {r['n']:>5}  {_ci(r, 'exact'):<21} "
                     f"{_ci(r, 'kappa'):<21} {_ci(r, 'alpha'):<21} "
                     f"{_ci(r, 'bias', sign=True):<24} {_ci(r, 'verbosity', sign=True):<22} "
                     f"{status}")
    lines.append(f"\ncalibrated: alpha's 95% interval lies above {threshold:g}; below / "
                 "unclear: it lies under it / cannot exclude it; verbose: the judge rates "
                 "longer outputs higher than people do (rho's interval above 0)")
    for (version,), g in cells.group_by("judge_version", maintain_order=True):
        humans = sorted(g["human"].unique().to_list())
        lines += ["", f"{version}: judge (rows) x human (columns)",
                  "  " + f"{'':>8}" + "".join(f"{h:>8g}" for h in humans)]
        for j in sorted(g["judge"].unique().to_list()):
            row = dict(g.filter(pl.col("judge") == j).select("human", "n").iter_rows())
            lines.append("  " + f"{j:>8g}" + "".join(f"{row.get(h, 0):>8}" for h in humans))
    return "\n".join(lines)


def to_json(table: pl.DataFrame, cells: pl.DataFrame) -> list[dict[str, Any]]:
    """One object per judge version: its `Calibration` fields (NaN as null) and its
    confusion table as [judge, human, n] triples."""
    out = []
    for r in table.iter_rows(named=True):
        g = cells.filter(pl.col("judge_version") == r["judge_version"])
        out.append({k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                   | {"confusion": [list(t) for t in g.select("judge", "human", "n")
                                    .iter_rows()]})
    return out
