"""evaluate(): concurrency, per-case errors and timeouts, what a task reports, epochs, the run
it records."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from evallib import Dataset, EvallibError, TaskResult, connect, evaluate
from evallib.authoring.datasets import Case
from evallib.scorers import classification, exact_match, retrieval_metric
from evallib.scorers.base import Sample, Score, Scorer

CASES = [Case(f"c{i}", f"q{i}", expected=f"a{i}", strata={"query_type": "billing" if i % 2
                                                           else "account"},
              relevant_docs=("d1",) if i < 2 else ()) for i in range(6)]
DATASET = Dataset("support", CASES)


def _frame(root, sql: str, **params):
    with connect(root) as con:
        return con.sql(sql, params=params or None).pl()


def test_async_task_runs_concurrently_up_to_the_limit(tmp_path):
    in_flight, seen = 0, []
    full = asyncio.Event()

    async def task(q: str) -> str:
        nonlocal in_flight
        in_flight += 1
        seen.append(in_flight)
        if in_flight == 3:
            full.set()
        await full.wait()  # the first three wait for each other: overlap is certain
        in_flight -= 1
        return "a" + q[1:]

    result = evaluate(task, DATASET, exact_match(), name="conc", concurrency=3,
                      warehouse=tmp_path, progress=False)
    assert max(seen) == 3
    assert result.metrics == {"exact_match": 1.0} and result.errors == 0


def test_sync_task_in_threads_errors_and_timeouts_are_recorded_per_case(tmp_path):
    release = threading.Event()

    def task(q: str) -> str:
        if q == "q1":
            raise ValueError("backend said no")
        if q == "q2":
            release.wait(30)  # hangs until the test ends: the per-case timeout cuts it
        return "a" + q[1:]

    try:
        result = evaluate(task, DATASET, [exact_match(), retrieval_metric("recall", 1)],
                          name="errors", timeout=0.5, warehouse=tmp_path, progress=False)
    finally:
        release.set()
    assert result.errors == 2 and result.n_cases == 6
    assert result.n_unscored["exact_match"] == 2 and result.n_scored["exact_match"] == 4
    cases = _frame(tmp_path, "SELECT case_id, error, output FROM cases ORDER BY case_id")
    errors = dict(zip(cases["case_id"], cases["error"], strict=True))
    assert errors["c1"] == "ValueError: backend said no"
    assert errors["c2"] == "timed out after 0.5 s"
    assert errors["c0"] is None and cases["output"][0] == "a0"
    scores = _frame(tmp_path, "SELECT value, rationale FROM scores WHERE case_id = 'c1' "
                              "AND metric = 'exact_match'")
    assert scores["value"][0] is None
    assert scores["rationale"][0] == "unscored: the task failed: ValueError: backend said no"


def test_what_the_task_reports_is_recorded(tmp_path):
    async def task(q: str) -> TaskResult:
        return TaskResult("a" + q[1:], retrieved=["d2", "d1"], cited=["d1"],
                          context=["passage"], tokens_in=100, tokens_out=20, cost_usd=0.002)

    result = evaluate(task, DATASET, [exact_match(), retrieval_metric("mrr")], name="rag",
                      model="gpt-x", prompt_version="p7", warehouse=tmp_path, progress=False)
    assert result.task_cost_usd == pytest.approx(0.012)
    assert result.metrics["mrr"] == 0.5 and result.n_unscored["mrr"] == 4  # no relevant docs
    case = _frame(tmp_path, "SELECT * FROM cases WHERE case_id = 'c0'").row(0, named=True)
    assert (case["tokens_in"], case["tokens_out"], case["cost_usd"]) == (100, 20, 0.002)
    assert case["latency_ms"] > 0 and case["strata"] == {"query_type": "account"}
    docs = _frame(tmp_path, "SELECT doc_id, rank, relevant, cited FROM retrievals "
                            "WHERE case_id = 'c0' ORDER BY rank")
    assert docs.rows() == [("d2", 1, False, False), ("d1", 2, True, True)]
    nodocs = _frame(tmp_path, "SELECT relevant FROM retrievals WHERE case_id = 'c4'")
    assert nodocs["relevant"].to_list() == [None, None]  # no ground truth: unknown, not False
    run = _frame(tmp_path, "SELECT * FROM runs").row(0, named=True)
    assert run["run_id"] == result.run_id and run["source"] == "evaluate"
    assert (run["model"], run["prompt_version"], run["dataset"]) == ("gpt-x", "p7", "support")
    assert run["dataset_version"] == DATASET.version
    stored = _frame(tmp_path, "SELECT count(*) AS n FROM dataset_cases "
                              "WHERE dataset_version = $v", v=DATASET.version)
    assert stored["n"][0] == 6
    sv = _frame(tmp_path, "SELECT DISTINCT scorer, scorer_version FROM scores "
                          "WHERE metric = 'exact_match'")
    assert sv.rows() == [("exact_match", exact_match().scorer_version)]


class _FakeJudge(Scorer):
    """Stands in for an LLM judge: has a judge_version and a cost."""

    kind, family, version = "binary", "fake_judge", "1"
    judge_version = "judge-model#abc123"

    def _score(self, sample: Sample) -> Score:
        return self.make(1, rationale="fine", cost_usd=0.01)


class _Broken(Scorer):
    kind, family = "binary", "broken"

    async def score(self, sample: Sample) -> list[Score]:
        if sample.case_id == "c0":
            raise RuntimeError("scorer bug")
        return [Score(metric="broken", value=3.0, kind="binary")]  # not 0/1


def test_judge_version_cost_and_bad_scorers_do_not_stop_the_run(tmp_path):
    result = evaluate(lambda q: "a" + q[1:], DATASET,
                      [_FakeJudge("judged"), _Broken("broken"), classification()],
                      name="judged", warehouse=tmp_path, progress=False)
    assert result.judge_version == "judge-model#abc123"
    assert result.judge_cost_usd == pytest.approx(0.06)
    assert result.n_unscored["broken"] == 6 and result.n_scored["judged"] == 6
    assert result.summaries["classification"]["accuracy"] == 1.0
    runs = _frame(tmp_path, "SELECT judge_version FROM runs")
    assert runs["judge_version"].to_list() == ["judge-model#abc123"]
    why = _frame(tmp_path, "SELECT case_id, rationale FROM scores WHERE metric = 'broken' "
                           "ORDER BY case_id")["rationale"].to_list()
    assert why[0] == "unscored: scorer raised RuntimeError: scorer bug"
    assert why[1] == "unscored: invalid score: binary value 3.0 is not 0 or 1"


def test_epochs_record_the_mean_pass_k_and_flip_rate(tmp_path):
    calls: Counter[str] = Counter()

    def flaky(q: str) -> str:
        calls[q] += 1
        if q == "q0":  # passes 2 of 4 epochs
            return "a0" if calls[q] % 2 else "wrong"
        if q == "q1":
            raise ValueError("always fails")
        if q == "q2":  # passes 3 of 4
            return "wrong" if calls[q] == 4 else "a2"
        return "a" + q[1:]

    result = evaluate(flaky, DATASET, exact_match(), name="epochs", epochs=4, concurrency=1,
                      warehouse=tmp_path, progress=False)
    assert sum(calls.values()) == 24
    rows = _frame(tmp_path, "SELECT case_id, metric, value, kind, passed FROM scores "
                            "ORDER BY case_id, metric")
    got = {(r["case_id"], r["metric"]): (r["value"], r["kind"], r["passed"])
           for r in rows.to_dicts()}
    assert got["c0", "exact_match"] == (0.5, "continuous", False)
    assert got["c0", "exact_match.pass^4"] == (0.0, "binary", False)
    assert got["c0", "exact_match.flip_rate"][0] == pytest.approx(2 / 3)  # 4 of 6 pairs differ
    assert got["c2", "exact_match.flip_rate"][0] == pytest.approx(0.5)  # 3 of 6 pairs differ
    assert got["c3", "exact_match"] == (1.0, "continuous", True)
    assert got["c3", "exact_match.pass^4"] == (1.0, "binary", True)
    assert got["c3", "exact_match.flip_rate"][0] == 0.0
    assert got["c1", "exact_match.pass^4"][0] is None  # never scored: unknown, not failed
    assert result.metrics["exact_match.pass^4"] == pytest.approx(3 / 5)
    error = _frame(tmp_path, "SELECT error FROM cases WHERE case_id = 'c1'")["error"][0]
    assert error == "4/4 epochs failed: ValueError: always fails"


def test_bad_arguments_are_refused_before_any_call(tmp_path):
    called = []
    with pytest.raises(EvallibError, match="two scorers are named 'exact_match'"):
        evaluate(called.append, DATASET, [exact_match(), exact_match(normalize=False)],
                 name="x", warehouse=tmp_path)
    with pytest.raises(EvallibError, match="not a Scorer"):
        evaluate(called.append, DATASET, [lambda s: 1], name="x", warehouse=tmp_path)
    with pytest.raises(EvallibError, match="at least 1"):
        evaluate(called.append, DATASET, exact_match(), name="x", epochs=0, warehouse=tmp_path)
    with pytest.raises(EvallibError, match="unknown arguments: modle"):
        evaluate(called.append, DATASET, exact_match(), name="x", modle="gpt",
                 warehouse=tmp_path)
    evaluate(lambda q: q, DATASET, exact_match(), name="x", run_id="fixed", warehouse=tmp_path,
             progress=False)
    with pytest.raises(EvallibError, match="'fixed' is already in the warehouse"):
        evaluate(called.append, DATASET, exact_match(), name="x", run_id="fixed",
                 warehouse=tmp_path)
    assert called == []


def test_a_dataset_file_path_works_and_runs_inside_a_running_loop(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_text('{"case_id": "x", "input": "q", "expected": "q"}\n')

    async def main():  # e.g. a notebook: evaluate() is called with a loop running
        return evaluate(lambda q: q, path, exact_match(), name="nb", warehouse=tmp_path / "w",
                        progress=False)

    result = asyncio.run(main())
    assert result.metrics == {"exact_match": 1.0} and result.dataset == "golden"


def test_the_example_runs_end_to_end_against_a_local_openai_server(tmp_path, capsys):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from evallib.cli import main
    from tests.openai_server import OpenAIServer, Reply

    root = Path(__file__).resolve().parents[2]
    verdict = Reply.json({"verdicts": [{"criterion": "faithfulness", "reason": "all in context",
                                        "score": 5}]})
    with OpenAIServer(verdict) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "test",
               "JUDGE_MODEL": "judge-1"}
        done = subprocess.run([sys.executable, "examples/support_bot_eval.py", "--warehouse",
                               str(tmp_path)], cwd=root, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert server.count == 3 and server.requests[0]["model"] == "judge-1"
    assert main(["runs", "--json", "--warehouse", str(tmp_path)]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert (run["name"], run["n_cases"], run["source"]) == ("support-bot", 3, "evaluate")
    with connect(tmp_path) as con:
        means = dict(con.sql("SELECT metric, avg(value) FROM scores WHERE run_id = $r "
                             "GROUP BY metric", params={"r": run["run_id"]}).fetchall())
        judge = con.sql("SELECT judge_version FROM runs").fetchall()[0][0]
    assert means == {"contains": 1.0, "recall@2": 1.0, "faithfulness": 5.0}
    assert judge.startswith("judge-1#")
