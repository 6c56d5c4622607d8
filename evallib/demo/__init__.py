"""`evallib demo`: a seeded, realistic warehouse for a RAG customer-support assistant.

The data comes from one small generative model, so every chart the dashboard draws from it
tells the same true story:

- each golden case (and each production query) has a latent *difficulty* and *retrieval
  hardness* drawn from its strata; a run or a release has a *skill*, a retriever a *reach*.
  A case is retrieved when reach beats hardness, answered correctly when skill (plus a bonus
  for a retrieved gold document) beats difficulty, with per-run noise. So the same case tends
  to pass or fail across runs (paired results), misses of retrieval drive most failures, and
  quality rises release by release while latency and cost follow the model;
- the newest run is a release candidate whose prompt change breaks one slice (billing × hard)
  while the overall mean stays put; it is built from the approved baseline's outcomes, so
  the slice drop and the flat overall delta hold at any seed (the baseline's failure causes
  in evallib.analysis.rag's classes, 35% retrieval / 20% both / 35% generation / 10% other, are
  calibrated: a retrieval miss is "both" when its answer is also unfaithful);
- production traffic follows the live release, with daily and weekly cycles, an incident day
  and a canary whose broken tool schema triples tool errors (so its quality dips); users'
  thumbs follow the true quality, the judge does too except in one month
  when a cheaper judge model was swapped in (lenient and noisy).

Everything is vectorised with numpy and written as pyarrow tables through `Warehouse`; the
only Python loops are over runs and days, so the benchmark size (tens of millions of rows)
builds in minutes with memory bounded by one day of traffic.

The package follows that story: `params` (the model's numbers), `text` (the string
catalogue), `population` and `retrieval` (who asks what, and what is found), `outcomes` (who
answers correctly), `scores` (judge scores), `timeline` (releases, runs, drift, incident),
`offline` and `online` (the tables), `summary` and `build` (the entry point).
"""

from __future__ import annotations

from .build import build_demo
from .params import DATASET, REGRESSION_SLICE
from .summary import DemoSummary

__all__ = ["DemoSummary", "build_demo", "REGRESSION_SLICE", "DATASET"]
