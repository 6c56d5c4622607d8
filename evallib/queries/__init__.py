"""The dashboard's questions, one function each, answered by DuckDB as polars frames; one
module per page question: runs and compare, online traffic, correlation, slices, RAG,
many runs side by side, what was notified, review (labels and judge calibration) and
golden sets (the Datasets page).

Every function takes a connection from `evallib.connect()` (or a cursor of it) first. SQL
text is constant: user choices (dataset, metric, stratum key, dates, run ids) are always
bound parameters, so a stratum key such as ``x'] OR 1=1 --`` is just a key nobody has.
Strata are a ``MAP(VARCHAR, VARCHAR)``; ``strata[$key]`` is the case's value for that key
(NULL when the case has no such key).

Frames that summarise scores carry ``kind, n, mean, sd`` so `evallib.stats.with_intervals`
can add their 95% intervals; ``n`` counts scored values only (null = could not score).
"""

from . import correlation, golden_sets, many_runs, notifications, online, rag, review, runs, slices
from .correlation import *  # noqa: F403
from .golden_sets import *  # noqa: F403
from .many_runs import *  # noqa: F403
from .notifications import *  # noqa: F403
from .online import *  # noqa: F403
from .rag import *  # noqa: F403
from .review import *  # noqa: F403
from .runs import *  # noqa: F403
from .slices import *  # noqa: F403

__all__ = sorted(
    runs.__all__ + online.__all__ + correlation.__all__ + slices.__all__ + rag.__all__
    + many_runs.__all__ + notifications.__all__ + review.__all__ + golden_sets.__all__)
