"""Retrieval aggregates and failure attribution (`evallib.queries` + `evallib.analysis.rag`) against
hand computations on a small hand-written warehouse, against the per-query reference
functions of `evallib.scorers.retrieval`, and against what the demo planted; then the RAG
page in a real Streamlit runtime."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from functools import partial
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

import evallib
from evallib import Warehouse, queries
from evallib.analysis import rag
from evallib.authoring.datasets import Dataset
from evallib.scorers import (
    citation_hit_rate,
    context_precision,
    mrr,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from tests.apptest import open_app

L3 = math.log2(3)

# case: (correctness or None, faithfulness passed or None, error, [(doc, relevant, cited)])
CASES = {
    "c1": (0.0, True, None, [("d1", False, False), ("d2", True, True), ("d3", False, False)]),
    "c2": (0.0, False, None, [("d4", False, False), ("d5", False, False)]),
    "c3": (0.0, True, None, [("d6", False, True), ("d7", False, False)]),
    "c4": (0.0, False, None, [("d8", None, False), ("d9", None, False)]),  # no gold doc
    "c5": (0.0, True, None, []),  # nothing logged
    "c6": (1.0, True, None, [("d1", True, True)]),
    "c7": (None, None, "timeout", []),
    # d2 retrieved at two ranks (two passages of one document): each row counts
    "c8": (1.0, None, None, [("d2", True, False), ("d2", True, False), ("d3", True, False)]),
    "c9": (0.0, None, None, [("x", False, False), ("y", False, False), ("z", True, False)]),
}
# hand-classified at k = 5 (c1: d2 at 2; c9: z at 3) and at k = 2 (c9's z is out of reach)
EXPECTED_K5 = {"c1": "generation", "c2": "both", "c3": "retrieval", "c4": "other",
               "c5": rag.NOT_ATTRIBUTED, "c6": "pass", "c7": "error", "c8": "pass",
               "c9": "generation"}
EXPECTED_K1 = EXPECTED_K5 | {"c1": "retrieval", "c9": "retrieval"}


def _rows(cases: dict, run_strata: dict[str, str] | None = None):
    case_rows, scores, retrievals = [], [], []
    for cid, (correct, faithful, error, docs) in cases.items():
        strata = {"topic": "billing" if cid in ("c1", "c2", "c3") else "account"}
        case_rows.append({"case_id": cid, "strata": run_strata or strata, "input": f"q {cid}",
                          "output": f"a {cid}", "error": error})
        scores.append({"case_id": cid, "metric": "correctness", "value": correct,
                       "kind": "binary", "passed": None if correct is None else correct == 1})
        if faithful is not None:
            scores.append({"case_id": cid, "metric": "faithfulness",
                           "value": 5.0 if faithful else 2.0, "kind": "ordinal",
                           "passed": faithful})
        retrievals += [{"case_id": cid, "doc_id": d, "rank": r, "relevant": rel, "cited": cit}
                       for r, (d, rel, cit) in enumerate(docs, 1)]
    return case_rows, scores, retrievals


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rag")
    wh = Warehouse(root)
    t0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    wh.record_run({"run_id": "r1", "name": "r1", "dataset": "hand", "started_at": t0},
                  *_rows(CASES))
    # r2: c2 (both) and c6 (pass) swap fates; c3 passes; c9 errors
    later = dict(CASES)
    later["c2"] = (1.0, True, None, CASES["c2"][3])
    later["c6"] = (0.0, False, None, [("d1", False, False)])
    later["c3"] = (1.0, True, None, CASES["c3"][3])
    later["c9"] = (None, None, "boom", CASES["c9"][3])
    wh.record_run({"run_id": "r2", "name": "r2", "dataset": "hand",
                   "started_at": t0 + dt.timedelta(days=1)}, *_rows(later))
    con = evallib.connect(root)
    yield root, con
    con.close()


def _metric(frame: pl.DataFrame, metric: str, k: int | None) -> dict:
    row = frame.filter((pl.col("metric") == metric) & (
        pl.col("k").is_null() if k is None else pl.col("k") == k))
    assert row.height == 1, (metric, k)
    return row.row(0, named=True)


def test_retrieval_metrics_match_hand_computation(hand) -> None:
    _, con = hand
    m = queries.retrieval_metrics(con, "r1", 10)
    # judged cases: c1, c2, c3, c6, c8, c9 (c4 has no gold document, c5 no retrieval)
    assert {r["n"] for r in m.iter_rows(named=True) if r["metric"] != "citation_hit_rate"} \
        == {6}
    # recall@1: only c6 (1 of 1) and c8 (1 of its 3 relevant rows) → (1 + 1/3) / 6
    assert _metric(m, "recall", 1)["mean"] == pytest.approx((1 + 1 / 3) / 6)
    # recall@2: + c1 (d2 at 2), c8 2 of 3
    assert _metric(m, "recall", 2)["mean"] == pytest.approx((2 + 2 / 3) / 6)
    assert _metric(m, "recall", 3)["mean"] == pytest.approx(4 / 6)  # + c9 (z at 3), c8 all
    assert _metric(m, "hit_rate", 1)["mean"] == pytest.approx(2 / 6)
    assert _metric(m, "hit_rate", 1)["kind"] == "binary"
    # precision@2: c1 1/2, c6 1/2 (one document, denominator still k), c8 2/2
    assert _metric(m, "precision", 2)["mean"] == pytest.approx((0.5 + 0.5 + 1) / 6)
    # MRR@5: c1 1/2, c6 1, c8 1, c9 1/3; MRR@2 loses c9
    assert _metric(m, "mrr", 5)["mean"] == pytest.approx((0.5 + 1 + 1 + 1 / 3) / 6)
    assert _metric(m, "mrr", 2)["mean"] == pytest.approx((0.5 + 1 + 1) / 6)
    # nDCG@3: c1 (1/log2 3) / 1, c6 1, c8 1, c9 (1/log2 4) / 1
    assert _metric(m, "ndcg", 3)["mean"] == pytest.approx((1 / L3 + 1 + 1 + 0.5) / 6)
    # context precision@5: c1 (1/2), c6 1, c8 (1/1 + 2/2 + 3/3) / 3, c9 1/3
    assert _metric(m, "context_precision", 5)["mean"] == pytest.approx(
        (0.5 + 1 + 1 + 1 / 3) / 6)
    # citation hit rate: c1 cites d2 (relevant), c3 cites d6 (not), c6 cites d1 (relevant)
    cites = _metric(m, "citation_hit_rate", None)
    assert (cites["n"], cites["mean"]) == (3, pytest.approx(2 / 3))


def test_retrieval_metrics_agree_with_the_per_query_functions(hand) -> None:
    """The SQL aggregates are the mean of `evallib.scorers.retrieval` over judged cases,
    each retrievals row a passage of its own (``doc@rank``); a miss has a relevant document
    nobody retrieved ("gold")."""
    _, con = hand
    m = queries.retrieval_metrics(con, "r1", 10)
    judged = {cid: docs for cid, (*_, docs) in CASES.items()
              if docs and any(rel is not None for _, rel, _ in docs)}
    per_case = []
    for docs in judged.values():
        ids = [f"{d}@{rank}" for rank, (d, _, _) in enumerate(docs, 1)]
        retrieved = ids
        relevant = {i for i, (_, rel, _) in zip(ids, docs, strict=True) if rel} or {"gold"}
        cited = [i for i, (_, _, c) in zip(ids, docs, strict=True) if c]
        per_case.append((retrieved, relevant, cited))
    fns = {"recall": recall_at_k, "precision": precision_at_k, "ndcg": ndcg_at_k,
           "mrr": lambda r, rel, k: mrr(r, rel, k),
           "context_precision": lambda r, rel, k: context_precision(r, rel, k)}
    for k in range(1, 11):
        for name, fn in fns.items():
            want = sum(fn(r, rel, k) for r, rel, _ in per_case) / len(per_case)
            assert _metric(m, name, k)["mean"] == pytest.approx(want), (name, k)
    hits = [citation_hit_rate(c, rel) for _, rel, c in per_case if c]
    assert _metric(m, "citation_hit_rate", None)["mean"] == pytest.approx(sum(hits) / len(hits))


def test_golden_relevant_docs_count_in_recall(tmp_path: Path) -> None:
    """A stored golden set knows relevant documents no retrieval found: recall drops."""
    ds = Dataset("golden", [{"case_id": "a", "input": "q", "relevant_docs": ["d1", "d2"]},
                            {"case_id": "b", "input": "q2", "relevant_docs": ["d9"]}])
    wh = Warehouse(tmp_path)
    ds.store(wh)
    wh.record_run({"run_id": "g", "name": "g", "dataset": "golden",
                   "dataset_version": ds.version},
                  [{"case_id": "a"}, {"case_id": "b"}], [],
                  [{"case_id": "a", "doc_id": "d1", "rank": 1, "relevant": True},
                   {"case_id": "a", "doc_id": "x", "rank": 2, "relevant": False},
                   {"case_id": "b", "doc_id": "d9", "rank": 1, "relevant": True}])
    m = queries.retrieval_metrics(evallib.connect(tmp_path), "g", 3)
    assert _metric(m, "recall", 2)["mean"] == pytest.approx((0.5 + 1) / 2)  # a: d1 of 2
    # nDCG@2 of a: d1 at 1 → 1, ideal puts both relevant first: 1 + 1/log2 3
    assert _metric(m, "ndcg", 2)["mean"] == pytest.approx((1 / (1 + 1 / L3) + 1) / 2)


@pytest.mark.parametrize(("k", "expected"), [(5, EXPECTED_K5), (1, EXPECTED_K1)])
def test_classify_by_hand(hand, k: int, expected: dict[str, str]) -> None:
    _, con = hand
    items = rag.classify(queries.attribution_items(con, "r1", k, "correctness",
                                                   "faithfulness"))
    assert dict(items.select("case_id", "outcome").iter_rows()) == expected
    failing = queries.attribution_items(con, "r1", k, "correctness", "faithfulness", True)
    assert sorted(failing["case_id"]) == sorted(c for c, o in expected.items()
                                                if o in (*rag.CLASSES, rag.NOT_ATTRIBUTED))


def test_details_show_what_the_generator_read(hand) -> None:
    _, con = hand
    d = queries.attribution_details(con, "r1", 2, "correctness", ["c1", "c4", "c5"])
    top = dict(d.select("case_id", "top_k").iter_rows())
    assert top == {"c1": "d1, d2 ✓ (cited)", "c4": "d8, d9", "c5": None}
    assert d.filter(pl.col("case_id") == "c1")["input"].item() == "q c1"


def test_generation_by_evidence_by_hand(hand) -> None:
    _, con = hand
    gen = queries.generation_by_evidence(con, "r1", 5)
    cell = {(e, m): (n, mean) for e, m, n, mean in
            gen.select("evidence", "metric", "n", "mean").iter_rows()}
    # correctness (c7 errored: unscored; c5 has no retrievals): relevant in top 5 = c1, c6,
    # c8, c9 → 2 of 4 correct; no relevant = c2, c3 → 0 of 2; no gold document = c4
    assert cell[("relevant in top k", "correctness")] == (4, 0.5)
    assert cell[("no relevant in top k", "correctness")] == (2, 0.0)
    assert cell[("no gold document", "correctness")] == (1, 0.0)
    assert cell[(None, "correctness")] == (7, 2 / 7)
    # cites_relevant, of the judged answers citing something: c1 (d2 ✓), c6 (d1 ✓), c3 (d6)
    assert cell[("relevant in top k", "cites_relevant")] == (2, 1.0)
    assert cell[("no relevant in top k", "cites_relevant")] == (1, 0.0)
    assert cell[(None, "cites_relevant")][0] == 3


def test_classify_without_a_faithfulness_metric_calls_every_miss_retrieval(hand) -> None:
    _, con = hand
    items = rag.classify(queries.attribution_items(con, "r1", 5, "correctness", ""))
    assert items.filter(pl.col("case_id") == "c2")["outcome"].item() == "retrieval"


def test_attribution_table_counts_and_shares(hand) -> None:
    _, con = hand
    items = rag.classify(queries.attribution_items(con, "r1", 5, "correctness",
                                                   "faithfulness"))
    overall = rag.attribution_table(items)
    # failing attributed at k = 5: c1, c9 generation; c2 both; c3 retrieval; c4 other
    assert dict(overall.select("class", "n").iter_rows()) == {
        "retrieval": 1, "both": 1, "generation": 2, "other": 1}
    row = overall.row(0, named=True)
    assert (row["failing"], row["not_attributed"], row["scored"]) == (5, 1, 8)
    assert overall["share"].sum() == pytest.approx(1.0)
    gen = overall.filter(pl.col("class") == "generation").row(0, named=True)
    assert gen["ci_low"] < 0.4 < gen["ci_high"]
    per = rag.attribution_table(items, "topic")
    billing = per.filter(pl.col("stratum") == "billing")
    assert dict(billing.select("class", "n").iter_rows()) == {
        "retrieval": 1, "both": 1, "generation": 1, "other": 0}
    assert billing["failing"][0] == 3


def test_shift_and_transitions_against_a_baseline(hand) -> None:
    _, con = hand
    r1, r2 = (rag.classify(queries.attribution_items(con, r, 5, "correctness",
                                                     "faithfulness")) for r in ("r1", "r2"))
    moves = {(b, c): n for b, c, n in rag.transitions(r1, r2).iter_rows()}
    # c7 errored in both and c9 errors in r2: not compared; c6's d1 is judged irrelevant in
    # r2 and its answer unfaithful: pass → both
    assert moves == {("both", "pass"): 1, ("retrieval", "pass"): 1, ("pass", "both"): 1,
                     ("generation", "generation"): 1, ("other", "other"): 1,
                     (rag.NOT_ATTRIBUTED, rag.NOT_ATTRIBUTED): 1, ("pass", "pass"): 1}
    shift = rag.attribution_shift(r1, r2)
    assert shift["n_cases"].unique().to_list() == [7]
    both = shift.filter(pl.col("class") == "both").row(0, named=True)
    # c2 both → pass, c6 pass → both: the count holds, the share of failures grows
    assert (both["baseline_n"], both["candidate_n"], both["delta_n"]) == (1, 1, 0)
    assert both["baseline_share"] == pytest.approx(1 / 4)  # c1..c4 (c9 errors in r2)
    assert both["candidate_share"] == pytest.approx(1 / 3)  # c1, c4, c6
    assert both["p_value"] == pytest.approx(1.0)  # one pair each way: mid-p = 1
    retrieval = shift.filter(pl.col("class") == "retrieval").row(0, named=True)
    assert (retrieval["baseline_n"], retrieval["candidate_n"]) == (1, 0)
    # mid-p of 1 discordant pair: 2·P(X < 0) + P(X = 0), X ~ Bin(1, ½) = 0.5
    assert retrieval["p_value"] == pytest.approx(0.5)
    # 7 cases cannot reach p < 0.05 in any row: none counts in the BH family (before, each
    # row counted, the unchanged ones at p = 1), so none is adjusted or significant
    generation = shift.filter(pl.col("class") == "generation").row(0, named=True)
    assert generation["p_value"] is None  # no case changed: nothing was tested
    assert shift["p_adjusted"].null_count() == shift.height
    assert not shift["significant"].any()


def test_shift_bh_counts_only_rows_that_can_reach_alpha() -> None:
    """Twelve cases moved from generation to retrieval failures beside classes that did not
    move: the family is the two rows that changed, so both stay significant."""
    n = 40
    outcome = ["generation"] * 12 + ["pass"] * 28
    base = pl.DataFrame({"case_id": [f"c{i}" for i in range(n)], "strata_json": None,
                         "outcome": outcome})
    cand = base.with_columns(pl.Series("outcome", ["retrieval"] * 12 + ["pass"] * 28))
    shift = rag.attribution_shift(base, cand)
    moved = shift.filter(pl.col("class").is_in(["generation", "retrieval"]))
    assert moved["p_value"].to_list() == pytest.approx([0.5**12] * 2)  # mid-p, 0 of 12
    assert moved["p_adjusted"].to_list() == pytest.approx([0.5**12] * 2)
    assert moved["significant"].all()
    assert shift.filter(pl.col("class").is_in(["both", "other"]))["p_adjusted"] \
        .null_count() == 2


def test_online_traces_in_the_window_only(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    ts = [dt.datetime(2026, 3, d, 12, tzinfo=dt.UTC) for d in (1, 2, 9)]
    traces = [{"trace_id": f"t{i}", "timestamp": t, "strata": {"topic": "x"},
               "refusal": i == 1} for i, t in enumerate(ts)]
    scores = [{"trace_id": f"t{i}", "timestamp": t, "metric": "correctness", "value": 0.0,
               "kind": "binary", "passed": False} for i, t in enumerate(ts)]
    retrievals = [{"trace_id": "t0", "timestamp": ts[0], "doc_id": "a", "rank": 1,
                   "relevant": True},
                  {"trace_id": "t1", "timestamp": ts[1], "doc_id": "b", "rank": 1,
                   "relevant": False},
                  {"trace_id": "t2", "timestamp": ts[2], "doc_id": "c", "rank": 1,
                   "relevant": True}]
    wh.record_online(traces, scores, None, retrievals)
    con = evallib.connect(tmp_path)
    start, end = dt.date(2026, 3, 1), dt.date(2026, 3, 7)
    counts = queries.online_attribution_counts(con, start, end, 5, "correctness",
                                               "faithfulness")
    assert dict(counts.select("outcome", "w").iter_rows()) == {"generation": 1, "retrieval": 1}
    items = queries.online_failures(con, start, end, 5, "correctness", "faithfulness",
                                    rag.CLASSES)
    assert dict(items.select("trace_id", "outcome").iter_rows()) == {
        "t0": "generation", "t1": "retrieval"}
    assert rag.classify(items)["outcome"].to_list() == items["outcome"].to_list()
    m = queries.online_retrieval_metrics(con, start, end, 3)
    assert _metric(m, "recall", 1)["mean"] == pytest.approx(0.5)
    gen = queries.online_generation_by_evidence(con, start, end, 5)
    refusal = gen.filter((pl.col("metric") == "refusal") & pl.col("evidence").is_null())
    assert (refusal["n"].item(), refusal["mean"].item()) == (2, 0.5)


def test_online_failures_join_their_trace_of_the_week_before(tmp_path: Path) -> None:
    """A score joins its trace and retrievals of the week up to its day (an asynchronous
    judge scores later); the faithfulness verdict is the one scored the same day."""
    wh = Warehouse(tmp_path)
    day = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    traces = [{"trace_id": t, "timestamp": day - dt.timedelta(days=back),
               "strata": {"topic": t}, "error": "boom" if t == "err" else None}
              for t, back in (("late", 3), ("old", 8), ("err", 0), ("same", 0))]
    docs = [{"trace_id": t, "timestamp": day - dt.timedelta(days=back), "doc_id": "d",
             "rank": 2, "relevant": False}
            for t, back in (("late", 3), ("old", 8), ("err", 0), ("same", 0))]
    scores = [{"trace_id": t, "timestamp": day, "metric": m, "value": 0.0, "kind": "binary",
               "passed": False} for t in ("late", "old", "err", "same")
              for m in ("correctness", "faithfulness")]
    wh.record_online(traces, scores, None, docs)
    con = evallib.connect(tmp_path)
    d = day.date()
    # "old" has no trace in the week before its score; "err" errored
    items = queries.online_failures(con, d, d, 5, "correctness", "faithfulness",
                                    rag.CLASSES)
    assert dict(items.select("trace_id", "outcome").iter_rows()) == {
        "late": "both", "same": "both"}
    counts = queries.online_attribution_counts(con, d, d, 5, "correctness", "faithfulness")
    assert counts.select("outcome", "w").rows() == [("both", 1), ("both", 1)]
    plain = queries.online_attribution_counts(con, d, d, 5, "correctness", "")
    assert set(plain["outcome"]) == {"retrieval"}  # no faithfulness metric: faithful unknown
    days = queries.online_failure_days(con, d, d, 5, "correctness", "faithfulness",
                                       ("both",), "topic", "late")
    assert days.rows() == [(d, 1)]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory):
    from evallib.demo import build_demo

    root = tmp_path_factory.mktemp("ragdemo")
    summary = build_demo(root, days=20, online_per_day=40, cases=300, seed=11,
                         today=dt.date(2026, 3, 20))
    con = evallib.connect(root)
    yield summary, con
    con.close()


def test_demo_attribution_is_what_the_demo_planted(small_demo) -> None:
    summary, con = small_demo
    items = rag.classify(queries.attribution_items(
        con, summary.approved_baseline_run_id, 5, "correctness", "faithfulness"))
    shares = dict(rag.attribution_table(items).select("class", "share").iter_rows())
    assert shares == pytest.approx(summary.failure_attribution, abs=1e-12)
    assert shares["retrieval"] + shares["both"] == pytest.approx(0.55, abs=0.02)
    assert shares["generation"] == pytest.approx(0.35, abs=0.02)


def test_demo_candidate_hallucinates_in_the_regressed_slice(small_demo) -> None:
    """The candidate's planted slice regression shows up as more generation and 'both'
    failures in billing × hard."""
    summary, con = small_demo
    base, cand = (rag.classify(queries.attribution_items(con, r, 5, "correctness",
                                                         "faithfulness"))
                  for r in (summary.approved_baseline_run_id, summary.regressed_run_id))
    def in_slice(items: pl.DataFrame) -> pl.DataFrame:
        qt = rag.with_stratum(items, "query_type")["stratum"]
        diff = rag.with_stratum(items, "difficulty")["stratum"]
        return items.filter((qt == "billing") & (diff == "hard"))

    n = {name: dict(in_slice(f)["outcome"].value_counts().iter_rows())
         for name, f in (("base", base), ("cand", cand))}
    assert n["cand"].get("generation", 0) > n["base"].get("generation", 0)
    assert n["cand"].get("retrieval", 0) == 0  # every slice miss hallucinates there


# --- the page ---------------------------------------------------------------------------


_open = partial(open_app, "pages/rag.py", timeout=90)


def _raw_attribution(root: str, run: str, k: int = 5) -> dict[str, str]:
    """The rules of evallib.analysis.rag recomputed from the raw Parquet with polars."""
    scores = pl.read_parquet(f"{root}/scores/run_id={run}/*.parquet")
    cases = pl.read_parquet(f"{root}/cases/run_id={run}/*.parquet")
    ret = pl.read_parquet(f"{root}/retrievals/run_id={run}/*.parquet")
    failing = scores.filter((pl.col("metric") == "correctness") & ~pl.col("passed")) \
        .join(cases.filter(pl.col("error").is_null()), on="case_id")["case_id"]
    faithful = dict(scores.filter(pl.col("metric") == "faithfulness")
                    .select("case_id", "passed").iter_rows())
    docs = ret.group_by("case_id").agg(
        pl.col("relevant").count().alias("judged"),
        (pl.col("relevant") & (pl.col("rank") <= k)).any().alias("hit"))
    docs = {r["case_id"]: r for r in docs.iter_rows(named=True)}
    out = {}
    for cid in failing:
        d = docs[cid]
        out[cid] = ("other" if d["judged"] == 0 else "generation" if d["hit"] else
                    "both" if faithful.get(cid) is False else "retrieval")
    return out


@pytest.fixture
def demo_app(monkeypatch: pytest.MonkeyPatch, demo_root: str) -> str:
    monkeypatch.setenv("EVALLIB_WAREHOUSE", demo_root)
    return demo_root


def _newest(root: str) -> str:
    runs = pl.read_parquet(f"{root}/runs/*.parquet").sort("started_at", descending=True)
    return runs["run_id"][0]


def _listed(at: AppTest) -> pl.DataFrame:
    return next(pl.from_pandas(d.value) for d in at.dataframe if "top_k" in d.value.columns)


def test_page_attributes_the_newest_run_as_the_raw_files_say(demo_app) -> None:
    newest = _newest(demo_app)
    at = _open()
    assert at.selectbox(key="rag_run").value == newest
    want = _raw_attribution(demo_app, newest)
    cards = {m.label.split(" ", 1)[1]: int(m.value) for m in at.metric
             if m.label.split(" ", 1)[-1] in rag.CLASSES}
    assert cards == {c: sum(v == c for v in want.values()) for c in rag.CLASSES}
    assert dict(_listed(at).select("case_id", "class").iter_rows()) == want
    shift = next(d.value for d in at.dataframe if "p adjusted" in d.value.columns)
    assert set(shift["class"]) == set(rag.CLASSES)  # the approved baseline is the default


def test_page_lists_one_class_and_downloads_it(demo_app, monkeypatch) -> None:
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    served: dict[str, bytes] = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def spy(self, data, mimetype, kind, filename=None):
        served[filename] = data
        return store(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    want = {c for c, v in _raw_attribution(demo_app, _newest(demo_app)).items() if v == "both"}
    at = _open(rag_class="both", rag_key="query_type")
    listed = _listed(at)
    assert set(listed["case_id"]) == want and set(listed["class"]) == {"both"}
    rows = list(csv.DictReader(io.StringIO(
        served["failures-both-All_cases.csv"].decode("utf-8-sig"), newline="")))
    assert [r["case_id"] for r in rows] == listed["case_id"].to_list()
    at = _open(rag_class="both", rag_key="query_type", rag_slice="billing")
    assert set(_listed(at)["case_id"]) == {
        c for c in want if c in set(pl.read_parquet(f"{demo_app}/cases/run_id="
                                                    f"{_newest(demo_app)}/*.parquet")
                                    .filter(pl.col("strata").map.get("query_type")
                                            == "billing")["case_id"])}


def test_page_online_source(demo_app) -> None:
    at = _open(source="Online")
    text = "\n".join(str(c.value) for c in at.caption)
    assert "Production traces" in text and "failing traces" in text
    assert any(m.label.startswith("recall@5") for m in at.metric)
    with evallib.connect(demo_app) as con:
        first, last = queries.online_date_range(con).row(0)
    # the sidebar's whole window by default; its newest day when asked
    assert f"Production traces {first} → {last}" in text
    day = _open(source="Online", rag_window="last day")
    assert f"Production traces {last} → {last}" in "\n".join(str(c.value) for c in day.caption)
    shown = {m.label: m.value for m in at.metric}
    assert shown != {m.label: m.value for m in day.metric}  # other traces, other numbers


def _raw_online_classes(root: str, k: int = 5) -> pl.DataFrame:
    """Every failing correctness score of the demo's traffic, classified from the raw
    Parquet files by the rules of `evallib.analysis.rag`: its trace and retrievals of the week up to
    the score's day, the faithfulness verdict of the same day. trace_id, date, stratum
    (query_type), outcome."""
    def read(table: str) -> pl.DataFrame:
        return pl.read_parquet(f"{root}/{table}/*/*.parquet", hive_partitioning=True)

    scores = read("online_scores")
    failed = pl.coalesce(~pl.col("passed"), (pl.col("kind") == "binary") & (pl.col("value") == 0))
    answers = scores.filter((pl.col("metric") == "correctness") & failed) \
        .select("trace_id", "date", "strata_json")
    week = (pl.col("date_right") <= pl.col("date")) \
        & (pl.col("date_right") >= pl.col("date") - pl.duration(days=7))
    keys = answers.select("trace_id", "date").unique()
    traces = keys.join(read("online_traces").select("trace_id", "date", "error"),
                       on="trace_id").filter(week).group_by("trace_id", "date").agg(
        pl.col("error").is_not_null().any().alias("errored"))
    docs = keys.join(read("online_retrievals").select("trace_id", "date", "rank", "relevant"),
                     on="trace_id").filter(week).group_by("trace_id", "date").agg(
        pl.col("relevant").is_not_null().any().alias("judged"),
        pl.col("rank").filter(pl.col("relevant")).min().alias("first_relevant"))
    faith = scores.filter(pl.col("metric") == "faithfulness").group_by("trace_id", "date").agg(
        pl.coalesce("passed", pl.when(pl.col("kind") == "binary").then(pl.col("value") == 1))
        .any(ignore_nulls=True).alias("faithful"))
    rows = (answers.join(traces, on=["trace_id", "date"]).filter(~pl.col("errored"))
            .join(docs, on=["trace_id", "date"], how="left")
            .join(faith, on=["trace_id", "date"], how="left"))
    outcome = (pl.when(pl.col("judged").is_null()).then(pl.lit(rag.NOT_ATTRIBUTED))
               .when(~pl.col("judged")).then(pl.lit("other"))
               .when(pl.col("first_relevant") <= k).then(pl.lit("generation"))
               .when(pl.col("faithful") == False).then(pl.lit("both"))  # noqa: E712
               .otherwise(pl.lit("retrieval")))
    return rows.select("trace_id", "date", outcome.alias("outcome"),
                       pl.col("strata_json").str.json_path_match("$.query_type")
                       .alias("stratum"))


def test_page_online_attribution_as_the_raw_files_say(demo_app) -> None:
    """Online, over the sidebar's days (from the rollups): the class cards and the listed
    traces of one class in one slice are those the raw files give."""
    want = _raw_online_classes(demo_app)
    at = _open(source="Online", rag_class="both", rag_key="query_type", rag_slice="billing")
    cards = {m.label.split(" ", 1)[1]: int(m.value) for m in at.metric
             if m.label.split(" ", 1)[-1] in rag.CLASSES}
    assert cards == {c: want.filter(pl.col("outcome") == c).height for c in rag.CLASSES}
    assert min(cards.values()) > 0
    both = want.filter((pl.col("outcome") == "both") & (pl.col("stratum") == "billing")) \
        .sort("date", "trace_id", descending=True)
    listed = _listed(at)
    assert set(listed["class"]) == {"both"} and listed.height == min(both.height, 2000) > 0
    assert listed["trace_id"].to_list() == both["trace_id"].head(2000).to_list()
    assert listed["input"].is_not_null().all()  # the details of each: its trace's texts
