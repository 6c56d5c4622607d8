"""Statistics over what `evallib.queries` returns. Never touches the warehouse.

- `intervals`: one run's means with their 95% intervals (Wilson for rates, t for means).
- `paired`: candidate vs baseline on the same cases, `paired_test` → `PairedResult`.
- `multiple`: Benjamini–Hochberg across a family of tests (every slice × metric).
- `power`: the smallest drop a comparison of n cases can detect, and the n a drop needs.

Conventions: tests are two-sided; intervals are 95%; "cannot be estimated" is NaN (null in
frames), never a made-up number; a p-value is never NaN (1.0 when nothing can be tested).
The arithmetic is scipy's and statsmodels'; what they lack is written by hand and says so.
scipy and statsmodels are imported where they are used: together they take seconds to load,
and importing evallib should not.
"""

from .intervals import CONFIDENCE, mean_interval, t_interval, wilson_interval, with_intervals
from .multiple import benjamini_hochberg
from .paired import TESTS, Kind, PairedResult, paired_test
from .power import min_detectable_drop, n_needed, power_sentence

__all__ = [
    "CONFIDENCE", "TESTS", "Kind", "PairedResult", "benjamini_hochberg", "mean_interval",
    "min_detectable_drop", "n_needed", "paired_test", "power_sentence", "t_interval",
    "wilson_interval", "with_intervals",
]
