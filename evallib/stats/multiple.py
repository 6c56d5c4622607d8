"""Many tests at once: one comparison tests every slice × metric, and some will look
significant by chance. Benjamini–Hochberg keeps the expected share of false discoveries
among the flagged ones at alpha."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(p_values: ArrayLike) -> NDArray[np.float64]:
    """BH-adjusted p-values, in the input's order; compare them with alpha.

    NaN (or None) means "not tested": it stays NaN and does not count in the family.
    scipy's implementation: the same numbers as statsmodels' ``multipletests(...,
    "fdr_bh")`` (a test checks), without loading statsmodels and pandas (a second of a
    command's start).
    """
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, not of shape {p.shape}")
    tested = ~np.isnan(p)
    if ((p[tested] < 0) | (p[tested] > 1)).any():
        raise ValueError("p-values must lie between 0 and 1")
    adjusted = np.full(p.shape, np.nan)
    if tested.any():
        adjusted[tested] = false_discovery_control(p[tested], method="bh")
    return adjusted
