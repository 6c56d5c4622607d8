"""`compare_runs` and `evallib compare` on real Parquet through DuckDB: a tiny warehouse
where the answer is known by hand, and the demo's planted slice regression."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from evallib import Warehouse, connect, queries
from evallib.analysis.compare import Comparison, MetricComparison, compare_runs
from evallib.cli import main
from evallib.errors import EvallibError
from evallib.stats import benjamini_hochberg, paired_test

METRIC_KEYS = ["metric", "kind", "n", "baseline", "candidate", "delta", "ci_low", "ci_high",
               "p_value", "test", "significant",  # DESIGN.md's keys, then ours
               "regressed", "improved", "unchanged", "min_detectable", "p_adjusted",
               "testable", "reason"]
SLICE_KEYS = ["slice", "metric", "n", "baseline", "candidate", "delta", "p_value",
              "p_adjusted", "significant", "ci_low", "ci_high", "testable", "reason"]

# 16 shared cases: 8 gold (every one flips pass → fail in "cand"), 8 silver (unchanged);
# region alternates eu/us. "base" also has a case the candidate dropped, "cand" one it added.
TIERS = ["gold"] * 8 + ["silver"] * 8
QUALITY_BASE = [0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.6, 0.7, 0.5, 0.5, 0.6, 0.6, 0.7, 0.7, 0.8, 0.8]
QUALITY_CAND = [0.6, 0.6, 0.6, 0.9, 0.8, 0.5, 0.7, 0.7, 0.4, 0.6, 0.6, 0.5, 0.8, 0.7, 0.9, 0.8]
CORRECT_BASE = [1.0] * 16
CORRECT_CAND = [0.0] * 8 + [1.0] * 8


def _case(i: int) -> dict:
    return {"case_id": f"c{i:02d}", "input": f"q{i}",
            "strata": {"tier": TIERS[i], "region": "eu" if i % 2 else "us"}}


def _scores(ids: list[int], correct: list[float], quality: list[float], scorer: str) -> list:
    out = []
    for i, c, q in zip(ids, correct, quality, strict=True):
        out.append({"case_id": f"c{i:02d}", "metric": "correctness", "value": c,
                    "kind": "binary", "passed": c == 1.0, "scorer_version": "exact-1"})
        out.append({"case_id": f"c{i:02d}", "metric": "quality", "value": q,
                    "kind": "continuous", "passed": q >= 0.6, "scorer_version": scorer})
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("compare") / "warehouse")
    wh = Warehouse(root)
    shared = list(range(16))
    run = {"dataset": "support", "dataset_version": "d1", "judge_version": "j1"}
    wh.record_run({**run, "run_id": "base", "name": "base", "approved": True,
                   "started_at": datetime(2026, 1, 1, tzinfo=UTC)},
                  [_case(i) for i in shared] + [{"case_id": "gone", "strata": {"tier": "gold"}}],
                  _scores(shared, CORRECT_BASE, QUALITY_BASE, "judge-1"))
    wh.record_run({**run, "run_id": "cand", "name": "cand",
                   "started_at": datetime(2026, 1, 2, tzinfo=UTC)},
                  [_case(i) for i in shared] + [{"case_id": "new", "strata": {"tier": "gold"}}],
                  _scores(shared, CORRECT_CAND, QUALITY_CAND, "judge-1"))
    wh.record_run({"dataset": "support", "dataset_version": "d2", "judge_version": "j2",
                   "run_id": "other", "name": "other",
                   "started_at": datetime(2026, 1, 3, tzinfo=UTC)},
                  [_case(i) for i in shared],
                  _scores(shared, CORRECT_CAND, QUALITY_CAND, "judge-2"))
    return root


@pytest.fixture(scope="module")
def con(tiny: str):
    c = connect(tiny)
    yield c
    c.close()


def test_paired_scores_align_by_case_and_carry_strata(con) -> None:
    pairs = queries.paired_scores(con, "cand", "base")
    assert pairs.height == 32  # 16 shared cases × 2 metrics; "gone"/"new" are unscored
    row = pairs.filter((pl.col("case_id") == "c01") & (pl.col("metric") == "quality")).row(
        0, named=True)
    assert (row["kind"], row["baseline"], row["candidate"]) == ("continuous", 0.6, 0.6)
    assert json.loads(row["strata_json"]) == {"tier": "gold", "region": "eu"}
    assert queries.case_sets(con, "cand", "base") == {"common": 16, "added": 1, "removed": 1}


def test_overall_metrics_match_direct_paired_tests(con) -> None:
    out = compare_runs(con, "cand", "base").to_json()
    assert list(out) == ["candidate", "baseline", "comparable", "warnings", "metrics", "slices",
                         "cluster"]
    assert (out["candidate"], out["baseline"], out["comparable"]) == ("cand", "base", True)
    assert out["slices"] == []
    by_metric = {m["metric"]: m for m in out["metrics"]}
    assert list(by_metric) == ["correctness", "quality"]
    for metric, kind, base, cand in [("correctness", "binary", CORRECT_BASE, CORRECT_CAND),
                                     ("quality", "continuous", QUALITY_BASE, QUALITY_CAND)]:
        m, r = by_metric[metric], paired_test(base, cand, kind)
        assert list(m) == METRIC_KEYS
        assert (m["kind"], m["n"], m["test"]) == (kind, 16, r.test)
        for key in ("baseline", "candidate", "delta", "ci_low", "ci_high", "p_value"):
            assert m[key] == pytest.approx(getattr(r, key)), key
    # significant: Benjamini–Hochberg over the (testable) overall metrics
    adjusted = benjamini_hochberg([by_metric[m]["p_value"] for m in by_metric])
    for m, p_adj in zip(by_metric.values(), adjusted, strict=True):
        assert m["p_adjusted"] == pytest.approx(p_adj) and m["significant"] == (p_adj < 0.05)
    # 8 regressions, no improvement: McNemar mid-p = P(X ≤ 0) = 1/256 with X ~ Bin(8, 1/2)
    assert by_metric["correctness"]["p_value"] == pytest.approx(1 / 256)
    assert by_metric["correctness"]["delta"] == pytest.approx(-0.5)


def test_case_counts_and_power_per_metric(con) -> None:
    by_metric = {m.metric: m for m in compare_runs(con, "cand", "base").metrics}
    correctness, quality = by_metric["correctness"], by_metric["quality"]
    assert (correctness.regressed, correctness.unchanged, correctness.improved) == (8, 8, 0)
    diffs = np.round(np.subtract(QUALITY_CAND, QUALITY_BASE), 9)
    assert (quality.regressed, quality.unchanged, quality.improved) == (
        (diffs < 0).sum(), (diffs == 0).sum(), (diffs > 0).sum())
    # continuous: (z_.975 + z_.8) · sd(d) / √n
    expected = (1.959964 + 0.841621) * np.std(diffs, ddof=1) / 4
    assert quality.min_detectable == pytest.approx(expected, rel=1e-4)
    assert quality.power_line.startswith("with n = 16, drops smaller than ")
    assert "points of the pass rate" in correctness.power_line


def test_cli_table_shows_case_counts(tiny: str, capsys) -> None:
    assert main(["--warehouse", tiny, "compare", "cand", "base"]) == 0
    text = capsys.readouterr().out
    assert "cases -/=/+" in text and "8/8/0" in text


def test_slice_where_every_case_flips_is_flagged_after_bh(con) -> None:
    out = compare_runs(con, "cand", "base", by=[["tier"], ["tier", "region"]]).to_json()
    slices = out["slices"]
    assert all(list(s) == SLICE_KEYS for s in slices)
    # tier: 2 values; tier × region: 4 cells; each × 2 metrics
    assert len(slices) == 12
    gold = next(s for s in slices if s["slice"] == {"tier": "gold"}
                and s["metric"] == "correctness")
    assert (gold["n"], gold["baseline"], gold["candidate"], gold["delta"]) == (8, 1.0, 0.0, -1.0)
    assert gold["p_value"] == pytest.approx(1 / 256)
    assert gold["significant"] is True
    silver = next(s for s in slices if s["slice"] == {"tier": "silver"}
                  and s["metric"] == "correctness")
    assert (silver["delta"], silver["p_value"], silver["significant"]) == (0.0, None, False)
    assert (silver["testable"], silver["reason"], silver["p_adjusted"]) == (
        False, "all pairs equal", None)
    # p_adjusted is BH over the testable slice × metric tests, each p a direct paired_test
    frame = pl.DataFrame({"i": range(16), "tier": TIERS,
                          "region": ["eu" if i % 2 else "us" for i in range(16)]})
    expected = []
    for s in slices:
        idx = frame.filter(pl.all_horizontal(pl.col(k) == v for k, v in s["slice"].items()))["i"]
        base, cand, kind = ((CORRECT_BASE, CORRECT_CAND, "binary")
                            if s["metric"] == "correctness"
                            else (QUALITY_BASE, QUALITY_CAND, "continuous"))
        r = paired_test(np.take(base, idx), np.take(cand, idx), kind)
        assert (s["n"], s["testable"]) == (r.n, r.testable)
        assert s["p_value"] == (None if np.isnan(r.p_value) else pytest.approx(r.p_value))
        expected.append(r.p_value if r.testable else np.nan)
    adjusted = benjamini_hochberg(expected)
    assert [np.nan if s["p_adjusted"] is None else s["p_adjusted"] for s in slices] == \
        pytest.approx(list(adjusted), nan_ok=True)
    assert [s["significant"] for s in slices] == [bool(p < 0.05) for p in adjusted]


def test_nan_becomes_null() -> None:
    one = paired_test([1.0], [0.0], "binary")  # n < 2: no interval
    row = MetricComparison("m", "binary", one.n, one.baseline, one.candidate, one.delta,
                           one.ci_low, one.ci_high, one.p_value, one.test, False)
    out = Comparison("a", "b", True, [], [row], []).to_json()
    assert (out["metrics"][0]["ci_low"], out["metrics"][0]["ci_high"]) == (None, None)
    assert '"ci_low": null' in json.dumps(out)


def test_comparability_guard_warns_for_each_difference(con) -> None:
    out = compare_runs(con, "other", "base")
    assert out.comparable is False
    text = " | ".join(out.warnings)
    assert "dataset_version" in text and "'d2'" in text and "'d1'" in text
    assert "judge_version" in text and "'j2'" in text
    assert "scorer_version for quality" in text and "judge-2" in text
    assert "scorer_version for correctness" not in text
    assert compare_runs(con, "cand", "base").comparable is True


def test_unknown_run_or_key_is_an_error(con, tiny: str, capsys) -> None:
    with pytest.raises(EvallibError, match="nope"):
        compare_runs(con, "nope", "base")
    with pytest.raises(EvallibError, match="unknown baseline run 'gone'"):
        compare_runs(con, "cand", "gone")
    with pytest.raises(EvallibError, match="nokey"):
        compare_runs(con, "cand", "base", by=[["tier", "nokey"]])
    assert main(["--warehouse", tiny, "compare", "nope", "base"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["--warehouse", tiny, "compare", "cand", "base", "--by", "nokey"]) == 2
    assert "nokey" in capsys.readouterr().err


def test_cli_json_and_table(tiny: str, capsys) -> None:
    assert main(["--warehouse", tiny, "compare", "cand", "base", "--by", "tier",
                 "--by", "tier,region", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["slices"]) == 12 and out["comparable"] is True
    assert main(["--warehouse", tiny, "compare", "other", "base", "--by", "tier"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "NOT COMPARABLE:" and lines[1].startswith("warning:")
    first_slice = next(i for i, ln in enumerate(lines) if ln.startswith("slice"))
    assert lines[first_slice + 1].startswith("tier=gold") and "YES" in lines[first_slice + 1]


@pytest.fixture(scope="module")
def demo400(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo at its default golden-set size (400 cases): at the shared fixture's 200, the
    planted slice has 26 cases and its p (0.008) does not survive BH over 150 tests."""
    from evallib.demo import build_demo

    root = tmp_path_factory.mktemp("demo400") / "warehouse"
    build_demo(str(root), days=60, online_per_day=20, cases=400, seed=7)
    return str(root)


def _demo_pair(root: str) -> tuple[str, str]:
    with connect(root) as c:
        runs = queries.runs_overview(c)
    cand = runs.row(0, named=True)
    assert cand["approved"] is False
    base = runs.filter(pl.col("approved") & (pl.col("started_at") < cand["started_at"]))
    return cand["run_id"], base["run_id"][0]


def test_demo_planted_slice_flagged_while_overall_is_not(demo400: str, capsys) -> None:
    cand, base = _demo_pair(demo400)
    assert main(["--warehouse", demo400, "compare", cand, base, "--by", "query_type,difficulty",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["comparable"] is True
    overall = next(m for m in out["metrics"] if m["metric"] == "correctness")
    assert overall["significant"] is False and overall["p_value"] >= 0.05
    planted = next(s for s in out["slices"] if s["metric"] == "correctness"
                   and s["slice"] == {"query_type": "billing", "difficulty": "hard"})
    assert planted["delta"] < 0 and planted["p_adjusted"] < 0.05 and planted["significant"]
    flagged = {(s["slice"]["query_type"], s["slice"]["difficulty"]) for s in out["slices"]
               if s["significant"] and s["metric"] == "correctness"}
    assert flagged == {("billing", "hard")}


def test_small_demo_planted_slice_is_the_worst_correctness_slice(demo_root: str) -> None:
    cand, base = _demo_pair(demo_root)
    with connect(demo_root) as c:
        out = compare_runs(c, cand, base, by=[["query_type", "difficulty"]])
    assert not next(m for m in out.metrics if m.metric == "correctness").significant
    worst = min((s for s in out.slices if s.metric == "correctness"), key=lambda s: s.delta)
    assert worst.slice == {"query_type": "billing", "difficulty": "hard"}
    assert worst.p_value < 0.05


# --- untestable slices and clustered cases (issue 21) ------------------------------------


@pytest.fixture(scope="module")
def threads(tmp_path_factory: pytest.TempPathFactory) -> str:
    """210 cases: topics a, b, c of 60 cases each with 7 regressions and no improvement
    (McNemar mid-p 2⁻⁷ = 0.0078 each), and 30 one-case topics. Cases come in conversations
    of 3 (stratum conversation_id); in topic a the regressions are whole conversations."""
    root = str(tmp_path_factory.mktemp("threads") / "warehouse")
    wh = Warehouse(root)
    topics = [t for t in "abc" for _ in range(60)] + [f"single{i}" for i in range(30)]
    regressed = {i for t in range(3) for i in range(60 * t, 60 * t + 7)}
    cases = [{"case_id": f"c{i:03d}", "input": f"question {i // 3}",
              "strata": {"topic": topic, "conversation_id": f"conv{i // 3}"}}
             for i, topic in enumerate(topics)]

    def scores(cand: bool) -> list[dict]:
        return [{"case_id": f"c{i:03d}", "metric": "correctness", "kind": "binary",
                 "value": 0.0 if cand and i in regressed else 1.0}
                for i in range(len(topics))]

    run = {"dataset": "threads", "dataset_version": "d1", "judge_version": "j1"}
    wh.record_run({**run, "run_id": "base", "name": "base",
                   "started_at": datetime(2026, 1, 1, tzinfo=UTC)}, cases, scores(False))
    wh.record_run({**run, "run_id": "cand", "name": "cand",
                   "started_at": datetime(2026, 1, 2, tzinfo=UTC)}, cases, scores(True))
    return root


def test_untestable_slices_do_not_dilute_bh(threads: str) -> None:
    """Before: the 30 one-case slices counted with p = 1, and the three real ones ended at
    p_adj = 0.0078 · 33/3 = 0.086: nothing flagged. Now the family is the 3 testable ones."""
    with connect(threads) as con:
        out = compare_runs(con, "cand", "base", by=[["topic"]])
    real = [s for s in out.slices if s.slice["topic"] in "abc"]
    singles = [s for s in out.slices if s.slice["topic"].startswith("single")]
    assert [s.p_value for s in real] == pytest.approx([2**-7] * 3)
    assert [s.p_adjusted for s in real] == pytest.approx([2**-7] * 3)
    assert all(s.significant and s.verdict == "worse" for s in real)
    assert len(singles) == 30 and all(not s.testable and np.isnan(s.p_value)
                                      and np.isnan(s.p_adjusted) for s in singles)
    assert singles[0].verdict == "untestable (n = 1: n < 2)"
    old = benjamini_hochberg([2**-7] * 3 + [1.0] * 30)[:3]  # the family as it was
    assert old == pytest.approx([0.0859375] * 3) and (old > 0.05).all()


def test_shared_grouping_key_warns_until_clustered(threads: str, capsys) -> None:
    with connect(threads) as con:
        plain = compare_runs(con, "cand", "base")
        clustered = compare_runs(con, "cand", "base", cluster="conversation_id")
        by_input = compare_runs(con, "cand", "base", cluster="input")
    assert any("cases share conversation_id (70 values held by 2 or more cases)" in w
               and "--cluster conversation_id" in w for w in plain.warnings)
    assert not any("cases share" in w for w in clustered.warnings)
    assert (clustered.cluster, clustered.n_clusters) == ("conversation_id", 70)
    m = clustered.metrics[0]
    assert m.test == "clustered t (CR2)" and m.n == 210
    # 21 regressions in 7 conversations of 3 (topic a), 7 scattered (b, c): clustering
    # widens the interval, and the detectable drop grows with it
    assert m.ci_high - m.ci_low > plain.metrics[0].ci_high - plain.metrics[0].ci_low
    assert m.min_detectable > plain.metrics[0].min_detectable
    keys = np.array([f"conv{i // 3}" for i in range(210)])
    regressed = np.isin(np.arange(210), [i for t in range(3) for i in range(60 * t, 60 * t + 7)])
    want = paired_test(np.ones(210), np.where(regressed, 0.0, 1.0), "binary", clusters=keys)
    assert (m.p_value, m.ci_low) == (pytest.approx(want.p_value), pytest.approx(want.ci_low))
    assert by_input.metrics[0].p_value == pytest.approx(m.p_value)  # same groups of 3
    assert main(["--warehouse", threads, "compare", "cand", "base", "--cluster",
                 "conversation_id", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cluster"] == "conversation_id"
    assert main(["--warehouse", threads, "compare", "cand", "base", "--cluster",
                 "conversation_id"]) == 0
    assert "clustered by conversation_id (70 clusters)" in capsys.readouterr().out
    assert main(["--warehouse", threads, "compare", "cand", "base", "--cluster", "nope"]) == 2
    assert "stratum key 'nope' to cluster by" in capsys.readouterr().err
