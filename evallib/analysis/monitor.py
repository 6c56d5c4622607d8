"""Is production still healthy? Each day against the days before it, per signal; alerts.

Signals: the error, refusal and tool-error rates, latency and cost per request (bad when
they rise), and each online score (bad when it drops). Each day in the window is tested
against its trailing baseline, the ``baseline_days`` (14) days before it, one-sided in the
bad direction:

- a rare count (errors, refusals, tool errors): Fisher's exact test of the day's count
  against the baseline's pooled count (scipy's hypergeometric tail). Days vary more than
  coin flips do (traffic mix, weekdays), so both counts are first divided by the baseline's
  overdispersion φ (Pearson chi-square of its days / (days - 1), at least 1);
- a mean (ln latency, cost, a pass rate, a 1–5 or continuous score): a prediction t. The
  baseline days' means m_j vary by the between-day variance τ² plus their own sampling
  variance v_j; s² (their sample variance) estimates τ² + mean(v_j), so the day's mean
  against the baseline's is referred to t(k - 1) with variance
  max(s² - mean(v_j), 0) + v_day + s²/k, k the baseline days. This is exact for days of
  equal traffic and keeps its tail where it is used (below).

A day is flagged when p < ``alpha`` and the change is at least the signal's practical
minimum (``Settings.min_change``), so heavy traffic does not alert on trivia. Consecutive
flagged days of a signal are one alert; it is *open* while its last flagged day is the
newest day with traffic. A lasting shift (a slower model in a new release) keeps its alert
open until it has become the baseline, at most ``baseline_days`` days.

Calibrated at the alpha it uses (tests/analysis/test_monitor.py simulates stationary traffic, 1,000
traces a day with weekend dips and day-to-day wobble; 150 × 186 days per signal): at
alpha = 0.001 the mean tests flag 0–0.0011 of days (latency and cost 0.0011; the
random-effects z they replaced flagged 0.0041 and 0.0032, the pass rate's count test
0.0015) and the count tests 0.0006–0.0008; at alpha = 0.05 every test flags 2.6–5.4% of
days. With the practical minimums the default detector raises an alert on fewer than 1
day in 100.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from .. import queries
from ..stats.unpaired import UnpairedResult
from ..warehouse import Connection

__all__ = ["SIGNALS", "Alert", "Settings", "VariantComparison", "VariantSignal",
           "alerts_from_tests", "compare_variants", "daily_tests", "detect", "format_value",
           "record_alerts",
           "shared_days"]

# signal → (label, kind: rate | mean, direction that is bad, how the change is judged)
SIGNALS: dict[str, tuple[str, str, str, str]] = {
    "error_rate": ("error rate", "rate", "up", "abs"),
    "refusal_rate": ("refusal/fallback rate", "rate", "up", "abs"),
    "tool_error_rate": ("tool-error rate", "rate", "up", "abs"),
    "latency": ("latency (geometric mean)", "mean", "up", "rel"),
    "cost": ("cost per request", "mean", "up", "rel"),
}


@dataclass(frozen=True)
class Settings:
    """How the detector decides; stored with nothing, stated in every alert message."""

    alpha: float = 0.001
    baseline_days: int = 14
    min_baseline_days: int = 7
    min_n: int = 30  # traces (or scores) a day needs to be tested
    # smallest change worth an alert: absolute for rates and scores, relative for
    # latency and cost
    min_change: dict[str, float] = field(default_factory=lambda: {
        "rate": 0.005, "binary": 0.02, "ordinal": 0.1, "continuous": 0.02, "rel": 0.10})


@dataclass(frozen=True)
class Alert:
    """One episode of consecutive flagged days of one signal (numbers of the last day)."""

    alert_id: str
    signal: str
    direction: str
    first_day: date
    last_day: date
    status: str  # open | closed
    observed: float
    baseline: float
    p_value: float
    alpha: float
    n: int
    release: str | None
    message: str

    def row(self, detected_at: datetime) -> dict[str, Any]:
        return asdict(self) | {"detected_at": detected_at}


def _signal_frames(health: pl.DataFrame, quality: pl.DataFrame
                   ) -> dict[str, tuple[str, str, pl.DataFrame]]:
    """signal → (kind, direction, frame of day, n, k or mean/var)."""
    h = health.with_columns(pl.col("bucket").dt.date().alias("day")).sort("day")
    out: dict[str, tuple[str, str, pl.DataFrame]] = {}
    for signal, col in (("error_rate", "n_error"), ("refusal_rate", "n_refusal"),
                        ("tool_error_rate", "n_tool_error")):
        out[signal] = ("rate", "up", h.select("day", "n", pl.col(col).alias("k")))
    out["latency"] = ("mean", "up", h.select(
        "day", pl.col("n_latency").alias("n"), pl.col("mean_log_latency").alias("mean"),
        pl.col("sd_log_latency").alias("sd"), pl.col("latency_p95").alias("p95")))
    out["cost"] = ("mean", "up", h.select(
        "day", pl.col("n_cost").alias("n"), pl.col("mean_cost").alias("mean"),
        pl.col("sd_cost").alias("sd")))
    q = quality.with_columns(pl.col("bucket").dt.date().alias("day")).sort("day")
    for (metric,), rows in q.group_by(["metric"], maintain_order=True):
        # a pass rate is a mean too: judged traces are plenty, unlike errors
        out[f"quality:{metric}"] = ("mean", "down", rows.select("day", "n", "mean", "sd"))
    return out


def _rate_test(n: np.ndarray, k: np.ndarray, i: int, base: np.ndarray
               ) -> tuple[tuple[int, int, int, int, float], float]:
    """Day i's count against the baseline days: the hypergeometric tail's arguments (count
    - 1, population, successes, draws; counts divided by the overdispersion φ) and the
    degrees of freedom of φ (inf when φ is 1), then the baseline rate. The tails are
    computed in one call per signal (scipy is slow per call)."""
    nb, kb = n[base].sum(), k[base].sum()
    p0 = kb / nb
    phi, df = 1.0, math.inf
    if 0 < p0 < 1 and len(base) > 1:
        chi2 = np.sum((k[base] - n[base] * p0) ** 2 / (n[base] * p0 * (1 - p0)))
        if chi2 / (len(base) - 1) > 1:
            phi, df = float(chi2 / (len(base) - 1)), len(base) - 1.0
    kd, nd = k[i] / phi, n[i] / phi
    return ((round(kd) - 1, round(nd + nb / phi), round(kd + kb / phi), round(nd), df),
            float(p0))


def _mean_test(n: np.ndarray, m: np.ndarray, sd: np.ndarray, i: int, base: np.ndarray,
               sign: float) -> tuple[tuple[float, float], float]:
    """Day i's mean against the baseline days' means (prediction t): the signed t toward the
    bad direction and its degrees of freedom (baseline days - 1), then the baseline's mean.

    Replaces a DerSimonian–Laird random-effects z whose Satterthwaite degrees of freedom
    ignored how noisy τ² is over 14 days (infinite when τ² came out 0): at alpha = 0.001 it
    flagged 0.004 of stationary latency days."""
    k = len(base)
    means = m[base]
    s2 = float(np.var(means, ddof=1))
    v = sd[base] ** 2 / n[base]
    mu = float(means.mean())
    var = max(s2 - float(v.mean()), 0.0) + float(sd[i] ** 2 / n[i]) + s2 / k
    if not (var > 0 and math.isfinite(var)):
        return (0.0, math.inf), mu
    return (float(sign * (m[i] - mu) / math.sqrt(var)), float(k - 1)), mu


def daily_tests(health: pl.DataFrame, quality: pl.DataFrame, start: date, end: date,
                settings: Settings | None = None) -> pl.DataFrame:
    """One row per day in [start, end] × signal: day, signal, kind, direction, n,
    observed, baseline, change, p_value, flagged (null p: too little data to test).
    ``health`` / ``quality``: daily `queries.online_health` / `online_quality` from
    ``baseline_days`` before ``start``."""
    s = settings or Settings()
    rows: list[dict[str, Any]] = []
    kinds = dict(quality.select("metric", "kind").unique("metric").iter_rows())
    tails: dict[int, tuple[int, int, int, int, float]] = {}  # row → hypergeometric tail
    zs: dict[int, tuple[float, float]] = {}  # row → z, degrees of freedom
    for signal, (kind, direction, f) in _signal_frames(health, quality).items():
        f = f.filter(pl.col("n") > 0)
        days = f["day"].to_list()
        ordinals = np.array([d.toordinal() for d in days])
        n = f["n"].to_numpy().astype(np.float64)
        k = f["k"].to_numpy().astype(np.float64) if kind == "rate" else None
        m = f["mean"].to_numpy() if kind == "mean" else None
        sd = f["sd"].fill_null(0).to_numpy() if kind == "mean" else None
        score_kind = kinds.get(signal[8:]) if signal.startswith("quality:") else None
        floor = (s.min_change["binary"] if score_kind == "binary"
                 else s.min_change["rate"] if kind == "rate"
                 else s.min_change[score_kind] if score_kind else s.min_change["rel"])
        sign = 1.0 if direction == "up" else -1.0
        for i, day in enumerate(days):
            if not start <= day <= end:
                continue
            base = np.arange(np.searchsorted(ordinals, ordinals[i] - s.baseline_days), i)
            p = observed = baseline = math.nan
            if len(base) >= s.min_baseline_days and n[i] >= s.min_n:
                if k is not None:
                    tails[len(rows)], baseline = _rate_test(n, k, i, base)
                    observed = k[i] / n[i]
                else:
                    zs[len(rows)], baseline = _mean_test(n, m, sd, i, base, sign)
                    observed = float(m[i])
                    if signal == "latency":
                        observed, baseline = math.exp(observed), math.exp(baseline)
            if kind == "rate" or score_kind:
                change = observed - baseline
                big = sign * change >= floor
            else:
                change = observed / baseline - 1 if baseline else math.nan
                big = sign * change >= floor
            shown = "rate" if score_kind == "binary" else kind  # a pass rate, in points
            rows.append({"day": day, "signal": signal, "kind": shown, "direction": direction,
                         "n": int(n[i]), "observed": observed, "baseline": baseline,
                         "change": change, "p_value": None if math.isnan(p) else p,
                         "big": bool(big)})
    from scipy.stats import hypergeom, norm
    from scipy.stats import t as student_t

    if tails:  # quasi-binomial: an estimated φ turns the tail's z into a t
        x, total, successes, draws, df = (np.array(v) for v in zip(*tails.values(),
                                                                      strict=True))
        ps = np.where(draws > 0, hypergeom.sf(x, total, successes, draws), 1.0)
        ps = np.where(np.isinf(df), ps, student_t.sf(norm.isf(ps), np.where(
            np.isinf(df), 1.0, df)))
        for j, pv in zip(tails, ps, strict=True):
            rows[j]["p_value"] = float(min(max(pv, 0.0), 1.0))
    if zs:
        z, df = (np.array(v) for v in zip(*zs.values(), strict=True))
        ps = np.where(np.isinf(df), norm.sf(z), student_t.sf(z, np.where(np.isinf(df), 1.0,
                                                                          df)))
        for j, pv in zip(zs, ps, strict=True):
            rows[j]["p_value"] = float(pv)
    for r in rows:
        big = r.pop("big")
        r["flagged"] = r["p_value"] is not None and r["p_value"] < s.alpha and big
    schema = {"day": pl.Date, "signal": pl.String, "kind": pl.String, "direction": pl.String,
              "n": pl.Int64, "observed": pl.Float64, "baseline": pl.Float64,
              "change": pl.Float64, "p_value": pl.Float64, "flagged": pl.Boolean}
    return pl.DataFrame(rows, schema=schema).sort("day", "signal")


def _label(signal: str) -> str:
    return SIGNALS[signal][0] if signal in SIGNALS else f"{signal[8:]} (online score)"


def format_value(signal: str, v: float) -> str:
    """A signal's value in its unit (ms, $, %), as alerts and their messages show it."""
    if signal == "latency":
        return f"{v:,.0f} ms"
    if signal == "cost":
        return f"${v:.5f}"
    if signal.endswith("_rate"):
        return f"{v:.2%}"
    return f"{v:.3f}"


def _message(t: dict[str, Any], first: date, days: int, release: str | None,
             settings: Settings) -> str:
    signal = t["signal"]
    what = _label(signal)
    verb = "rose" if t["direction"] == "up" else "dropped"
    if signal in ("latency", "cost"):
        change = f"{t['change']:+.0%}"
    elif t["kind"] == "rate":
        change = f"{t['change'] * 100:+.1f} points"
    else:
        change = f"{t['change']:+.3f}"
    since = f"since {first:%Y-%m-%d} ({days} days)" if days > 1 else f"on {first:%Y-%m-%d}"
    rel = f"; release {release} began serving that day" if release else ""
    return (f"{what} {verb} {since}: {format_value(signal, t['observed'])} on "
            f"{t['day']:%Y-%m-%d} against {format_value(signal, t['baseline'])} over the "
            f"{settings.baseline_days} days "
            f"before ({change}, one-sided p = {t['p_value']:.2g} < {settings.alpha:g}){rel}")


def alerts_from_tests(tests: pl.DataFrame, releases: pl.DataFrame, newest_day: date | None,
                      settings: Settings | None = None) -> list[Alert]:
    """Consecutive flagged days (days with traffic) of a signal → one alert; open when its
    last day is ``newest_day``. ``releases``: `queries.online_releases` (names the release
    that began serving on an alert's first day). Open first, then newest first."""
    s = settings or Settings()
    started = {d: r for r, d in releases.select("release", "first_day").iter_rows()}
    out = []
    for (signal,), rows in tests.sort("day").group_by(["signal"], maintain_order=True):
        episode: list[dict[str, Any]] = []
        for t in [*rows.iter_rows(named=True), None]:
            if t is not None and t["flagged"]:
                episode.append(t)
                continue
            if t is not None and t["p_value"] is None and episode:
                continue  # an untestable day (no traffic) does not end an episode
            if episode:
                first, last = episode[0]["day"], episode[-1]
                release = started.get(first)
                out.append(Alert(
                    f"{signal}@{first:%Y-%m-%d}", str(signal), last["direction"], first,
                    last["day"], "open" if last["day"] == newest_day else "closed",
                    last["observed"], last["baseline"], last["p_value"], s.alpha, last["n"],
                    release, _message(last, first, len(episode), release, s)))
                episode = []
    return sorted(out, key=lambda a: (a.status != "open", -a.last_day.toordinal(), a.signal))


def detect(con: Connection, start: date, end: date, settings: Settings | None = None
           ) -> tuple[list[Alert], pl.DataFrame]:
    """Alerts over the days [start, end] and the daily tests behind them (reads the
    daily aggregates from ``baseline_days`` before ``start``)."""
    s = settings or Settings()
    since = start - timedelta(days=s.baseline_days)
    health = queries.online_health(con, since, end)
    quality = queries.online_quality(con, since, end)
    tests = daily_tests(health, quality, start, end, s)
    newest = queries.online_date_range(con)["last_day"][0]
    return alerts_from_tests(tests, queries.online_releases(con, since, end), newest,
                             s), tests


def record_alerts(root: str | os.PathLike[str] | None = None, since: date | None = None,
          record: bool = True, settings: Settings | None = None) -> list[Alert]:
    """What `evallib alerts` does: detect over [since (default: 30 days before the newest
    day with traffic, or the first day of an alert still recorded open), newest day],
    record the alerts that are new or changed since their last recorded row (a recorded
    open alert that is no longer flagged is recorded closed), and return them, open first."""
    from ..warehouse import Warehouse
    from ..warehouse.db import connect

    with connect(root) as con:
        newest = queries.online_date_range(con)["last_day"][0]
        if newest is None:
            return []
        recorded = queries.alerts(con)
        still_open = recorded.filter(pl.col("status") == "open")
        start = since or newest - timedelta(days=29)
        if still_open.height:
            start = min(start, still_open["first_day"].min())
        alerts, _ = detect(con, start, newest, settings)
    known = {r["alert_id"]: (r["status"], r["last_day"]) for r in
             recorded.iter_rows(named=True)}
    rows = []
    now = datetime.now(UTC)
    for a in alerts:
        if known.get(a.alert_id) != (a.status, a.last_day):
            rows.append(a.row(now))
    detected = {a.alert_id for a in alerts}
    for r in still_open.iter_rows(named=True):
        if r["alert_id"] not in detected:
            rows.append(r | {"status": "closed", "detected_at": now})
    if record and rows:
        Warehouse(root).record_alerts(rows)
    return alerts


# --- canary against control ------------------------------------------------------------


@dataclass(frozen=True)
class VariantSignal:
    """One signal of the treatment (canary) against the control on the same days."""

    signal: str
    direction: str  # up | down: the way that is bad
    result: UnpairedResult
    p_adjusted: float
    verdict: str  # worse | better | no difference

    @property
    def worse(self) -> bool:
        return self.verdict == "worse"


@dataclass(frozen=True)
class VariantComparison:
    control: str
    treatment: str
    days: tuple[date, ...]
    alpha: float
    signals: tuple[VariantSignal, ...]

    @property
    def regressions(self) -> list[VariantSignal]:
        return [s for s in self.signals if s.worse]


def shared_days(variant_days: pl.DataFrame, a: str, b: str) -> list[date]:
    """Days on which both variants served (from `queries.online_variant_days`)."""
    days = variant_days.filter(pl.col("variant").is_in([a, b]))
    both = days.group_by("day").agg(pl.col("variant").n_unique().alias("k"))
    return sorted(both.filter(pl.col("k") == 2)["day"].to_list())


def _counts(frame: pl.DataFrame, by: str, value: str, a: str, b: str
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligned values and the two variants' counts of each."""
    wide = frame.pivot(on=by, index=value, values="n", aggregate_function="sum").fill_null(0)
    for v in (a, b):
        if v not in wide.columns:
            wide = wide.with_columns(pl.lit(0).alias(v))
    wide = wide.sort(value)
    return (wide[value].to_numpy().astype(np.float64), wide[a].to_numpy(),
            wide[b].to_numpy())


def _variant_tests(health: pl.DataFrame, bins: pl.DataFrame, scores: pl.DataFrame,
                   feedback: pl.DataFrame, c: str, t: str
                   ) -> list[tuple[str, str, UnpairedResult]]:
    from ..stats.unpaired import (
        bootstrap_quantile_ratio,
        mann_whitney_counts,
        two_proportions,
        welch_from_moments,
    )

    out: list[tuple[str, str, UnpairedResult]] = []
    h = {r["grp"]: r for r in health.iter_rows(named=True)}
    if c in h and t in h:
        hc, ht = h[c], h[t]
        for signal, col in (("error_rate", "n_error"), ("refusal_rate", "n_refusal"),
                            ("tool_error_rate", "n_tool_error")):
            out.append((signal, "up", two_proportions(hc[col], hc["n"], ht[col], ht["n"])))
        if bins.height:
            lat, lc, lt = _counts(bins, "variant", "bin", c, t)
            for q in (0.5, 0.95):
                out.append((f"latency p{round(q * 100)}", "up",
                            bootstrap_quantile_ratio(np.exp(lat / 100), lc, lt, q)))
        if hc["n_cost"] and ht["n_cost"]:
            out.append(("cost", "up", welch_from_moments(
                hc["n_cost"], hc["mean_cost"], hc["sd_cost"] or 0.0,
                ht["n_cost"], ht["mean_cost"], ht["sd_cost"] or 0.0)))
    for (metric,), rows in scores.group_by(["metric"], maintain_order=True):
        kind, signal = rows["kind"][0], f"quality:{metric}"
        g = rows.group_by("variant").agg(pl.col("n").sum(), pl.col("sx").sum(),
                                         pl.col("sxx").sum())
        m = {r["variant"]: r for r in g.iter_rows(named=True)}
        if c not in m or t not in m:
            continue
        if kind == "binary":
            res = two_proportions(round(m[c]["sx"]), m[c]["n"], round(m[t]["sx"]), m[t]["n"])
        elif kind == "ordinal":
            res = mann_whitney_counts(*_counts(rows, "variant", "value", c, t))
        else:
            def sd(r: dict[str, Any]) -> float:
                n = r["n"]
                return math.sqrt(max(r["sxx"] - r["sx"] ** 2 / n, 0) / (n - 1)) if n > 1 \
                    else math.nan
            res = welch_from_moments(m[c]["n"], m[c]["sx"] / m[c]["n"], sd(m[c]),
                                     m[t]["n"], m[t]["sx"] / m[t]["n"], sd(m[t]))
        out.append((signal, "down", res))
    for kind, test in (("thumbs", "thumbs up"), ("rating", "rating")):
        rows = feedback.filter(pl.col("kind") == kind)
        if rows.height == 0:
            continue
        v, nc, nt = _counts(rows, "variant", "value", c, t)
        if kind == "thumbs":
            res = two_proportions(int(nc[v == 1].sum()), int(nc.sum()), int(nt[v == 1].sum()),
                                  int(nt.sum()))
        else:
            res = mann_whitney_counts(v, nc, nt)
        out.append((test, "down", res))
    return out


def compare_variants(con: Connection, start: date, end: date, control: str, treatment: str,
                     alpha: float = 0.05) -> VariantComparison:
    """Every signal of ``treatment`` (e.g. the canary) against ``control`` over the days
    in [start, end] both served: unpaired tests (see `evallib.stats.unpaired`),
    Benjamini–Hochberg over the signals; *worse* = significant in the bad direction."""
    from ..stats import benjamini_hochberg

    days = shared_days(queries.online_variant_days(con, start, end), control, treatment)
    if not days:
        return VariantComparison(control, treatment, (), alpha, ())
    tests = _variant_tests(queries.variant_health(con, days, control, treatment),
                           queries.variant_latency_bins(con, days, control, treatment),
                           queries.variant_scores(con, days, control, treatment),
                           queries.variant_feedback(con, days, control, treatment),
                           control, treatment)
    adjusted: np.ndarray | list[float] = (
        benjamini_hochberg([r.p_value for _, _, r in tests]) if tests else [])
    signals = []
    for (signal, direction, r), p_adj in zip(tests, adjusted, strict=True):
        up = r.delta > 1 if r.relative else r.delta > 0
        verdict = "no difference"
        if p_adj < alpha:
            verdict = "worse" if up == (direction == "up") else "better"
        signals.append(VariantSignal(signal, direction, r, float(p_adj), verdict))
    return VariantComparison(control, treatment, tuple(days), alpha, tuple(signals))
