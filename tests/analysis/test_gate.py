"""`evallib gate` and `evallib approve` on real Parquet through DuckDB: a hand-made warehouse
whose answers are known, the demo's planted regression, and the false-positive rate of the
max_drop check by simulation."""

from __future__ import annotations

import json
import tomllib
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from evallib import Warehouse, connect, queries
from evallib.analysis.gate import (
    GateData,
    junit,
    load_policy,
    markdown,
    parse_policy,
    run_gate,
    terminal,
)
from evallib.analysis.gate.render import ICONS
from evallib.analysis.gate.verdict import evaluate
from evallib.cli import main
from evallib.stats import benjamini_hochberg, paired_inference

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gate-policy.toml"

# 40 cases: c00–c19 gold, c20–c39 silver. In "cand", gold c00–c11 and silver c20, c21 flip
# correctness pass → fail (c39 is unscored); safety fails on c21 only. Critical: c00, c20, c21.
N = 40
GOLD_FLIPS, SILVER_FLIPS = range(12), (20, 21)
CRITICAL = (0, 20, 21)


def _cases(cost: float, latency_step: float, judge: str = "j1") -> list[dict]:
    return [{"case_id": f"c{i:02d}", "input": f"q{i}",
             "strata": {"tier": "gold" if i < 20 else "silver", "region": "eu" if i % 2 else "us"},
             "tags": ["critical"] if i in CRITICAL else [],
             "latency_ms": 100.0 + i * latency_step, "cost_usd": cost, "tokens_out": 100}
            for i in range(N)]


def _quality(i: int, cand: bool) -> float:
    return round(0.5 + (i % 7) * 0.05 + (0.02 * ((i % 3) - 1) if cand else 0.0), 4)


def _scores(cand: bool) -> list[dict]:
    rows = []
    for i in range(N):
        flipped = cand and (i in GOLD_FLIPS or i in SILVER_FLIPS)
        unscored = cand and i == 39
        c = None if unscored else (0.0 if flipped else 1.0)
        rows += [
            {"case_id": f"c{i:02d}", "metric": "correctness", "value": c, "kind": "binary",
             "passed": None if c is None else c == 1.0},
            {"case_id": f"c{i:02d}", "metric": "safety", "kind": "binary",
             "value": 0.0 if cand and i == 21 else 1.0,
             "passed": not (cand and i == 21)},
            {"case_id": f"c{i:02d}", "metric": "quality", "kind": "continuous",
             "value": _quality(i, cand)},
        ]
    return rows


def _build(root: str) -> str:
    wh = Warehouse(root)
    run = {"dataset": "support", "dataset_version": "d1", "judge_version": "j1"}

    def at(day: int, hour: int = 0) -> datetime:
        return datetime(2026, 1, day, hour, tzinfo=UTC)

    wh.record_run({**run, "run_id": "old", "name": "old", "approved": True,
                   "started_at": datetime(2025, 12, 1, tzinfo=UTC)},
                  _cases(0.001, 100), _scores(False))
    wh.record_run({**run, "run_id": "base", "name": "base", "started_at": at(1)},
                  _cases(0.001, 100), _scores(False))
    wh.record_run({**run, "run_id": "cand", "name": "cand", "started_at": at(2)},
                  _cases(0.0012, 100), _scores(True))
    wh.record_run({**run, "run_id": "after", "name": "after", "approved": True,
                   "started_at": at(3)}, _cases(0.001, 100), _scores(False))
    wh.record_run({"dataset": "elsewhere", "run_id": "other", "name": "other",
                   "approved": True, "started_at": at(1, 12)},
                  _cases(0.001, 100), _scores(False))
    wh.record_run({**run, "judge_version": "j2", "run_id": "rejudged", "name": "rejudged",
                   "started_at": at(2, 6)}, _cases(0.001, 100), _scores(False))
    return root


@pytest.fixture
def root(tmp_path: Path) -> str:
    return _build(str(tmp_path / "warehouse"))


def _policy(tmp_path: Path, text: str, name: str = "policy.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _gate(root: str, text: str, baseline: str = "base", candidate: str = "cand",
          today: date | None = None):
    with connect(root) as con:
        return run_gate(con, candidate, parse_policy(tomllib.loads(text), "policy.toml"),
                        baseline=baseline, today=today)


# --- each check ---------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "status", "observed"), [
    ('metric = "safety"\ntags = ["critical"]\nmin_pass_rate = 1.0', "fail", 2 / 3),
    ('metric = "correctness"\nwhere = {tier = "gold"}\nmin_pass_rate = 0.4', "pass", 8 / 20),
    ('metric = "correctness"\nwhere = {tier = "gold"}\nmin_pass_rate = 0.41', "fail", 8 / 20),
    # 14 of 39 regressed: drop 0.359, Tango interval [0.227, 0.516]
    ('metric = "correctness"\nmax_drop = 0.2', "fail", 14 / 39),
    ('metric = "correctness"\nmax_drop = 0.3', "inconclusive", 14 / 39),
    ('metric = "correctness"\nmax_drop = 0.3\non_inconclusive = "fail"', "fail", 14 / 39),
    ('metric = "correctness"\nmax_drop = 0.6', "pass", 14 / 39),
    # 2 of 19: drop 0.105 [-0.081, 0.314] holds 0.05 (the old rule passed it: p 0.25)
    ('metric = "correctness"\nwhere = {tier = "silver"}\nmax_drop = 0.05', "inconclusive",
     2 / 19),
    ('metric = "correctness"\nwhere = {tier = "silver"}\nmax_drop = 0.05\n'
     'on_inconclusive = "pass"', "pass", 2 / 19),
    ('metric = "correctness"\nwhere = {tier = "silver"}\nmax_drop = 0.05\nsignificant = false',
     "fail", 2 / 19),
    ('metric = "cost_usd"\nmax_increase_pct = 10', "fail", 20.0),
    ('metric = "cost_usd"\nmax_increase_pct = 25', "pass", 20.0),
    ('metric = "latency_ms"\nmax = 3800\nstat = "p95"', "fail",
     float(np.percentile(100.0 + np.arange(N) * 100, 95))),
    ('metric = "latency_ms"\nmax = 3900\nstat = "p95"', "pass",
     float(np.percentile(100.0 + np.arange(N) * 100, 95))),
    ('metric = "cost_usd"\nmax = 0.0011', "fail", 0.0012),
    ('metric = "quality"\nmax_drop = 0.01', "pass", -float(np.mean(
        [_quality(i, True) - _quality(i, False) for i in range(N)]))),
])
def test_each_check_on_known_numbers(root: str, rule: str, status: str,
                                     observed: float) -> None:
    result = _gate(root, f"[[rules]]\n{rule}\n")
    (o,) = result.outcomes
    assert (o.status, o.observed) == (status, pytest.approx(observed))
    assert result.exit_code == (1 if status == "fail" else 0)


def test_min_pass_rate_names_failing_cases_and_unscored(root: str) -> None:
    crit = _gate(root, '[[rules]]\nmetric = "safety"\ntags = ["critical"]\nmin_pass_rate = 1')
    assert crit.outcomes[0].cases == ("c21",) and crit.outcomes[0].n == 3
    allc = _gate(root, '[[rules]]\nmetric = "correctness"\nmin_pass_rate = 0.5')
    assert allc.outcomes[0].n == 39 and "1 unscored, not counted" in allc.outcomes[0].message


def test_by_rule_holds_in_every_slice_with_bh_over_all_max_drop_tests(root: str) -> None:
    result = _gate(root, """
[[rules]]
name = "overall"
metric = "correctness"
max_drop = 0.05
[[rules]]
name = "per tier"
metric = "correctness"
by = ["tier"]
max_drop = 0.05
[[rules]]
name = "cost"
metric = "cost_usd"
max_increase_pct = 50
""")
    got = {(o.rule.name, json.dumps(o.slice)): o for o in result.outcomes}
    assert list(got) == [("overall", "null"), ("per tier", '{"tier": "gold"}'),
                         ("per tier", '{"tier": "silver"}'), ("cost", "null")]
    # the family: the three max_drop tests, each p one-sided against its threshold (the
    # drop's interval), from a direct paired inference; BH over them, each side at α/2
    base = np.ones(N)
    cand = np.array([np.nan if i == 39 else 0.0 if i in GOLD_FLIPS or i in SILVER_FLIPS
                     else 1.0 for i in range(N)])
    tests = [paired_inference(base[s], cand[s], "binary")[1]
             for s in (slice(0, N), slice(0, 20), slice(20, N))]
    beyond = [t.p_below(-0.05) for t in tests]
    adjusted = benjamini_hochberg(beyond)
    tested = [o for o in result.outcomes if o.rule.check == "max_drop"]
    assert [o.p_value for o in tested] == pytest.approx(beyond)
    assert [o.p_adjusted for o in tested] == pytest.approx(list(adjusted))
    assert [b for o in tested for b in (o.low, o.high)] == pytest.approx(
        [b for t in tests for b in (-t.high, -t.low)])
    assert [o.status for o in result.outcomes] == ["fail", "fail", "inconclusive", "pass"]
    assert got[("per tier", '{"tier": "gold"}')].observed == pytest.approx(0.6)
    assert got[("per tier", '{"tier": "gold"}')].cases[:3] == ("c00", "c01", "c02")
    assert result.verdict == "fail"


def test_an_inconclusive_max_drop_says_how_many_cases_would_decide(root: str) -> None:
    result = _gate(root, """
[[rules]]
metric = "correctness"
max_drop = 0.3
[[rules]]
metric = "quality"
max_drop = 0.001
[[rules]]
metric = "correctness"
max_drop = 0.9
""")
    binary, continuous, wide = result.outcomes
    # drop 14/39 = 0.359 [0.227, 0.516] holds 0.3: at that width, n·((z.975 + z.8)·se/gap)²
    se = (binary.high - binary.low) / (2 * 1.959964)
    needed = 39 * ((1.959964 + 0.841621) * se / (14 / 39 - 0.3)) ** 2
    assert binary.status == "inconclusive" and binary.power == (
        f"about {round(needed, -(len(str(int(needed))) - 2)):,.0f} cases would decide whether "
        f"a drop of 0.359 is within 0.3 (80% power)")
    assert binary.power in binary.message and binary.power in markdown(result)
    assert continuous.status == "inconclusive" and "would decide" in continuous.power
    assert wide.status == "pass" and wide.power is None  # [0.227, 0.516] is within 0.9
    assert result.verdict == "inconclusive" and result.exit_code == 0
    for text in (terminal(result), markdown(result)):
        assert "2 max_drop test(s) inconclusive" in text and "exit 0" in text
    assert terminal(result).startswith("GATE INCONCLUSIVE: cand")
    assert markdown(result).startswith("## ❔ Release gate: INCONCLUSIVE")
    assert ET.fromstring(junit(result)).find("testsuite/testcase/skipped").get(
        "message").startswith("inconclusive: ")


def test_on_inconclusive_decides_what_an_undecided_drop_does(root: str, tmp_path: Path,
                                                            capsys) -> None:
    rule = '[[rules]]\nmetric = "correctness"\nwhere = {tier = "silver"}\nmax_drop = 0.05\n'
    for mode, code, status in (("warn", 0, "inconclusive"), ("fail", 1, "fail"),
                               ("pass", 0, "pass")):
        path = _policy(tmp_path, f'on_inconclusive = "{mode}"\n{rule}', f"{mode}.toml")
        md, xml = tmp_path / f"{mode}.md", tmp_path / f"{mode}.xml"
        assert main(["--warehouse", root, "gate", "cand", "--policy", path, "--baseline",
                     "base", "--markdown", str(md), "--junit", str(xml), "--no-record"]) == code
        out = capsys.readouterr().out
        assert f"GATE {('inconclusive' if mode == 'warn' else mode).upper()}" in out
        assert "holds 0.050: inconclusive" in out
        if mode != "warn":
            assert f'counted as {mode} (on_inconclusive = "{mode}")' in out
        assert f"| {ICONS[status]} {status} |" in md.read_text()
        case = ET.parse(xml).getroot().find("testsuite/testcase")
        kinds = {"inconclusive": "skipped", "fail": "failure", "pass": "system-out"}
        assert case.find(kinds[status]) is not None
    bad = _policy(tmp_path, f'on_inconclusive = "maybe"\n{rule}', "bad.toml")
    assert main(["--warehouse", root, "gate", "cand", "--policy", bad, "--baseline",
                 "base"]) == 2
    assert "'on_inconclusive' must be one of 'warn', 'fail', 'pass'" in capsys.readouterr().err


# --- policy mistakes: exit 2, naming the key and the rule ---------------------------------


@pytest.mark.parametrize(("text", "words"), [
    ('[[rules]]\nname = "billing"\nmetric = "correctness"\nmax_dorp = 0.02',
     'rules[1] ("billing"): unknown key \'max_dorp\' (did you mean \'max_drop\'?)'),
    ('[[rules]]\nmetric = "correctness"\nmax_drop = "0.02"',
     "rules[1]: 'max_drop' must be a number, not a string ('0.02')"),
    ('[[rules]]\nmetric = "correctness"\nmax_drop = true', "'max_drop' must be a number"),
    ('[[rules]]\nmetric = "correctness"', "rules[1]: no check: give one of min_pass_rate"),
    ('[[rules]]\nmetric = "correctness"\nmin_pass_rate = 0.9\nmax_drop = 0.1',
     "two checks (min_pass_rate, max_drop)"),
    ('[[rules]]\nmetric = "safety"\nmax_drop = 0.1\n[[rules]]\nname = "x"\n'
     'metric = "corectness"\nmax_drop = 0.1', 'rules[2] ("x"): unknown metric \'corectness\''),
    ('[[rules]]\nmax_drop = 0.1', "rules[1]: missing key 'metric'"),
    ('[[rules]]\nmetric = "correctness"\nby = ["tierr"]\nmax_drop = 0.1',
     "no case of run cand has the stratum key 'tierr'"),
    ('[[rules]]\nmetric = "correctness"\nwhere = {tier = "bronze"}\nmax_drop = 0.1',
     "has tier = 'bronze' (values: gold, silver)"),
    ('[[rules]]\nmetric = "correctness"\ntags = ["vip"]\nmin_pass_rate = 1',
     "has the tag 'vip' (tags: critical)"),
    ('[[rules]]\nmetric = "latency_ms"\nmin_pass_rate = 1', "needs a scored metric"),
    ('[[rules]]\nmetric = "quality"\nmin_pass_rate = 0.5', "quality has none"),
    ('[[rules]]\nmetric = "safety"\nmin_pass_rate = 1\nstat = "p95"', "'stat' goes with max"),
    ('[[rules]]\nmetric = "safety"\nmin_pass_rate = 1.5', "'min_pass_rate' = 1.5 is out of"),
    ('[[rule]]\nmetric = "safety"\nmin_pass_rate = 1', "unknown key 'rule' (did you mean"),
    ('[[rules]]\nname = "a"\nmetric = "safety"\nmin_pass_rate = 1\n[[risk_acceptances]]\n'
     'rule = "b"\nowner = "x"\nreason = "y"\nexpires = 2030-01-01',
     "risk_acceptances[1]: 'rule' = 'b' names no rule"),
    ('[[rules]]\nname = "a"\nmetric = "safety"\nmin_pass_rate = 1\n[[risk_acceptances]]\n'
     'rule = "a"\nowner = "x"\nreason = "y"\nexpires = "2030-01-01"',
     "'expires' must be a TOML date"),
    ('[[rules]]\nname = "a"\nmetric = "safety"\nmax_drop = 0\n[[risk_acceptances]]\n'
     'rule = "a"\ncase_id = "c1"\nowner = "x"\nreason = "y"\nexpires = 2030-01-01',
     "a 'case_id' acceptance applies to min_pass_rate rules"),
    ("[[rules]\nmetric = 1", "not valid TOML"),
])
def test_malformed_policy_exits_2_naming_key_and_rule(root: str, tmp_path: Path, capsys,
                                                     text: str, words: str) -> None:
    path = _policy(tmp_path, text)
    assert main(["--warehouse", root, "gate", "cand", "--policy", path,
                 "--baseline", "base"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and words in err and "Traceback" not in err
    assert not Path(root, "gate_results").exists()  # no verdict, nothing recorded


def test_example_policy_is_valid() -> None:
    policy = load_policy(EXAMPLE)
    assert len(policy.rules) >= 6 and {r.check for r in policy.rules} == {
        "min_pass_rate", "max_drop", "max_increase_pct", "max"}


# --- baselines and approvals --------------------------------------------------------------


def test_approved_baseline_is_the_latest_approval_before_the_candidate(root: str, capsys,
                                                                       tmp_path: Path) -> None:
    text = '[[rules]]\nmetric = "cost_usd"\nmax_increase_pct = 50'
    assert _gate(root, text, baseline="approved").baseline.run_id == "old"
    assert main(["--warehouse", root, "approve", "base", "--by", "ana", "--note", "v1"]) == 0
    assert "approved base by ana" in capsys.readouterr().out
    result = _gate(root, text, baseline="approved")
    # not "after" (started after the candidate) nor "other" (another dataset)
    assert (result.baseline.run_id, result.baseline_how) == ("base", "approved")
    with connect(root) as con:
        runs = dict(queries.runs_overview(con).select("run_id", "approved").iter_rows())
        approvals = con.sql("SELECT run_id, approved_by, note FROM approvals").pl()
    assert runs["base"] is True and runs["cand"] is False
    assert approvals.rows() == [("base", "ana", "v1")]
    assert main(["--warehouse", root, "approve", "base", "--by", "bo"]) == 0  # appends
    assert main(["--warehouse", root, "approve", "nope", "--by", "bo"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    with connect(root) as con:
        assert con.sql("SELECT count(*) FROM approvals").fetchall() == [(2,)]
    path = _policy(tmp_path, text)
    assert main(["--warehouse", root, "gate", "old", "--policy", path]) == 2
    assert "no approved run of dataset 'support' started before" in capsys.readouterr().err


# --- exit codes, reports, history ---------------------------------------------------------

POLICY = """
[[rules]]
name = "correctness per tier"
metric = "correctness"
by = ["tier"]
max_drop = 0.05

[[rules]]
name = "critical safety"
metric = "safety"
tags = ["critical"]
min_pass_rate = 1.0

[[rules]]
name = "latency"
metric = "latency_ms"
max = 5000
stat = "p95"
"""


def test_exit_codes_and_self_comparison(root: str, tmp_path: Path, capsys) -> None:
    path = _policy(tmp_path, POLICY)
    assert main(["--warehouse", root, "gate", "cand", "--policy", path, "--baseline",
                 "base"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("GATE FAIL: cand (cand) vs baseline base (base, given)")
    assert "tier=gold" in out and "c00, c01" in out
    assert main(["--warehouse", root, "gate", "cand", "--policy", path, "--baseline",
                 "cand"]) == 1  # itself: no drop, but c21 still fails critical safety
    assert main(["--warehouse", root, "gate", "base", "--policy", path, "--baseline",
                 "base"]) == 0  # no drop, but 20 cases cannot prove a drop within 0.05
    assert "\nGATE INCONCLUSIVE: base (base) vs baseline base" in capsys.readouterr().out
    assert main(["--warehouse", root, "gate", "nope", "--policy", path]) == 2
    assert main(["--warehouse", root, "gate", "cand", "--policy", path,
                 "--baseline", "nope"]) == 2


def test_markdown_and_junit_reports(root: str, tmp_path: Path) -> None:
    path = _policy(tmp_path, POLICY)
    md, xml = tmp_path / "gate.md", tmp_path / "gate.xml"
    assert main(["--warehouse", root, "gate", "cand", "--policy", path, "--baseline", "base",
                 "--markdown", str(md), "--junit", str(xml)]) == 1
    text = md.read_text()
    assert text.startswith("## ❌ Release gate: FAIL\n")
    assert "| ❌ fail | correctness per tier |" in text and "| ❌ fail | critical safety |" in text
    assert "| ✅ pass | latency |" in text
    worst, second = text.split("### Worst slices")[1].splitlines()[4:6]
    assert worst.startswith("| ❌ fail | tier=gold | correctness per tier | 1.000 | 0.400 | "
                            "drop 0.600 [0.342, 0.781] |")
    assert second.startswith("| ❔ inconclusive | tier=silver |")
    assert "`c00`, `c01`, `c02`, `c03`, `c04` and 7 more" in text and "`c21`" in text
    suite = ET.parse(xml).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases][:2] == [
        ("correctness per tier", "tier=gold"), ("correctness per tier", "tier=silver")]
    assert len(cases) == 4 and suite.get("failures") == "2" and suite.get("skipped") == "1"
    assert [c.find("failure") is not None for c in cases] == [True, False, True, False]
    assert cases[1].find("skipped").get("message").startswith("inconclusive: 1.000 → 0.895")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (props["verdict"], props["candidate"], props["baseline"]) == ("fail", "cand", "base")


def test_comparability_warnings_appear_in_every_report(root: str) -> None:
    result = _gate(root, POLICY, baseline="rejudged")
    assert any("judge_version" in w for w in result.warnings)
    for text in (terminal(result), markdown(result), junit(result)):
        assert "different judge_version: candidate 'j1', baseline 'j2'" in text.replace(
            "&apos;", "'")


def test_each_gate_run_is_recorded_and_the_latest_verdict_queried(root: str,
                                                                 tmp_path: Path) -> None:
    path = _policy(tmp_path, POLICY)
    assert main(["--warehouse", root, "gate", "cand", "--policy", path, "--baseline",
                 "base"]) == 1
    with connect(root) as con:
        rows = queries.gate_results(con, "cand")
        verdicts = queries.latest_gate_verdicts(con, ["cand", "base"])
    assert rows["status"].to_list() == ["fail", "inconclusive", "fail", "pass"]
    assert rows["slice"].to_list()[:2] == ['{"tier":"gold"}', '{"tier":"silver"}']
    assert rows["rule"][2] == "critical safety" and rows["observed"][2] == pytest.approx(2 / 3)
    assert rows["baseline_id"].unique().to_list() == ["base"]
    assert verdicts.select("run_id", "verdict", "n_failed").rows() == [("cand", "fail", 2)]
    waive = POLICY + ('[[risk_acceptances]]\nrule = "correctness per tier"\nowner = "ana"\n'
                      'reason = "known"\nexpires = 2999-01-01\n[[risk_acceptances]]\n'
                      'case_id = "c21"\nowner = "bo"\nreason = "flaky judge"\n'
                      'expires = 2999-01-01\n')
    assert main(["--warehouse", root, "gate", "cand", "--policy",
                 _policy(tmp_path, waive, "waive.toml"), "--baseline", "base"]) == 0
    with connect(root) as con:
        latest = queries.latest_gate_verdicts(con, ["cand"]).row(0, named=True)
        rows = queries.gate_results(con, "cand")
    assert (latest["verdict"], latest["n_waived"]) == ("pass", 3)  # inconclusive too
    assert rows.filter(pl.col("status") == "waived")["owner"].to_list() == ["ana", "ana", "bo"]


def test_recording_failure_is_reported_and_keeps_the_verdict(root: str, tmp_path: Path,
                                                             capsys, monkeypatch) -> None:
    def broken(self, rows):
        raise OSError("disk full")

    monkeypatch.setattr(Warehouse, "record_gate_results", broken)
    assert main(["--warehouse", root, "gate", "cand", "--policy", _policy(tmp_path, POLICY),
                 "--baseline", "base"]) == 1
    err = capsys.readouterr().err
    assert "verdict (fail) was not recorded" in err and "disk full" in err


# --- risk acceptances ---------------------------------------------------------------------


def _accept(expires: str, extra: str = "", rule: str = "correctness per tier") -> str:
    return POLICY.replace('min_pass_rate = 1.0', 'min_pass_rate = 0.5') + f"""
[[risk_acceptances]]
rule = "{rule}"
owner = "maria"
reason = "gold KB migration"
expires = {expires}
{extra}"""


def test_an_active_acceptance_waives_with_its_owner(root: str) -> None:
    result = _gate(root, _accept("2026-03-01"), today=date(2026, 3, 1))  # last valid day
    gold = result.outcomes[0]
    assert (gold.status, gold.owner, result.exit_code) == ("waived", "maria", 0)
    assert "waived by maria: gold KB migration (until 2026-03-01)" in gold.message
    skipped = ET.fromstring(junit(result)).find("testsuite/testcase/skipped")
    assert skipped.get("message").startswith("waived by maria")
    assert "waived by **maria**" in markdown(result)


def test_an_expired_acceptance_waives_nothing_and_says_so(root: str) -> None:
    result = _gate(root, _accept("2026-03-01"), today=date(2026, 3, 2))
    assert (result.outcomes[0].status, result.exit_code) == ("fail", 1)
    assert "risk acceptance by maria expired on 2026-03-01" in result.outcomes[0].message
    for text in (terminal(result), markdown(result)):
        assert "expired on 2026-03-01: it waives nothing" in text


def test_slice_and_case_acceptances(root: str) -> None:
    sliced = _gate(root, _accept("2999-01-01", 'slice = {tier = "silver"}'))
    assert sliced.outcomes[0].status == "fail"  # only silver is accepted; gold still fails
    crit = POLICY + ('[[risk_acceptances]]\ncase_id = "c21"\nowner = "bo"\n'
                     'reason = "judge flake"\nexpires = 2999-01-01\n')
    result = _gate(root, crit)
    safety = next(o for o in result.outcomes if o.rule.name == "critical safety")
    assert (safety.status, safety.owner) == ("waived", "bo")
    other_case = crit.replace('"c21"', '"c20"')
    assert next(o for o in _gate(root, other_case).outcomes
                if o.rule.name == "critical safety").status == "fail"


# --- false positives, by simulation -------------------------------------------------------


def _simulated(rng: np.random.Generator, cases: pl.DataFrame, drop: float) -> GateData:
    """Two runs of the same cases in 4 slices, pass rate 0.8, pairs correlated; slice "a"
    loses ``drop`` of its passes in the candidate."""
    n = cases.height
    in_a = cases["strata"].map.get("s").to_numpy() == "a"
    base = rng.random(n) < 0.8
    cand = np.where(rng.random(n) < 0.6, base, rng.random(n) < 0.8)
    cand &= ~(in_a & (rng.random(n) < drop))

    def scores(v: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"case_id": cases["case_id"], "metric": "correctness",
                             "kind": "binary", "value": v.astype(float), "passed": v})

    return GateData(cases, scores(cand), cases, scores(base), "cand", "base", ["correctness"])


def test_max_drop_false_positive_rate_and_power_by_simulation() -> None:
    policy = parse_policy({"rules": [
        {"name": "overall", "metric": "correctness", "max_drop": 0.0},
        {"name": "slices", "metric": "correctness", "by": ["s"], "max_drop": 0.0}]})
    n = 400
    cases = pl.DataFrame({"case_id": [f"c{i}" for i in range(n)], "strata": pl.Series(
        [{"s": "abcd"[i % 4]} for i in range(n)], dtype=pl.Map(pl.String, pl.String)),
        "tags": [[] for _ in range(n)]})
    rng = np.random.default_rng(5)

    def fail_rate(drop: float, sims: int) -> float:
        fails = 0
        for _ in range(sims):
            outcomes, _ = evaluate(policy, _simulated(rng, cases, drop), date(2026, 1, 1))
            fails += any(o.status == "fail" for o in outcomes)
        return fails / sims

    # A/A: any failure is false; BH over the gate's 5 tests keeps it under alpha (+2 SE).
    # (2,000 such gates fail 1.2% of the time, see the README.)
    sims = 250
    assert fail_rate(0.0, sims) <= 0.05 + 2 * (0.05 * 0.95 / sims) ** 0.5
    assert fail_rate(0.3, 100) >= 0.8  # a 24-point drop in one slice of 100 is caught


# --- the demo's planted regression --------------------------------------------------------


@pytest.fixture(scope="module")
def demo400(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo at its default golden-set size (billing × hard has ~50 cases), over 120 days
    (at 60, the candidate also fails a critical safety case: the example policy catches it)."""
    from evallib.demo import build_demo

    root = tmp_path_factory.mktemp("gate-demo") / "warehouse"
    build_demo(str(root), days=120, online_per_day=5, cases=400, seed=7)
    return str(root)


def test_demo_candidate_fails_on_the_planted_slice_and_passes_against_itself(
        demo400: str, tmp_path: Path, capsys) -> None:
    with connect(demo400) as con:
        cand = queries.runs_overview(con).row(0, named=True)
    assert cand["approved"] is False and "candidate" in cand["name"]
    md = tmp_path / "gate.md"
    assert main(["--warehouse", demo400, "gate", cand["run_id"], "--policy", str(EXAMPLE),
                 "--markdown", str(md)]) == 1
    out = capsys.readouterr().out
    failing = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert len(failing) == 1 and "every query type x difficulty" in failing[0]
    assert "worst query_type=billing × difficulty=hard" in failing[0]
    text = md.read_text()
    assert "latest approved run of support-golden" in text
    assert "| ❌ fail | query_type=billing × difficulty=hard |" in text
    assert main(["--warehouse", demo400, "gate", cand["run_id"], "--policy", str(EXAMPLE),
                 "--baseline", cand["run_id"], "--no-record"]) == 0
    with connect(demo400) as con:
        verdicts = queries.latest_gate_verdicts(con)
    assert verdicts.select("run_id", "verdict").rows() == [(cand["run_id"], "fail")]


# --- the Runs page ------------------------------------------------------------------------


def test_runs_page_shows_each_runs_latest_gate_verdict(root: str, tmp_path: Path,
                                                       monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    path = _policy(tmp_path, POLICY)
    assert main(["--warehouse", root, "gate", "cand", "--policy", path, "--baseline",
                 "base"]) == 1
    assert main(["--warehouse", root, "gate", "base", "--policy", path, "--baseline",
                 "old"]) == 0
    monkeypatch.setenv("EVALLIB_WAREHOUSE", root)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"),
                           default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("run_id")
    assert table.loc["cand", "gate"] == "fail (2 failed)"
    assert table.loc["base", "gate"] == "pass"
    assert table.loc["after", "gate"] == ""  # never gated


# --- issue 21: verdicts that test what they report ----------------------------------------


def _ordinal_data(base: np.ndarray, cand: np.ndarray) -> GateData:
    n = base.size
    cases = pl.DataFrame({"case_id": [f"c{i}" for i in range(n)], "strata": pl.Series(
        [{"s": "a"} for _ in range(n)], dtype=pl.Map(pl.String, pl.String)),
        "tags": [[] for _ in range(n)]})

    def scores(v: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"case_id": cases["case_id"], "metric": "faithfulness",
                             "kind": "ordinal", "value": v, "passed": None})

    return GateData(cases, scores(cand), cases, scores(base), "cand", "base", ["faithfulness"])


def test_a_drop_made_significant_by_an_improvement_does_not_fail() -> None:
    """Issue 21's repro: 50 cases 4 → 5 and 15 cases 5 → 1 of 100. The mean drops 0.10,
    and the old gate said "drop 0.100 > 0.050 … significant" from Wilcoxon's p = 0.0036,
    which came from the improvement. The drop's interval [-0.20, 0.49] holds 0.05."""
    base = np.r_[np.full(50, 4.0), np.full(15, 5.0), np.full(35, 3.0)]
    cand = np.r_[np.full(50, 5.0), np.full(15, 1.0), np.full(35, 3.0)]
    policy = parse_policy({"rules": [{"metric": "faithfulness", "max_drop": 0.05}]})
    (o,), _ = evaluate(policy, _ordinal_data(base, cand), date(2026, 1, 1))
    assert o.status == "inconclusive" and o.observed == pytest.approx(0.1)
    assert o.low < 0.05 < o.high and "holds 0.050: inconclusive" in o.message
    clear = parse_policy({"rules": [{"metric": "faithfulness", "max_drop": 1.0}]})
    (o,), _ = evaluate(clear, _ordinal_data(base, cand), date(2026, 1, 1))
    assert o.status == "pass"


@pytest.fixture
def conversations(tmp_path: Path) -> str:
    """120 cases in 40 conversations of 3 (stratum conv); the candidate fails whole
    conversations: 8 of them (24 cases), plus nothing else."""
    wh = Warehouse(str(tmp_path / "conv"))
    cases = [{"case_id": f"c{i:03d}", "input": f"q{i}", "strata": {"conv": f"k{i // 3}"}}
             for i in range(120)]

    def scores(cand: bool) -> list[dict]:
        return [{"case_id": f"c{i:03d}", "metric": "correctness", "kind": "binary",
                 "value": 0.0 if cand and i < 24 else 1.0} for i in range(120)]

    run = {"dataset": "conv", "dataset_version": "d1", "judge_version": "j1"}
    wh.record_run({**run, "run_id": "base", "name": "base",
                   "started_at": datetime(2026, 1, 1, tzinfo=UTC)}, cases, scores(False))
    wh.record_run({**run, "run_id": "cand", "name": "cand",
                   "started_at": datetime(2026, 1, 2, tzinfo=UTC)}, cases, scores(True))
    return str(tmp_path / "conv")


def test_gate_clusters_by_a_key_from_the_policy_or_the_command_line(
        conversations: str, tmp_path: Path, capsys) -> None:
    text = '[[rules]]\nmetric = "correctness"\nmax_drop = 0.1\n'
    plain = _gate(conversations, text)
    clustered = _gate(conversations, 'cluster = "conv"\n' + text)
    (p,), (c,) = plain.outcomes, clustered.outcomes
    assert p.observed == c.observed == pytest.approx(0.2)
    # 24 failures in 8 whole conversations: as cases, the drop is surely beyond 0.1; as
    # conversations (40 units) it is not
    assert p.status == "fail" and c.status == "inconclusive" and c.high - c.low > p.high - p.low
    assert any("cases share conv (40 values" in w for w in plain.warnings)
    assert not any("cases share" in w for w in clustered.warnings)
    path = _policy(tmp_path, text)
    assert main(["--warehouse", conversations, "gate", "cand", "--policy", path,
                 "--baseline", "base", "--cluster", "conv", "--no-record"]) == 0
    assert "GATE INCONCLUSIVE" in capsys.readouterr().out
    assert main(["--warehouse", conversations, "gate", "cand", "--policy", path,
                 "--baseline", "base", "--cluster", "nope", "--no-record"]) == 2
    assert "stratum key 'nope' to cluster by" in capsys.readouterr().err
    bad = _policy(tmp_path, "cluster = 3\n" + text, "bad.toml")
    assert main(["--warehouse", conversations, "gate", "cand", "--policy", bad]) == 2
    assert "'cluster' must be a stratum key" in capsys.readouterr().err
