"""Statistics over what `evallib.queries` returns. Never touches the warehouse.

- `intervals`: one run's means with their 95% intervals (Wilson for rates, t for means).
- `paired`: candidate vs baseline on the same cases, `paired_test` → `PairedResult`.
- `difference`: a paired difference's interval and its one-sided tests against a margin
  (Tango for pass rates, skew-corrected t for means, CR2 for clusters, exact sign-flip).
- `signed_rank`: Wilcoxon's signed-rank test, exact with ties for small n.
- `multiple`: Benjamini–Hochberg across a family of tests (every slice × metric).
- `power`: the smallest drop a comparison of n cases can detect, and the n a drop needs.

Conventions: tests are two-sided unless named one-sided; intervals are 95% and lie in the
statistic's range; "cannot be estimated" is NaN (null in frames), never a made-up number; a
p-value is NaN when nothing could be tested, and a family (BH) leaves it out.
The arithmetic is scipy's and statsmodels'; what they lack is written by hand and says so.
scipy and statsmodels are imported where they are used: together they take seconds to load,
and importing evallib should not.
"""

from .difference import Inference, tango_interval
from .intervals import CONFIDENCE, mean_interval, t_interval, wilson_interval, with_intervals
from .multiple import benjamini_hochberg
from .paired import TESTS, Kind, PairedResult, paired_inference, paired_test
from .power import min_detectable_drop, n_needed, power_sentence

__all__ = [
    "CONFIDENCE", "TESTS", "Inference", "Kind", "PairedResult", "benjamini_hochberg",
    "mean_interval", "min_detectable_drop", "n_needed", "paired_inference", "paired_test",
    "power_sentence", "t_interval", "tango_interval", "wilson_interval", "with_intervals",
]
