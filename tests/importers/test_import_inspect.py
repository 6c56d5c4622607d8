"""`evallib import inspect`: real Inspect AI logs (tests/fixtures/make_fixtures.py) land
where the dashboard reads them, a second import adds nothing, a file that is not a log
exits 2, and comparing the two runs finds the slice that really regressed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log, write_eval_log

from evallib import connect, queries
from evallib.analysis.compare import compare_runs
from evallib.cli import main

LOGS = Path(__file__).parent.parent / "fixtures" / "inspect"
LETTER = {"C": 1.0, "P": 0.5, "I": 0.0, "N": 0.0}


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _files(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


@pytest.fixture(scope="module")
def logs() -> dict[str, object]:
    """The logs as inspect_ai itself reads them: the truth to check against."""
    return {name: read_eval_log(str(LOGS / name))
            for name in ("baseline.eval", "candidate.eval", "epochs.json")}


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    wh = str(tmp_path_factory.mktemp("inspect") / "wh")
    code, out, err = _cli("import", "inspect", *(str(LOGS / n) for n in
                                                 ("baseline.eval", "candidate.eval",
                                                  "epochs.json")), "--warehouse", wh)
    assert code == 0, err
    ids = dict(zip(("baseline.eval", "candidate.eval", "epochs.json"), out.split(),
                   strict=True))
    return wh, ids


def test_one_run_per_log_with_its_metadata(imported, logs):
    wh, ids = imported
    with connect(wh) as con:
        runs = {r["run_id"]: r for r in queries.runs_overview(con).iter_rows(named=True)}
    assert set(runs) == set(ids.values())
    for name, log in logs.items():
        run = runs[ids[name]]
        assert run["run_id"] == f"inspect-{log.eval.eval_id}"
        assert (run["name"], run["model"], run["dataset"], run["source"]) == \
            ("support_qa", log.eval.model, "support-golden", "import:inspect")
        assert run["started_at"].isoformat() == log.eval.created
        assert run["git_sha"] == log.eval.revision.commit
        assert run["n_cases"] == len({s.id for s in log.samples})
    assert runs[ids["baseline.eval"]]["model"] == "toy/support-v1"
    # Same samples, same golden-set version: the two runs are comparable.
    assert runs[ids["baseline.eval"]]["dataset_version"] == \
        runs[ids["candidate.eval"]]["dataset_version"]


@pytest.mark.parametrize("name", ["baseline.eval", "candidate.eval"])
def test_every_sample_field_and_score_lands(imported, logs, name):
    wh, ids = imported
    with connect(wh) as con:
        rows = queries.case_scores(con, ids[name])  # what the Compare page shows per case
    by_case = {}
    for r in rows.iter_rows(named=True):
        by_case.setdefault(r["case_id"], {})[r["metric"]] = r
    log = logs[name]
    letters = set()
    for s in log.samples:
        got = by_case[str(s.id)]
        case = next(iter(got.values()))
        assert case["input"] == s.input and case["expected"] == s.target
        assert dict(case["strata"]) == {k: s.metadata[k]
                                        for k in ("query_type", "difficulty", "segment")}
        assert case["latency_ms"] == pytest.approx(s.working_time * 1000)
        if s.error:
            assert "upstream timeout" in case["error"] and case["output"] is None
            assert {m: (r["value"], r["rationale"][:27]) for m, r in got.items()} == {
                m: (None, "unscored: the sample failed") for m in
                ("includes", "completeness", "brevity")}
            continue
        [usage] = s.model_usage.values()
        assert (case["output"], case["error"]) == (s.output.completion, None)
        assert (case["tokens_in"], case["tokens_out"]) == (usage.input_tokens,
                                                           usage.output_tokens)
        assert case["cost_usd"] == pytest.approx(usage.total_cost)
        inc, comp, brev = (s.scores[m] for m in ("includes", "completeness", "brevity"))
        letters.add(comp.value)
        assert (got["includes"]["value"], got["includes"]["kind"], got["includes"]["passed"]) \
            == (LETTER[inc.value], "binary", inc.value == "C")
        assert (got["completeness"]["value"], got["completeness"]["kind"],
                got["completeness"]["passed"]) == (LETTER[comp.value], "ordinal",
                                                   comp.value == "C")
        assert got["completeness"]["rationale"] == comp.explanation
        assert (got["brevity"]["value"], got["brevity"]["kind"], got["brevity"]["passed"]) == \
            (brev.value, "continuous", None)
    assert letters == {"C", "P", "I", "N"}  # every letter was mapped, not just C and I


def test_epochs_give_the_mean_and_pass_k_rows_and_dict_scores_one_metric_per_key(
        imported, logs):
    wh, ids = imported
    log = logs["epochs.json"]
    with connect(wh) as con:
        rows = con.sql("SELECT case_id, metric, value, kind, passed FROM scores "
                       "WHERE run_id = $r", params={"r": ids["epochs.json"]}).pl()
    got = {(r["case_id"], r["metric"]): r for r in rows.iter_rows(named=True)}
    assert {m for _, m in got} == {
        "includes", "includes.pass^3", "includes.flip_rate", "completeness",
        "completeness.pass^3", "completeness.flip_rate", "brevity", "rubric.helpful",
        "rubric.helpful.pass^3", "rubric.helpful.flip_rate", "rubric.tone"}
    for sample_id in {s.id for s in log.samples}:
        tries = [LETTER[s.scores["includes"].value] for s in log.samples if s.id == sample_id]
        assert len(tries) == 3
        p = sum(tries) / 3
        assert got[(sample_id, "includes")]["value"] == pytest.approx(p)
        assert got[(sample_id, "includes.pass^3")]["value"] == float(all(tries))
        assert got[(sample_id, "includes.flip_rate")]["value"] == \
            pytest.approx(2 * p * (1 - p) * 3 / 2)
        tone = [s.scores["rubric"].value["tone"] for s in log.samples if s.id == sample_id]
        assert got[(sample_id, "rubric.tone")]["value"] == pytest.approx(sum(tone) / 3)


def test_importing_a_log_again_adds_nothing(imported):
    wh, ids = imported
    before = _files(wh)
    code, out, err = _cli("import", "inspect", str(LOGS / "baseline.eval"), "--warehouse", wh)
    assert (code, out.strip()) == (0, ids["baseline.eval"])
    assert "already imported" in err
    assert _files(wh) == before


def test_replace_reimports_the_run_once(tmp_path):
    wh = str(tmp_path / "wh")
    for extra in ([], ["--replace"]):
        code, out, _ = _cli("import", "inspect", str(LOGS / "epochs.json"), "--warehouse", wh,
                            *extra)
        assert code == 0
    with connect(wh) as con:
        runs = queries.runs_overview(con)
    assert runs.height == 1 and runs["n_cases"][0] == 8


def test_compare_finds_the_slice_that_really_regressed(imported):
    """support-v2 breaks billing x hard only (tests/fixtures/make_fixtures.py)."""
    wh, ids = imported
    cand, base = ids["candidate.eval"], ids["baseline.eval"]
    with connect(wh) as con:
        result = compare_runs(con, cand, base, by=[["query_type", "difficulty"]])
    assert result.comparable and not result.warnings
    worse = {(s.slice["query_type"], s.slice["difficulty"], s.metric)
             for s in result.slices if s.significant and s.delta < 0}
    assert worse == {("billing", "hard", "includes"), ("billing", "hard", "completeness")}
    code, out, _ = _cli("compare", cand, base, "--by", "query_type,difficulty", "--json",
                        "--warehouse", wh)
    flagged = [s for s in json.loads(out)["slices"] if s["significant"] and s["delta"] < 0]
    assert code == 0 and {s["slice"]["query_type"] for s in flagged} == {"billing"}


def _truncated(tmp_path: Path) -> str:
    p = tmp_path / "cut.eval"
    p.write_bytes((LOGS / "baseline.eval").read_bytes()[:5000])
    return str(p)


def _no_samples(tmp_path: Path) -> str:
    log = read_eval_log(str(LOGS / "epochs.json"))
    log.samples = None
    p = tmp_path / "header-only.json"
    write_eval_log(log, str(p))  # inspect_ai writes it, as --no-log-samples would
    return str(p)


def _promptfoo(tmp_path: Path) -> str:
    p = tmp_path / "results.json"
    shutil.copy(Path(__file__).parent.parent / "fixtures" / "promptfoo" / "results.json", p)
    return str(p)


def _text(tmp_path: Path) -> str:
    p = tmp_path / "notes.eval"
    p.write_text("not a zip\n")
    return str(p)


def _wrong_suffix(tmp_path: Path) -> str:
    p = tmp_path / "log.txt"
    p.write_text("{}")
    return str(p)


@pytest.mark.parametrize(("make", "words"), [
    (_truncated, "not an Inspect log"),
    (_text, "not an Inspect log"),
    (_promptfoo, "not an Inspect log"),
    (_wrong_suffix, "expected a .eval or .json file"),
    (_no_samples, "the log has no samples"),
    (lambda tmp: str(tmp / "missing.eval"), "no such file"),
])
def test_a_file_that_is_not_a_log_exits_2_naming_it(tmp_path, make, words):
    wh = tmp_path / "wh"
    path = make(tmp_path)
    code, out, err = _cli("import", "inspect", path, "--warehouse", str(wh))
    assert code == 2 and out == ""
    assert path in err and words in err
    assert not wh.exists() or not _files(str(wh))


def test_without_inspect_ai_the_message_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "inspect_ai.log", None)  # as if it were not installed
    code, _, err = _cli("import", "inspect", str(LOGS / "epochs.json"), "--warehouse",
                        str(tmp_path / "wh"))
    assert code == 2 and "pip install -e '.[inspect]'" in err


def test_from_the_shell_a_bad_file_exits_2_without_traceback(tmp_path):
    path = _wrong_suffix(tmp_path)
    done = subprocess.run([sys.executable, "-m", "evallib.cli", "import", "inspect", path,
                           "--warehouse", str(tmp_path / "wh")], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and path in done.stderr
