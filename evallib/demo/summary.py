"""What `build_demo` reports: the rows written and the story's numbers, read off the data."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl


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
    failure_attribution: dict[str, float]  # baseline failures, evallib.rag's four classes
    judge_drift_month: str
    judge_feedback_spearman: dict[str, float]  # judge correctness vs thumbs: outside/drift
    incident_day: dt.date | None
    elapsed_s: float

    def describe(self) -> str:
        c, a, r = self.correctness, self.failure_attribution, self.judge_feedback_spearman
        sl = " × ".join(f"{k}={v}" for k, v in self.regression_slice.items())
        rows = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
        return "\n".join([
            f"demo warehouse at {self.root} ({self.first_day} … {self.today}), "
            f"{self.elapsed_s:.1f} s",
            f"  rows: {rows}",
            f"  {self.runs} runs, releases {', '.join(self.releases)}",
            f"  baseline {self.approved_baseline_run_id} vs candidate {self.regressed_run_id}:",
            f"    correctness overall {c['baseline_overall']:.3f} → {c['candidate_overall']:.3f},"
            f" {sl} {c['baseline_slice']:.3f} → {c['candidate_slice']:.3f}",
            f"  baseline failures: retrieval {a['retrieval']:.0%}, both {a['both']:.0%}, "
            f"generation {a['generation']:.0%}, other {a['other']:.0%}",
            f"  judge drift month {self.judge_drift_month}: Spearman(judge, thumbs) "
            f"{r['drift_month']:.2f} inside vs {r['outside']:.2f} outside",
            f"  incident day {self.incident_day}",
        ])


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
