"""`evallib export-failures` and the CSV behind it, on a warehouse written by hand: which
cases fail or regress, every field as a column, and a file a spreadsheet opens safely."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from evallib import Warehouse, connect
from evallib.analysis.export import failing_cases, safe_cell, to_csv
from evallib.cli import main
from evallib.errors import EvallibError

NASTY = ['=HYPERLINK("http://evil","x")', "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "\rCR",
         'comma, "quote"\nand newline', "naïve café ✓"]


def _scores(case: str, correct: float | None, tone: float, passed_tone: bool | None,
            ) -> list[dict]:
    return [{"case_id": case, "metric": "correctness", "value": correct, "kind": "binary",
             "rationale": f"why {case}"},  # no pass flag: binary 0 is a failure
            {"case_id": case, "metric": "tone", "value": tone, "kind": "ordinal",
             "passed": passed_tone},
            {"case_id": case, "metric": "length", "value": 10.0, "kind": "continuous"}]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("export") / "warehouse")
    wh = Warehouse(root)
    cases = [{"case_id": f"c{i}", "strata": {"tier": "gold" if i < 3 else "free",
                                             "region": "eu"},
              "tags": ["critical"] if i == 0 else [], "input": NASTY[i], "output": f"out {i}",
              "expected": "x", "latency_ms": 100.0 + i} for i in range(5)]
    cases[4]["strata"] = {"tier": "free"}  # no region: an empty cell, not a crash
    run = {"dataset": "d", "started_at": datetime(2026, 1, 1, tzinfo=UTC)}
    base = (_scores("c0", 1, 5, True) + _scores("c1", 1, 5, True) + _scores("c2", 0, 5, True)
            + _scores("c3", 1, 2, False) + _scores("c4", 1, 5, True))
    cand = (_scores("c0", 0, 5, True) + _scores("c1", 1, 2, False) + _scores("c2", 0, 5, True)
            + _scores("c3", 1, 2, False) + _scores("c4", None, 5, True))
    wh.record_run({**run, "run_id": "base-1", "name": "base"}, cases, base)
    errored = [dict(c) for c in cases]
    errored[3]["error"] = "timeout after 30 s"
    wh.record_run({**run, "run_id": "cand-1", "name": "cand",
                   "started_at": datetime(2026, 1, 2, tzinfo=UTC)}, errored, cand)
    return root


@pytest.fixture(scope="module")
def con(root: str):
    c = connect(root)
    yield c
    c.close()


def _rows(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads UTF-8
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_failing_cases_and_why(con) -> None:
    df = failing_cases(con, "cand-1")
    # c0: correctness 0; c1: tone failed; c2: correctness 0; c3: tone failed + error;
    # c4: correctness unscored (not a failure), tone passed.
    assert dict(df.select("case_id", "failed").iter_rows()) == {
        "c0": "correctness", "c1": "tone", "c2": "correctness", "c3": "error, tone"}
    assert df.columns[:6] == ["run_id", "case_id", "failed", "strata.region", "strata.tier",
                              "tags"]
    for col in ("input", "output", "expected", "error", "latency_ms", "correctness",
                "correctness.passed", "correctness.rationale", "tone", "tone.passed",
                "length"):
        assert col in df.columns
    c0 = df.row(0, named=True)
    assert (c0["strata.tier"], c0["tags"], c0["correctness.rationale"]) == (
        "gold", "critical", "why c0")


def test_only_the_named_metrics_make_a_case_fail(con) -> None:
    df = failing_cases(con, "cand-1", metrics=["tone"])
    assert df["case_id"].to_list() == ["c1", "c3"]  # c3 errored, so it fails whatever
    with pytest.raises(EvallibError, match="no metric 'nope'"):
        failing_cases(con, "cand-1", metrics=["nope"])


def test_regressed_cases_passed_in_the_baseline_and_fail_now(con) -> None:
    df = failing_cases(con, "cand", baseline="base")  # runs named by name
    # c0 correctness 1 → 0, c1 tone pass → fail; c2 failed in both; c3 tone failed in both
    # (its error is not a regression); c4 unscored now.
    assert dict(df.select("case_id", "regressed").iter_rows()) == {
        "c0": "correctness", "c1": "tone"}
    assert df.row(0, named=True)["baseline_run_id"] == "base-1"
    assert {"correctness.baseline", "tone.baseline_passed", "baseline_output"} <= set(
        df.columns)


def test_csv_is_safe_and_round_trips(con) -> None:
    data = to_csv(failing_cases(con, "cand-1"))
    rows = {r["case_id"]: r for r in _rows(data)}
    for i in range(4):
        raw = NASTY[i]
        assert rows[f"c{i}"]["input"] == ("'" + raw if raw[0] in "=+-@\t\r" else raw)
    # every dangerous first character is neutralised, nothing else is touched
    assert [safe_cell(s)[0] for s in NASTY[:6]] == ["'"] * 6
    assert safe_cell(NASTY[6]) == NASTY[6] and safe_cell(NASTY[7]) == NASTY[7]
    one = pl.DataFrame({"=evil": ['comma, "quote"\nnewline', "naïve ✓"], "n": [-1.5, 2.0]})
    back = _rows(to_csv(one))
    assert back == [{"'=evil": 'comma, "quote"\nnewline', "n": "-1.5"},
                    {"'=evil": "naïve ✓", "n": "2.0"}]  # numbers stay numbers


def test_cli_writes_the_file_or_stdout(root: str, tmp_path: Path, capfdbinary) -> None:
    out = tmp_path / "failing.csv"
    assert main(["--warehouse", root, "export-failures", "cand", "--out", str(out)]) == 0
    assert b"4 failing case(s)" in capfdbinary.readouterr().err
    with connect(root) as c:
        assert out.read_bytes() == to_csv(failing_cases(c, "cand-1"))
    assert not list(tmp_path.glob(".*inprogress"))
    assert main(["--warehouse", root, "export-failures", "cand-1", "--baseline",
                 "base-1"]) == 0
    captured = capfdbinary.readouterr()
    assert [r["case_id"] for r in _rows(captured.out)] == ["c0", "c1"]


@pytest.mark.parametrize(("argv", "message"), [
    (["export-failures", "nope"], "unknown run 'nope' (see: evallib runs)"),
    (["export-failures", "cand", "--baseline", "gone"], "unknown baseline run 'gone'"),
    (["export-failures", "cand", "--metric", "nope"], "no metric 'nope'"),
    (["export-failures", "cand", "--out", "/nonexistent-dir/x.csv"], "cannot write"),
])
def test_cli_bad_input_is_exit_2(root: str, argv: list[str], message: str, capsys) -> None:
    assert main(["--warehouse", root, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
