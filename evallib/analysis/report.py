"""`evallib report --month YYYY-MM`: the monthly review as a document.

Do offline metrics predict online outcomes, is the judge still agreeing with people, did
production drift, what alerted, which gates failed and which runs regressed. The numbers
come from the same functions the dashboard's Online and Correlation pages use
(`evallib.stats.correlation`, `evallib.stats.agreement`, `evallib.analysis.drift`,
`evallib.analysis.monitor`, `evallib.analysis.compare`); the figures are built here (plotly,
no streamlit) and the pages draw the same ones. HTML output is self-contained: plotly.js is
inlined once, nothing is fetched when the file is opened.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from pathlib import Path
from typing import Any

import polars as pl

from .. import queries
from ..errors import EvallibError
from ..stats.agreement import agreement_table
from ..stats.correlation import STATUS, THRESHOLD, correlation_table, release_table
from ..vocabulary import slice_label
from ..warehouse import Connection
from .drift import DriftResult, drift_report
from .monitor import Alert, detect

__all__ = ["FLAG", "MonthlyReview", "Trends", "month_bounds", "monthly_review", "render",
           "review_trends", "to_html", "to_markdown", "write_report"]

FLAG = {"below": "🚩", "ok": "✅", "unclear": "❔", "too few": "⏳"}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
MAX_REGRESSIONS = 15


def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of ``YYYY-MM``; anything else is a usage error."""
    m = _MONTH.match(month.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise EvallibError(f"--month must be YYYY-MM (e.g. 2026-09), not {month!r}")
    y, mo = int(m.group(1)), int(m.group(2))
    return date(y, mo, 1), date(y, mo, calendar.monthrange(y, mo)[1])


@dataclass
class MonthlyReview:
    """Everything the review says about one month (frames as the pages show them)."""

    month: str
    start: date
    end: date
    has_online: bool
    correlations: pl.DataFrame  # the month: metric, feedback, method, n, r, ci, status, prev
    trend: pl.DataFrame  # every month up to this one
    release_level: pl.DataFrame
    release_points: pl.DataFrame
    agreement: pl.DataFrame  # the month, per metric
    agreement_trend: pl.DataFrame
    drift: list[DriftResult]
    drift_reference: tuple[date, date] | None
    alerts: list[Alert]
    gate_failures: pl.DataFrame
    regressions: list[dict[str, Any]] = field(default_factory=list)
    score_cells: pl.DataFrame = field(default_factory=pl.DataFrame)

    def flags(self) -> list[str]:
        """The review's findings, worst first, one sentence each."""
        out = []
        for r in self.correlations.filter(pl.col("status") == "below").iter_rows(named=True):
            was = r.get("prev_status")
            new = " (new this month)" if was in ("ok", "unclear") else ""
            out.append(f"🚩 {r['metric']} vs {r['feedback']}: {r['method']} {r['r']:.2f} "
                       f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}], n = {r['n']:,} — "
                       f"below {THRESHOLD}{new}")
        for r in self.agreement.filter(pl.col("status") == "below").iter_rows(named=True):
            out.append(f"🚩 judge vs humans on {r['metric']}: Krippendorff's alpha "
                       f"{r['alpha']:.2f} [{r['alpha_low']:.2f}, {r['alpha_high']:.2f}], "
                       f"kappa {r['kappa']:.2f}, n = {r['n']}")
        for d in self.drift:
            if d.flagged:
                out.append(f"🧭 {d.feature} drifted ({d.band}, PSI {d.psi:.2f}): {d.moved}")
        for a in self.alerts:
            out.append(f"🔔 {a.message}")
        if self.gate_failures.height:
            out.append(f"⛔ {self.gate_failures['run_id'].n_unique()} run(s) failed a gate "
                       f"({self.gate_failures.height} failed rule rows)")
        for r in self.regressions[:5]:
            out.append(f"📉 {r['run']} vs {r['baseline']}: {r['metric']} {r['slice']} "
                       f"{r['before']:.3f} → {r['after']:.3f} (p adj. {r['p_adjusted']:.2g})")
        return out


def _with_previous(trend: pl.DataFrame, month: str, keys: list[str]) -> pl.DataFrame:
    rows = trend.filter(pl.col("month") == month)
    prev = trend.filter(pl.col("month") < month).sort("month").group_by(
        keys, maintain_order=True).last().select(
        *keys, pl.col("r").alias("prev_r"), pl.col("status").alias("prev_status"))
    return rows.join(prev, on=keys, how="left").drop("month")


def _regressions(con: Connection, start: date, end: date) -> list[dict[str, Any]]:
    """Significant drops of runs started in the month against the newest approved run of
    their dataset started before each (overall per metric, and per slice of the first two
    stratum keys, Benjamini–Hochberg as in `evallib compare`)."""
    from datetime import UTC, datetime, time

    from .compare import compare_runs

    runs = queries.runs_overview(con).filter(
        pl.col("started_at").is_between(datetime.combine(start, time(), UTC),
                                        datetime.combine(end + timedelta(days=1), time(),
                                                         UTC), closed="left"))
    out: list[dict[str, Any]] = []
    keys: dict[str, list[str]] = {}
    for run in runs.sort("started_at").iter_rows(named=True):
        base = queries.latest_approved(con, run["dataset"], run["started_at"])
        if base.height == 0 or base["run_id"][0] == run["run_id"]:
            continue
        if run["dataset"] not in keys:
            keys[run["dataset"]] = queries.strata_keys(con, run["dataset"])["key"][:2]\
                .to_list()
        by = [keys[run["dataset"]]] if keys[run["dataset"]] else []
        c = compare_runs(con, run["run_id"], base["run_id"][0], by=by)
        for m in c.metrics:
            if m.significant and m.delta < 0:
                out.append({"run": run["name"], "run_id": run["run_id"],
                            "baseline": base["name"][0], "metric": m.metric,
                            "slice": "(all cases)", "n": m.n, "before": m.baseline,
                            "after": m.candidate, "p_adjusted": m.p_adjusted})
        for s in c.slices:
            if s.significant and s.delta < 0:
                out.append({"run": run["name"], "run_id": run["run_id"],
                            "baseline": base["name"][0], "metric": s.metric,
                            "slice": slice_label(s.slice),
                            "n": s.n, "before": s.baseline, "after": s.candidate,
                            "p_adjusted": s.p_adjusted})
    return sorted(out, key=lambda r: (r["p_adjusted"], r["after"] - r["before"]))


@dataclass(frozen=True)
class Trends:
    """Every month's score × feedback cells, correlations and judge-human agreement: each
    month's depend on that month's traffic only, so one computation serves every review."""

    counts: pl.DataFrame
    correlations: pl.DataFrame
    agreement: pl.DataFrame


def review_trends(con: Connection, n_boot: int = 1000) -> Trends:
    """The `Trends` of every month with online traffic (the costly part of a review: a
    bootstrap per month × metric × feedback; the Correlation page computes it once)."""
    first, last = queries.online_date_range(con).row(0)
    if first is None:
        first = last = date.today()
    counts = queries.score_feedback_counts(con, first, last)
    return Trends(counts, correlation_table(counts, n_boot=n_boot),
                  agreement_table(queries.judge_human_counts(con, first, last), n_boot=n_boot))


def monthly_review(con: Connection, month: str, *, regressions: bool = True, checks: bool = True,
                   n_boot: int = 1000, trends: Trends | None = None) -> MonthlyReview:
    """The review of ``month`` (YYYY-MM) over the warehouse behind ``con``; without
    ``regressions`` no run is compared, without ``checks`` no drift or alert is computed
    (the Correlation page shows neither). ``trends``: `review_trends` of the same
    warehouse, if already computed."""
    start, end = month_bounds(month)
    first, last = queries.online_date_range(con).row(0)
    has_online = first is not None and first <= end and last >= start
    t = trends or review_trends(con, n_boot)
    counts = t.counts.filter(pl.col("month") <= month)
    trend = t.correlations.filter(pl.col("month") <= month)
    keys = ["metric", "feedback"]
    agreement_trend = t.agreement.filter(pl.col("month") <= month)
    points = queries.release_scores(con, end)
    drift, reference = [], None
    alerts: list[Alert] = []
    if has_online and checks:
        w_start, w_end = max(start, first), min(end, last)
        ref_end = w_start - timedelta(days=1)
        ref_start = max(first, month_bounds(f"{ref_end:%Y-%m}")[0])
        if ref_start <= ref_end:
            reference = (ref_start, ref_end)
            drift = drift_report(queries.online_drift_counts(con, ref_start, ref_end,
                                                             w_start, w_end))
        alerts, _ = detect(con, w_start, w_end)
    return MonthlyReview(
        month, start, end, has_online,
        _with_previous(trend, month, keys), trend.filter(pl.col("month") <= month),
        release_table(points), points,
        agreement_trend.filter(pl.col("month") == month).drop("month"),
        agreement_trend.filter(pl.col("month") <= month), drift, reference, alerts,
        queries.gate_failures(con, start, end),
        _regressions(con, start, end) if regressions else [],
        counts.filter(pl.col("month") == month))


# --- rendering -------------------------------------------------------------------------


def _num(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) \
        else str(v)


def _ci(low: Any, high: Any) -> str:
    return f"[{_num(low)}, {_num(high)}]" if low is not None and math.isfinite(low) else "–"


def _sections(r: MonthlyReview) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, text, header, rows) per section: one description for Markdown and HTML."""
    corr = [[FLAG[x["status"]] + " " + STATUS[x["status"]], x["metric"], x["feedback"],
             x["method"], _num(x["n"]), _num(x["r"]), _ci(x["ci_low"], x["ci_high"]),
             _num(x["prev_r"])] for x in r.correlations.iter_rows(named=True)]
    months = sorted(r.trend["month"].unique().to_list())
    wide: dict[tuple[str, str], dict[str, Any]] = {
        (x["metric"], x["feedback"]): {} for x in r.trend.iter_rows(named=True)}
    for x in r.trend.iter_rows(named=True):
        wide[(x["metric"], x["feedback"])][x["month"]] = f"{FLAG[x['status']]} {_num(x['r'])}"
    trend = [[m, f, *(cells.get(mo, "") for mo in months)] for (m, f), cells in wide.items()]
    rel = [[FLAG[x["status"]] + " " + STATUS[x["status"]], x["metric"], x["feedback"],
            _num(x["n"]), _num(x["r"]), _ci(x["ci_low"], x["ci_high"])]
           for x in r.release_level.iter_rows(named=True)]
    agree = [[FLAG[x["status"]], x["metric"], _num(x["n"]), _num(x["raw"]),
              f"{_num(x['kappa'])} {_ci(x['kappa_low'], x['kappa_high'])}",
              f"{_num(x['alpha'])} {_ci(x['alpha_low'], x['alpha_high'])}"]
             for x in r.agreement.iter_rows(named=True)]
    drift = [["🧭" if d.flagged else "", d.feature, _num(d.psi), d.band,
              f"{d.test} {_num(d.statistic, 3)}, p = {d.p_value:.2g}", d.moved]
             for d in r.drift]
    alerts = [[a.status, a.signal, f"{a.first_day} → {a.last_day}", a.message]
              for a in r.alerts]
    gates = [[f"{x['created_at']:%Y-%m-%d}", x["run_id"], x["rule"], x["metric"],
              x["slice"] or "", x["message"] or ""]
             for x in r.gate_failures.iter_rows(named=True)]
    regs = [[x["run"], x["baseline"], x["metric"], x["slice"], _num(x["n"]),
             f"{x['before']:.3f} → {x['after']:.3f}", f"{x['p_adjusted']:.2g}"]
            for x in r.regressions[:MAX_REGRESSIONS]]
    more = len(r.regressions) - MAX_REGRESSIONS
    ref = (f"{r.drift_reference[0]} … {r.drift_reference[1]}" if r.drift_reference
           else "no earlier traffic")
    return [
        ("Offline scores vs user feedback (trace level)",
         f"Each online score against the user's thumbs (1 up / 0 down) or rating (1–5) on "
         f"the same trace: coefficient, 95% bootstrap interval, n pairs. 🚩 = the interval "
         f"lies below {THRESHOLD}: the score no longer predicts what users say.",
         ["", "metric", "feedback", "method", "n", "r", "95% CI", "previous month"], corr),
        ("Month by month", "The same coefficients for every month up to this one.",
         ["metric", "feedback", *months], trend),
        ("Release level", "Each release's offline score (its approved run) against its "
         "online satisfaction; Spearman over releases with a Fisher-z 95% interval (at "
         "least 5 releases to say anything).",
         ["", "metric", "feedback", "releases", "rho", "95% CI"], rel),
        ("Judge vs human labels", "Human-labelled production traces: share identical, "
         "Cohen's kappa (linear weights for 1–5 scales; asymptotic 95% CI), Krippendorff's "
         "alpha (bootstrap 95% CI). 🚩 = alpha's interval below 0.667.",
         ["", "metric", "n", "same", "kappa", "alpha"], agree),
        ("Drift", f"This month against {ref}: population stability index (< 0.1 stable, "
         "0.1–0.25 moderate, ≥ 0.25 major) and a chi-square or KS test, largest first.",
         ["", "feature", "PSI", "band", "test", "moved most"], drift),
        ("Alerts", "The detector's alerts in the month (each day against the 14 before; "
         "see `evallib alerts`).", ["status", "signal", "days", "what"], alerts),
        ("Gate failures", "Failed rules of gates run this month.",
         ["day", "run", "rule", "metric", "slice", "message"], gates),
        ("Regressions", "Runs started this month against the newest approved run before "
         "each: significant drops (overall, and per slice after Benjamini–Hochberg)"
         + (f"; {more} more not shown." if more > 0 else "."),
         ["run", "baseline", "metric", "slice", "n", "before → after", "p adj."], regs),
    ]


def _md_cell(v: str) -> str:
    return v.replace("|", "\\|").replace("\n", " ")


def to_markdown(r: MonthlyReview) -> str:
    lines = [f"# Monthly review {r.month}", ""]
    if not r.has_online:
        lines += ["_No production traffic in this month: only gates and regressions._", ""]
    flags = r.flags()
    lines += ["## Findings", ""] + ([f"- {f}" for f in flags] or ["- Nothing flagged."])
    for title, text, header, rows in _sections(r):
        lines += ["", f"## {title}", "", text, ""]
        if not rows:
            lines.append("_None._")
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}li{margin:.2em 0}"""


def to_html(r: MonthlyReview) -> str:
    """A self-contained page: the Markdown's content plus the figures (plotly.js inlined
    once, nothing fetched)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Monthly review "
             f"{r.month}</title><style>{_CSS}</style></head><body>",
             f"<h1>Monthly review {escape(r.month)}</h1>", "<h2>Findings</h2><ul>"]
    parts += [f"<li>{escape(f)}</li>" for f in r.flags()] or ["<li>Nothing flagged.</li>"]
    parts.append("</ul>")
    figures = review_figures(r)
    first = True
    for title, text, header, rows in _sections(r):
        parts += [f"<h2>{escape(title)}</h2>", f"<p>{escape(text)}</p>"]
        if rows:
            parts.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header)
                         + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                      for row in rows]
            parts.append("</table>")
        else:
            parts.append("<p><em>None.</em></p>")
        for fig in figures.get(title, []):
            parts.append(fig.to_html(full_html=False, include_plotlyjs=first,
                                     config={"displaylogo": False}))
            first = False
    parts.append("</body></html>")
    return "\n".join(parts)


def render(r: MonthlyReview, out: str | None) -> str:
    """Markdown, or HTML when ``out`` ends in .html/.htm."""
    return to_html(r) if out and out.lower().endswith((".html", ".htm")) else to_markdown(r)


def write_report(r: MonthlyReview, out: str) -> None:
    try:
        Path(out).write_text(render(r, out), encoding="utf-8")
    except OSError as e:
        raise EvallibError(f"cannot write {out}: {e.strerror or e}") from None


# --- figures (the pages draw these too) -------------------------------------------------

_COLORS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692")
_BAND_COLORS = {"stable": "#9ecae1", "moderate": "#fdae6b", "major": "#e6550d",
                "too few": "#dddddd"}


def _figure(height: int = 380) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    return fig


def correlation_trend_figure(trend: pl.DataFrame, month: str | None = None) -> Any:
    """Each (metric, feedback) coefficient month by month with its 95% interval; the 0.7
    bar dashed; the reviewed month shaded."""
    import plotly.graph_objects as go

    fig = _figure(420)
    for i, ((metric, feedback), rows) in enumerate(
            trend.sort("month").group_by(["metric", "feedback"], maintain_order=True)):
        rows = rows.filter(pl.col("r").is_not_nan())
        fig.add_trace(go.Scatter(
            x=rows["month"].to_list(), y=rows["r"].to_list(),
            name=f"{escape(str(metric))} vs {feedback}", mode="lines+markers",
            line={"color": _COLORS[i % len(_COLORS)],
                  "dash": "solid" if feedback == "thumbs" else "dot"},
            error_y={"type": "data", "visible": True,
                     "array": (rows["ci_high"] - rows["r"]).fill_nan(0).to_list(),
                     "arrayminus": (rows["r"] - rows["ci_low"]).fill_nan(0).to_list()},
            customdata=rows.select("method", "n", "status").rows(), meta={"role": "series"},
            hovertemplate="%{x}: %{customdata[0]} %{y:.2f}, n = %{customdata[1]}"
                          "<br>%{customdata[2]}<extra></extra>"))
    fig.add_hline(y=THRESHOLD, line={"dash": "dash", "color": "#d62728"},
                  annotation_text=f"{THRESHOLD}", annotation_position="bottom right")
    if month:
        fig.add_vrect(x0=month, x1=month, line={"width": 14, "color": "rgba(255,200,0,.25)"})
    fig.update_yaxes(title_text="correlation (95% CI)", range=[-0.2, 1.05])
    fig.update_xaxes(title_text="month", type="category")
    return fig


def binned_figure(cells: pl.DataFrame, feedback: str = "thumbs") -> Any:
    """Binned scatter, one small chart per metric (each on its own scale: pass/fail 0/1,
    1–5, or 0–1): the score in bins against the mean feedback of the traces in each bin
    (95% interval; marker area ~ n)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..stats.correlation import binned_feedback
    from ..stats.intervals import mean_interval

    rows = cells.filter(pl.col("feedback") == feedback)
    groups = [(metric, m) for (metric,), m in rows.sort("metric").group_by(
        ["metric"], maintain_order=True) if binned_feedback(m).height]
    scale = {"binary": "pass/fail", "ordinal": "1–5", "continuous": "0–1"}
    titles = [f"{escape(str(metric))} ({scale.get(str(m['kind'][0]), '')})"
              for metric, m in groups] if "kind" in rows.columns else \
        [escape(str(metric)) for metric, _ in groups]
    fig = make_subplots(rows=1, cols=max(len(groups), 1), shared_yaxes=True,
                        subplot_titles=titles or None, horizontal_spacing=0.06)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      showlegend=False)
    for i, (metric, m) in enumerate(groups):
        b = binned_feedback(m)
        kind = "binary" if feedback == "thumbs" else "continuous"
        low, high = mean_interval([kind] * b.height, b["n"], b["mean"], b["sd"])
        x = b["bin"].to_list()
        lo, hi = [m_ - lo_ for m_, lo_ in zip(b["mean"], low, strict=True)], \
            [hi_ - m_ for m_, hi_ in zip(b["mean"], high, strict=True)]
        fig.add_trace(go.Scatter(
            x=x, y=b["mean"].to_list(), name=escape(str(metric)), mode="markers+lines",
            marker={"size": [max(6, min(30, 3 * math.sqrt(n))) for n in b["n"]],
                    "color": _COLORS[i % len(_COLORS)]}, meta={"role": "series"},
            error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True},
            customdata=b["n"].to_list(),
            hovertemplate="score %{x:.2f}: mean " + feedback + " %{y:.2f}, n = "
                          "%{customdata}<extra></extra>"), row=1, col=i + 1)
        fig.update_xaxes(title_text="score (binned)", row=1, col=i + 1)
    fig.update_yaxes(title_text="thumbs-up share" if feedback == "thumbs" else "mean rating",
                     row=1, col=1)
    return fig


def release_figure(points: pl.DataFrame, metric: str, feedback: str = "thumbs") -> Any:
    """One point per release: its offline mean of ``metric`` against its online
    satisfaction."""
    import plotly.graph_objects as go

    fig = _figure(360)
    rows = points.filter((pl.col("metric") == metric) & (pl.col("feedback") == feedback))
    fig.add_trace(go.Scatter(
        x=rows["offline"].to_list(), y=rows["online"].to_list(), mode="markers+text",
        text=[escape(str(r)) for r in rows["release"]], textposition="top center",
        name="release", meta={"role": "series"}, marker={"size": 11, "color": _COLORS[0]},
        customdata=rows.select("n", "n_feedback").rows(),
        hovertemplate="%{text}: offline %{x:.3f} (n = %{customdata[0]}), online %{y:.3f} "
                      "(n = %{customdata[1]})<extra></extra>"))
    fig.update_xaxes(title_text=f"offline {escape(metric)} (approved run)")
    fig.update_yaxes(title_text="thumbs-up share" if feedback == "thumbs" else "mean rating")
    return fig


def drift_figure(drift: list[DriftResult]) -> Any:
    """PSI per feature, coloured by band, with the 0.1 and 0.25 band edges."""
    import plotly.graph_objects as go

    fig = _figure(max(240, 28 * len(drift) + 90))
    shown = [d for d in drift if math.isfinite(d.psi)][::-1]
    fig.add_trace(go.Bar(
        x=[d.psi for d in shown], y=[escape(d.feature) for d in shown], orientation="h",
        marker_color=[_BAND_COLORS[d.band] for d in shown], meta={"role": "series"},
        customdata=[(d.band, escape(d.moved)) for d in shown], name="PSI",
        hovertemplate="%{y}: PSI %{x:.3f} (%{customdata[0]})<br>%{customdata[1]}"
                      "<extra></extra>"))
    for x in (0.1, 0.25):
        fig.add_vline(x=x, line={"dash": "dot", "color": "#888"})
    fig.update_xaxes(title_text="population stability index (window vs reference)")
    return fig


def agreement_figure(trend: pl.DataFrame) -> Any:
    """Krippendorff's alpha of judge vs humans, month by month, per metric."""
    import plotly.graph_objects as go

    from ..stats.agreement import ALPHA_THRESHOLD

    fig = _figure(320)
    for i, ((metric,), rows) in enumerate(trend.sort("month").group_by(
            ["metric"], maintain_order=True)):
        fig.add_trace(go.Scatter(
            x=rows["month"].to_list(), y=rows["alpha"].to_list(), mode="lines+markers",
            name=f"{escape(str(metric))} (alpha)", meta={"role": "series"},
            line={"color": _COLORS[i % len(_COLORS)]},
            error_y={"type": "data", "visible": True,
                     "array": (rows["alpha_high"] - rows["alpha"]).fill_nan(0).to_list(),
                     "arrayminus": (rows["alpha"] - rows["alpha_low"]).fill_nan(0).to_list()},
            customdata=rows.select("n", "kappa").rows(),
            hovertemplate="%{x}: alpha %{y:.2f}, kappa %{customdata[1]:.2f}, n = "
                          "%{customdata[0]}<extra></extra>"))
    fig.add_hline(y=ALPHA_THRESHOLD, line={"dash": "dash", "color": "#d62728"})
    fig.update_yaxes(title_text="Krippendorff's alpha (95% CI)", range=[-0.3, 1.05])
    fig.update_xaxes(type="category")
    return fig


def review_figures(r: MonthlyReview) -> dict[str, list[Any]]:
    """Section title → its figures, for the HTML report."""
    out: dict[str, list[Any]] = {}
    if r.trend.height:
        out["Offline scores vs user feedback (trace level)"] = [binned_figure(r.score_cells)]
        out["Month by month"] = [correlation_trend_figure(r.trend, r.month)]
    metrics = r.release_points["metric"].unique().to_list()
    online = set(r.trend["metric"].unique().to_list())
    out["Release level"] = [release_figure(r.release_points, m) for m in sorted(metrics)
                            if m in online]
    if r.agreement_trend.height:
        out["Judge vs human labels"] = [agreement_figure(r.agreement_trend)]
    if r.drift:
        out["Drift"] = [drift_figure(r.drift)]
    return out
