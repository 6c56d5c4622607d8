"""`evallib import promptfoo`: a real promptfoo --output file (tests/fixtures/make_fixtures.py)
becomes one run per provider x prompt with every field where the dashboard reads it; a
second import adds nothing; a file that is not promptfoo's exits 2."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from evallib import connect, queries
from evallib.analysis.compare import compare_runs
from evallib.cli import main

RESULTS = Path(__file__).parent.parent / "fixtures" / "promptfoo" / "results.json"
DOC = json.loads(RESULTS.read_text())


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _files(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    wh = str(tmp_path_factory.mktemp("promptfoo") / "wh")
    code, out, err = _cli("import", "promptfoo", str(RESULTS), "--warehouse", wh)
    assert code == 0, err
    return wh, out.split()


def _runs(wh: str) -> dict[tuple[str, str], dict]:
    with connect(wh) as con:
        return {(r["model"], r["prompt_version"]): r
                for r in queries.runs_overview(con).iter_rows(named=True)}


def test_one_run_per_provider_and_prompt(imported):
    wh, ids = imported
    runs = _runs(wh)
    assert set(runs) == {(p, q) for p in ("toy-v1", "toy-v2") for q in ("terse", "agent")}
    assert {r["run_id"] for r in runs.values()} == set(ids)
    for r in runs.values():
        assert (r["name"], r["dataset"], r["source"], r["n_cases"]) == \
            ("support bot smoke test", "support bot smoke test", "import:promptfoo", 12)
        assert r["started_at"].isoformat(timespec="milliseconds").replace("+00:00", "Z") == \
            DOC["results"]["timestamp"]
    # Every run of the file shares one test-suite version, so prompts and providers compare.
    assert len({r["dataset_version"] for r in runs.values()}) == 1


def test_every_result_lands_with_its_assertions_as_scores(imported):
    wh, _ = imported
    runs = _runs(wh)
    with connect(wh) as con:
        cases = {}
        for (provider, prompt), run in runs.items():
            for r in queries.case_scores(con, run["run_id"]).iter_rows(named=True):
                cases.setdefault((provider, prompt, r["strata"]["question"]), {})[r["metric"]] = r
    assert len(cases) == len(DOC["results"]["results"]) == 48
    errors = 0
    for res in DOC["results"]["results"]:
        got = cases[(res["provider"]["label"], res["prompt"]["label"], res["vars"]["question"])]
        case = next(iter(got.values()))
        assert dict(case["strata"]) == res["vars"]  # test vars → strata
        assert case["input"] == res["prompt"]["raw"]
        assert case["latency_ms"] == res["latencyMs"]
        assert (case["tokens_in"], case["tokens_out"]) == \
            (res["tokenUsage"]["prompt"], res["tokenUsage"]["completion"])
        assert case["cost_usd"] == pytest.approx(res["cost"])
        if res["failureReason"] == 2:  # the provider failed: an error, nothing scored
            errors += 1
            assert case["error"] == res["error"] and case["output"] is None
            assert {m: r["value"] for m, r in got.items()} == \
                {"pass": None, "correctness": None, "next_step": None, "latency": None}
            continue
        assert (case["output"], case["error"]) == (res["response"]["output"], None)
        assert json.loads(case["expected"])[0]["value"] == res["vars"]["expected"]  # rendered
        assert (got["pass"]["value"], got["pass"]["passed"]) == \
            (float(res["success"]), res["success"])
        for c in res["gradingResult"]["componentResults"]:
            metric = c["assertion"].get("metric") or c["assertion"]["type"]
            assert (got[metric]["value"], got[metric]["passed"], got[metric]["rationale"]) == \
                (c["score"], c["pass"], c["reason"])
    assert errors == 4
    with connect(wh) as con:
        kinds = {r["metric"]: r["kind"] for r in queries.metrics(con).iter_rows(named=True)}
    assert kinds == {"pass": "binary", "correctness": "binary", "latency": "binary",
                     "next_step": "continuous"}


def test_two_providers_compare_case_by_case(imported):
    wh, _ = imported
    runs = _runs(wh)
    with connect(wh) as con:
        result = compare_runs(con, runs[("toy-v2", "agent")]["run_id"],
                              runs[("toy-v1", "agent")]["run_id"], by=[["query_type"]])
    assert result.comparable and not result.warnings
    by_metric = {m.metric: m for m in result.metrics}
    assert by_metric["correctness"].n == 11  # 12 tests, one never answered
    assert by_metric["correctness"].delta < 0  # toy-v2 forgets refunds on hard billing


def test_importing_the_file_again_adds_nothing(imported):
    wh, ids = imported
    before = _files(wh)
    code, out, err = _cli("import", "promptfoo", str(RESULTS), "--warehouse", wh)
    assert (code, sorted(out.split())) == (0, sorted(ids))
    assert err.count("already imported") == 4
    assert _files(wh) == before


def test_strata_option_keeps_only_the_named_vars(tmp_path):
    wh = str(tmp_path / "wh")
    code, _, _ = _cli("import", "promptfoo", str(RESULTS), "--strata", "query_type,difficulty",
                      "--warehouse", wh)
    assert code == 0
    with connect(wh) as con:
        keys = queries.strata_keys(con)
    assert dict(zip(keys["key"], keys["n_values"], strict=True)) == \
        {"query_type": 4, "difficulty": 2}


def _edited(tmp_path: Path, edit) -> str:
    doc = json.loads(RESULTS.read_text())
    edit(doc)
    p = tmp_path / "results.json"
    p.write_text(json.dumps(doc))
    return str(p)


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "results.json"
    p.write_text(text)
    return str(p)


BAD = [
    (lambda t: _write(t, '{"evalId": "x",\n "results": oops}'), ":2", "invalid JSON"),
    (lambda t: str(Path(__file__).parent.parent / "fixtures" / "inspect" / "epochs.json"),
     "field 'results.version'", "not a promptfoo --output JSON file"),
    (lambda t: str(Path(__file__).parent.parent / "fixtures" / "otel" / "traces.json"),
     "field 'results'", "not a promptfoo --output JSON file"),
    (lambda t: _edited(t, lambda d: d["results"].update(version=2)), "field 'results.version'",
     "version 2 is not supported"),
    (lambda t: _edited(t, lambda d: d["results"]["results"][3].pop("provider")),
     "field 'results.results[3].provider'", "is required"),
    (lambda t: _edited(t, lambda d: d["results"].update(results=[])),
     "field 'results.results'", "non-empty list"),
    (lambda t: _edited(t, lambda d: d["results"]["results"][5].update(latencyMs="slow")),
     "field 'results.results[5].latencyMs'", "'slow' is not a number"),
    (lambda t: _edited(t, lambda d: d["results"]["results"][7]["gradingResult"]
                       ["componentResults"][0].update(score="high")),
     "field 'results.results[7].gradingResult.componentResults[0].score'",
     "'high' is not a number"),
]


@pytest.mark.parametrize(("make", "where", "words"), BAD)
def test_a_file_that_is_not_promptfoo_output_exits_2_naming_it(tmp_path, make, where, words):
    wh = tmp_path / "wh"
    path = make(tmp_path)
    code, out, err = _cli("import", "promptfoo", path, "--warehouse", str(wh))
    assert code == 2 and out == ""
    assert path in err and where in err and words in err
    assert "Traceback" not in err
    assert not wh.exists() or not _files(str(wh))
