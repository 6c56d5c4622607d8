"""The gate's `judge_calibrated` rule: a run whose judge version is not calibrated against
human labels (no labels, or Krippendorff's alpha not clearly above the threshold) fails;
on the demo the candidate's judge passes and a run scored by the drift month's judge fails."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from evallib import Warehouse, connect
from evallib.analysis.gate import PolicyError, junit, markdown, parse_policy, run_gate
from evallib.cli import main

TS = datetime(2026, 3, 2, 9, tzinfo=UTC)
RULE = 'metric = "correctness"\njudge_calibrated = 0.8'


def _warehouse(root: Path, n_labels: int = 200) -> str:
    """Two runs, one scored by judge@good and one by judge@bad; production traces scored by
    both judges, which people labelled: good agrees with them, bad is a coin toss. Also a
    run whose scores carry no scorer_version (its run's judge_version names the judge)."""
    rng = np.random.default_rng(0)
    truth = (rng.random(n_labels) < 0.6).astype(float)
    good = np.where(rng.random(n_labels) < 0.02, 1 - truth, truth)
    bad = (rng.random(n_labels) < 0.6).astype(float)
    ids = [f"t{i:03d}" for i in range(n_labels)]
    wh = Warehouse(root)
    wh.record_online(
        traces=[{"trace_id": t, "timestamp": TS, "output": "x"} for t in ids],
        scores=[{"trace_id": t, "timestamp": TS, "metric": "correctness", "kind": "binary",
                 "value": float(v[i]), "scorer_version": version}
                for version, v, part in (("judge@good", good, ids[: n_labels // 2]),
                                         ("judge@bad", bad, ids[n_labels // 2:]))
                for i, t in enumerate(ids) if t in part])
    wh.record_human_labels([{"trace_id": t, "metric": "correctness", "value": truth[i],
                             "labeler": "ana", "labeled_at": TS + timedelta(days=1)}
                            for i, t in enumerate(ids)])
    for k, judge in enumerate(("judge@good", "judge@bad", None)):
        wh.record_run({"run_id": f"run-{k}", "name": f"run-{k}", "dataset": "support",
                       "approved": k == 0, "judge_version": judge or "judge@good",
                       "started_at": TS + timedelta(days=k)},
                      cases=[{"case_id": f"c{i}", "input": "q"} for i in range(20)],
                      scores=[{"case_id": f"c{i}", "metric": m, "kind": "binary",
                               "value": 1.0, "scorer_version": judge}
                              for i in range(20) for m in ("correctness", "safety")])
    return str(root)


def _gate(root: str, candidate: str, text: str = RULE):
    with connect(root) as con:
        return run_gate(con, candidate, parse_policy(tomllib.loads(f"[[rules]]\n{text}"),
                                                     "policy.toml"), baseline="run-0")


def test_a_calibrated_judge_passes_and_an_uncalibrated_one_fails(tmp_path):
    root = _warehouse(tmp_path)
    ok = _gate(root, "run-0")
    assert ok.verdict == "pass"
    (o,) = ok.outcomes
    assert o.status == "pass" and o.n == 100 and o.observed > 0.8
    assert "judge@good: alpha" in o.message and "calibrated" in o.message
    bad = _gate(root, "run-1")
    (o,) = bad.outcomes
    assert bad.verdict == "fail" and o.observed < 0.8
    assert "judge@bad" in o.message and "not calibrated" in o.message
    # the run's judge_version names the judge when its scores carry no scorer_version
    assert _gate(root, "run-2").verdict == "pass"
    # the reports render the rule
    md = markdown(bad)
    assert "judge_calibrated" in md and "alpha ≥ 0.800" in md
    assert 'failures="1"' in junit(bad)


def test_no_labels_is_not_calibrated(tmp_path):
    root = _warehouse(tmp_path)
    result = _gate(root, "run-0", 'metric = "safety"\njudge_calibrated = 0.8')
    (o,) = result.outcomes
    assert result.verdict == "fail" and o.n == 0 and np.isnan(o.observed)
    assert "no human labels of safety it scored" in o.message


def test_the_threshold_is_the_alphas_lower_bound(tmp_path):
    """judge@good's alpha interval lies around 0.9: a 0.99 bar fails it."""
    root = _warehouse(tmp_path)
    assert _gate(root, "run-0", 'metric = "correctness"\njudge_calibrated = 0.99') \
        .verdict == "fail"


@pytest.mark.parametrize(("extra", "message"), [
    ('by = ["tier"]', "'by' does not go with judge_calibrated"),
    ('where = {tier = "gold"}', "'where' does not go with judge_calibrated"),
])
def test_policy_mistakes_are_named(extra: str, message: str):
    with pytest.raises(PolicyError, match=message):
        parse_policy(tomllib.loads(f"[[rules]]\n{RULE}\n{extra}"), "p.toml")
    with pytest.raises(PolicyError, match=r"'judge_calibrated' = 1.5 is out of range "
                                          r"\(between 0 and 1\)"):
        parse_policy(tomllib.loads('[[rules]]\nmetric = "m"\njudge_calibrated = 1.5'), "p.toml")
    with pytest.raises(PolicyError, match="needs a scored metric"):
        parse_policy(tomllib.loads('[[rules]]\nmetric = "cost_usd"\njudge_calibrated = 0.8'),
                     "p.toml")


def test_on_the_demo_the_candidates_judge_passes_and_the_drift_judge_would_fail(
        demo_root: str, tmp_path: Path, capsys):
    """The candidate is scored by the judge the labels calibrate; a run re-scored by the
    drift month's judge fails the same rule; the verdict is recorded like any other."""
    import shutil

    import polars as pl

    root = str(tmp_path / "demo")
    shutil.copytree(demo_root, root)
    runs = pl.read_parquet(f"{root}/runs/*.parquet").sort("started_at")
    candidate = runs["run_id"][-1]
    policy = tmp_path / "policy.toml"
    policy.write_text(f"[[rules]]\n{RULE}\n")
    assert main(["gate", candidate, "--policy", str(policy), "--warehouse", root]) == 0
    assert "PASS" in capsys.readouterr().out
    drift = pl.read_parquet(f"{root}/online_scores/*/*.parquet", hive_partitioning=True) \
        .filter(pl.col("scorer_version").str.contains("nano"))["scorer_version"][0]
    cases = pl.read_parquet(f"{root}/cases/run_id={candidate}/*.parquet")
    Warehouse(root).record_run(
        {"run_id": "rejudged", "name": "rejudged", "dataset": runs["dataset"][-1],
         "started_at": datetime.now(UTC)},
        cases=[{"case_id": c, "input": "q"} for c in cases["case_id"]],
        scores=[{"case_id": c, "metric": "correctness", "kind": "binary", "value": 1.0,
                 "scorer_version": drift} for c in cases["case_id"]])
    assert main(["gate", "rejudged", "--policy", str(policy), "--warehouse", root]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "nano" in out and "not calibrated" in out
    with connect(root) as con:
        rows = con.sql("SELECT run_id, check_type, status FROM gate_results "
                       "ORDER BY run_id").pl().rows()
    assert rows == [(candidate, "judge_calibrated", "pass"),
                    ("rejudged", "judge_calibrated", "fail")]
