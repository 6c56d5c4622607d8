"""What `build_demo` reports: the rows written and the story's numbers, read off the data."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..vocabulary import slice_name


@dataclass(frozen=True)
class DemoSummary:
    """What `build_demo` wrote, and the story planted in it (numbers computed from the data)."""

    root: str
    first_day: dt.date
    today: dt.date
    rows: dict[str, int]
    runs: int
    releases: tuple[str, ...]
    approved_baseline_run_id: str
    regressed_run_id: str
    regression_slice: dict[str, str]
    correctness: dict[str, float]  # baseline/candidate × overall/slice
    failure_attribution: dict[str, float]  # baseline failures, evallib.analysis.rag's four classes
    judge_drift_month: str
    judge_feedback_spearman: dict[str, float]  # judge correctness vs thumbs: outside/drift
    incident_day: dt.date | None
    elapsed_s: float
    # What the Correlation page shows: the month × score × feedback pairs flagged below 0.7,
    # the lowest correlation outside the drift month and the highest of the judge's in it.
    flagged: tuple[tuple[str, str, str], ...] = ()
    feedback_r: dict[str, float] = field(default_factory=dict)
    canary: tuple[str, dt.date, dt.date] | None = None  # release, first and last day

    def describe(self) -> str:
        """What was written and planted, with the dates and run ids of this build."""
        rows = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
        flags = "; ".join(f"{m} {metric} vs {fb}" for m, metric, fb in self.flagged)
        r = self.feedback_r
        canary = "none" if self.canary is None else \
            f"{self.canary[0]}, {self.canary[1]} … {self.canary[2]}"
        return "\n".join([
            f"demo warehouse at {self.root} ({self.first_day} … {self.today}), "
            f"{self.elapsed_s:.1f} s",
            f"  rows: {rows}",
            f"  baseline {self.approved_baseline_run_id} vs candidate {self.regressed_run_id}",
            f"  judge drift month {self.judge_drift_month}: judge vs feedback at most "
            f"{r.get('drift_max', float('nan')):.2f}, every other month at least "
            f"{r.get('outside_min', float('nan')):.2f}; flagged: {flags or 'nothing'}",
            f"  incident day {self.incident_day}; canary {canary}",
            *self.story(),
        ])

    def story(self) -> list[str]:
        """The planted story in words that hold on any day the demo is built (no dates, and
        bounds where a number moves with the day): the README's demo section quotes these
        lines, and a test checks that they agree."""
        c, a, r = self.correctness, self.failure_attribution, self.feedback_r
        sl = slice_name(self.regression_slice)
        out = [
            f"- {self.runs} runs over {(self.today - self.first_day).days} days, releases "
            f"{self.releases[0]} … {self.releases[-1]}; the newest run is the unapproved "
            "candidate of the next release.",
            "- A slice regression the mean hides: the candidate against the approved "
            f"baseline, correctness {c['baseline_overall']:.3f} → {c['candidate_overall']:.3f} "
            f"overall, {sl} {c['baseline_slice']:.3f} → {c['candidate_slice']:.3f}.",
            f"- The baseline's failures: retrieval {a['retrieval']:.0%}, both {a['both']:.0%}, "
            f"generation {a['generation']:.0%}, other {a['other']:.0%}.",
        ]
        if r:
            judge = "below 0.3" if r["drift_max"] < 0.3 else f"to {r['drift_max']:.2f}"
            rest = "at least 0.7" if r["outside_min"] >= 0.7 else \
                f"{r['outside_min']:.2f} at the lowest"
            only = "only the drift month's are flagged" if {
                m for m, _, _ in self.flagged} == {self.judge_drift_month} else \
                f"{len(self.flagged)} pairs are flagged"
            out.append(f"- Judge drift in the month two before the build's: the judge's "
                       f"scores correlate with thumbs and ratings {judge} there; every other "
                       f"month every score–feedback correlation is {rest}, so {only}.")
        return out


def _judge_feedback_spearman(pairs: list[np.ndarray]) -> dict[str, float]:
    """Trace-level Spearman of judge correctness vs thumbs, outside / inside the drift month
    (polars' rank correlation: already imported by the writer, unlike scipy.stats)."""
    p = np.concatenate(pairs) if pairs else np.zeros((0, 3))
    frame = pl.DataFrame({"drift": p[:, 0], "judge": p[:, 1], "thumbs": p[:, 2]})
    out = {}
    for name, drift in (("outside", 0.0), ("drift_month", 1.0)):
        sub = frame.filter(pl.col("drift") == drift)
        rho = sub.select(pl.corr("judge", "thumbs", method="spearman")).item() \
            if sub.height > 2 else None
        out[name] = float("nan") if rho is None else round(float(rho), 3)
    return out


def _correlation_story(root: str, drift_month: str
                       ) -> tuple[tuple[tuple[str, str, str], ...], dict[str, float]]:
    """What the Correlation page will show (the same queries and `correlation_table`, with
    its bootstrap seed): every flagged month × metric × feedback, the lowest correlation
    outside the drift month and the highest of the judge's scores in it. (Agreement with
    human labels would import statsmodels: seconds for one number.)"""
    from .. import queries
    from ..stats.correlation import correlation_table
    from ..warehouse.db import connect

    with connect(root) as con:
        first, last = queries.online_date_range(con).row(0)
        counts = queries.score_feedback_counts(con, first, last)
    corr = correlation_table(counts)
    flagged = tuple(corr.filter(pl.col("status") == "below").select(
        "month", "metric", "feedback").sort(pl.all()).iter_rows())
    counted = corr.filter(pl.col("status") != "too few")
    outside = counted.filter(pl.col("month") != drift_month)
    judge = corr.filter((pl.col("month") == drift_month)
                        & pl.col("metric").is_in(["correctness", "faithfulness"]))
    if not (outside.height and judge.height):
        return flagged, {}
    return flagged, {"outside_min": round(float(outside["r"].min()), 2),
                     "drift_max": round(float(judge["r"].max()), 2)}
