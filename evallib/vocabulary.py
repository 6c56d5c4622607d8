"""Words and numbers every layer shares, defined once so they cannot drift apart: the
storage layer, the queries, the analyses and the pages all read them from here. Imports
nothing from evallib, so any layer may import it."""

from collections.abc import Mapping

__all__ = ["ALL_CASES", "MISSING", "PALETTE", "TRACE_DAYS_BACK", "slice_label", "slice_name",
           "strata_text"]

# A score or feedback event belongs to a trace of up to this many days before it: the
# rollups, the queries over raw rows and the writer all look back this far, which is what
# keeps "the same answer with or without rollups" true.
TRACE_DAYS_BACK = 7

# The stratum value shown for a case or trace that has no value for the chosen key.
MISSING = "(missing)"

# How a slice reads everywhere (terminal, Markdown, Slack, CSV, the pages): key=value pairs
# joined by " × ", the cells of a cross-tabulation; the slice with no key is every case.
ALL_CASES = "all cases"


def slice_label(values: Mapping[str, object] | None) -> str:
    """``query_type=billing × difficulty=hard``, or "all cases"."""
    return " × ".join(f"{k}={v}" for k, v in values.items()) if values else ALL_CASES


def slice_name(values: Mapping[str, object]) -> str:
    """``billing × hard``: a slice by its values, as a sentence names it."""
    return " × ".join(str(v) for v in values.values())


def strata_text(strata: Mapping[str, object] | None) -> str:
    """A case's or trace's strata as the finest slice it is in, keys sorted; "" if none."""
    return slice_label(dict(sorted(strata.items()))) if strata else ""

# Plotly's and D3's qualitative colours, in that order: one colour per run or series.
PALETTE = (
    "#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
    "#FF97FF", "#FECB52", "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B",
    "#E377C2", "#7F7F7F", "#BCBD22", "#17BECF",
)
