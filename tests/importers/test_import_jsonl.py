"""`evallib import jsonl`: good files land, a bad line is refused by line and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evallib import connect
from evallib.cli import main

GOOD = [
    {"case_id": "c1", "input": "How do I reset my password?", "output": "Use the link.",
     "expected": "Reset link", "strata": {"query_type": "account", "difficulty": "easy"},
     "tags": ["critical"],
     "scores": {"correctness": True,
                "faithfulness": {"value": 4, "kind": "ordinal", "passed": True,
                                 "rationale": "grounded in kb-1"},
                "relevance": 0.8},
     "latency_ms": 812, "tokens_in": 300, "tokens_out": 40, "cost_usd": 0.0012,
     "retrieved": [{"doc_id": "kb-1", "rank": 1, "relevant": True, "cited": True},
                   {"doc_id": "kb-9", "rank": 2, "relevant": False, "cited": False}]},
    {"case_id": "c2", "input": {"messages": [{"role": "user", "content": "refund?"}]},
     "output": "No.", "expected": "Within 30 days",
     "strata": {"query_type": "billing", "difficulty": "hard"},
     "scores": {"correctness": False, "faithfulness": {"value": 2, "kind": "ordinal"},
                "relevance": None}, "error": None},
]


def _write(path, lines) -> str:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


def _files(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root)
            for d, _, fs in os.walk(root) for f in fs}


def test_good_file_lands_with_every_field(tmp_path, capsys):
    f = _write(tmp_path / "golden.jsonl", GOOD)
    wh = str(tmp_path / "wh")
    assert main(["import", "jsonl", f, "--run-name", "baseline", "--model", "m-1",
                 "--warehouse", wh]) == 0
    run_id = capsys.readouterr().out.strip()
    con = connect(wh)
    run = con.sql("SELECT * FROM runs").pl().row(0, named=True)
    assert (run["run_id"], run["name"], run["model"], run["dataset"], run["source"]) == \
        (run_id, "baseline", "m-1", "golden", "import:jsonl")
    scores = {(r[0], r[1]): r[2:] for r in con.sql(
        "SELECT case_id, metric, value, kind, passed FROM scores").fetchall()}
    assert scores[("c1", "correctness")] == (1.0, "binary", True)
    assert scores[("c2", "correctness")] == (0.0, "binary", False)
    assert scores[("c1", "faithfulness")] == (4.0, "ordinal", True)
    assert scores[("c1", "relevance")] == (0.8, "continuous", None)  # number → continuous
    assert scores[("c2", "relevance")] == (None, "continuous", None)  # null → unscored
    c2 = con.sql("SELECT input, strata['difficulty'] FROM cases WHERE case_id = 'c2'")
    assert json.loads(c2.fetchall()[0][0])["messages"][0]["content"] == "refund?"
    assert c2.fetchall()[0][1] == "hard"
    assert con.sql("SELECT count(*) FROM retrievals WHERE relevant").fetchall() == [(1,)]


def test_online_file_lands_with_feedback(tmp_path, capsys):
    f = _write(tmp_path / "prod.jsonl", [
        {"trace_id": "t1", "timestamp": "2026-11-20T10:00:00Z", "release": "v2",
         "variant": "canary", "scores": {"correctness": True}, "feedback": {"thumbs": False}},
        {"trace_id": "t2", "timestamp": "2026-11-21T10:00:00Z", "refusal": True,
         "feedback": [{"kind": "rating", "value": 4, "timestamp": "2026-11-22T08:00:00Z"}]},
    ])
    wh = str(tmp_path / "wh")
    assert main(["import", "jsonl", f, "--kind", "online", "--warehouse", wh]) == 0
    con = connect(wh)
    assert con.sql("SELECT trace_id, kind, value, CAST(date AS VARCHAR) FROM feedback "
                   "ORDER BY trace_id").fetchall() == [("t1", "thumbs", 0.0, "2026-11-20"),
                                                       ("t2", "rating", 4.0, "2026-11-22")]
    assert con.sql("SELECT count(*) FROM online_traces WHERE refusal").fetchall() == [(1,)]


BAD = [
    ('{"case_id": "c3", "scores": {"correctness": {"value": 1, "kind": "binry"}}}',
     "line 3", "scores.correctness.kind", "not one of binary"),
    ('{"case_id": "c3", "latency_ms": "fast"}', "line 3", "latency_ms", "not a valid number"),
    ('{"case_id": "c3", "scores": {"correctness": {"value": 2, "kind": "binary"}}}',
     "line 3", "scores.correctness.value", "0 or 1"),
    ('{"case_id": "c3", "retrieved": [{"doc_id": "d", "rank": 0}]}', "line 3",
     "retrieved[0].rank", "starts at 1"),
    ('{"case_id": "c3", "retreived": []}', "line 3", "retreived", "unknown field"),
    ('{"case_id": "c1"}', "line 3", "case_id", "duplicate case_id='c1' (first on line 1)"),
    ('{"input": "no id"}', "line 3", "case_id", "required"),
    ('{"case_id": "c3", "feedback": {"thumbs": true}}', "line 3", "feedback", "--kind online"),
    ('{"case_id": "c3", "strata": ["billing"]}', "line 3", "strata", "object"),
    ('{"case_id": "c3", "scores": {"x": NaN}}', "line 3", "", "not valid JSON"),
    ("[1, 2]", "line 3", "", "expected a JSON object"),
    ("{oops", "line 3", "", "not valid JSON"),
]


@pytest.mark.parametrize(("line", "where", "field", "words"), BAD)
def test_bad_line_exit_2_names_line_and_field_and_writes_nothing(tmp_path, capsys, line, where,
                                                                 field, words):
    wh = tmp_path / "wh"
    good = _write(tmp_path / "first.jsonl", GOOD)
    assert main(["import", "jsonl", good, "--run-name", "first", "--warehouse", str(wh)]) == 0
    before = _files(wh)
    bad = _write(tmp_path / "bad.jsonl", [*GOOD, line])
    capsys.readouterr()
    assert main(["import", "jsonl", bad, "--run-name", "second", "--warehouse", str(wh)]) == 2
    err = capsys.readouterr().err
    assert f"bad.jsonl:{where.split()[1]}" in err
    if field:
        assert f"field '{field}'" in err
    assert words in err
    assert _files(wh) == before  # the warehouse is unchanged


def test_bad_file_from_the_shell_exit_2_without_traceback(tmp_path):
    bad = _write(tmp_path / "bad.jsonl", [GOOD[0], '{"case_id": "c3", "tokens_in": -1}'])
    proc = subprocess.run([sys.executable, "-m", "evallib.cli", "import", "jsonl", bad,
                           "--run-name", "x", "--warehouse", str(tmp_path / "wh")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"evallib import: error: {bad}:2, field 'tokens_in': -1 must not be negative"]
    assert not (tmp_path / "wh").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    f = _write(tmp_path / "g.jsonl", GOOD)
    assert main(["import", "jsonl", f, "--warehouse", str(tmp_path)]) == 2  # no --run-name
    assert main(["import", "jsonl", str(tmp_path / "missing.jsonl"), "--run-name", "x"]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["import", "jsonl", str(empty), "--run-name", "x"]) == 2
    err = capsys.readouterr().err
    assert "--run-name is required" in err and "missing.jsonl" in err and "empty" in err


def test_same_run_id_refused_then_replaced(tmp_path, capsys):
    f = _write(tmp_path / "g.jsonl", GOOD)
    args = ["import", "jsonl", f, "--run-name", "x", "--run-id", "r1",
            "--warehouse", str(tmp_path / "wh")]
    assert main(args) == 0
    assert main(args) == 2
    assert "already in the warehouse" in capsys.readouterr().err
    assert main([*args, "--replace"]) == 0
    assert connect(tmp_path / "wh").sql("SELECT count(*) FROM cases").fetchall() == [(2,)]
