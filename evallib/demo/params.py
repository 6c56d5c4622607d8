"""The numbers of the demo's generative model: strata mixes, latent effects, the planted
story's sizes, model prices and sampling shares. Calibration changes happen here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASET = "support-golden"
QUERY_TYPES = ("billing", "technical", "account", "product", "policy")
DIFFICULTIES = ("easy", "medium", "hard")
EDGE_CASES = ("none", "ambiguous", "multi_hop", "out_of_scope", "adversarial")
SEGMENTS = ("free", "pro", "enterprise")
STRATA_KEYS = ("query_type", "difficulty", "edge_case", "user_segment")
AMBIGUOUS, MULTI_HOP, OUT_OF_SCOPE, ADVERSARIAL = 1, 2, 3, 4
REGRESSION_SLICE = {"query_type": "billing", "difficulty": "hard"}

# Stratum mixes: the golden set over-samples hard, edge and enterprise cases; production is
# mostly easy billing/account questions from free users.
GOLDEN_QUERY_TYPE = (0.28, 0.27, 0.17, 0.16, 0.12)
GOLDEN_DIFFICULTY = {0: (0.20, 0.30, 0.50)}  # billing: proration and tax cases are hard
GOLDEN_DIFFICULTY_OTHER = (0.32, 0.42, 0.26)
GOLDEN_EDGE = (0.71, 0.10, 0.09, 0.06, 0.04)
GOLDEN_SEGMENT = (0.35, 0.35, 0.30)
PROD_QUERY_TYPE = (0.34, 0.20, 0.27, 0.12, 0.07)
PROD_DIFFICULTY = (0.50, 0.35, 0.15)
PROD_EDGE = (0.87, 0.07, 0.04, 0.015, 0.005)
PROD_SEGMENT = (0.62, 0.28, 0.10)

# The latent model (calibrated so the approved baseline fails ~21% of cases, of which ~55%
# are retrieval misses, ~35% generation errors, ~10% out-of-scope cases without a gold doc).
# A failed retrieval miss mostly answers from the wrong documents it was given (faithful to
# them, still wrong); about a third of them make claims no document supports: both failed.
MU_DIFFICULTY = np.array([-1.0, 0.0, 0.9])
MU_EDGE = np.array([0.0, 0.5, 0.6, 0.4, 0.7])
MU_QUERY_TYPE = np.array([0.1, 0.2, -0.2, -0.1, 0.0])
NU_DIFFICULTY = np.array([-0.5, 0.0, 0.5])
NU_EDGE = np.array([0.0, 0.4, 0.7, 0.0, 0.2])
HIT_BONUS = 1.85  # a retrieved gold document makes a correct answer much likelier
OUT_OF_SCOPE_BONUS = 1.0  # declining needs no document
RUN_NOISE = 0.45
FIRST_SKILL, BASELINE_SKILL = -0.75, -0.10
RETRIEVERS = (("hybrid-bm25-e5", 0.75), ("hybrid-bm25-e5+rerank", 1.10))
SLICE_DROP = 0.28  # the candidate's correctness drop in REGRESSION_SLICE
OVERALL_DELTA = 0.004  # … while its overall paired delta stays at +0.4 points
# The baseline's failure mix (evallib.analysis.rag's classes: retrieval + both = the retrieval
# misses).
FAILURE_CAUSES = {"retrieval": 0.35, "both": 0.20, "generation": 0.35, "other": 0.10}
FAITHFUL = 4.0  # faithfulness passes from 4 on the 1-5 scale (scores._METRICS)

KB_PER_TOPIC = 150
JUDGE_MODEL = "o3-2025-04-16"
DRIFT_JUDGE_MODEL = "gpt-4.1-nano-2025-04-14"
RUBRIC = "rubric-3f2a9c"
JUDGE_VERSION = f"{JUDGE_MODEL}/{RUBRIC}"

# Online sampling: the sampler keeps ~7% of production; the online judge scores 40% of the
# sampled traces and retrieval details are logged for half of those (judge and log budgets).
JUDGED_SHARE, RETRIEVAL_LOG_SHARE = 0.40, 0.50
# Users who got a wrong answer leave feedback more often (thumbs, ratings): the feedback
# sample holds more failures than the traffic does, as real feedback does.
THUMBS_SHARE = {"correct": 0.10, "wrong": 0.35}
RATING_SHARE = {"correct": 0.02, "wrong": 0.08}
LABELS_PER_MONTH = 300
LABELERS = ("ana.r", "ben.k", "chen.l", "dana.m")
# The online judge's noise on the latent margin, and the raters' (a flipped label): its
# Krippendorff alpha against people is ~0.9 (calibrated: the interval clears 0.8) outside the
# drift month. A second rater labels a quarter of the labelled traces (inter-rater agreement).
JUDGE_NOISE, LABEL_NOISE, SECOND_RATER_SHARE = 0.10, 0.01, 0.25


@dataclass(frozen=True)
class _Model:
    name: str
    latency_ms: float  # median end-to-end latency of a RAG answer
    price_in: float  # USD per 1M tokens
    price_out: float


MODELS = (
    _Model("gpt-4o-mini-2024-07-18", 1400.0, 0.15, 0.60),
    _Model("gpt-4.1-mini-2025-04-14", 1700.0, 0.40, 1.60),
    _Model("gpt-4.1-2025-04-14", 2600.0, 2.00, 8.00),
)

_US_PER_DAY = 86_400_000_000
